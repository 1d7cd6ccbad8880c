"""The Fellegi-Sunter attribution model: splink on DuckDB, trained by EM.

Rules:
- A record and an entry are compared on five identifiers (:data:`COMPARED`): the unified
  social credit code (exact; one edit, a typo; two edits; other), the normalised name (exact;
  Jaro-Winkler at least 0.92; at least 0.80; other), the phone (the vault's keyed HMAC: equal or
  not), the bank accounts (warehouse pseudonyms: at least one in common or none) and the legal
  representative (equal or not). A value missing on either side is no evidence either way.
- Training is unsupervised (no labelled pairs). u-probabilities come from random pairs of
  records with two *different* credit codes, i.e. known non-matches: splink's own random
  sampling would count pairs of records of the same enterprise too, and with several records
  per enterprise those pairs inflate the u of every strong identifier until an exact code match
  only cancels the prior. Counts are smoothed by half a pair per level, so an agreement never
  seen among non-matches gets a large, finite weight. The prior that two records match comes
  from the pairs agreeing on the code at an assumed recall; m-probabilities by
  expectation-maximisation over pairs blocked on the credit code and, in a second session, on
  the normalised name (each session trains the comparisons it did not block on), starting from
  the documented priors in :func:`_settings`; a session with fewer than 30 blocked pairs is
  skipped (EM on a handful of pairs degenerates) and the starting values stand. The training
  data are the records the platform holds plus the enterprises' own entries: the same
  enterprise seen by the registry, several banks, public sources and its own users is what the
  model learns from.
- Scoring is done on a candidate set chosen by the caller (blocking happens in the service
  database, :mod:`flowbureau.identity.attribution`); each candidate gets splink's match
  probability, the posterior of the summed match weights.
- A trained model is splink's settings JSON plus a manifest (version, time, records, SHA-256 of
  the training data) in ``models_dir/vNNNN.json``; versions are never overwritten (written to a
  temporary name, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowbureau.errors import InputError, ModelError, NotFoundError

__all__ = [
    "COMPARED",
    "IdentityModel",
    "MatchInput",
    "latest_model",
    "model_path",
    "model_versions",
    "train_model",
]

COMPARED: tuple[str, ...] = (
    "credit_code",
    "name_norm",
    "phone_lookup",
    "accounts",
    "legal_representative",
)
"""The identifiers the model compares."""

FORMAT = 1
_VERSION_FILE = re.compile(r"^v(\d{4})\.json$")
_MIN_TRAINING_RECORDS = 20
_ASSUMED_CODE_RECALL = 0.9  # share of true matches that agree on the credit code (typos, gaps)
_U_PAIRS = 200_000  # random non-match pairs sampled for the u-probabilities
_SMOOTHING = 0.5  # pairs added to every level's count
_MIN_EM_PAIRS = 30  # blocked pairs an EM session needs (fewer: EM degenerates)


@dataclass(frozen=True, slots=True)
class MatchInput:
    """One record (or the enterprise's entry) as the model sees it."""

    uid: str
    credit_code: str | None = None
    name_norm: str | None = None
    name_key: str | None = None
    phone_lookup: str | None = None
    accounts: tuple[str, ...] = ()
    legal_representative: str | None = None

    def row(self) -> dict[str, Any]:
        """The input row for splink (an empty account list is missing, not 'no overlap')."""
        return {
            "unique_id": self.uid,
            "credit_code": self.credit_code,
            "name_norm": self.name_norm,
            "name_key": self.name_key,
            "phone_lookup": self.phone_lookup,
            "accounts": list(self.accounts) or None,
            "legal_representative": self.legal_representative,
        }


def _table(rows: Iterable[MatchInput]) -> Any:
    import pyarrow as pa

    schema = pa.schema(
        [
            ("unique_id", pa.string()),
            ("credit_code", pa.string()),
            ("name_norm", pa.string()),
            ("name_key", pa.string()),
            ("phone_lookup", pa.string()),
            ("accounts", pa.list_(pa.string())),
            ("legal_representative", pa.string()),
        ]
    )
    return pa.Table.from_pylist([r.row() for r in rows], schema=schema)


def _settings() -> Any:
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            cl.LevenshteinAtThresholds("credit_code", [1, 2]).configure(
                m_probabilities=[0.95, 0.02, 0.01, 0.02]
            ),
            cl.JaroWinklerAtThresholds("name_norm", [0.92, 0.80]).configure(
                m_probabilities=[0.8, 0.12, 0.05, 0.03]
            ),
            cl.ExactMatch("phone_lookup").configure(m_probabilities=[0.6, 0.4]),
            cl.ArrayIntersectAtSizes("accounts", [1]).configure(m_probabilities=[0.7, 0.3]),
            cl.ExactMatch("legal_representative").configure(m_probabilities=[0.9, 0.1]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("credit_code"),
            block_on("name_key"),
            block_on("phone_lookup"),
        ],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


def _blocked_pairs(rows: Sequence[MatchInput], column: str) -> int:
    counts = Counter(getattr(r, column) for r in rows if getattr(r, column))
    return sum(n * (n - 1) // 2 for n in counts.values())


def _fingerprint(rows: Sequence[MatchInput]) -> str:
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.uid):
        digest.update(json.dumps(row.row(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


class IdentityModel:
    """A trained Fellegi-Sunter model (splink settings with m/u probabilities)."""

    def __init__(self, settings: Mapping[str, Any], manifest: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self.manifest = dict(manifest)

    @property
    def version(self) -> str:
        """``identity-vNNNN`` (or ``identity-unsaved`` before :meth:`save`)."""
        number = self.manifest.get("version")
        return f"identity-v{number:04d}" if isinstance(number, int) else "identity-unsaved"

    def score(self, entry: MatchInput, candidates: Sequence[MatchInput]) -> dict[str, float]:
        """Attribution probability of each candidate (by uid) being ``entry``'s enterprise."""
        if not candidates:
            return {}
        pairs = self._predict(candidates, [entry], blocking=["1=1"])
        return {record: p for record, _entry, p in pairs}

    def link(
        self, entries: Sequence[MatchInput], records: Sequence[MatchInput]
    ) -> list[tuple[str, str, float]]:
        """``(record uid, entry uid, probability)`` for every blocked pair (batch attribution).

        Pairs are blocked on the credit code, the name key, the phone or a shared account.
        """
        if not entries or not records:
            return []
        from splink import block_on

        blocking = [
            block_on("credit_code"),
            block_on("name_key"),
            block_on("phone_lookup"),
            block_on("accounts", arrays_to_explode=["accounts"]),
        ]
        return self._predict(records, entries, blocking=blocking)

    def _predict(
        self, records: Sequence[MatchInput], entries: Sequence[MatchInput], *, blocking: list[Any]
    ) -> list[tuple[str, str, float]]:
        import duckdb
        from splink import DuckDBAPI, Linker

        connection = duckdb.connect()
        try:
            api = DuckDBAPI(connection=connection)
            known = api.register(_table(records), table_name="candidates")
            new = api.register(_table(entries), table_name="entries")
            linker = Linker(known, self.settings, log_level=None)
            predictions = linker.inference.predict_between(
                known, new, blocking_rules_to_generate_predictions=blocking, warning_mode="never"
            )
            rows = predictions.as_record_list()
        except duckdb.Error as exc:
            raise ModelError(f"identity attribution failed: {exc}") from exc
        finally:
            connection.close()
        return [
            (str(r["unique_id_l"]), str(r["unique_id_r"]), float(r["match_probability"]))
            for r in rows
        ]

    def save(self, directory: Path) -> Path:
        """Store this model as the next version in ``directory``; return its path."""
        directory.mkdir(parents=True, exist_ok=True)
        number = max(model_versions(directory), default=0) + 1
        self.manifest["version"] = number
        path = model_path(directory, number)
        tmp = directory / f".v{number:04d}.json.tmp"
        payload = {"format": FORMAT, "manifest": self.manifest, "settings": self.settings}
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(payload, handle, ensure_ascii=False, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():  # another process saved this version meanwhile
            tmp.unlink()
            raise ModelError(f"identity model {path} already exists: train again")
        tmp.rename(path)
        return path

    @classmethod
    def load(cls, path: Path) -> IdentityModel:
        """Read a model written by :meth:`save`."""
        try:
            payload = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot read the identity model: {exc}") from exc
        if payload.get("format") != FORMAT:
            raise ModelError(f"{path}: unknown identity model format {payload.get('format')!r}")
        return cls(payload["settings"], payload["manifest"])


def model_versions(directory: Path) -> list[int]:
    """Version numbers of the models saved in ``directory``."""
    if not directory.is_dir():
        return []
    return [int(m.group(1)) for p in directory.iterdir() if (m := _VERSION_FILE.match(p.name))]


def model_path(directory: Path, version: int) -> Path:
    """The file of model ``version`` in ``directory``."""
    return directory / f"v{version:04d}.json"


def latest_model(directory: Path) -> IdentityModel:
    """The newest model in ``directory``; :class:`NotFoundError` when none was trained."""
    versions = model_versions(directory)
    if not versions:
        raise NotFoundError(
            f"no identity model in {directory}: train one first (POST /v1/identity/model)"
        )
    return IdentityModel.load(model_path(directory, max(versions)))


def _known_non_match_u(connection: Any, table: Any, settings: dict[str, Any], *, seed: int) -> None:
    """Set every comparison level's u from random pairs with different credit codes."""
    columns = [
        "credit_code",
        "name_norm",
        "phone_lookup",
        "accounts",
        "legal_representative",
    ]
    pick = ", ".join(
        f"{side}.{c} AS {c}_{suffix}" for side, suffix in (("a", "l"), ("b", "r")) for c in columns
    )
    connection.register("__u_records", table)
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE __u_pairs AS
        WITH coded AS (
            SELECT *, row_number() OVER (ORDER BY unique_id) AS i, count(*) OVER () AS n
            FROM __u_records WHERE credit_code IS NOT NULL
        ),
        draws AS (  -- deterministic pseudo-random pairs: hashes of (draw, seed)
            SELECT 1 + CAST(hash(k, {seed}, 'l') % n AS BIGINT) AS i,
                   1 + CAST(hash(k, {seed}, 'r') % n AS BIGINT) AS j
            FROM range({_U_PAIRS}) AS t(k), (SELECT max(n) AS n FROM coded)
        )
        SELECT {pick}
        FROM draws JOIN coded a ON a.i = draws.i JOIN coded b ON b.i = draws.j
        WHERE a.credit_code <> b.credit_code
        """
    )
    for comparison in settings["comparisons"]:
        levels = comparison["comparison_levels"]
        cases = " ".join(
            f"ELSE {k}"
            if level["sql_condition"] == "ELSE"
            else f"WHEN {level['sql_condition']} THEN {k}"
            for k, level in enumerate(levels)
        )
        counts = dict(
            connection.execute(
                f"SELECT CASE {cases} END AS level, count(*) FROM __u_pairs GROUP BY 1"
            ).fetchall()
        )
        scored = [k for k, level in enumerate(levels) if not level.get("is_null_level")]
        total = sum(counts.get(k, 0) for k in scored) + _SMOOTHING * len(scored)
        for k in scored:
            levels[k]["u_probability"] = (counts.get(k, 0) + _SMOOTHING) / total
    connection.execute("DROP TABLE __u_pairs")
    connection.unregister("__u_records")


def train_model(records: Sequence[MatchInput], *, seed: int = 0) -> IdentityModel:
    """Train the model on the records the platform holds (see the module rules)."""
    if len(records) < _MIN_TRAINING_RECORDS:
        raise InputError(
            f"{len(records)} records are too few to train the identity model "
            f"(at least {_MIN_TRAINING_RECORDS}); load the sources first",
            field="records",
        )
    if len({r.credit_code for r in records if r.credit_code}) < 2:
        raise InputError(
            "the records carry fewer than two distinct credit codes: nothing to learn "
            "non-matches from",
            field="records",
        )
    import duckdb
    from splink import DuckDBAPI, Linker, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    connection = duckdb.connect()
    try:
        api = DuckDBAPI(connection=connection)
        table = _table(records)
        frame = api.register(table, table_name="records")
        linker = Linker(frame, _settings(), log_level=None)
        linker.training.estimate_probability_two_random_records_match(
            [block_on("credit_code")], recall=_ASSUMED_CODE_RECALL
        )
        settings = linker.misc.save_model_to_json()
        _known_non_match_u(connection, table, settings, seed=seed)
        linker = Linker(frame, settings, log_level=None)
        for column in ("credit_code", "name_norm"):
            if _blocked_pairs(records, column) < _MIN_EM_PAIRS:
                continue  # too few pairs to estimate from: the starting m-values stand
            linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(column), record_sample_proportion=1.0
            )
        settings = linker.misc.save_model_to_json()
    except duckdb.Error as exc:
        raise ModelError(f"training the identity model failed: {exc}") from exc
    finally:
        connection.close()
    manifest = {
        "trained_at": datetime.now(UTC).isoformat(),
        "records": len(records),
        "training_sha256": _fingerprint(records),
        "seed": seed,
    }
    return IdentityModel(settings, manifest)
