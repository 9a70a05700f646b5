"""`python -m probes tiny-model`, the command that rebuilds the tiny model, as a user runs it: a trial build (one clip
per class, two steps per stage) twice, in separate folders, gives the same bytes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probes import transcribe

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def tiny_model(folder: Path, stage: str) -> subprocess.CompletedProcess:
    trial = ["--steps", "2", "--clips-per-class", "1", "--out", str(folder / "model"), "--work", str(folder / "work")]
    command = [sys.executable, "-m", "probes", "tiny-model", "--stage", stage, *trial]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)


@pytest.mark.skipif(transcribe.unavailable() is not None, reason=str(transcribe.unavailable()))
def test_a_trial_rebuild_gives_the_same_bytes_twice(tmp_path):
    for run in ("a", "b"):
        codec = tiny_model(tmp_path / run, "codec")
        assert codec.returncode == 0 and "codec saved in" in codec.stdout, codec.stderr[-3000:]
        decoder = tiny_model(tmp_path / run, "decoder")
        assert decoder.returncode == 0 and "MusicGen saved in" in decoder.stdout, decoder.stderr[-3000:]
    for part in ("codec", "musicgen"):
        a, b = (tmp_path / run / "model" / part / "model.safetensors" for run in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), part
    report = json.loads((tmp_path / "a" / "model" / "musicgen" / "report.json").read_text())
    assert report["settings"]["steps"] == 2 and report["training_clips"] == 34  # 1 per class of 5 concepts
    assert len(report["heard_named"]) == 1  # a trial build judges one seed


def test_a_bad_trial_size_is_refused_before_any_work(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "probes", "tiny-model", "--clips-per-class", "0", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=ENV,
    )
    assert run.returncode == 2 and "--clips-per-class must be at least 1, got 0" in run.stderr
    assert not (tmp_path / "m").exists()
