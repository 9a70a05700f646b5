"""Figures and tables the probes pipeline writes: a bank's validation score by layer (a plot, a text table for the
terminal and a Markdown table for its model card), and writing any figure as HTML and PNG."""

from __future__ import annotations

import logging
from pathlib import Path

import plotly.graph_objects as go

from probes.bank import ConceptBank

log = logging.getLogger(__name__)
# kaleido (PNG export) and its browser driver log every browser start and stop at INFO
for _chatty in ("kaleido", "choreographer"):
    logging.getLogger(_chatty).setLevel(logging.WARNING)


def auc_by_layer_figure(bank: ConceptBank) -> go.Figure:
    """Validation score per trained decoder layer: one faint line per class, the class mean in bold, the readout layer
    marked. Untrained layers have no score and are left out."""
    metric = "R²" if bank.val_metric == "r2" else "AUC"
    layers = list(bank.layers)
    scores = bank.trained_val_score
    fig = go.Figure()
    for c, name in enumerate(bank.classes):
        fig.add_scatter(x=layers, y=scores[:, c].tolist(), mode="lines", name=name, opacity=0.5, line={"width": 1})
    fig.add_scatter(
        x=layers, y=scores.mean(dim=1).tolist(), mode="lines+markers", name="mean", line={"width": 3, "color": "black"}
    )
    fig.add_vline(x=bank.readout_layer, line_dash="dot", annotation_text="readout")
    fig.update_layout(
        title=f"{bank.concept}: validation {metric} by layer ({bank.signature.model_id})",
        xaxis_title="decoder layer",
        xaxis_dtick=max(1, len(layers) // 12),  # whole layers: a 4-layer model would get ticks at 0.5
        yaxis_title=f"validation {metric}",
        template="plotly_white",
        legend={"font": {"size": 10}},
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
    )
    return fig


def layer_scores(bank: ConceptBank) -> list[tuple[int, float, float, float]]:
    """(layer, mean, worst class, best class) validation score of each trained layer; untrained layers have none."""
    return [
        (layer, float(scores.mean()), float(scores.min()), float(scores.max()))
        for layer, scores in ((layer, bank.val_score[layer]) for layer in bank.layers)
    ]


def summary_table(bank: ConceptBank) -> str:
    """Validation score per trained layer: mean, worst and best class, the readout layer starred."""
    metric = bank.val_metric.upper()
    rows = [f"{'layer':>5}  {'mean ' + metric:>9}  {'min':>6}  {'max':>6}"]
    for layer, mean, low, high in layer_scores(bank):
        star = "  * readout" if layer == bank.readout_layer else ""
        rows.append(f"{layer:>5}  {mean:>9.3f}  {low:>6.3f}  {high:>6.3f}{star}")
    return "\n".join(rows)


def markdown_table(bank: ConceptBank) -> str:
    """The same scores as a Markdown table, the readout layer marked."""
    metric = "R²" if bank.val_metric == "r2" else "AUC"
    rows = [f"| layer | mean {metric} | min | max | |", "|---:|---:|---:|---:|:---|"]
    for layer, mean, low, high in layer_scores(bank):
        mark = "readout" if layer == bank.readout_layer else ""
        rows.append(f"| {layer} | {mean:.3f} | {low:.3f} | {high:.3f} | {mark} |")
    return "\n".join(rows)


def save_figure(fig: go.Figure, stem: Path) -> list[Path]:
    """Write `stem`.html (always) and `stem`.png (when kaleido finds a Chromium); returns the files written."""
    written = [stem.with_suffix(".html")]
    fig.write_html(written[0], include_plotlyjs="cdn")
    try:
        fig.write_image(stem.with_suffix(".png"), width=900, height=500)
        written.append(stem.with_suffix(".png"))
    except Exception as err:  # kaleido raises several types when no browser is found
        log.warning("PNG not written (%s); install Debian's chromium for PNG export", str(err).splitlines()[0])
    return written
