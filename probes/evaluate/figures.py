"""Plotly figures of an evaluation: Pareto plots of the sweep, the crossfade readout, direction interference.

How to read them:
- Pareto (control vs drift): each marker is one steering condition (colour: layer mode, symbol: gate p, the number
  next to it: its strength), y its probe accuracy on the target class with the 95% bootstrap interval, x the Frechet
  distance of its pooled activations to the baseline's. Up and left is better; the dashed line joins the conditions
  no other beats on both axes. The star is the unsteered baseline (its accuracy is the chance that unsteered audio
  already reads as the target).
- Pareto (control vs CLAP): the same with CLAP prompt similarity on x; up and right is better.
- Methods (control vs drift): the same axes, one line per direction method and direction ("rfm #1": RFM's second
  AGOP eigenvector), its markers joined in order of strength.
- Crossfade: the readout probabilities of the outgoing and incoming class over time (mean over clips, band = 95%
  interval), with the scheduled (dotted) and the measured (dashed) crossover times.
- Interference: cosine between the two concepts' steering directions at every decoder layer; near 0 the two controls
  push along independent axes, near +-1 one control moves the other's concept too.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import plotly.graph_objects as go

from .report import pareto_front

_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x", "cross")


def _errors(rows: Sequence[dict], name: str) -> dict | None:
    if not all(f"{name}_low" in row for row in rows):
        return None
    return dict(
        type="data",
        symmetric=False,
        array=[row[f"{name}_high"] - row[name] for row in rows],
        arrayminus=[row[name] - row[f"{name}_low"] for row in rows],
        thickness=1,
    )


def _finite(rows: Sequence[dict], x: str, y: str) -> list[dict]:
    return [
        r for r in rows if r.get(x) is not None and r.get(y) is not None and np.isfinite(r[x]) and np.isfinite(r[y])
    ]


def _strength_labels(
    conditions: Sequence[dict], baseline: dict | None, x: str, y: str, near: tuple[float, float] = (0.06, 0.05)
) -> go.Scatter:
    """Text beside the markers giving each condition's strength, which the static PNG has no hover to show. A marker
    closer to an earlier label's marker than `near` (fractions of the plotted x and y spans, baseline included: about
    a label's size) joins that label ("0.3, 0.6"), so clustered or coincident conditions do not overprint."""
    points = [(float(r[x]), float(r[y]), r["strength"]) for r in _finite(conditions, x, y)]
    plotted = [(float(r[x]), float(r[y])) for r in _finite(conditions + ([baseline] if baseline else []), x, y)]
    spans = [max(np.ptp([p[i] for p in plotted]), 1e-300) if plotted else 1.0 for i in (0, 1)]
    groups: list[list[tuple[float, float, float]]] = []
    for point in points:
        home = next((g for g in groups if all(abs(point[i] - g[0][i]) < near[i] * spans[i] for i in (0, 1))), None)
        if home is None:
            groups.append([point])
        else:
            home.append(point)
    labels = [(g[0][0], g[0][1], ", ".join(f"{s:g}" for s in sorted({p[2] for p in g}))) for g in groups]
    low = min((p[0] for p in plotted), default=0.0)
    # labels of markers in the right quarter go on their left, so the plot's edge does not cut them off
    sides = ["middle left" if l[0] - low > 0.75 * spans[0] else "middle right" for l in labels]
    return go.Scatter(
        x=[l[0] for l in labels],
        y=[l[1] for l in labels],
        text=[l[2] for l in labels],
        mode="markers+text",
        marker=dict(size=12, opacity=0),  # the invisible marker offsets the text
        textposition=sides,
        textfont=dict(size=11),
        showlegend=False,
        hoverinfo="skip",
    )


def pareto_figure(
    conditions: Sequence[dict],
    baseline: dict | None,
    x: str,
    y: str,
    x_title: str,
    y_title: str,
    minimize_x: bool,
    title: str,
    y_range: tuple[float, float] | None = None,
    series: Callable[[dict], str] | None = None,
    legend_title: str = "layers, gate (label: strength)",
) -> go.Figure:
    """Scatter of condition rows (dicts with `x`, `y`, strength, gate_p, condition) with their Pareto front, each
    marker labelled with its strength; `y_range` fixes the y axis (accuracies: 0..1). One trace per layer mode and
    gate p, the symbol saying the gate; or one per `series(row)`, its markers joined in order of strength."""
    fig = go.Figure()
    gates = sorted({row["gate_p"] for row in conditions}, reverse=True)
    traces: dict[str, list[dict]] = {}
    for row in sorted(conditions, key=lambda r: r["strength"]) if series else conditions:
        traces.setdefault(series(row) if series else f"{row['layers']}, p={row['gate_p']:g}", []).append(row)
    for name, rows in traces.items():
        fig.add_trace(
            go.Scatter(
                x=[r[x] for r in rows],
                y=[r[y] for r in rows],
                mode="lines+markers" if series else "markers",
                name=name,
                marker=dict(size=10, symbol=[_SYMBOLS[gates.index(r["gate_p"]) % len(_SYMBOLS)] for r in rows]),
                error_y=_errors(rows, y),
                text=[r["condition"] for r in rows],
                hovertemplate="%{text}<br>" + x_title + " %{x:.4g}<br>" + y_title + " %{y:.3f}<extra></extra>",
            )
        )
    fig.add_trace(_strength_labels(list(conditions), baseline, x, y))
    front = pareto_front([r[x] for r in conditions], [r[y] for r in conditions], minimize_x)
    if front:
        fig.add_trace(
            go.Scatter(
                x=[conditions[i][x] for i in front],
                y=[conditions[i][y] for i in front],
                mode="lines",
                line=dict(dash="dash", color="black"),
                name="Pareto front",
            )
        )
    if baseline is not None and baseline.get(x) is not None and baseline.get(y) is not None:
        fig.add_trace(
            go.Scatter(
                x=[baseline[x]],
                y=[baseline[y]],
                mode="markers",
                name="baseline",
                marker=dict(size=16, symbol="star", color="gold", line=dict(width=1)),
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        template="plotly_white",
        legend_title_text=legend_title,
    )
    fig.update_xaxes(exponentformat="e")  # tiny drifts read 8e-14, not "80f"
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig


def crossfade_figure(
    times: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    names: tuple[str, str],
    scheduled_s: float | None,
    measured_s: float | None,
    uncrossed: int = 0,
) -> go.Figure:
    """Mean readout curves with 95% bands: first/second are [clips, T] probabilities of the two classes. `measured_s`
    is the mean over the clips that crossed over (None: none did, no line); the title counts the `uncrossed` ones."""
    fig = go.Figure()
    for curves, name, colour in ((first, names[0], "#1f77b4"), (second, names[1], "#d62728")):
        mean = curves.mean(axis=0)
        low, high = np.quantile(curves, [0.025, 0.975], axis=0) if len(curves) > 1 else (mean, mean)
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([times, times[::-1]]),
                y=np.concatenate([high, low[::-1]]),
                fill="toself",
                line=dict(width=0),
                fillcolor=colour,
                opacity=0.15,
                showlegend=False,
                hoverinfo="skip",
            )
        )
        fig.add_trace(go.Scatter(x=times, y=mean, mode="lines", name=f"p({name})", line=dict(color=colour)))
    # the earlier line's label goes on its left, the later one's on its right: close lines keep readable labels
    later = measured_s is not None and scheduled_s is not None and measured_s >= scheduled_s
    if scheduled_s is not None:
        side = "top left" if later else "top right"
        fig.add_vline(
            x=scheduled_s, line=dict(dash="dot", color="grey"), annotation_text="scheduled", annotation_position=side
        )
    if measured_s is not None:
        side = "top right" if later or scheduled_s is None else "top left"
        fig.add_vline(
            x=measured_s, line=dict(dash="dash", color="black"), annotation_text="measured", annotation_position=side
        )
    title = f"Crossfade {names[0]} -> {names[1]}: readout over time"
    if uncrossed:
        title += f" ({uncrossed} of {len(first)} clips never crossed over)"
    fig.update_layout(title=title, xaxis_title="time (s)", yaxis_title="readout probability", template="plotly_white")
    return fig


def interference_figure(cosines: dict[str, np.ndarray]) -> go.Figure:
    """Cosine per decoder layer for each pair label."""
    fig = go.Figure()
    for label, values in cosines.items():
        fig.add_trace(go.Scatter(x=list(range(len(values))), y=values, mode="lines+markers", name=label))
    fig.add_hline(y=0.0, line=dict(color="grey", width=1))
    fig.update_layout(
        title="Interference: cosine between steering directions per layer",
        xaxis_title="decoder layer",
        yaxis_title="cosine",
        yaxis_range=[-1, 1],
        template="plotly_white",
    )
    return fig
