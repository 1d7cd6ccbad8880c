"""Counterparty resolution: which enterprise is on the other side of each entry.

Rules:
- A **mention** is a distinct (``counterparty_account``, ``counterparty_name_norm``) pair of
  the ``transactions`` view (the account is the pseudonym, so the same account at any bank is
  one value). Resolution runs once per mention and is then joined back to every entry.
- **1. Accounts first.** A mention whose account is a known account of an enterprise
  (``accounts`` view, register or statement) is that enterprise: method ``account``.
- **2. Names.** The mentions of one counterparty account share its fate: an account not in the
  consortium (a member's account at a non-member bank, or an outsider's) is resolved by the
  names printed with it. A name equal to exactly one enterprise's normalised name (registry
  Chinese or English name, account owner name) is that enterprise (``name_exact``); otherwise a
  Fellegi-Sunter model (splink 5 on DuckDB, :func:`match_names`) compares the parsed name
  (:mod:`flowbureau.graph.names`: key, core, region, legal form) with every enterprise's, and a
  best match with probability >= ``threshold`` is taken (``name_model``) unless a *different*
  enterprise also passes the threshold (then it stays unresolved: ambiguous). An account
  whose names resolve to two enterprises is left to step 3.
- **3. The rest** are outsiders: one id per counterparty account, ``ext:`` + 16 hex digits of
  SHA-256 of ``acct:<pseudonym>``. A mention without an account and without a resolved name
  takes the id of the single account its name is printed with (``name_account``), else
  ``ext:`` + SHA-256 of ``name:<key>``. Names alone never merge two accounts (two people can
  share a name).
- **Model.** Comparisons: name (exact key; exact core; Jaro-Winkler of the core >= 0.92;
  else), region, legal form. (A level at Jaro-Winkler >= 0.80 was tried and dropped: romanised
  names of one city share long prefixes, "huizhen trading" vs "huihai energy", and it linked
  different firms.) ``m`` probabilities are fixed priors (:data:`M_PRIORS`,
  documented in ``docs/graph.md``: the synthetic consortium prints names cleanly, so EM has
  nothing to learn from); ``u`` probabilities are estimated by splink from random pairs of
  *different* enterprises' names (seeded; a level never seen gets ``1 / max(pairs, 1000)``);
  the prior match probability is ``member_share / number of enterprises``.
  Blocking: same script and same first characters of the core, or same script and region.
- **Writing.** The ``counterparties`` annotation (``counterparty_id`` of the ``transactions``
  view) is replaced in one scope, :data:`RESOLUTION_SCOPE`, atomically: a failed run leaves
  the previous resolution in place.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flowbureau.errors import InputError
from flowbureau.graph.names import parse_company_name
from flowbureau.storage.engine import Engine
from flowbureau.storage.warehouse import Warehouse

__all__ = [
    "EXTERNAL_PREFIX",
    "M_PRIORS",
    "RESOLUTION_SCOPE",
    "ResolutionReport",
    "external_id",
    "match_names",
    "mention_table",
    "reference_table",
    "resolve_counterparties",
    "resolve_mentions",
]

RESOLUTION_SCOPE = "graph-resolution"
"""The one scope of the ``counterparties`` annotation this module writes."""
EXTERNAL_PREFIX = "ext:"
"""Prefix of the ids of counterparties outside the consortium."""
M_PRIORS: dict[str, tuple[float, ...]] = {
    "name": (0.80, 0.12, 0.05, 0.03),
    "region": (0.9, 0.1),
    "legal_form": (0.9, 0.1),
}
"""P(level | same enterprise) per comparison, levels in order (best first, else last)."""
U_FLOOR_PAIRS = 1000
"""A level never seen among the sampled non-matching pairs gets u = 1 / max(pairs, this)."""


@dataclass(frozen=True, slots=True)
class ResolutionReport:
    """Counts of one resolution run (mentions and the entries they cover)."""

    mentions: int
    by_account: int
    by_name_exact: int
    by_name_model: int
    ambiguous: int
    external_mentions: int
    external_ids: int
    entries: int
    """Entries annotated with a counterparty_id."""

    def as_dict(self) -> dict[str, int]:
        """JSON-safe form."""
        return asdict(self)


def external_id(account: str | None, key: str | None) -> str:
    """The id of an outside counterparty: by account pseudonym, else by normalised name."""
    if account:
        text = f"acct:{account}"
    elif key:
        text = f"name:{key}"
    else:
        raise InputError("a counterparty needs an account or a name", field="counterparty")
    return EXTERNAL_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def mention_table(engine: Engine) -> pd.DataFrame:
    """Distinct mentions: ``account``, ``key``, ``name`` (one printed form), ``entries``."""
    frame: pd.DataFrame = engine.query(
        """SELECT counterparty_account AS account, counterparty_name_norm AS key,
                  min(counterparty_name) AS name, count(*) AS entries
           FROM transactions
           WHERE counterparty_account IS NOT NULL OR counterparty_name_norm IS NOT NULL
           GROUP BY counterparty_account, counterparty_name_norm
           ORDER BY account NULLS LAST, key NULLS LAST"""
    ).to_pandas()
    return frame


def reference_table(engine: Engine, registry: pd.DataFrame | None = None) -> pd.DataFrame:
    """Known enterprises' names: ``enterprise_id``, ``name`` (one row per spelling).

    From the account owners of the warehouse and, when given, the registry's ``name`` and
    ``name_en`` (columns ``credit_code``, ``name``, optional ``name_en``).
    """
    owners = engine.query(
        """SELECT DISTINCT enterprise_id, owner_name AS name FROM account_records
           WHERE enterprise_id IS NOT NULL AND owner_name IS NOT NULL"""
    ).to_pandas()
    parts = [owners]
    if registry is not None and len(registry):
        for column in ("name", "name_en"):
            if column in registry.columns:
                part = registry[["credit_code", column]].rename(
                    columns={"credit_code": "enterprise_id", column: "name"}
                )
                parts.append(part.dropna())
    frame: pd.DataFrame = pd.concat(parts, ignore_index=True)
    return frame.drop_duplicates().reset_index(drop=True)


def _optional_text(column: pd.Series) -> pd.Series:
    """Text values with None for missing ones (pandas may give NaN)."""
    return column.astype(object).where(column.notna(), None)


def _parsed(names: pd.Series, ids: pd.Series) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for uid, name in zip(ids, names, strict=True):
        parsed = parse_company_name(name)
        if parsed is None:
            continue
        width = 2 if parsed.script == "zh" else 4
        rows.append(
            {
                "unique_id": uid,
                "script": parsed.script,
                "key": parsed.key,
                "core": parsed.core,
                "region": parsed.region,
                "legal_form": parsed.legal_form,
                "prefix": parsed.core[:width],
            }
        )
    columns = ["unique_id", "script", "key", "core", "region", "legal_form", "prefix"]
    return pd.DataFrame(rows, columns=columns)


def match_names(
    names: pd.Series,
    references: pd.DataFrame,
    *,
    threshold: float = 0.9,
    member_share: float = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """Fellegi-Sunter name matching (splink 5, DuckDB) of ``names`` against ``references``.

    ``names``: printed names (index = the caller's row ids); ``references``: columns
    ``enterprise_id``, ``name``. Returns, per row of ``names`` that has a best match, columns
    ``enterprise_id``, ``probability``, ``ambiguous`` (another enterprise also passed the
    threshold); rows with no candidate above the threshold are absent.
    """
    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold must lie in (0, 1), got {threshold}", field="threshold")
    result = pd.DataFrame(columns=["enterprise_id", "probability", "ambiguous"])
    left = _parsed(names.reset_index(drop=True), pd.Series(names.index.astype(str)))
    refs = references.reset_index(drop=True)
    right = _parsed(refs["name"], pd.Series([f"r{i}" for i in range(len(refs))]))
    if left.empty or right.empty:
        return result
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    for logger in ("splink", "splink.internals"):
        logging.getLogger(logger).setLevel(logging.ERROR)

    def levels(column: str, kinds: list[Any]) -> list[Any]:
        priors = M_PRIORS[column]
        return [cll.NullLevel(column if column != "name" else "core")] + [
            level.configure(m_probability=m) for level, m in zip(kinds, priors, strict=True)
        ]

    comparisons: list[Any] = [
        cl.CustomComparison(
            output_column_name="name",
            comparison_levels=levels(
                "name",
                [
                    cll.ExactMatchLevel("key"),
                    cll.ExactMatchLevel("core"),
                    cll.JaroWinklerLevel("core", 0.92),
                    cll.ElseLevel(),
                ],
            ),
        ),
        cl.CustomComparison(
            output_column_name="region",
            comparison_levels=levels("region", [cll.ExactMatchLevel("region"), cll.ElseLevel()]),
        ),
        cl.CustomComparison(
            output_column_name="legal_form",
            comparison_levels=levels(
                "legal_form", [cll.ExactMatchLevel("legal_form"), cll.ElseLevel()]
            ),
        ),
    ]
    blocking: list[Any] = [block_on("script", "prefix"), block_on("script", "region")]
    # u: pairs of *different* enterprises are non-matches by construction
    distinct = right.drop_duplicates("key").reset_index(drop=True)
    distinct["unique_id"] = [f"u{i}" for i in range(len(distinct))]
    sample = min(200_000, len(distinct) * (len(distinct) - 1) // 2)
    u_api = DuckDBAPI()
    u_linker = Linker(
        u_api.register(distinct, table_name="fb_enterprise_names"),
        SettingsCreator(
            link_type="dedupe_only",
            comparisons=comparisons,
            blocking_rules_to_generate_predictions=blocking,
        ),
        log_level=logging.ERROR,
    )
    if sample > 0:
        u_linker.training.estimate_u_using_random_sampling(max_pairs=sample, seed=seed)
    model = u_linker.misc.save_model_to_json()
    floor = 1.0 / max(sample, U_FLOOR_PAIRS)
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if not level.get("is_null_level"):
                level["u_probability"] = max(float(level.get("u_probability") or 0.0), floor)
    enterprises = max(int(references["enterprise_id"].nunique()), 1)
    model["link_type"] = "link_only"
    model["probability_two_random_records_match"] = min(0.5, member_share / enterprises)
    model.pop("linker_uid", None)
    api = DuckDBAPI()
    linker = Linker(
        [
            api.register(left, table_name="fb_mentions"),
            api.register(right, table_name="fb_references"),
        ],
        model,
        log_level=logging.ERROR,
    )
    predicted = linker.inference.predict(threshold_match_probability=threshold)
    scored: pd.DataFrame = predicted.as_pandas_dataframe()  # type: ignore[no-untyped-call]
    if scored.empty:
        return result
    mention_col, ref_col = "unique_id_l", "unique_id_r"
    if not scored[mention_col].isin(left["unique_id"]).all():
        mention_col, ref_col = ref_col, mention_col
    rows = refs["enterprise_id"].to_numpy()
    scored["enterprise_id"] = [rows[int(r[1:])] for r in scored[ref_col]]
    best = (
        scored.sort_values(["match_probability", "enterprise_id"], ascending=[False, True])
        .groupby(mention_col, sort=True)
        .agg(
            enterprise_id=("enterprise_id", "first"),
            probability=("match_probability", "first"),
            candidates=("enterprise_id", "nunique"),
        )
    )
    best["ambiguous"] = best["candidates"] > 1
    best.index = best.index.astype(names.index.dtype) if names.index.dtype != object else best.index
    return best[["enterprise_id", "probability", "ambiguous"]]


def resolve_mentions(
    mentions: pd.DataFrame,
    accounts: Mapping[str, str],
    references: pd.DataFrame,
    *,
    threshold: float = 0.9,
    seed: int = 0,
) -> pd.DataFrame:
    """Resolve ``mentions`` (columns ``account``, ``key``, ``name``) per the module rules.

    ``accounts``: account pseudonym -> enterprise id. Returns the mentions with
    ``counterparty_id`` and ``method`` (``account``, ``name_exact``, ``name_model``,
    ``external``, ``ambiguous``) and ``probability`` (of the name model, else NaN).
    """
    frame = mentions.reset_index(drop=True).copy()
    for column in ("account", "key", "name"):
        frame[column] = _optional_text(frame[column])
    frame["counterparty_id"] = None
    frame["method"] = None
    frame["probability"] = np.nan
    known = frame["account"].map(accounts)
    by_account = known.notna()
    frame.loc[by_account, "counterparty_id"] = known[by_account]
    frame.loc[by_account, "method"] = "account"

    # names -> enterprises: the exact normalised name of exactly one enterprise, else the model
    keys = pd.Series(
        [p.key if (p := parse_company_name(n)) else None for n in references["name"]],
        index=references.index,
        dtype=object,
    )
    owners = references.assign(key=keys).dropna(subset=["key"])
    owners_of_key = owners.groupby("key")["enterprise_id"].agg(lambda s: sorted(set(s)))
    pending = frame[~by_account & frame["key"].notna()]
    named: dict[int, tuple[str | None, str, float]] = {}
    model_rows: list[int] = []
    for row, key in zip(pending.index.tolist(), pending["key"].tolist(), strict=True):
        owners_here = owners_of_key.get(key)
        if owners_here is not None and len(owners_here) == 1:
            named[row] = (owners_here[0], "name_exact", np.nan)
        else:
            model_rows.append(row)
    if model_rows:
        rest = frame.loc[model_rows]
        printed = rest["name"].where(rest["name"].notna(), rest["key"])
        matched = match_names(printed, references, threshold=threshold, seed=seed)
        for row, eid_found, probability, ambiguous in zip(
            matched.index.tolist(),
            matched["enterprise_id"].tolist(),
            matched["probability"].tolist(),
            matched["ambiguous"].tolist(),
            strict=True,
        ):
            eid = None if ambiguous else str(eid_found)
            named[int(row)] = (eid, "ambiguous" if eid is None else "name_model", probability)

    # an account outside the consortium takes the one enterprise its names agree on
    outside = frame[~by_account & frame["account"].notna()]
    for account, group in outside.groupby("account", sort=True):
        agreed = {named[r][0] for r in group.index if r in named and named[r][0]}
        if len(agreed) == 1:
            target = agreed.pop()
            for r in group.index.tolist():
                found = named.get(r)
                method = found[1] if found and found[0] == target else "name_account"
                frame.loc[r, ["counterparty_id", "method"]] = [target, method]
                frame.loc[r, "probability"] = found[2] if found else np.nan
        else:
            doubtful = len(agreed) > 1 or any(
                named.get(r, (None, "", np.nan))[1] == "ambiguous" for r in group.index.tolist()
            )
            frame.loc[group.index, "counterparty_id"] = external_id(str(account), None)
            frame.loc[group.index, "method"] = "ambiguous" if doubtful else "external"

    # mentions without an account: their name, else the one account printed with that name
    first_of_account = frame.dropna(subset=["account"]).drop_duplicates("account")
    id_of_account = dict(
        zip(first_of_account["account"], first_of_account["counterparty_id"], strict=True)
    )
    accounts_of_key = frame.dropna(subset=["account", "key"]).groupby("key")["account"].unique()
    for r, key in zip(
        frame.index[frame["account"].isna()].tolist(),
        frame.loc[frame["account"].isna(), "key"].tolist(),
        strict=True,
    ):
        hit = named.get(r)
        if hit and hit[0]:
            frame.loc[r, ["counterparty_id", "method"]] = [hit[0], hit[1]]
            frame.loc[r, "probability"] = hit[2]
            continue
        printed_with = list(accounts_of_key.get(key, []))
        if len(printed_with) == 1:
            frame.at[r, "counterparty_id"] = id_of_account[printed_with[0]]
            frame.at[r, "method"] = "name_account"
        else:
            frame.at[r, "counterparty_id"] = external_id(None, key)
            frame.at[r, "method"] = "ambiguous" if hit else "external"
    return frame


def resolve_counterparties(
    warehouse: Warehouse | None = None,
    *,
    registry: pd.DataFrame | None = None,
    threshold: float = 0.9,
    seed: int = 0,
) -> ResolutionReport:
    """Resolve every mention of the warehouse and replace the ``counterparties`` annotation.

    ``registry``: enterprises (``credit_code``, ``name``, ``name_en``) whose names may be
    matched besides the account owners'. Returns the counts.
    """
    store = warehouse or Warehouse.default()
    with store.connect() as engine:
        mentions = mention_table(engine)
        known = engine.query(
            "SELECT account_id, enterprise_id FROM accounts WHERE enterprise_id IS NOT NULL"
        ).to_pandas()
        references = reference_table(engine, registry)
    accounts = dict(zip(known["account_id"], known["enterprise_id"], strict=True))
    resolved = resolve_mentions(mentions, accounts, references, threshold=threshold, seed=seed)
    table = pa.table(
        {
            column: pa.array(_optional_text(resolved[column]).tolist(), pa.string())
            for column in ("account", "key", "counterparty_id")
        }
    )
    with store.writer() as writer:
        writer.engine.register("fb_resolved", table)
        writer.replace_annotation(
            "counterparties",
            RESOLUTION_SCOPE,
            """SELECT t.tx_id, r.counterparty_id
               FROM stored_transactions t JOIN fb_resolved r
                 ON r.account IS NOT DISTINCT FROM t.counterparty_account
                AND r.key IS NOT DISTINCT FROM t.counterparty_name_norm
               WHERE t.counterparty_account IS NOT NULL OR t.counterparty_name_norm IS NOT NULL""",
        )
        writer.engine.unregister("fb_resolved")
        writer.publish()
    methods = resolved["method"].value_counts()
    entries = int(resolved["entries"].sum())
    return ResolutionReport(
        mentions=len(resolved),
        by_account=int(methods.get("account", 0)),
        by_name_exact=int(methods.get("name_exact", 0)) + int(methods.get("name_account", 0)),
        by_name_model=int(methods.get("name_model", 0)),
        ambiguous=int(methods.get("ambiguous", 0)),
        external_mentions=int(methods.get("external", 0)),
        external_ids=int(
            resolved.loc[
                resolved["counterparty_id"].str.startswith(EXTERNAL_PREFIX), "counterparty_id"
            ].nunique()
        ),
        entries=entries,
    )
