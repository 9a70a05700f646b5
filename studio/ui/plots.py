"""The studio's plotly figures: the live probe readout and the per-layer weights of the layer controls."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def layer_weights_figure(val_score: list[float], weights: list[float], title: str) -> go.Figure:
    """Per-layer validation AUC of the steered class (bars) and the weight each layer gets (line)."""
    layers = list(range(len(val_score)))
    fig = go.Figure()
    fig.add_bar(x=layers, y=val_score, name="validation AUC", marker_color="#9ab8d8")
    fig.add_scatter(
        x=layers,
        y=weights,
        name="layer weight",
        mode="lines+markers",
        yaxis="y2",
        line={"color": "#d2553f", "width": 3},
    )
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=260,
        margin={"l": 45, "r": 45, "t": 40, "b": 35},
        xaxis={"title": "decoder layer", "dtick": max(1, len(layers) // 12)},
        yaxis={"title": "AUC", "range": [0, 1.05]},
        yaxis2={"title": "weight", "overlaying": "y", "side": "right", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.3},
        bargap=0.15,
    )
    return fig


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def readout_figure(
    times: list[float],
    probs: list[list[float]],
    classes: list[str],
    steered: list[str],
    seconds: float,
    schedules: dict[str, list[list[float]]] | None = None,
    title: str = "probe readout",
    outside: list[bool] | None = None,
    strengths: dict[str, list[float]] | None = None,
    targets: dict[str, float] | None = None,
    running: list[list[float]] | None = None,
    ceiling: float | None = None,
) -> go.Figure:
    """Per-timestep class probabilities of the readout probe: one line per class, steered classes bold and coloured,
    the others thin and grey under one legend entry (hover names them). `schedules` (control name -> [[t, v], ...],
    in the order of `steered` where they share a class) are drawn faintly behind in the matching colour, on the same
    0-1 scale. Without steered classes every class gets its own colour and legend entry. Steps `outside` the probe's
    range (studio/readout.py) are a grey band labelled so, with no lines through it: they are not readings.

    Closed-loop controls (studio/control.py): `targets` (control name -> p) are dash-dotted lines at p in their class's
    colour, and `running` (rows as `probs`, each the mean over all steps so far) draws each target class's running
    probability, the reading the controller holds at p. `strengths` (control name -> the realised strength at each of
    `times`) adds a panel below, from 0 to `ceiling` (None: the largest strength drawn), one line per control."""
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(dict.fromkeys(steered))}
    # the strengths get a panel of their own under the readout, on the same time axis
    fig = go.Figure() if strengths is None else make_subplots(2, 1, shared_xaxes=True, row_heights=[0.7, 0.3])
    top = {} if strengths is None else {"row": 1, "col": 1}
    outside = list(outside or [False] * len(times))
    spans = _spans(times, outside)
    widest = max(spans, key=lambda span: span[1] - span[0], default=None)
    label = dict(annotation_text="outside the probe's range", annotation_position="top left", annotation_font_size=11)
    for span in spans:  # one label, on the widest band: labels on narrow neighbours would overprint
        fig.add_vrect(
            x0=span[0],
            x1=span[1],
            fillcolor="#9a9a9a",
            opacity=0.25,
            line_width=0,
            **(label if span == widest else {}),
            **top,
        )
    probs = [[None] * len(row) if out else row for row, out in zip(probs, outside)]
    for i, (name, points) in enumerate((schedules or {}).items()):
        tint = colour.get(name.split(": ", 1)[-1], PALETTE[i % len(PALETTE)])
        fig.add_scatter(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            mode="lines",
            name=f"schedule {name}",
            line={"dash": "dot", "width": 1.5, "color": tint},
            opacity=0.5,
            hoverinfo="skip",
            **top,
        )
    columns = list(zip(*probs)) if probs else [[] for _ in classes]
    first_other = True
    for name, column in zip(classes, columns):
        if name in colour:
            fig.add_scatter(
                x=times, y=list(column), mode="lines", name=name, line={"width": 3.5, "color": colour[name]}, **top
            )
        elif colour:  # the classes nobody steers: context, not the story
            fig.add_scatter(
                x=times,
                y=list(column),
                mode="lines",
                name="other classes",
                legendgroup="other",
                showlegend=first_other,
                opacity=0.6,
                line={"width": 1, "color": "#b4b4b4"},
                hovertemplate=f"{name}: %{{y:.2f}}<extra></extra>",
                **top,
            )
            first_other = False
        else:
            fig.add_scatter(x=times, y=list(column), mode="lines", name=name, line={"width": 1.5}, **top)
    for name, p in (targets or {}).items():
        target_class = name.split(": ", 1)[-1]
        tint = colour.get(target_class, "#555555")
        fig.add_hline(
            y=p,
            line={"dash": "dashdot", "width": 1, "color": tint},
            annotation_text=f"target {target_class} {p:.2f}",
            annotation_position="top right",
            annotation_font={"size": 11, "color": tint},
            annotation_bgcolor="rgba(255, 255, 255, 0.8)",  # legible where the readout crosses it
            **top,
        )
        if running is not None and target_class in classes:
            column = classes.index(target_class)
            fig.add_scatter(
                x=times,
                y=[row[column] for row in running],
                mode="lines",
                name=f"running {target_class}",
                line={"dash": "dash", "width": 1.5, "color": tint},
                **top,
            )
    time_axis = {"title": {"text": "seconds", "standoff": 4}, "range": [0, seconds]}
    layout = {"xaxis": time_axis, "yaxis": {"title": "probability", "range": [0, 1]}}
    if strengths is not None:
        for i, (name, values) in enumerate(strengths.items()):
            steered_class = name.split(": ", 1)[-1]
            tint = colour.get(steered_class, PALETTE[i % len(PALETTE)])
            fig.add_scatter(
                x=times,
                y=values,
                mode="lines",
                name=f"strength {steered_class}",
                line={"width": 2, "color": tint},
                row=2,
                col=1,
            )
        highest = ceiling or max((v for values in strengths.values() for v in values), default=0.0) or 1.0
        layout |= {
            "xaxis": {"range": [0, seconds]},  # the time axis's title goes under the lower panel
            "xaxis2": time_axis,
            "yaxis2": {"title": "strength", "range": [0, highest * 1.05]},  # the ceiling's line stays in view
        }
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=360 if strengths is None else 500,
        margin={"l": 45, "r": 15, "t": 40, "b": 20},
        legend={"orientation": "h", "yanchor": "top", "y": -0.2 if strengths is None else -0.12, "font": {"size": 11}},
        **layout,
    )
    return fig


def _spans(times: list[float], flags: list[bool]) -> list[tuple[float, float]]:
    """(start, end) times of the runs of flagged steps, each reaching half a step beyond its last one."""
    spans, start = [], None
    step = times[1] - times[0] if len(times) > 1 else 0.0
    for t, flag in zip(times, flags):
        if flag and start is None:
            start = t
        if not flag and start is not None:
            spans.append((start, t - step / 2))
            start = None
    if start is not None:
        spans.append((start, times[-1] + step / 2))
    return spans
