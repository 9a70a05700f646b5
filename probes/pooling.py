"""Which pooling of a clip's hidden states reads a concept best (the paper's open question 1), per concept, as its
Table 1 compares them (mean pooling 0.942 average AUC against last-token 0.776 there).

For each concept and pooling: the concept's clips, the one activation cache (every pooling from one forward pass),
the split and bandwidths of ``probes train``, one-vs-rest RFM probes per layer; the score is the mean validation AUC
over the classes (R^2 for tempos) at the best layer, and its mean over the layers. ``windows`` keeps order (four
spans of the clip side by side), which mean, last and max pooling lose: a progression's chords, a scale's direction.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import plotly.graph_objects as go

from probes.activations import ORDERED_POOLINGS
from probes.bank import REGRESSION_CLASSES
from probes.rfm import fit_rfm_layers
from probes.train import TrainOptions, concept_activations

log = logging.getLogger(__name__)

PAPER_TABLE_1 = {"mean": 0.942, "last": 0.776}  # average AUC over concepts, musicgen (arXiv 2510.19127, Table 1)


def compare_poolings(loaded, concepts: list[str], poolings: list[str], options: TrainOptions) -> list[dict]:
    """One row per (concept, pooling): its best layer, the score there, the score's mean over layers, the clips."""
    rows = []
    for concept in concepts:
        scores = {}
        # an order-keeping pooling first: on a cache miss its pass computes the bank poolings too, one pass in all
        for pooling in sorted(poolings, key=lambda p: p not in ORDERED_POOLINGS):
            prepared = concept_activations(loaded, concept, replace(options, pooling=pooling))
            regression = prepared.classes == REGRESSION_CLASSES
            fits = fit_rfm_layers(
                *prepared.split(),
                one_vs_rest=True,
                k=1,
                task="regression" if regression else "multiclass",
                n_classes=None if regression else len(prepared.classes),
                device=options.device,
                **prepared.hparams,
            )
            per_layer = fits.val_score.double().nanmean(dim=1).numpy()  # [L]: mean over the classes
            best = int(np.nanargmax(per_layer))
            scores[pooling] = {
                "concept": concept,
                "pooling": pooling,
                "metric": fits.val_metric,
                "best_layer": best,
                "best": float(per_layer[best]),
                "mean_over_layers": float(np.nanmean(per_layer)),
                "width": int(prepared.acts.shape[-1]),
                "n_train": len(prepared.train),
                "n_val": len(prepared.val),
            }
            log.info("%s, %s pooling: %.3f at layer %d", concept, pooling, per_layer[best], best)
        rows += [scores[pooling] for pooling in poolings]
    return rows


def pooling_table(rows: list[dict]) -> str:
    """Concepts down, poolings across: the best layer's score (and that layer)."""
    poolings = list(dict.fromkeys(r["pooling"] for r in rows))
    lines = [f"{'concept':<16}" + "".join(f"{p:>14}" for p in poolings)]
    for concept in dict.fromkeys(r["concept"] for r in rows):
        cells = {r["pooling"]: r for r in rows if r["concept"] == concept}
        metric = next(iter(cells.values()))["metric"]
        lines.append(
            f"{concept + (' (R^2)' if metric == 'r2' else ''):<16}"
            + "".join(f"{cells[p]['best']:>8.3f} (L{cells[p]['best_layer']:>2})" for p in poolings)
        )
    aucs = {p: [r["best"] for r in rows if r["pooling"] == p and r["metric"] == "auc"] for p in poolings}
    if all(aucs.values()):  # over the classification concepts (R^2 is another scale)
        lines.append(f"{'mean AUC':<16}" + "".join(f"{np.mean(aucs[p]):>14.3f}" for p in poolings))
    paper = ", ".join(f"{p} {v}" for p, v in PAPER_TABLE_1.items())
    lines.append(f"(the paper's Table 1 on musicgen, mean AUC: {paper})")
    return "\n".join(lines)


def pooling_figure(rows: list[dict]) -> go.Figure:
    """Grouped bars: per concept, each pooling's best-layer score."""
    fig = go.Figure()
    concepts = list(dict.fromkeys(r["concept"] for r in rows))
    for pooling in dict.fromkeys(r["pooling"] for r in rows):
        mine = {r["concept"]: r for r in rows if r["pooling"] == pooling}
        fig.add_bar(
            x=concepts,
            y=[mine[c]["best"] for c in concepts],
            name=pooling,
            text=[f"{mine[c]['best']:.2f}" for c in concepts],
            textposition="outside",
            hovertemplate=pooling + " %{x}: %{y:.3f}<extra></extra>",
        )
    fig.update_layout(
        title="Pooling over time: validation AUC at the best layer (mean over classes; tempos: R^2)",
        template="plotly_white",
        barmode="group",
        yaxis={"title": "score", "range": [0, 1.08]},
        legend_title_text="pooling",
    )
    return fig
