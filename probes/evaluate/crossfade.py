"""The crossfade experiment: hand over from class n1 to class n2 with complementary linear schedules (n1 at full
strength falling to 0 while n2 rises from 0, over the whole clip as in the paper, or over `--crossfade-span` seconds
around its middle), and compare when the model's own readout hands over with when the schedule does.

Measured crossover: `switch_time` of p(n2) - p(n1) in the generation's per-step window readout, each step timed at
the centre of its window. Scheduled crossover: `switch_time` of the two schedules' difference on the step grid (the
middle of the clip). A clip whose readout never hands over (see timing.switch_time for the criterion) is reported as
"no crossover": its measured time is empty, it is counted in the summary's `no_crossover`, and it is left out of the
measured mean and of `mean_abs_error_s`. The readout reads the steered states themselves, so as a check on the audio
the first and last thirds of each clip are re-encoded and classified by the bank's probe, the DSP check and
basic-pitch: n1 should win the first third and n2 the last. Like the paper, the crossfaded clips' CLAP similarity
and drift from the baseline are reported too.
"""

from __future__ import annotations

import numpy as np

from studio.schedules import crossfade, step_times

from .conditions import PAPER_DEFAULT, Condition
from .figures import crossfade_figure
from .metrics import bootstrap_ci
from .report import mean_columns, write_csv
from .runner import Context, Job, mean_or_none, slug
from .timing import switch_time, window_centres


def _condition(ctx: Context) -> Condition:
    return Condition(ctx.settings.crossfade_strength, PAPER_DEFAULT[1], PAPER_DEFAULT[2])


def _span(ctx: Context) -> float:
    s = ctx.settings
    return s.seconds if s.crossfade_span_s is None else s.crossfade_span_s


def crossfade_jobs(ctx: Context) -> list[Job]:
    """One clip per prompt and seed, handing over from the first class to the second with the readout on."""
    s, concept = ctx.settings, ctx.settings.concept
    first, second = ctx.crossfade_pair()
    condition, span = _condition(ctx), _span(ctx)
    fade_out, fade_in = crossfade((s.seconds - span) / 2, (s.seconds + span) / 2)
    controls = [
        {**condition.control(concept, first, ctx.loaded.num_layers), "schedule": fade_out.to_dict()},
        {**condition.control(concept, second, ctx.loaded.num_layers), "schedule": fade_in.to_dict()},
    ]
    readout = {"concept": concept, "layer": "best", "window_s": s.readout_window_s}
    info = {"condition": f"crossfade-{condition.name}", "first": first, "second": second}
    return ctx.prompt_seed_jobs(f"crossfade/{slug(first)}-{slug(second)}", "", info, controls, readout)


def run_crossfade(ctx: Context) -> tuple[list[dict], dict]:
    """Render, time and check the crossfade clips; write crossfade.csv and the figure. Returns (rows, summary)."""
    s, concept, bank = ctx.settings, ctx.settings.concept, ctx.bank
    first, second = ctx.crossfade_pair()
    jobs = crossfade_jobs(ctx)
    clips = ctx.render(jobs, "crossfade")

    a, b = bank.class_index(first), bank.class_index(second)
    frame_rate = ctx.loaded.frame_rate
    rows, curves = [], []
    for job, clip in zip(jobs, clips):
        window = clip.readout_window()  # [T, C]
        steps, width = len(window), int(clip.record["readout"]["window_steps"])
        centres = window_centres(steps, width, frame_rate)
        fade = [c.schedule.values(steps, frame_rate) for c in job.recipe.controls]
        rows.append(
            {
                "experiment": "crossfade",
                **job.info,
                "file": str(clip.path.relative_to(ctx.out)),
                **timing_row(
                    switch_time(step_times(steps, frame_rate), fade[1] - fade[0]),
                    switch_time(centres, window[:, b] - window[:, a]),
                ),
            }
        )
        curves.append((centres, window[:, a], window[:, b]))
    _check_thirds(ctx, clips, rows, first, second)
    facts = ctx.measure([c.audio for c in clips], [j.info["prompt"] for j in jobs], [concept])
    for i, row in enumerate(rows):
        if facts.clap.ok:
            row["clap"] = float(facts.clap.similarities[i])

    stats = dict(confidence=s.confidence, resamples=s.resamples, seed=s.ci_seed)
    timing = timing_summary(rows, **stats)
    grid = curves[0][0]
    fig = crossfade_figure(
        grid,
        np.stack([np.interp(grid, t, p) for t, p, _ in curves]),
        np.stack([np.interp(grid, t, q) for t, _, q in curves]),
        (first, second),
        timing["scheduled_s"],
        (timing["measured_s"] or {}).get("mean"),
        timing["no_crossover"],
    )
    files = [write_csv(ctx.out / "crossfade.csv", rows)] + ctx.figure(fig, "crossfade")
    summary = {
        "first": first,
        "second": second,
        "strength": s.crossfade_strength,
        "span_s": _span(ctx),
        "condition": _condition(ctx).name,
        "readout_window_s": s.readout_window_s,
        **timing,
        "first_third_probe_acc": mean_or_none(r["first_third_probe_hit"] for r in rows),
        "last_third_probe_acc": mean_or_none(r["last_third_probe_hit"] for r in rows),
        "first_third_dsp_acc": mean_or_none(r.get("first_third_dsp_hit") for r in rows),
        "last_third_dsp_acc": mean_or_none(r.get("last_third_dsp_hit") for r in rows),
        "first_third_bp_acc": mean_or_none(r.get("first_third_bp_hit") for r in rows),
        "last_third_bp_acc": mean_or_none(r.get("last_third_bp_hit") for r in rows),
        **mean_columns(rows, **stats),
        **ctx.drift(facts),
        "files": [str(f.relative_to(ctx.out)) for f in files],
    }
    return rows, summary


def timing_row(scheduled_s: float | None, measured_s: float | None) -> dict:
    """A clip's crossfade.csv timing columns; a readout without a crossover reads "no crossover", with no time and
    no error."""
    timed = scheduled_s is not None and measured_s is not None
    return {
        "scheduled_s": scheduled_s,
        "crossover": "crossed" if measured_s is not None else "no crossover",
        "measured_s": measured_s,
        "error_s": measured_s - scheduled_s if timed else None,
    }


def timing_summary(rows: list[dict], confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict:
    """Crossover times over clips (rows with timing_row's columns): the mean scheduled time, how many clips did not
    cross over, and the measured time (bootstrap interval) and mean |error| over the clips that did (None if none)."""
    crossed = [r for r in rows if r["measured_s"] is not None]
    measured = (
        bootstrap_ci(
            [r["measured_s"] for r in crossed], confidence=confidence, resamples=resamples, seed=seed
        ).as_dict()
        if crossed
        else None
    )
    return {
        "scheduled_s": mean_or_none(r["scheduled_s"] for r in rows),
        "n_clips": len(rows),
        "no_crossover": len(rows) - len(crossed),
        "measured_s": measured,
        "mean_abs_error_s": mean_or_none(abs(r["error_s"]) for r in crossed if r["error_s"] is not None),
    }


def _check_thirds(ctx: Context, clips, rows: list[dict], first: str, second: str) -> None:
    """Add the re-encoded first/last thirds' probe, DSP and basic-pitch results to the rows."""
    concept = ctx.settings.concept
    thirds = [c.audio[: len(c.audio) // 3] for c in clips] + [
        c.audio[len(c.audio) - len(c.audio) // 3 :] for c in clips
    ]
    facts = ctx.measure(thirds, [""] * len(thirds), [concept], with_clap=False)
    for i, row in enumerate(rows):
        for part, index, target in (("first_third", i, first), ("last_third", len(rows) + i, second)):
            judged = facts.target_row(index, concept, target)
            row[f"{part}_probe_pred"] = judged.get("probe_pred")
            row[f"{part}_probe_hit"] = judged.get("probe_hit")
            for check in ("dsp", "bp"):
                if f"{check}_hit" in judged:
                    row[f"{part}_{check}_pred"] = judged[f"{check}_pred"]
                    row[f"{part}_{check}_hit"] = judged[f"{check}_hit"]
