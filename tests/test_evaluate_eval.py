"""`python -m probes eval` end to end on the tiny model and the committed tiny banks, with a tiny random CLAP: every
metric computed, every file written, the numbers traceable to the stored clips, and a second run reusing every clip.
(The tiny model's audio is noise, so the values say nothing about steering; the pure metrics have their own tests.)"""

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from probes.activations import extract_activations
from probes.bank import ConceptBank
from probes.evaluate.clap import save_tiny_clap
from probes.evaluate.cli import main
from probes.evaluate.dsp import estimate_pitch_class
from probes.evaluate.metrics import direction_cosines, frechet_distance, probe_readout
from studio.recipe import BANKS_DIR, load_recipe

BANKS = BANKS_DIR / "tiny"
CONDITIONS = ["s0.3-exp0.95-p0.3", "s0.3-uniform-p0.3", "s0.3-top2-p0.3", "s0.3-exp0.95-p1"]
FIGURES = ["pareto_drift", "pareto_clap", "crossfade", "interference"]
TABLES = ["clips.csv", "sweep.csv", "crossfade.csv", "multi.csv", "interference.csv"]

pytestmark = pytest.mark.skipif(not (BANKS / "notes").is_dir() or not (BANKS / "chords").is_dir(),
                                reason="the committed tiny banks (assets/banks/tiny/notes, chords) are missing")


def args(out: Path, clap: Path) -> list[str]:
    return ["--out", str(out), "--model", "tiny", "--bank", "tiny", "--device", "cpu", "--targets", "C", "G",
            "--prompts", "soft piano", "--seeds", "0", "1", "--seconds", "0.5", "--strengths", "0.3",
            "--layer-modes", "exp0.95", "uniform", "top2", "--gates", "0.3", "1", "--readout-window", "0.1",
            "--multi-pairs", "C:major", "G:minor", "--bootstrap", "200", "--clap", str(clap), "--no-progress"]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def table(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    clap = save_tiny_clap(root / "clap")
    out = root / "results"
    status, stdout, stderr = run(args(out, clap))
    assert status == 0, stderr
    snapshot = {name: (out / name).read_bytes() for name in TABLES}
    return out, clap, stdout, snapshot


def test_every_file_is_written(evaluation):
    out, _, stdout, _ = evaluation
    for name in TABLES + ["run.json", "summary.json"]:
        assert (out / name).stat().st_size > 0, name
    for stem in FIGURES:
        assert (out / f"{stem}.html").read_text().count("plotly") > 0
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "s0.3-uniform-p0.3" in stdout and "crossfade C -> G" in stdout and "24 rendered, 0 reused" in stdout


def test_sweep_table_has_every_metric_for_every_condition(evaluation):
    out = evaluation[0]
    rows = table(out / "sweep.csv")
    assert [r["condition"] for r in rows] == ["baseline"] + CONDITIONS
    assert next(r for r in rows if r["condition"] == "s0.3-top2-p0.3")["k_used"] == "2"
    for row in rows:
        assert row["n"] == "4"  # 2 targets x 1 prompt x 2 seeds (baseline: 2 clips judged against 2 targets)
        for metric in ("probe_acc", "probe_p_target", "dsp_acc", "dsp_support", "clap"):
            low, mean, high = (float(row[f"{metric}{s}"]) for s in ("_low", "", "_high"))
            assert np.isfinite(mean) and low <= mean <= high, (row["condition"], metric)
        for metric in ("fd_acts", "mmd_acts", "fd_clap", "mmd_clap"):
            assert np.isfinite(float(row[metric])), (row["condition"], metric)
        assert float(row["fd_acts"]) >= 0 and float(row["fd_clap"]) >= 0
    assert float(rows[0]["fd_acts"]) == 0.0  # the baseline against itself


def test_clip_rows_match_an_independent_measurement_of_the_stored_files(evaluation, tiny):
    out = evaluation[0]
    rows = [r for r in table(out / "clips.csv") if r["experiment"] == "sweep"]
    assert len(rows) == 2 * 2 + len(CONDITIONS) * 4
    bank = ConceptBank.load(BANKS / "notes")
    files = sorted({r["file"] for r in rows})
    audio = {f: sf.read(out / f, dtype="float32")[0] for f in files}
    pooled = extract_activations(tiny, [audio[f] for f in files], ("mean",), progress=False)["mean"]
    readout = probe_readout(bank, pooled)
    for row in rows:
        i = files.index(row["file"])
        assert row["probe_pred"] == bank.classes[int(readout.predicted[i])]
        # float32 batches of other sizes round differently, hence the tolerance
        assert float(row["probe_p_target"]) == pytest.approx(readout.probabilities[i, bank.class_index(row["target"])],
                                                             rel=1e-4)
        assert float(row["probe_hit"]) == float(row["probe_pred"] == row["target"])
        assert row["dsp_pred"] == estimate_pitch_class(audio[row["file"]], 32000).name
        assert -1 <= float(row["clap"]) <= 1
    # the drift of one condition, recomputed from its files: mean over targets of FD(target's clips, baseline)
    acts = {f: pooled[files.index(f), bank.readout_layer].double().numpy() for f in files}
    baseline = np.stack([acts[f] for f in sorted({r["file"] for r in rows if r["condition"] == "baseline"})])
    fds = [frechet_distance(np.stack([acts[r["file"]] for r in rows
                                      if r["condition"] == "s0.3-uniform-p0.3" and r["target"] == target]), baseline)
           for target in ("C", "G")]
    sweep = {r["condition"]: r for r in table(out / "sweep.csv")}
    assert float(sweep["s0.3-uniform-p0.3"]["fd_acts"]) == pytest.approx(np.mean(fds), rel=1e-3, abs=1e-9)


def test_every_clip_records_its_recipe_and_seed(evaluation):
    out = evaluation[0]
    for row in table(out / "clips.csv"):
        recipe = load_recipe((out / row["file"]).with_suffix(".json"))
        assert recipe.seed == int(row["seed"]) and recipe.prompt == row["prompt"] and recipe.model == "tiny"
        if row["condition"] == "baseline":
            assert recipe.controls == ()
        elif row["experiment"] == "sweep":
            (control,) = recipe.controls
            assert control.class_name == row["target"] and control.strength == 0.3
            assert row["file"].startswith(f"clips/sweep/{row['condition']}/")
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["settings"]["seeds"] == [0, 1] and run_json["targets"] == ["C", "G"]
    assert set(run_json["banks"]) == {"notes", "chords"}


def test_crossfade_times_and_thirds(evaluation):
    out = evaluation[0]
    rows = table(out / "crossfade.csv")
    assert len(rows) == 2
    for row in rows:
        assert float(row["scheduled_s"]) == pytest.approx(0.25)  # the midpoint of a 0.5 s linear crossfade
        assert 0 <= float(row["measured_s"]) <= 0.6
        assert float(row["error_s"]) == pytest.approx(float(row["measured_s"]) - 0.25)
        assert row["first_third_probe_pred"] and row["last_third_probe_pred"] and row["first_third_dsp_pred"]
        recipe = load_recipe((out / row["file"]).with_suffix(".json"))
        assert [c.class_name for c in recipe.controls] == ["C", "G"] and recipe.readout.concept == "notes"
        assert -1 <= float(row["clap"]) <= 1
    summary = json.loads((out / "summary.json").read_text())["crossfade"]
    assert summary["measured_s"]["low"] <= summary["measured_s"]["mean"] <= summary["measured_s"]["high"]
    for metric in ("fd_acts", "mmd_acts", "fd_clap", "mmd_clap", "clap", "first_third_probe_acc", "last_third_dsp_acc"):
        assert np.isfinite(summary[metric]), metric


def test_multi_concept_accuracy_and_interference(evaluation):
    out = evaluation[0]
    rows = table(out / "multi.csv")
    assert [(r["pair"], r["concept"], r["target"]) for r in rows] == [
        ("C+major", "notes", "C"), ("C+major", "chords", "major"), ("G+minor", "notes", "G"),
        ("G+minor", "chords", "minor")]
    for row in rows:
        for metric in ("probe_acc", "baseline_probe_acc", "dsp_acc", "baseline_dsp_acc", "clap", "fd_acts"):
            assert np.isfinite(float(row[metric])), metric
    notes, chords = ConceptBank.load(BANKS / "notes"), ConceptBank.load(BANKS / "chords")
    cosines = [r for r in table(out / "interference.csv") if r["pair"] == "G+minor"]
    expected = direction_cosines(notes.directions[:, notes.class_index("G"), 0],
                                 chords.directions[:, chords.class_index("minor"), 0])
    np.testing.assert_allclose([float(r["cosine"]) for r in cosines], expected, atol=1e-9)


def test_a_second_run_reuses_every_clip_and_gives_the_same_tables(evaluation):
    out, clap, _, snapshot = evaluation
    status, stdout, stderr = run(args(out, clap))
    assert status == 0, stderr
    assert "0 rendered, 24 reused" in stdout
    for name, content in snapshot.items():
        assert (out / name).read_bytes() == content, name


@pytest.mark.parametrize("change, message", [
    (["--clap", "/nonexistent/clap"], "does not exist"),
    (["--targets", "C", "H"], "no class 'H'"),
    (["--seeds", "0"], "at least two"),
    (["--layer-modes", "top"], "unknown layer mode"),
])
def test_bad_input_exits_2_with_one_line_and_renders_nothing(tmp_path, change, message):
    argv = args(tmp_path / "out", tmp_path / "no-clap")
    argv = [a for a in argv if a not in ("--clap", str(tmp_path / "no-clap"))] + change
    status, _, stderr = run(argv)
    assert status == 2 and message in stderr and stderr.count("\n") == 1
    assert not list((tmp_path / "out").glob("clips/**/*.wav"))


@pytest.fixture(scope="module")
def tempo_banks(tmp_path_factory, tiny):
    """A real regression bank ("tempos", class "value") for the tiny model, fitted on synthetic activations whose
    value is linear in them: the eval's regression path needs a bank of that kind, not a trained one."""
    import torch

    from probes.bank import build_bank

    rng = np.random.default_rng(0)
    L, d = tiny.num_layers, tiny.hidden_size
    x = torch.tensor(rng.standard_normal((L, 40, d)), dtype=torch.float32)
    y = 120 + 30 * x[0, :, 0]
    bank = build_bank("tempos", ["value"], x[:, :30], y[:30], x[:, 30:], y[30:], tiny.signature, k=1,
                      progress=False, hparams={"iters": 1})
    folder = tmp_path_factory.mktemp("banks")
    bank.save(folder / "tempos")
    return folder


def test_a_regression_concept_reports_values(tmp_path, tempo_banks):
    base = ["--model", "tiny", "--bank", str(tempo_banks), "--device", "cpu", "--concept", "tempos", "--prompts", "a",
            "--seeds", "0", "1", "--seconds", "0.5", "--no-progress"]
    status, stdout, stderr = run(base + ["--out", str(tmp_path / "out"), "--experiments", "sweep", "--strengths",
                                         "0.5", "--layer-modes", "uniform", "--gates", "1"])
    assert status == 0, stderr
    rows = table(tmp_path / "out" / "sweep.csv")
    assert [r["condition"] for r in rows] == ["baseline", "s0.5-uniform-p1"]
    for row in rows:
        for metric in ("probe_value", "dsp_value", "fd_acts", "mmd_acts"):
            assert np.isfinite(float(row[metric])), metric
        assert "probe_acc" not in row and 40 <= float(row["dsp_value"]) <= 240
    assert (tmp_path / "out" / "pareto_drift.png").is_file()
    status, _, stderr = run(base + ["--out", str(tmp_path / "out2"), "--experiments", "crossfade"])
    assert status == 2 and "regression bank" in stderr
