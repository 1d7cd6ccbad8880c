"""The graph pipeline on a small synthetic consortium: resolution against the ground truth,
graph features, the CLI and the pictures."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flowbureau.config import get_settings
from flowbureau.graph.features import GRAPH_FEATURES, graph_features
from flowbureau.graph.store import GraphStore, build_graph
from flowbureau.ingestion import ingest
from flowbureau.storage.warehouse import Warehouse
from flowbureau.synth import generate

pytestmark = pytest.mark.slow
AS_OF = date(2024, 7, 1)


@dataclass(frozen=True)
class Built:
    root: Path
    consortium: Path
    warehouse: Warehouse
    store: GraphStore


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("graph")
    summary = generate(
        root / "c", enterprises=30, banks=2, months=7, seed=4, start=date(2024, 1, 1)
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWBUREAU_ENV", "test")
        patch.setenv("FLOWBUREAU_DATA_DIR", str(root / "data"))
        get_settings.cache_clear()
        ingest([summary.banks_dir])
        warehouse = Warehouse.default()
        store = GraphStore.default()
        build_graph(summary.registry_dir, summary.public_records_dir)
    get_settings.cache_clear()
    return Built(root, summary.out, warehouse, store)


def test_resolution_matches_the_ground_truth(built: Built) -> None:
    truth = built.consortium / "ground_truth" / "transactions.parquet"
    with built.warehouse.connect() as engine:
        row = engine.query(
            f"""SELECT
              count(*) FILTER (WHERE g.counterparty_enterprise_id IS NOT NULL) AS members,
              count(*) FILTER (WHERE g.counterparty_enterprise_id IS NOT NULL
                               AND t.counterparty_id = g.counterparty_enterprise_id) AS right,
              count(*) FILTER (WHERE t.counterparty_id NOT LIKE 'ext:%'
                               AND t.counterparty_id IS DISTINCT FROM
                                   g.counterparty_enterprise_id) AS wrong,
              count(*) FILTER (WHERE (t.counterparty_name IS NOT NULL
                                      OR t.counterparty_account IS NOT NULL)
                               AND t.counterparty_id IS NULL) AS unresolved
            FROM transactions t
            JOIN read_parquet('{truth}') g ON g.bank_id = t.bank_id AND g.reference = t.reference"""
        ).to_pylist()[0]
    print(row)
    assert row["members"] > 100
    assert row["right"] == row["members"]  # recall 1 on member counterparties
    assert row["wrong"] == 0  # precision 1
    assert row["unresolved"] == 0


def test_graph_features_as_of(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUREAU_DATA_DIR", str(built.root / "data"))
    get_settings.cache_clear()
    features = graph_features(AS_OF, epochs=5, embedding_dim=2)
    assert set(GRAPH_FEATURES) <= set(features.columns)
    assert {"graph_emb_0", "graph_emb_1"} <= set(features.columns)
    assert features.index.name == "enterprise_id"
    assert len(features) >= 20
    assert features["graph_customers"].notna().all()
    shares = features["graph_top_supplier_share"].dropna()
    assert ((shares > 0) & (shares <= 1)).all()
    assert (features["graph_debtrank_impact"] >= 0).all()


def test_graph_features_ignore_everything_from_the_as_of_date_on(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Features as of D from the whole history equal those from only the months before D
    (a second warehouse fed only the statements of January to April): no look-ahead, the
    GraphSAGE embeddings included."""
    day = date(2024, 5, 1)
    early = tmp_path / "banks"
    shutil.copytree(built.consortium / "banks", early)
    for month in early.glob("*/statements/*"):
        if month.name >= "202405":
            shutil.rmtree(month)
    frames: list[pd.DataFrame] = []
    for data, banks in ((built.root / "data", None), (tmp_path / "data", early)):
        monkeypatch.setenv("FLOWBUREAU_DATA_DIR", str(data))
        get_settings.cache_clear()
        if banks is not None:
            ingest([banks])
            build_graph(built.consortium / "registry", built.consortium / "public_records")
        frames.append(graph_features(day, epochs=5, embedding_dim=2))
    get_settings.cache_clear()
    whole, before = frames
    assert len(whole) >= 20
    assert whole["graph_emb_0"].abs().sum() > 0
    assert set(before.index) == set(whole.index)
    pd.testing.assert_frame_equal(whole, before.reindex(whole.index), check_exact=False, rtol=1e-9)


def test_cli_show_key_nodes_shock_and_pictures(built: Built) -> None:
    from flowbureau.cli import app

    env = {"FLOWBUREAU_DATA_DIR": str(built.root / "data"), "FLOWBUREAU_ENV": "test"}
    runner = CliRunner()
    get_settings.cache_clear()
    keys = runner.invoke(app, ["graph", "key-nodes", "--as-of", "2024-07-01", "--json"], env=env)
    assert keys.exit_code == 0, keys.output
    top = json.loads(keys.stdout)["key_enterprises"][0]["node"]
    for suffix in ("png", "svg", "html"):
        picture = built.root / f"n.{suffix}"
        shown = runner.invoke(
            app,
            ["graph", "show", top, "--as-of", "2024-07-01", "--json", "--picture", str(picture)],
            env=env,
        )
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["enterprise_id"] == top
        assert picture.stat().st_size > 1000
    shocked = runner.invoke(
        app, ["graph", "shock", top, "--as-of", "2024-07-01", "--json"], env=env
    )
    assert shocked.exit_code == 0, shocked.output
    data = json.loads(shocked.stdout)
    assert data["shocked"] == [top]
    shocked_row = next(row for row in data["distress"] if row["node"] == top)
    assert shocked_row["distress"] == 1.0
    assert shocked_row["initial"] == 1.0
    assert all(path["nodes"][0] == top for path in data["paths"])
    bad = runner.invoke(app, ["graph", "shock", "NOTACODE"], env=env)
    assert bad.exit_code != 0
    get_settings.cache_clear()
