"""`python -m probes eval --closed` on the tiny model with its committed notes bank: fixed arms that are the sweep's
clips, closed-loop arms whose records carry their realised strengths and replay exactly, one table and one plot, and
the comparison at equal accuracy."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from probes.__main__ import build_parser
from probes.evaluate.cli import settings_from_args
from probes.evaluate.closed import at_same_accuracy
from probes.evaluate.runner import EvalSettings, check_settings
from studio.errors import StudioError
from studio.generate import generate
from studio.recipe import load_recipe
from tests.probes.evaluate.test_methods import run, table

OPTIONS = (
    "--model tiny --concept notes --targets E G --seeds 0 1 --seconds 0.5 --strengths 1 3 --layer-modes exp0.95 "
    "--gates 0.3 --bootstrap 100 --no-progress --device cpu --experiments sweep --closed 0.6"
)


def run_closed(out: Path) -> tuple[int, str, str]:
    return run(["eval", "--out", str(out), "--prompts", "a note on a piano", *OPTIONS.split()])


@pytest.fixture(scope="module")
def closed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("closed")
    status, stdout, stderr = run_closed(out)
    assert status == 0, stderr
    return out, stdout


def test_one_row_per_arm_fixed_arms_are_the_sweeps_clips(closed_run):
    out, stdout = closed_run
    rows = table(out / "closed.csv")
    assert [(r["arm"], r["condition"]) for r in rows] == [
        ("baseline", "baseline"),
        ("fixed", "s1-exp0.95-p0.3"),
        ("fixed", "s3-exp0.95-p0.3"),
        ("closed", "s3-exp0.95-p0.3-t0.6"),
    ]
    assert [float(r["mean_strength"]) for r in rows[:3]] == [0.0, 1.0, 3.0]
    assert 0 < float(rows[3]["mean_strength"]) < 3 and float(rows[3]["target_p"]) == 0.6
    assert all(r["n"] == "4" for r in rows)  # 2 targets x 1 prompt x 2 seeds
    clips = table(out / "clips.csv")
    steered = [c for c in clips if c["condition"] != "baseline"]
    sweep = sorted(c["file"] for c in steered if c["experiment"] == "sweep")
    fixed = sorted(c["file"] for c in steered if c["experiment"] == "closed" and "-t" not in c["condition"])
    assert sweep == fixed and len(fixed) == 8
    assert "clips: 14 rendered, 8 reused" in stdout  # 2 baseline + 8 sweep (= fixed) + 4 closed
    assert "closed loop (-t<P>: the readout held at P) against fixed strength:" in stdout
    html = (out / "closed_drift.html").read_text()
    assert '"name":"fixed strength"' in html and '"name":"closed loop (target p)"' in html
    assert (out / "closed_drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_closed_clips_record_their_strengths_and_replay_exactly(closed_run, tiny):
    out, _ = closed_run
    rows = [c for c in table(out / "clips.csv") if c["experiment"] == "closed" and c["condition"].endswith("t0.6")]
    assert len(rows) == 4
    every = []
    for row in rows:
        record = json.loads((out / row["file"]).with_suffix(".json").read_text())
        realised = [step[0] for step in record["strengths"]["steps"]]
        assert float(row["mean_strength"]) == pytest.approx(np.mean(realised))
        every += realised
    assert min(every) >= 0 and max(every) <= 3 and len(set(every)) > 3
    row = rows[0]
    recipe = load_recipe((out / row["file"]).with_suffix(".json"))
    assert recipe.controls[0].target.p == 0.6 and recipe.readout.concept == "notes"
    replayed = generate(tiny, recipe)
    assert np.array_equal(replayed.audio.astype(np.float32), sf.read(out / row["file"], dtype="float32")[0])


def test_the_cost_at_equal_accuracy_is_read_off_the_fixed_curve():
    fixed = [
        {"strength": 1.0, "acc": 0.2, "fd_acts": 1.0},
        {"strength": 2.0, "acc": 0.6, "fd_acts": 3.0},
        {"strength": 3.0, "acc": 0.8, "fd_acts": 4.0},
    ]
    assert at_same_accuracy(fixed, 0.4, "acc") == pytest.approx(2.0)  # half way from 1.0 to 3.0
    assert at_same_accuracy(fixed, 0.7, "acc") == pytest.approx(3.5)
    assert at_same_accuracy(fixed, 0.6, "acc") == pytest.approx(3.0)
    assert at_same_accuracy(fixed, 0.9, "acc") is None and at_same_accuracy(fixed, 0.1, "acc") is None


def test_closed_alone_runs_only_it_and_bad_settings_are_refused(tmp_path):
    parse = build_parser().parse_args
    alone = settings_from_args(parse(["eval", "--out", str(tmp_path), "--closed"]))
    assert alone.experiments == ["closed"] and alone.closed == [0.5, 0.7, 0.9] and alone.closed_ceiling is None
    with pytest.raises(StudioError, match=r"--closed needs distinct target probabilities in \(0, 1\]"):
        check_settings(EvalSettings(out=tmp_path, experiments=["closed"], closed=[0.5, 1.5]))
    with pytest.raises(StudioError, match="give two --strengths"):
        check_settings(EvalSettings(out=tmp_path, experiments=["closed"], strengths=[2.0]))
    with pytest.raises(StudioError, match="ceiling must lie in"):
        check_settings(EvalSettings(out=tmp_path, experiments=["closed"], closed_ceiling=9.0))
