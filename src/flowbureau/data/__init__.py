"""Package data files (reference tables shipped with flowbureau)."""
