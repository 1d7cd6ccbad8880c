"""Bank export profiles shipped with flowbureau (TOML data files; see ``formats.profiles``)."""
