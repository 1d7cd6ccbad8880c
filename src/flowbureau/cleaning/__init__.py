"""Cleaning: what the ingest pipeline does to every entry between reading and storing.

Steps (each records what it did in ``quality_flags`` or the quarantine; see docs/pipeline.md):
completeness (:mod:`.completeness`), standardisation (:mod:`.normalise`), identifiers and
exact duplicates (:mod:`.identifiers`), categorisation (:mod:`.rules`), outliers
(:mod:`.outliers`) and cross-bank payment links (:mod:`.links`). Every step is vectorised SQL
(DuckDB dialect) or Arrow compute over distinct values; nothing loops over rows in Python.
This package imports nothing heavy on import.
"""
