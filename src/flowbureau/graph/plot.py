"""A picture of an enterprise's neighbourhood for reports: PNG / SVG (matplotlib), HTML (plotly).

Rules:
- The picture shows the supply subgraph within ``hops`` links of the enterprise: arrows from
  payer to payee, width by amount, the enterprise in red, members blue, outsiders grey,
  labelled with their names (cut to 12 characters).
- Layout: rustworkx spring layout, seeded (the same picture every time).
- Chinese names need a CJK font. With ``fonts-wqy-microhei`` (or Noto CJK) installed it is
  used; without one the picture is still written and a warning says the glyphs may be boxes.
- The format follows the file suffix: ``.png``, ``.svg``, ``.html``; anything else is an
  :class:`~flowbureau.errors.InputError`. The file is written to a temporary name and renamed.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import rustworkx as rx

from flowbureau.errors import InputError
from flowbureau.graph.supply import SupplyGraph

__all__ = ["CJK_FONTS", "neighbourhood_picture"]

CJK_FONTS: tuple[str, ...] = (
    "WenQuanYi Micro Hei",
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "SimHei",
)
"""Fonts tried, in order, for Chinese labels."""


_CJK_FILES = ("wqy", "notosanscjk", "notoserifcjk", "sourcehan", "simhei")


def _cjk_font() -> str | None:
    """The first available CJK font; installed fonts missing from matplotlib's cache (a
    font installed after the cache was built) are registered first."""
    from matplotlib import font_manager

    available = {f.name for f in font_manager.fontManager.ttflist}
    if not available.intersection(CJK_FONTS):
        for path in font_manager.findSystemFonts():
            if any(part in Path(path).name.lower() for part in _CJK_FILES):
                font_manager.fontManager.addfont(path)
        available = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in available), None)


def _short(label: str, limit: int = 12) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def neighbourhood_picture(
    supply: SupplyGraph, enterprise_id: str, out: str | Path, *, hops: int = 1, seed: int = 0
) -> Path:
    """Draw ``enterprise_id``'s neighbourhood into ``out`` (format from its suffix)."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in {".png", ".svg", ".html"}:
        raise InputError(
            f"picture format must be .png, .svg or .html, got {path.suffix!r}",
            file=path,
            field="picture",
        )
    sub = supply.neighbourhood(enterprise_id, hops)
    positions = rx.spring_layout(sub.graph, seed=seed, num_iter=200)
    ids = list(sub.nodes.index)
    xy = {ids[i]: (float(p[0]), float(p[1])) for i, p in positions.items()}
    labels = {
        node: _short(str(sub.nodes.at[node, "label"])) if node in sub.nodes.index else node
        for node in ids
    }
    colour = {
        node: "#c0392b"
        if node == enterprise_id
        else ("#2e6da4" if bool(sub.nodes.at[node, "member"]) else "#9a9a9a")
        for node in ids
    }
    biggest = max(float(sub.edges["amount_minor"].max()) if len(sub.edges) else 1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{suffix}")
    if suffix == ".html":
        _plotly(
            sub,
            xy=xy,
            labels=labels,
            colour=colour,
            biggest=biggest,
            centre=enterprise_id,
            target=temporary,
        )
    else:
        _matplotlib(
            sub,
            xy=xy,
            labels=labels,
            colour=colour,
            biggest=biggest,
            centre=enterprise_id,
            target=temporary,
        )
    os.replace(temporary, path)
    return path


def _arrows(sub: SupplyGraph) -> list[tuple[str, str, float]]:
    edges = sub.edges
    return list(
        zip(
            edges["source"].astype(str),
            edges["target"].astype(str),
            edges["amount_minor"].to_numpy(dtype=float).tolist(),
            strict=True,
        )
    )


def _matplotlib(
    sub: SupplyGraph,
    *,
    xy: dict[str, tuple[float, float]],
    labels: dict[str, str],
    colour: dict[str, str],
    biggest: float,
    centre: str,
    target: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = _cjk_font()
    if font is None:
        warnings.warn(
            "no CJK font found (apt-get install fonts-wqy-microhei): Chinese names may show "
            "as boxes",
            stacklevel=3,
        )
    with (
        matplotlib.rc_context({"font.sans-serif": [font or "DejaVu Sans", "DejaVu Sans"]}),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure, axes = plt.subplots(figsize=(9, 7), dpi=120)
        for payer, payee, amount in _arrows(sub):
            (x0, y0), (x1, y1) = xy[payer], xy[payee]
            width = 0.5 + 4.0 * math.sqrt(amount / biggest)
            axes.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                arrowprops={"arrowstyle": "-|>", "lw": width, "color": "#7f8c8d", "alpha": 0.7},
            )
        for node, (x, y) in xy.items():
            axes.scatter([x], [y], s=420 if node == centre else 160, c=colour[node], zorder=3)
            axes.text(x, y + 0.06, labels[node], ha="center", fontsize=8, zorder=4)
        axes.set_title(
            f"{labels.get(centre, centre)}: payments in the {sub.window_months} months "
            f"before {sub.as_of}"
        )
        axes.set_axis_off()
        figure.tight_layout()
        figure.savefig(target, format=target.suffix.lstrip(".").split(".")[-1])
        plt.close(figure)


def _plotly(
    sub: SupplyGraph,
    *,
    xy: dict[str, tuple[float, float]],
    labels: dict[str, str],
    colour: dict[str, str],
    biggest: float,
    centre: str,
    target: Path,
) -> None:
    import plotly.graph_objects as go

    figure = go.Figure()
    for payer, payee, amount in _arrows(sub):
        (x0, y0), (x1, y1) = xy[payer], xy[payee]
        figure.add_annotation(
            x=x1,
            y=y1,
            ax=x0,
            ay=y0,
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=2,
            arrowwidth=0.5 + 4.0 * math.sqrt(amount / biggest),
            arrowcolor="#7f8c8d",
            hovertext=f"{payer} -> {payee}: {amount / 100:,.2f}",
        )
    nodes = list(xy)
    figure.add_trace(
        go.Scatter(
            x=[xy[n][0] for n in nodes],
            y=[xy[n][1] for n in nodes],
            mode="markers+text",
            text=[labels[n] for n in nodes],
            textposition="top center",
            hovertext=nodes,
            marker={
                "size": [22 if n == centre else 12 for n in nodes],
                "color": [colour[n] for n in nodes],
            },
        )
    )
    figure.update_layout(
        title=f"{labels.get(centre, centre)}: payments before {sub.as_of}",
        showlegend=False,
        xaxis={"visible": False},
        yaxis={"visible": False},
    )
    figure.write_html(target, include_plotlyjs=True, full_html=True)
