"""Storage: the analytic warehouse and the service database (:mod:`flowbureau.storage.database`).

The warehouse (Parquet files + DuckDB views, docs/pipeline.md): :mod:`.warehouse` (layout,
atomic commits, crash recovery, snapshot readers), :mod:`.manifest`, :mod:`.views`,
:mod:`.annotations` (side tables keyed by ``tx_id``), :mod:`.engine` / :mod:`.duckdb_engine`
(the backend abstraction), :mod:`.vault` (encrypted clear account numbers), :mod:`.query`
(read-only user SQL), :mod:`.summary` (``flowbureau inspect``). Nothing is imported here, so
importing one module stays cheap.
"""
