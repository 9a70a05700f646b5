"""`python -m probes train`: the whole pipeline on the tiny model, and its refusals."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probes.bank import ConceptBank
from probes.train import stratified_split

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def probes(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "probes", *args], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=timeout)


def test_stratified_split_keeps_every_class_on_both_sides():
    labels = np.repeat(np.arange(5), 4)
    train, val = stratified_split(labels, 0.25, seed=3, regression=False)
    assert set(labels[train]) == set(labels[val]) == set(range(5))
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(20))
    again = stratified_split(labels, 0.25, seed=3, regression=False)
    assert all(np.array_equal(a, b) for a, b in zip((train, val), again))


def test_train_writes_a_loadable_bank_with_plots_and_a_summary(tiny, tmp_path):
    out = tmp_path / "notes"
    run = probes("train", "--model", "tiny", "--concept", "notes", "--instruments", "79", "80", "--octaves", "4", "5",
                 "--out", str(out), "--cache-dir", str(tmp_path / "acts"))
    assert run.returncode == 0, run.stderr
    bank = ConceptBank.load(out, expect=tiny.signature)
    assert bank.classes[:3] == ["C", "C#", "D"] and bank.directions.shape == (6, 12, 4, 64)
    assert (out / "auc_by_layer.html").exists() and (out / "auc_by_layer.png").stat().st_size > 10_000
    assert "* readout" in run.stdout and run.stdout.count("\n") >= 7  # header + 6 layers + saved line
    assert bank.dataset["n_train"] + bank.dataset["n_val"] == 48


@pytest.mark.parametrize("args, words", [
    (["--concept", "harmonics"], "invalid choice"),
    (["--concept", "notes", "--components", "2"], "--components must be at least 4"),
    (["--concept", "notes", "--instruments", "banjo-9000"], "banjo-9000"),
    (["--concept", "notes", "--model", "nobody/none"], "nobody/none"),
])
def test_bad_input_exits_2_with_one_line_and_leaves_an_existing_bank_alone(tmp_path, args, words):
    out = tmp_path / "bank"
    out.mkdir()
    (out / "bank.json").write_text("{}")
    run = probes("train", *args, "--out", str(out), timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], run.stderr
    assert [p.name for p in out.iterdir()] == ["bank.json"] and (out / "bank.json").read_text() == "{}"
