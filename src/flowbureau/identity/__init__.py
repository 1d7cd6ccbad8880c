"""Enterprise identity resolution and record freshness.

When an enterprise user enters its information (name, unified social credit code, phone,
bank accounts), :mod:`flowbureau.identity.attribution` matches it to the records the platform
already holds from banks and public sources with a Fellegi-Sunter model
(:mod:`flowbureau.identity.model`, splink on DuckDB, EM-trained), gives every candidate record
an attribution probability and attaches the records above a configurable threshold.
:mod:`flowbureau.identity.freshness` applies a per-record-type freshness policy: stale records
are marked invalid and an update request is raised that the enterprise sees; its update
refreshes the record and the records linked to it together and triggers a re-evaluation.

This ``__init__`` imports nothing heavy: :mod:`flowbureau.config` imports
:mod:`flowbureau.identity.settings` at start-up.
"""
