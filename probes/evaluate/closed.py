"""The closed-loop experiment: steering that holds the readout at a target probability (studio/control.py) against
fixed strength, compared at equal accuracy on drift (FD, MMD) and prompt adherence (CLAP).

Fixed arms: each --strengths value at the sweep's default layer mode and gate (the sweep's clips of those conditions,
rendered once for both experiments). Closed arms: each --closed target p, the ceiling the largest --strengths value
(or --closed-ceiling), the same layer mode and gate, the controller reading the concept's bank with the run's readout
window. Every arm is judged alike (the re-encoded probe readout, the DSP check, basic-pitch) against the one baseline.

Equal accuracy. The fixed arms trace accuracy against FD as their strength grows from 0 (the baseline); for a closed
arm, the FD fixed strength needs for the same accuracy is read off that curve, linearly between the two fixed arms
whose accuracies bracket it (none when no two do: a closed arm more accurate than every fixed one), and
``fd_saving`` is ``1 - FD(closed) / FD(fixed at the same accuracy)``: 0.3 means 30% less drift for the same control.
It is computed for the probe's accuracy and, when basic-pitch ran, for its.
"""

from __future__ import annotations

import numpy as np

from .conditions import Condition
from .figures import pareto_figure
from .report import mean_columns, write_csv
from .runner import Context, Rendered
from .sweep import accuracy_axis, condition_jobs, strength_conditions, target_rows


def _conditions(ctx: Context) -> tuple[list[Condition], list[Condition]]:
    """(the fixed arms, the closed arms)."""
    fixed = strength_conditions(ctx)
    ceiling = ctx.settings.closed_ceiling or max(c.strength for c in fixed)
    base = fixed[0]
    closed = [Condition(ceiling, base.layers, base.gate_p, p) for p in ctx.settings.closed]
    return fixed, closed


def closed_jobs(ctx: Context):
    fixed, closed = _conditions(ctx)
    return [job for c in fixed for job in condition_jobs(ctx, c)] + [
        job for c in closed for job in condition_jobs(ctx, c, "closed")
    ]


def realised_strength(rendered: Rendered, condition: Condition) -> list[float]:
    """Per clip, the mean over its steps of the strength it was steered with (a fixed arm's is its strength)."""
    if condition.target_p is None:
        return [condition.strength] * len(rendered.clips)
    return [float(np.mean([row[0] for row in clip.record["strengths"]["steps"]])) for clip in rendered.clips]


def at_same_accuracy(fixed: list[dict], accuracy: float, column: str, cost: str = "fd_acts") -> float | None:
    """The `cost` fixed strength needs for `accuracy` in `column`: linear between the two fixed arms (in order of
    strength) whose accuracies bracket it, the first such pair; None when no pair does."""
    rows = sorted(fixed, key=lambda row: row["strength"])
    for low, high in zip(rows, rows[1:]):
        a, b = low.get(column), high.get(column)
        if a is None or b is None or not min(a, b) <= accuracy <= max(a, b):
            continue
        if a == b:
            return min(low[cost], high[cost])
        share = (accuracy - a) / (b - a)
        return low[cost] + share * (high[cost] - low[cost])
    return None


def run_closed(ctx: Context) -> tuple[list[dict], dict]:
    """Render and measure every arm; write closed.csv and the accuracy-against-drift figure."""
    s, concept, L = ctx.settings, ctx.settings.concept, ctx.loaded.num_layers
    stats = dict(confidence=s.confidence, resamples=s.resamples, seed=s.ci_seed)
    fixed, closed = _conditions(ctx)
    baseline = ctx.baseline()
    clip_rows = []
    table = [
        {
            "arm": "baseline",
            "condition": "baseline",
            "target_p": "",
            "strength": 0.0,
            "mean_strength": 0.0,
            "layers": "",
            "gate_p": "",
            "concept": concept,
            **mean_columns(target_rows(ctx, baseline, lambda i: ctx.targets, "closed"), **stats),
            **ctx.drift(baseline.facts),
        }
    ]
    for condition in fixed + closed:
        arm = "fixed" if condition.target_p is None else "closed"
        jobs = condition_jobs(ctx, condition, "sweep" if arm == "fixed" else "closed")
        rendered = ctx.render_and_measure(jobs, f"{arm} {condition.name}", [concept])
        strengths = realised_strength(rendered, condition)
        rows = [
            {**row, "mean_strength": strengths[i]}
            for i, row in enumerate(target_rows(ctx, rendered, lambda i: [rendered.jobs[i].info["target"]], "closed"))
        ]
        clip_rows += rows
        per_target = [[i for i, job in enumerate(jobs) if job.info["target"] == t] for t in ctx.targets]
        table.append(
            {
                "arm": arm,
                "condition": condition.name,
                "target_p": "" if condition.target_p is None else condition.target_p,
                "strength": condition.strength,
                "mean_strength": float(np.mean(strengths)),
                "layers": condition.layers,
                "gate_p": condition.gate_p,
                "concept": concept,
                **mean_columns(rows, **stats),
                **ctx.drift(rendered.facts, per_target),
            }
        )
    fixed_rows = [row for row in table if row["arm"] != "closed"]  # the baseline is fixed strength 0
    for row in table:
        for column, suffix in (("probe_acc", ""), ("bp_acc", "_bp")):
            if row["arm"] == "closed" and row.get(column) is not None:
                same = at_same_accuracy(fixed_rows, row[column], column)
                row[f"fd_fixed_same_acc{suffix}"] = same
                row[f"fd_saving{suffix}"] = None if not same else 1 - row["fd_acts"] / same
    files = [write_csv(ctx.out / "closed.csv", table)]
    files += _figure(ctx, table)
    summary = {
        "conditions": [c.to_dict(L) for c in fixed + closed],
        "table": table,
        "files": [str(f.relative_to(ctx.out)) for f in files],
    }
    return clip_rows, summary


def _figure(ctx: Context, table: list[dict]) -> list:
    """Accuracy against FD, one line per arm kind, markers labelled by their mean realised strength: by the probe, and
    by basic-pitch when it ran (closed_drift_bp)."""
    axes = [(*accuracy_axis(table[0]), "closed_drift")]
    if table[0].get("bp_acc") is not None:
        axes.append(("bp_acc", "basic-pitch accuracy on target", (-0.02, 1.02), "closed_drift_bp"))
    points = [{**row, "strength": round(row["mean_strength"], 2)} for row in table[1:]]
    files = []
    for y, y_title, y_range, name in axes:
        figure = pareto_figure(
            points,
            table[0],
            "fd_acts",
            y,
            "Frechet distance to baseline (activations)",
            y_title,
            True,
            f"{ctx.settings.concept}: closed loop against fixed strength",
            y_range,
            series=lambda row: "fixed strength" if row["arm"] == "fixed" else "closed loop (target p)",
            legend_title="arm (label: mean strength)",
        )
        files += ctx.figure(figure, name)
    return files
