"""Evaluation harness: does steering do what it says, and what does it cost?

Modules, each with one job:
    dsp      independent musical checks without MusicGen: pitch class, triad quality and root, tempo
    metrics  Frechet distance, MMD, bootstrap confidence intervals, probe accuracy, direction cosines
    clap     CLAP text-audio similarity from a local checkpoint, or a result saying why it was skipped
    timing   switch-point fitting for the crossfade experiment
    conditions, clips, measure, report, figures   sweep conditions, stored clips, per-clip measurement, tables, plots
    runner, sweep, crossfade, multi, pipeline     the experiments of `python -m probes eval` (see README.md here)
    cli      add_eval_arguments(parser) and run_eval(args) for `python -m probes eval`

Import from the modules themselves (``from probes.evaluate.dsp import estimate_tempo``): they pull in librosa or
transformers, which this package file does not.
"""

from studio.errors import EvaluationError  # re-exported: the harness's error kind

__all__ = ["EvaluationError"]
