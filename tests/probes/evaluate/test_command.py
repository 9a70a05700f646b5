"""`python -m probes eval` as a user runs it: a real subprocess on the tiny model and the committed tiny banks, its
exit status, its files and its messages (a small run: one prompt, two seeds, half-second clips)."""

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probes.evaluate.cli import add_eval_arguments, settings_from_args
from studio.banks import BANKS_DIR

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
BANKS = BANKS_DIR / "tiny"
SMALL = (
    "--model tiny --bank tiny --device cpu --targets C G --seeds 0 1 --seconds 0.5 --readout-window 0.1 "
    "--bootstrap 50 --no-progress"
).split() + ["--prompts", "a note on a piano"]


def probes_eval(*args, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "probes", "eval", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=ENV,
    )


@pytest.mark.skipif(not (BANKS / "notes").is_dir(), reason="the committed tiny notes bank is missing")
def test_the_command_writes_its_results_and_reports_clamps_and_missing_crossovers(tmp_path):
    """A top16 sweep condition (clamped to the tiny model's 3 steerable layers) and a crossfade at strength 0, whose
    unsteered readout has no reason to hand over from C to G: both reported as such, in the files and on stdout."""
    out = tmp_path / "results"
    run = probes_eval(
        "--out",
        str(out),
        *SMALL,
        "--experiments",
        "sweep",
        "crossfade",
        "--strengths",
        "0.3",
        "--layer-modes",
        "top16",
        "--gates",
        "1",
        "--crossfade-strength",
        "0",
    )
    assert run.returncode == 0, run.stderr
    for name in (
        "run.json",
        "summary.json",
        "clips.csv",
        "sweep.csv",
        "crossfade.csv",
        "pareto_drift.html",
        "crossfade.html",
    ):
        assert (out / name).stat().st_size > 0, name
    assert "top16 needs 16 layers, the model steers 3: using k=3" in run.stderr
    with open(out / "sweep.csv", newline="") as handle:
        assert [(r["condition"], r["k_used"]) for r in csv.DictReader(handle)] == [
            ("baseline", ""),
            ("s0.3-top3-p1", "3"),
        ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["crossfade"]["no_crossover"] == 2 and summary["crossfade"]["measured_s"] is None
    with open(out / "crossfade.csv", newline="") as handle:
        assert [(r["crossover"], r["measured_s"]) for r in csv.DictReader(handle)] == [("no crossover", "")] * 2
    assert "no crossover in any of the 2 clips" in run.stdout and f"results in {out}" in run.stdout
    assert len(list((out / "clips").glob("**/*.wav"))) == 2 + 2 * 2 + 2  # baseline, 2 targets x 2 seeds, fades


def test_bad_input_exits_2_with_one_error_line(tmp_path):
    run = probes_eval("--out", str(tmp_path / "results"), *SMALL, "--layer-modes", "top", timeout=120)
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "unknown layer mode 'top'" in lines[0], run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "results" / "clips").exists()


def test_the_multi_concept_strength_defaults_to_the_papers_0_6():
    args = add_eval_arguments(argparse.ArgumentParser()).parse_args(["--out", "x"])
    assert args.multi_strength == 0.6 and settings_from_args(args).multi_strength == 0.6
