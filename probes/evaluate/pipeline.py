"""One evaluation run, start to end: load the model, banks and CLAP, run the asked experiments, write the tables."""

from __future__ import annotations

import logging
from pathlib import Path

from probes import transcribe

from .clap import ClapScorer
from .closed import closed_jobs, run_closed
from .crossfade import crossfade_jobs, run_crossfade
from .methods import methods_jobs, run_methods
from .multi import multi_jobs, run_multi
from .report import write_csv
from .runner import Context, EvalSettings, check_settings, describe_run
from .sweep import run_sweep, sweep_jobs

log = logging.getLogger(__name__)

JUDGE = "basic-pitch 0.4.0 (ICASSP 2022, ONNX) on notes and chords clips"
RUNNERS = {
    "sweep": run_sweep,
    "crossfade": run_crossfade,
    "multi": run_multi,
    "methods": run_methods,
    "closed": run_closed,
}
# the clips each experiment renders
JOBS = {
    "sweep": sweep_jobs,
    "crossfade": crossfade_jobs,
    "multi": multi_jobs,
    "methods": methods_jobs,
    "closed": closed_jobs,
}


def load_banks(settings: EvalSettings, loaded) -> dict:
    """The concept bank (and the multi-concept one when that experiment runs), resolved as a recipe's "bank" field
    would be and checked against the loaded model."""
    from studio.banks import check_model, load_banks

    concepts = [settings.concept] + ([settings.multi_concept] if "multi" in settings.experiments else [])
    banks = load_banks(settings.bank, settings.model, concepts)
    for bank in banks.values():
        check_model(bank, loaded.signature)
    return banks


def run_evaluation(settings: EvalSettings, loaded=None, cluster=None) -> dict:
    """Run the experiments of `settings` and write their files under settings.out; returns the summary (also written
    to summary.json). `loaded` reuses an already loaded model (it must be `settings.model`). `cluster`
    (probes.cluster.Cluster): every clip of the run is rendered first, as Ray tasks; the experiments then read them."""
    from studio.files import write_json
    from studio.model import load_model

    check_settings(settings)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    clap = ClapScorer.load(settings.clap, settings.device) if settings.clap else None  # fail before any rendering
    loaded = loaded or load_model(settings.model, device=settings.device)
    ctx = Context(settings, loaded, load_banks(settings, loaded), clap)
    write_json(out / "run.json", describe_run(ctx))
    unheard = transcribe.unavailable()
    summary: dict = {
        "clap": (
            {"status": "ok", "checkpoint": clap.checkpoint}
            if clap
            else {"status": "skipped", "reason": ctx.clap_reason}
        ),
        "transcription": {"status": "skipped", "reason": unheard} if unheard else {"status": "ok", "judge": JUDGE},
    }
    if cluster is not None:
        jobs = ctx.baseline_jobs() + [job for name in settings.experiments for job in JOBS[name](ctx)]
        ctx.store.render_missing(jobs, cluster)
    rows: list[dict] = []
    for name in settings.experiments:
        log.info("experiment %s", name)
        experiment_rows, summary[name] = RUNNERS[name](ctx)
        rows += experiment_rows
    write_csv(out / "clips.csv", rows)
    summary["clips"] = {"rendered": ctx.store.rendered, "reused": ctx.store.reused}
    if cluster is not None:
        summary["clips"]["on_cluster"] = ctx.store.on_cluster
    write_json(out / "summary.json", summary)
    return summary
