"""Plotly figures of an evaluation: Pareto plots of the sweep, the crossfade readout, direction interference.

How to read them:
- Pareto (control vs drift): each marker is one steering condition (colour: layer mode, symbol: gate p), y its probe
  accuracy on the target class with the 95% bootstrap interval, x the Frechet distance of its pooled activations to
  the baseline's. Up and left is better; the dashed line joins the conditions no other beats on both axes. The star is
  the unsteered baseline (its accuracy is the chance that unsteered audio already reads as the target).
- Pareto (control vs CLAP): the same with CLAP prompt similarity on x; up and right is better.
- Crossfade: the readout probabilities of the outgoing and incoming class over time (mean over clips, band = 95%
  interval), with the scheduled (dotted) and the measured (dashed) crossover times.
- Interference: cosine between the two concepts' steering directions at every decoder layer; near 0 the two controls
  push along independent axes, near +-1 one control moves the other's concept too.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from .report import pareto_front

_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x", "cross")


def _errors(rows: Sequence[dict], name: str) -> dict | None:
    if not all(f"{name}_low" in row for row in rows):
        return None
    return dict(type="data", symmetric=False, array=[row[f"{name}_high"] - row[name] for row in rows],
                arrayminus=[row[name] - row[f"{name}_low"] for row in rows], thickness=1)


def pareto_figure(conditions: Sequence[dict], baseline: dict | None, x: str, y: str, x_title: str, y_title: str,
                  minimize_x: bool, title: str, y_range: tuple[float, float] | None = None) -> go.Figure:
    """Scatter of condition rows (dicts with `x`, `y`, layers, gate_p, condition) with their Pareto front;
    `y_range` fixes the y axis (accuracies: 0..1)."""
    fig = go.Figure()
    gates = sorted({row["gate_p"] for row in conditions}, reverse=True)
    for mode in dict.fromkeys(row["layers"] for row in conditions):
        for gate in gates:
            rows = [r for r in conditions if r["layers"] == mode and r["gate_p"] == gate]
            if not rows:
                continue
            fig.add_trace(go.Scatter(
                x=[r[x] for r in rows], y=[r[y] for r in rows], mode="markers", name=f"{mode}, p={gate:g}",
                marker=dict(size=10, symbol=_SYMBOLS[gates.index(gate) % len(_SYMBOLS)]),
                error_y=_errors(rows, y), text=[r["condition"] for r in rows],
                hovertemplate="%{text}<br>" + x_title + " %{x:.4g}<br>" + y_title + " %{y:.3f}<extra></extra>"))
    front = pareto_front([r[x] for r in conditions], [r[y] for r in conditions], minimize_x)
    if front:
        fig.add_trace(go.Scatter(x=[conditions[i][x] for i in front], y=[conditions[i][y] for i in front],
                                 mode="lines", line=dict(dash="dash", color="black"), name="Pareto front"))
    if baseline is not None and baseline.get(x) is not None and baseline.get(y) is not None:
        fig.add_trace(go.Scatter(x=[baseline[x]], y=[baseline[y]], mode="markers", name="baseline",
                                 marker=dict(size=16, symbol="star", color="gold", line=dict(width=1))))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, template="plotly_white")
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig


def crossfade_figure(times: np.ndarray, first: np.ndarray, second: np.ndarray, names: tuple[str, str],
                     scheduled_s: float, measured_s: float) -> go.Figure:
    """Mean readout curves with 95% bands: first/second are [clips, T] probabilities of the two classes."""
    fig = go.Figure()
    for curves, name, colour in ((first, names[0], "#1f77b4"), (second, names[1], "#d62728")):
        mean = curves.mean(axis=0)
        low, high = np.quantile(curves, [0.025, 0.975], axis=0) if len(curves) > 1 else (mean, mean)
        fig.add_trace(go.Scatter(x=np.concatenate([times, times[::-1]]), y=np.concatenate([high, low[::-1]]),
                                 fill="toself", line=dict(width=0), fillcolor=colour, opacity=0.15,
                                 showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=times, y=mean, mode="lines", name=f"p({name})", line=dict(color=colour)))
    fig.add_vline(x=scheduled_s, line=dict(dash="dot", color="grey"), annotation_text="scheduled")
    fig.add_vline(x=measured_s, line=dict(dash="dash", color="black"), annotation_text="measured")
    fig.update_layout(title=f"Crossfade {names[0]} -> {names[1]}: readout over time", xaxis_title="time (s)",
                      yaxis_title="readout probability", template="plotly_white")
    return fig


def interference_figure(cosines: dict[str, np.ndarray]) -> go.Figure:
    """Cosine per decoder layer for each pair label."""
    fig = go.Figure()
    for label, values in cosines.items():
        fig.add_trace(go.Scatter(x=list(range(len(values))), y=values, mode="lines+markers", name=label))
    fig.add_hline(y=0.0, line=dict(color="grey", width=1))
    fig.update_layout(title="Interference: cosine between steering directions per layer", xaxis_title="decoder layer",
                      yaxis_title="cosine", yaxis_range=[-1, 1], template="plotly_white")
    return fig
