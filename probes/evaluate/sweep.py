"""The sweep: baseline against steered clips for every condition, target, prompt and seed (the paper's tables), with
Pareto plots of control against drift and against CLAP."""

from __future__ import annotations

from .conditions import sweep_conditions
from .figures import pareto_figure
from .report import mean_columns, write_csv
from .runner import Context, Rendered, slug


def _clip_rows(ctx: Context, rendered: Rendered, targets_of) -> list[dict]:
    """One row per (clip, target); `targets_of(i)` lists the targets clip i is judged against."""
    concept = ctx.settings.concept
    return [{"experiment": "sweep", **rendered.base_row(i, ctx.out), "concept": concept, "target": target,
             **rendered.facts.target_row(i, concept, target)}
            for i in range(len(rendered.jobs)) for target in targets_of(i)]


def run_sweep(ctx: Context) -> tuple[list[dict], dict]:
    """Render and measure every condition; write sweep.csv and the Pareto figures. Returns (clip rows, summary)."""
    s, concept, L = ctx.settings, ctx.settings.concept, ctx.loaded.num_layers
    conditions = sweep_conditions(s.strengths, s.layer_modes, s.gates, s.sweep)
    stats = dict(confidence=s.confidence, resamples=s.resamples, seed=s.ci_seed)

    baseline = ctx.baseline()
    clip_rows = _clip_rows(ctx, baseline, lambda i: ctx.targets)
    table = [{"condition": "baseline", "strength": 0.0, "layers": "", "gate_p": "", "concept": concept,
              **mean_columns(clip_rows, **stats), **ctx.drift(baseline.facts)}]
    for condition in conditions:
        jobs = [job for target in ctx.targets for job in ctx.prompt_seed_jobs(
            f"sweep/{condition.name}", f"{slug(target)}-", {"condition": condition.name, "target": target},
            [condition.control(concept, target, L)])]
        rendered = ctx.render_and_measure(jobs, condition.name, [concept])
        rows = _clip_rows(ctx, rendered, lambda i: [rendered.jobs[i].info["target"]])
        clip_rows += rows
        per_target = [[i for i, job in enumerate(jobs) if job.info["target"] == t] for t in ctx.targets]
        spec = condition.to_dict(L)["layer_spec"]
        table.append({"condition": condition.name, "strength": condition.strength, "layers": condition.layers,
                      "k_used": spec.get("k", ""), "gate_p": condition.gate_p, "concept": concept,
                      **mean_columns(rows, **stats), **ctx.drift(rendered.facts, per_target)})
    files = [write_csv(ctx.out / "sweep.csv", table)]
    files += _pareto_plots(ctx, table)
    summary = {"conditions": [c.to_dict(L) for c in conditions], "table": table,
               "files": [str(f.relative_to(ctx.out)) for f in files]}
    if not ctx.clap:
        summary["pareto_clap"] = f"skipped: {ctx.clap_reason}"
    return clip_rows, summary


def _pareto_plots(ctx: Context, table: list[dict]) -> list:
    baseline, conditions = table[0], table[1:]
    y, y_title, y_range = (("probe_acc", "probe accuracy on target", (-0.02, 1.02)) if "probe_acc" in baseline
                           else ("probe_value", "probe value (regression)", None))
    concept = ctx.settings.concept
    files = ctx.figure(pareto_figure(conditions, baseline, "fd_acts", y, "Frechet distance to baseline (activations)",
                                     y_title, True, f"{concept}: control against drift", y_range), "pareto_drift")
    if ctx.clap:
        files += ctx.figure(pareto_figure(conditions, baseline, "clap", y, "CLAP prompt similarity", y_title, False,
                                          f"{concept}: control against prompt adherence", y_range), "pareto_clap")
    return files
