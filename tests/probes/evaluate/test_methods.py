"""`python -m probes eval --methods` on the tiny model: each direction method's bank trained from the RFM bank's data
and activation cache (no forward pass), every arm rendered with a recipe that replays it, one table and one plot,
RFM's first direction sharing the sweep's clips, and a second run reusing every bank and clip."""

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import probes.activations as activations_module
from probes.__main__ import main as probes_main
from probes.bank import ConceptBank
from probes.evaluate.cli import settings_from_args
from probes.evaluate.runner import EvalSettings, check_settings
from studio.banks import load_banks
from studio.errors import StudioError
from studio.generate import generate
from studio.recipe import load_recipe

# 12 notes x 2 instruments x 2 octaves = 48 SynTheory clips: a small bank, trained in seconds
TRAIN = ["--model", "tiny", "--concept", "notes", "--instruments", "79", "80", "--octaves", "4", "5"]
ARMS = ["rfm #0", "rfm #1", "rfm #2", "rfm #3", "mean-diff", "pca #0"]
CONDITION = "s2-exp0.95-p0.3"


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = probes_main(argv)
    return status, out.getvalue(), err.getvalue()


def eval_args(banks: Path, out: Path, with_sweep: bool = True) -> list[str]:
    options = (
        "--model tiny --concept notes --methods rfm mean-diff pca --targets C G --seeds 0 1 --seconds 0.5 "
        "--strengths 2 --layer-modes exp0.95 --gates 0.3 --bootstrap 100 --no-progress --device cpu"
    )
    sweep = ["--experiments", "sweep"] if with_sweep else []
    return ["eval", "--out", str(out), "--bank", str(banks), "--prompts", "a note on a piano", *options.split(), *sweep]


def table(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def methods_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    banks, out = root / "banks", root / "results"
    status, _, stderr = run(["train", *TRAIN, "--out", str(banks / "notes")])
    assert status == 0, stderr

    def no_forward_pass(*_args, **_kwargs):
        raise AssertionError("the training activations were computed again")

    # measure.py holds its own reference: the clips' activations are still extracted, the training ones must not be
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(activations_module, "extract_activations", no_forward_pass)
        status, stdout, stderr = run(eval_args(banks, out))
    assert status == 0, stderr
    return banks, out, stdout


def test_each_method_bank_is_trained_on_the_rfm_banks_data(methods_run):
    banks, out, _ = methods_run
    rfm = ConceptBank.load(banks / "notes")
    for method, k in (("mean-diff", 1), ("pca", 4)):
        bank = ConceptBank.load(out / "banks" / method / "notes")
        assert bank.method == method and bank.num_components == k
        assert bank.dataset == rfm.dataset and bank.layers == rfm.layers and bank.pooling == rfm.pooling
    assert not (out / "banks" / "rfm").exists()  # the --bank bank is RFM's


def test_one_table_row_per_arm_and_one_figure(methods_run):
    banks, out, stdout = methods_run
    rows = table(out / "methods.csv")
    assert [r["arm"] for r in rows] == ["baseline", *ARMS]
    assert [r["component"] for r in rows[1:]] == ["0", "1", "2", "3", "0", "0"]
    for row in rows:
        assert row["n"] == "4"  # 2 targets x 1 prompt x 2 seeds
        assert 0 <= float(row["probe_acc"]) <= 1 and np.isfinite(float(row["fd_acts"]))
    assert float(rows[0]["fd_acts"]) == 0.0 and all(float(r["fd_acts"]) > 0 for r in rows[1:])
    # the bank's own score goes with its first direction only
    assert [r["val_score"] == "" for r in rows[1:]] == [False, True, True, True, False, False]
    # the table's accuracies are the means of the arms' per-clip rows
    clips = [r for r in table(out / "clips.csv") if r["experiment"] == "methods"]
    for row in rows[1:]:
        mine = [
            float(c["probe_hit"]) for c in clips if (c["method"], c["component"]) == (row["method"], row["component"])
        ]
        assert len(mine) == 4 and float(row["probe_acc"]) == pytest.approx(np.mean(mine))
    html = (out / "methods_drift.html").read_text()
    assert all(f'"name":"{arm}"' in html for arm in ARMS)
    assert (out / "methods_drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(f"{arm} {CONDITION}" in stdout for arm in ARMS)
    summary = json.loads((out / "summary.json").read_text())["methods"]
    assert summary["arms"] == ARMS and summary["banks"]["rfm"] == str(banks)


def test_every_arm_steers_its_own_direction_and_its_recipe_replays_it(methods_run, tiny):
    banks, out, _ = methods_run
    rows = [r for r in table(out / "clips.csv") if r["experiment"] == "methods" and r["target"] == "C"]
    first = {(r["method"], r["component"]): r for r in rows if r["seed"] == "0"}
    audio = {arm: sf.read(out / row["file"], dtype="float32")[0] for arm, row in first.items()}
    assert len(audio) == len(ARMS)
    for a in audio:  # six directions, six different clips of the same prompt and seed
        assert sum(np.array_equal(audio[a], audio[b]) for b in audio) == 1
    for (method, component), row in first.items():
        recipe = load_recipe((out / row["file"]).with_suffix(".json"))
        (control,) = recipe.controls
        assert control.component == int(component) and control.class_name == "C" and control.strength == 2
        assert recipe.bank == (str(banks) if method == "rfm" else str(out / "banks" / method))
        replayed = generate(tiny, recipe, banks=load_banks(recipe.bank, "tiny", ["notes"]))
        assert np.array_equal(replayed.audio.astype(np.float32), audio[(method, component)]), (method, component)


def test_rfm_first_direction_is_the_sweeps_clip(methods_run):
    out, stdout = methods_run[1], methods_run[2]
    clips = table(out / "clips.csv")
    sweep = sorted(r["file"] for r in clips if r["experiment"] == "sweep" and r["condition"] == CONDITION)
    rfm = sorted(
        r["file"] for r in clips if r["experiment"] == "methods" and r["method"] == "rfm" and r["component"] == "0"
    )
    assert sweep == rfm and len(rfm) == 4
    # 2 baseline + 4 sweep (= rfm #0) + 3 x 4 other RFM directions + 4 mean-diff + 4 pca
    assert "clips: 26 rendered, 4 reused" in stdout


def test_a_second_run_reuses_every_bank_and_clip(methods_run):
    banks, out, _ = methods_run
    stamps = {p: p.stat().st_mtime_ns for p in (out / "banks").rglob("bank.safetensors")}
    before = (out / "methods.csv").read_bytes()
    status, stdout, stderr = run(eval_args(banks, out))
    assert status == 0, stderr
    assert "clips: 0 rendered, 30 reused" in stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "banks").rglob("bank.safetensors")} == stamps
    assert (out / "methods.csv").read_bytes() == before


def test_methods_alone_runs_only_the_methods_experiment_and_bad_methods_are_refused(tmp_path):
    from probes.__main__ import build_parser

    parse = build_parser().parse_args
    alone = settings_from_args(parse(["eval", "--out", str(tmp_path), "--methods"]))
    assert alone.experiments == ["methods"] and alone.methods == ["rfm", "mean-diff", "pca", "linear", "logistic"]
    both = settings_from_args(parse(["eval", "--out", str(tmp_path), "--experiments", "sweep", "--methods", "pca"]))
    assert both.experiments == ["sweep", "methods"] and both.methods == ["pca"]
    assert settings_from_args(parse(["eval", "--out", str(tmp_path)])).experiments == ["sweep", "crossfade", "multi"]
    with pytest.raises(StudioError, match="distinct"):
        check_settings(EvalSettings(out=tmp_path, experiments=["methods"], methods=["pca", "pca"]))
    with pytest.raises(StudioError, match="method must be one of"):
        check_settings(EvalSettings(out=tmp_path, experiments=["methods"], methods=["svm"]))


def test_a_bank_of_data_this_harness_cannot_render_is_refused_before_any_clip(methods_run, tmp_path):
    banks = methods_run[0]
    copy = tmp_path / "banks" / "notes"
    copy.mkdir(parents=True)
    for name in ("bank.safetensors", "bank.json"):
        (copy / name).write_bytes((banks / "notes" / name).read_bytes())
    meta = json.loads((copy / "bank.json").read_text())
    meta["dataset"]["source"] = "syntheory-published"
    (copy / "bank.json").write_text(json.dumps(meta))
    status, _, stderr = run(eval_args(tmp_path / "banks", tmp_path / "out", with_sweep=False))
    assert status == 2 and "trained on syntheory-published, which it cannot render again" in stderr
    assert not (tmp_path / "out" / "clips").exists()
