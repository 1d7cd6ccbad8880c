"""CLI adapters of the supply-chain and social graph: ``flowbureau graph build | show |
key-nodes | shock``.

Thin adapters over :mod:`flowbureau.graph`. ``--json`` prints exactly one JSON document on
stdout (progress goes to stderr). Heavy imports stay inside the commands.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowbureau.cli.output import echo_json, spinner

if TYPE_CHECKING:
    pass

app = typer.Typer(
    name="graph",
    help="Resolve counterparties, build the supply-chain and social graph, find key nodes, "
    "run what-if shocks.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Date YYYY-MM-DD (default: the day after the latest stored entry).",
        show_default=False,
    ),
]
WindowOption = Annotated[
    int, typer.Option("--window", min=1, max=120, help="Months of payments before the date.")
]


def _day(value: str | None) -> date | None:
    from flowbureau.errors import InputError

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"not an ISO date (YYYY-MM-DD): {value!r}", field="as_of") from None


def _money(minor: int) -> str:
    return f"{minor / 100:,.2f}"


@app.command("build")
def build(
    registry: Annotated[
        Path,
        typer.Argument(
            help="Directory with enterprises.csv (+ shareholders, executives, guarantees)."
        ),
    ],
    *,
    public_records: Annotated[
        Path | None,
        typer.Option("--public-records", help="Directory of public-record CSV files."),
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="Match probability a name must reach (0-1).")
    ] = 0.9,
    as_json: JsonOption = False,
) -> None:
    """Resolve every counterparty and keep the registry and public records for the graph."""
    from flowbureau.graph.store import build_graph

    with spinner(not as_json) as progress:
        progress.add_task("resolving counterparties and storing the registry", total=None)
        report = build_graph(registry, public_records, threshold=threshold)
    if as_json:
        echo_json(report.as_dict())
        return
    data = report.as_dict()
    typer.echo(
        f"{data['mentions']:,} counterparty mentions: {data['by_account']:,} by account, "
        f"{data['by_name_exact']:,} by exact name, {data['by_name_model']:,} by the name model, "
        f"{data['ambiguous']:,} ambiguous, {data['external_mentions']:,} outside the consortium "
        f"({data['external_ids']:,} outside ids); {data['entries']:,} entries annotated"
    )


@app.command("show")
def show(
    credit_code: Annotated[
        str, typer.Argument(help="The enterprise's unified social credit code.")
    ],
    *,
    as_of: AsOfOption = None,
    window: WindowOption = 12,
    picture: Annotated[
        Path | None,
        typer.Option(
            "--picture", help="Also draw the neighbourhood: out.png, out.svg or out.html."
        ),
    ] = None,
    top: Annotated[int, typer.Option(help="Customers and suppliers to list.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """An enterprise in its supply chain (customers, suppliers, concentration) and social graph."""
    from flowbureau.graph.keynodes import analyse_key_nodes
    from flowbureau.graph.plot import neighbourhood_picture
    from flowbureau.graph.shock import load_supply
    from flowbureau.graph.social import build_social_graph

    with spinner(not as_json) as progress:
        progress.add_task("building the graph", total=None)
        supply, store = load_supply(_day(as_of), window_months=window)
        supply.index_of(credit_code)
        measures = analyse_key_nodes(supply).nodes.loc[credit_code]
        social = build_social_graph(store.registry(), supply.as_of)
        if picture is not None:
            neighbourhood_picture(supply, credit_code, picture)
    label = supply.nodes["label"]
    ties = social.ties[(social.ties["a"] == credit_code) | (social.ties["b"] == credit_code)]

    def side(frame: Any, column: str, share: str) -> list[dict[str, Any]]:
        return [
            {
                "id": row[column],
                "name": label.get(row[column]),
                "amount_minor": int(row["amount_minor"]),
                "count": int(row["count"]),
                "share": float(row[share]),
                "first_day": row["first_day"].isoformat(),
                "last_day": row["last_day"].isoformat(),
            }
            for row in frame.head(top).to_dict(orient="records")
        ]

    data: dict[str, Any] = {
        "enterprise_id": credit_code,
        "name": label.get(credit_code),
        "as_of": supply.as_of.isoformat(),
        "window_months": window,
        "customers": side(supply.customers(credit_code), "source", "target_inflow_share"),
        "suppliers": side(supply.suppliers(credit_code), "target", "source_outflow_share"),
        "measures": {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in measures.drop(["label", "chain_dependency_on"]).items()
        }
        | {"chain_dependency_on": measures["chain_dependency_on"]},
        "social_ties": [
            {
                "other": row["b"] if row["a"] == credit_code else row["a"],
                "kind": row["kind"],
                "weight": float(row["weight"]),
            }
            for row in ties.to_dict(orient="records")
        ],
        "picture": None if picture is None else str(picture),
    }
    if as_json:
        echo_json(data)
        return
    typer.echo(f"{data['name']} ({credit_code}), {window} months before {data['as_of']}")
    for title, rows in (
        ("customers (pay it)", data["customers"]),
        ("suppliers (it pays)", data["suppliers"]),
    ):
        typer.echo(f"  {title}:")
        for row in rows:
            typer.echo(
                f"    {row['share']:6.1%}  {_money(row['amount_minor']):>18}  "
                f"{row['count']:>5}x  {row['name'] or row['id']}"
            )
    m = data["measures"]
    typer.echo(
        f"  top customer {m['top_customer_share'] or 0:.1%}, top supplier "
        f"{m['top_supplier_share'] or 0:.1%}, chain dependency {m['chain_dependency']:.2f}, "
        f"PageRank {m['pagerank']:.4f}, articulation point: {'yes' if m['articulation'] else 'no'}"
    )
    typer.echo(f"  social ties: {len(data['social_ties'])}")
    for tie in data["social_ties"]:
        typer.echo(f"    {tie['kind']:<15} {tie['other']}")
    if picture is not None:
        typer.echo(f"  picture: {picture}")


@app.command("key-nodes")
def key_nodes(
    *,
    as_of: AsOfOption = None,
    window: WindowOption = 12,
    top: Annotated[int, typer.Option(help="How many to list.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Key enterprises (PageRank, cut points) and fragile links of the supply chain."""
    from flowbureau.graph.keynodes import analyse_key_nodes
    from flowbureau.graph.shock import load_supply

    with spinner(not as_json) as progress:
        progress.add_task("building the graph", total=None)
        supply, _ = load_supply(_day(as_of), window_months=window)
        report = analyse_key_nodes(supply)
    data = {"as_of": supply.as_of.isoformat(), **report.as_dict(top)}
    if as_json:
        echo_json(data)
        return
    typer.echo(f"key enterprises as of {data['as_of']} (PageRank):")
    for row in data["key_enterprises"]:
        flag = " cut point" if row["articulation"] else ""
        typer.echo(f"  {row['pagerank']:.4f}  {row['node']}  {row['label']}{flag}")
    typer.echo(f"fragile links ({len(report.links)}):")
    for row in data["fragile_links"]:
        typer.echo(
            f"  {row['source']} -> {row['target']}  {_money(row['amount_minor'])}  {row['reason']}"
        )


@app.command("shock")
def shock(
    credit_codes: Annotated[list[str], typer.Argument(help="Enterprises that fail.")],
    *,
    distress: Annotated[
        float, typer.Option(help="Initial distress of each (1 = failure).", min=0.0, max=1.0)
    ] = 1.0,
    as_of: AsOfOption = None,
    window: WindowOption = 12,
    top: Annotated[int, typer.Option(help="Most distressed enterprises to list.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """If these enterprises fail, who is hurt, how badly, and along which paths (DebtRank)."""
    from flowbureau.graph.shock import shock as run_shock

    with spinner(not as_json) as progress:
        progress.add_task("propagating", total=None)
        report = run_shock(credit_codes, as_of=_day(as_of), distress=distress, window_months=window)
    data = report.as_dict(top=top)
    if as_json:
        echo_json(data)
        return
    typer.echo(
        f"as of {data['as_of']}: DebtRank {data['debtrank']:.4f} (relative value lost beyond the "
        f"shock), {data['distressed_nodes']} enterprises distressed, {data['rounds']} rounds"
    )
    for row in data["distress"]:
        typer.echo(f"  {row['distress']:.3f}  {row['node']}  {row['name'] or ''}")
    typer.echo("main paths:")
    for path in data["paths"]:
        chain = " -> ".join(
            f"{n} ({h:.2f})" for n, h in zip(path["nodes"], path["distress"], strict=True)
        )
        typer.echo(f"  {chain}")
