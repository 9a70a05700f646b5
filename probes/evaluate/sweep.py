"""The sweep: baseline against steered clips for every condition, target, prompt and seed (the paper's tables), with
Pareto plots of control against drift and against CLAP.

Conditions are resolved for the loaded model first (conditions.resolve_conditions): a top-K above the model's
steerable layers runs, and is named, with the K it uses, and requested conditions that steer identically are rendered
once; sweep.csv's `requested` column and summary.json's `merged` list say which."""

from __future__ import annotations

import logging

from .conditions import Condition, Resolved, clamped_modes, paper_base, resolve_conditions, sweep_conditions
from .figures import pareto_figure
from .report import mean_columns, write_csv
from .runner import Context, Job, Rendered, slug

log = logging.getLogger(__name__)


def target_rows(ctx: Context, rendered: Rendered, targets_of, experiment: str = "sweep") -> list[dict]:
    """One row per (clip, target); `targets_of(i)` lists the targets clip i is judged against. With --target-bpm the
    rows carry it, and tempo clips count as hits within 4% of it."""
    concept, bpm = ctx.settings.concept, ctx.settings.target_bpm
    extra = {} if bpm is None else {"target_bpm": bpm}
    return [
        {
            "experiment": experiment,
            **rendered.base_row(i, ctx.out),
            "concept": concept,
            "target": target,
            **extra,
            **rendered.facts.target_row(i, concept, target, target_value=bpm),
        }
        for i in range(len(rendered.jobs))
        for target in targets_of(i)
    ]


def condition_jobs(
    ctx: Context,
    condition: Condition,
    folder: str = "sweep",
    component: int = 0,
    bank: str | None = None,
    info: dict | None = None,
) -> list[Job]:
    """One clip per target, prompt and seed, steered as `condition` says along the class's direction `component`, with
    the banks of `bank` (None: --bank's), under `<folder>/<condition>`; `info` adds columns to the clips' rows. A
    closed-loop condition's clips read the concept (its controller's readout) with the run's readout window."""
    concept, L = ctx.settings.concept, ctx.loaded.num_layers
    readout = None if condition.target_p is None else {"concept": concept, "window_s": ctx.settings.readout_window_s}
    return [
        job
        for target in ctx.targets
        for job in ctx.prompt_seed_jobs(
            f"{folder}/{condition.name}",
            f"{slug(target)}-",
            {"condition": condition.name, **(info or {}), "target": target},
            [condition.control(concept, target, L, component)],
            readout,
            bank,
        )
    ]


def strength_conditions(ctx: Context) -> list[Condition]:
    """One condition per --strengths value, at the sweep's default layer mode and gate (clamped for this model): the
    methods and closed-loop experiments' fixed strengths, which are the sweep's conditions of those strengths."""
    s = ctx.settings
    _, layers, gate = paper_base(s.strengths, s.layer_modes, s.gates)
    requested = [Condition(strength, layers, gate) for strength in dict.fromkeys(s.strengths)]
    return [entry.condition for entry in resolve_conditions(requested, ctx.loaded.num_layers)]


def _conditions(ctx: Context) -> tuple[list[Condition], list[Resolved]]:
    """(the requested conditions, the resolved ones this model runs)."""
    s = ctx.settings
    requested = sweep_conditions(s.strengths, s.layer_modes, s.gates, s.sweep)
    return requested, resolve_conditions(requested, ctx.loaded.num_layers)


def sweep_jobs(ctx: Context) -> list[Job]:
    return [job for entry in _conditions(ctx)[1] for job in condition_jobs(ctx, entry.condition)]


def run_sweep(ctx: Context) -> tuple[list[dict], dict]:
    """Render and measure every condition; write sweep.csv and the Pareto figures. Returns (clip rows, summary)."""
    s, concept, L = ctx.settings, ctx.settings.concept, ctx.loaded.num_layers
    requested, resolved = _conditions(ctx)
    stats = dict(confidence=s.confidence, resamples=s.resamples, seed=s.ci_seed)
    if concept == "tempos" and s.target_bpm is None:
        log.info("no --target-bpm: the tempo check reports measured tempos (dsp_value) but no accuracy")

    baseline = ctx.baseline()
    clip_rows = target_rows(ctx, baseline, lambda i: ctx.targets)
    table = [
        {
            "condition": "baseline",
            "strength": 0.0,
            "layers": "",
            "k_used": "",
            "gate_p": "",
            "concept": concept,
            "requested": "",
            **mean_columns(clip_rows, **stats),
            **ctx.drift(baseline.facts),
        }
    ]
    for entry in resolved:
        condition = entry.condition
        jobs = condition_jobs(ctx, condition)
        rendered = ctx.render_and_measure(jobs, condition.name, [concept])
        rows = target_rows(ctx, rendered, lambda i: [rendered.jobs[i].info["target"]])
        clip_rows += rows
        per_target = [[i for i, job in enumerate(jobs) if job.info["target"] == t] for t in ctx.targets]
        spec = condition.to_dict(L)["layer_spec"]
        table.append(
            {
                "condition": condition.name,
                "strength": condition.strength,
                "layers": condition.layers,
                "k_used": spec.get("k", ""),
                "gate_p": condition.gate_p,
                "concept": concept,
                "requested": " ".join(entry.requested),
                **mean_columns(rows, **stats),
                **ctx.drift(rendered.facts, per_target),
            }
        )
    files = [write_csv(ctx.out / "sweep.csv", table)]
    files += _pareto_plots(ctx, table)
    summary = {
        "conditions": [r.to_dict(L) for r in resolved],
        "table": table,
        "clamped": clamped_modes([c.layers for c in requested], L),
        "merged": [{"kept": r.condition.name, "requested": list(r.requested)} for r in resolved if r.merged],
        "files": [str(f.relative_to(ctx.out)) for f in files],
    }
    if not ctx.clap:
        summary["pareto_clap"] = f"skipped: {ctx.clap_reason}"
    return clip_rows, summary


def accuracy_axis(baseline: dict) -> tuple[str, str, tuple[float, float] | None]:
    """(column, title, range) of the Pareto plots' y axis: the probe's accuracy, or its value for a regression bank."""
    if "probe_acc" in baseline:
        return "probe_acc", "probe accuracy on target", (-0.02, 1.02)
    return "probe_value", "probe value (regression)", None


def _pareto_plots(ctx: Context, table: list[dict]) -> list:
    baseline, conditions = table[0], table[1:]
    y, y_title, y_range = accuracy_axis(baseline)
    concept = ctx.settings.concept
    files = ctx.figure(
        pareto_figure(
            conditions,
            baseline,
            "fd_acts",
            y,
            "Frechet distance to baseline (activations)",
            y_title,
            True,
            f"{concept}: control against drift",
            y_range,
        ),
        "pareto_drift",
    )
    if ctx.clap:
        files += ctx.figure(
            pareto_figure(
                conditions,
                baseline,
                "clap",
                y,
                "CLAP prompt similarity",
                y_title,
                False,
                f"{concept}: control against prompt adherence",
                y_range,
            ),
            "pareto_clap",
        )
    return files
