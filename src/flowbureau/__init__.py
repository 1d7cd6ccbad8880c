"""flowbureau: consortium credit bureau for SMEs built on enterprise bank transaction flows."""

__version__ = "0.1.0"
