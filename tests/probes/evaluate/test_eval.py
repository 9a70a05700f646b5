"""`python -m probes eval` end to end on the tiny model and the committed tiny banks, with a tiny random CLAP: every
metric computed, every file written, the numbers traceable to the stored clips, and a second run reusing every clip.
The clips are too short (0.5 s) and too few for the values to measure steering; test_experiment.py does that."""

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from probes import transcribe
from probes.__main__ import main as probes_main
from probes.activations import extract_activations
from probes.bank import ConceptBank
from probes.evaluate.clap import ClapScorer, save_tiny_clap
from probes.evaluate.dsp import TEMPO_TOLERANCE, estimate_pitch_class, estimate_tempo
from probes.evaluate.measure import transcription_check
from probes.evaluate.metrics import direction_cosines, frechet_distance, probe_readout
from probes.evaluate.timing import switch_time, window_centres
from studio.banks import BANKS_DIR
from studio.recipe import load_recipe

BANKS = BANKS_DIR / "tiny"
CONDITIONS = ["s0.3-exp0.95-p0.3", "s0.3-uniform-p0.3", "s0.3-top2-p0.3", "s0.3-exp0.95-p1"]
FIGURES = ["pareto_drift", "pareto_clap", "crossfade", "interference"]
# basic-pitch's columns are there when it is installed (./setup.sh dev installs it)
TRANSCRIBED = ("bp_acc",) if transcribe.unavailable() is None else ()
TABLES = ["clips.csv", "sweep.csv", "crossfade.csv", "multi.csv", "interference.csv"]

pytestmark = pytest.mark.skipif(
    not (BANKS / "notes").is_dir() or not (BANKS / "chords").is_dir(),
    reason="the committed tiny banks (assets/banks/tiny/notes, chords) are missing",
)


def args(out: Path, clap: Path) -> list[str]:
    options = (
        "--model tiny --bank tiny --device cpu --targets C G --seeds 0 1 --seconds 0.5 --strengths 0.3 "
        "--layer-modes exp0.95 uniform top2 top8 top16 --gates 0.3 1 --readout-window 0.1 "
        "--crossfade-strength 2 --multi-pairs C:major G:minor --bootstrap 200 --no-progress"
    )
    return ["--out", str(out), "--prompts", "a note on a piano", "--clap", str(clap), *options.split()]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = probes_main(["eval", *argv])
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
        for metric in ("probe_acc", "probe_p_target", "dsp_acc", "dsp_support", "clap", *TRANSCRIBED):
            low, mean, high = (float(row[f"{metric}{s}"]) for s in ("_low", "", "_high"))
            assert np.isfinite(mean) and low <= mean <= high, (row["condition"], metric)
        for metric in ("fd_acts", "mmd_acts", "fd_clap", "mmd_clap"):
            assert np.isfinite(float(row[metric])), (row["condition"], metric)
        assert float(row["fd_acts"]) >= 0 and float(row["fd_clap"]) >= 0
    assert float(rows[0]["fd_acts"]) == 0.0  # sanity check only: the baseline against itself
    # the real check: every condition's means are the means of its own per-clip rows in clips.csv
    clips = [r for r in table(out / "clips.csv") if r["experiment"] == "sweep"]
    for row in rows:
        mine = [r for r in clips if r["condition"] == row["condition"]]
        for column, mean in (
            ("probe_hit", "probe_acc"),
            ("probe_p_target", "probe_p_target"),
            ("dsp_hit", "dsp_acc"),
            ("clap", "clap"),
            *(("bp_hit", "bp_acc") for _ in TRANSCRIBED),
        ):
            assert float(row[mean]) == pytest.approx(np.mean([float(r[column]) for r in mine]), abs=1e-12), mean


def test_top_ks_above_the_tiny_model_layers_run_once_as_uniform_and_say_so(evaluation):
    """top8 and top16 need more than the 3 steerable layers of the tiny model: clamped to all 3 at weight 1 they are
    uniform, so they are not rendered again, and the table, summary and stdout say which conditions were merged."""
    out, _, stdout, _ = evaluation
    rows = {r["condition"]: r for r in table(out / "sweep.csv")}
    assert not any("top8" in name or "top16" in name for name in rows)
    assert rows["s0.3-uniform-p0.3"]["requested"] == "s0.3-uniform-p0.3 s0.3-top8-p0.3 s0.3-top16-p0.3"
    assert rows["s0.3-top2-p0.3"]["requested"] == "s0.3-top2-p0.3"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["transcription"]["status"] == ("ok" if TRANSCRIBED else "skipped")
    sweep = summary["sweep"]
    assert sweep["clamped"] == {"top8": 3, "top16": 3}
    assert sweep["merged"] == [
        {"kept": "s0.3-uniform-p0.3", "requested": ["s0.3-uniform-p0.3", "s0.3-top8-p0.3", "s0.3-top16-p0.3"]}
    ]
    assert sorted(p.name for p in (out / "clips" / "sweep").iterdir()) == sorted(CONDITIONS)
    assert "top16 asks for more layers than the model steers: run with k=3" in stdout
    assert "run once as s0.3-uniform-p0.3: s0.3-uniform-p0.3, s0.3-top8-p0.3, s0.3-top16-p0.3" in stdout


def test_clip_rows_match_an_independent_measurement_of_the_stored_files(evaluation, tiny):
    out, clap = evaluation[0], evaluation[1]
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
        assert float(row["probe_p_target"]) == pytest.approx(
            readout.probabilities[i, bank.class_index(row["target"])], rel=1e-4
        )
        assert float(row["probe_hit"]) == float(row["probe_pred"] == row["target"])
        assert row["dsp_pred"] == estimate_pitch_class(audio[row["file"]], 32000).name
        if TRANSCRIBED:  # what basic-pitch hears in the stored file, transcribed afresh
            heard = transcription_check("notes", audio[row["file"]], 32000)
            assert (row["bp_pred"], float(row["bp_hit"])) == (heard.predicted, float(heard.predicted == row["target"]))
    # CLAP of each stored clip against its prompt, scored afresh from the WAV and the checkpoint folder
    prompts = [next(r["prompt"] for r in rows if r["file"] == f) for f in files]
    scores = ClapScorer.load(clap, device="cpu").score([audio[f] for f in files], 32000, prompts)
    for row in rows:
        assert float(row["clap"]) == pytest.approx(scores.similarities[files.index(row["file"])], abs=1e-5)
    # the drift of one condition, recomputed from its files: mean over targets of FD(target's clips, baseline)
    acts = {f: pooled[files.index(f), bank.readout_layer].double().numpy() for f in files}
    baseline = np.stack([acts[f] for f in sorted({r["file"] for r in rows if r["condition"] == "baseline"})])
    fds = [
        frechet_distance(
            np.stack(
                [acts[r["file"]] for r in rows if r["condition"] == "s0.3-uniform-p0.3" and r["target"] == target]
            ),
            baseline,
        )
        for target in ("C", "G")
    ]
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


def test_crossfade_times_and_thirds(evaluation, tiny):
    out, clap = evaluation[0], evaluation[1]
    rows = table(out / "crossfade.csv")
    assert len(rows) == 2
    notes = ConceptBank.load(BANKS / "notes")
    scorer = ClapScorer.load(clap, device="cpu")
    for row in rows:
        assert float(row["scheduled_s"]) == pytest.approx(0.25)  # the midpoint of a 0.5 s linear crossfade
        # the measured crossover, recomputed from the readout stored in the clip's render record
        record = json.loads((out / row["file"]).with_suffix(".json").read_text())
        window = np.array([step["window"] for step in record["readout"]["steps"]])
        centres = window_centres(len(window), record["readout"]["window_steps"], tiny.frame_rate)
        expected = switch_time(centres, window[:, notes.class_index("G")] - window[:, notes.class_index("C")])
        assert expected is not None and row["crossover"] == "crossed"  # steering does move the tiny readout
        assert float(row["measured_s"]) == pytest.approx(expected, abs=1e-12)
        assert float(row["error_s"]) == pytest.approx(float(row["measured_s"]) - 0.25)
        assert row["first_third_probe_pred"] and row["last_third_probe_pred"] and row["first_third_dsp_pred"]
        recipe = load_recipe((out / row["file"]).with_suffix(".json"))
        assert [c.class_name for c in recipe.controls] == ["C", "G"] and recipe.readout.concept == "notes"
        audio = sf.read(out / row["file"], dtype="float32")[0]
        assert float(row["clap"]) == pytest.approx(
            scorer.score([audio], 32000, [row["prompt"]]).similarities[0], abs=1e-5
        )
    summary = json.loads((out / "summary.json").read_text())["crossfade"]
    assert summary["no_crossover"] == 0 and summary["n_clips"] == 2
    assert summary["measured_s"]["mean"] == pytest.approx(np.mean([float(r["measured_s"]) for r in rows]))
    assert summary["mean_abs_error_s"] == pytest.approx(np.mean([abs(float(r["error_s"])) for r in rows]))
    for metric in ("fd_acts", "mmd_acts", "fd_clap", "mmd_clap", "clap", "first_third_probe_acc", "last_third_dsp_acc"):
        assert np.isfinite(summary[metric]), metric


def test_multi_concept_accuracy_and_interference(evaluation):
    out = evaluation[0]
    rows = table(out / "multi.csv")
    assert [(r["pair"], r["concept"], r["target"]) for r in rows] == [
        ("C+major", "notes", "C"),
        ("C+major", "chords", "major"),
        ("G+minor", "notes", "G"),
        ("G+minor", "chords", "minor"),
    ]
    for row in rows:
        for metric in ("probe_acc", "baseline_probe_acc", "dsp_acc", "baseline_dsp_acc", "clap", "fd_acts"):
            assert np.isfinite(float(row[metric])), metric
        assert row["condition"] == "s0.6-exp0.95-p0.3"  # the paper's notes + chords strength, by default
    for row in (r for r in table(out / "clips.csv") if r["experiment"] == "multi"):
        recipe = load_recipe((out / row["file"]).with_suffix(".json"))
        assert [c.strength for c in recipe.controls] == [0.6, 0.6]
    notes, chords = ConceptBank.load(BANKS / "notes"), ConceptBank.load(BANKS / "chords")
    cosines = [r for r in table(out / "interference.csv") if r["pair"] == "G+minor"]
    expected = direction_cosines(
        notes.directions[:, notes.class_index("G"), 0], chords.directions[:, chords.class_index("minor"), 0]
    )
    np.testing.assert_allclose([float(r["cosine"]) for r in cosines], expected, atol=1e-9)


def test_a_second_run_reuses_every_clip_and_gives_the_same_tables(evaluation):
    out, clap, _, snapshot = evaluation
    status, stdout, stderr = run(args(out, clap))
    assert status == 0, stderr
    assert "0 rendered, 24 reused" in stdout
    for name, content in snapshot.items():
        assert (out / name).read_bytes() == content, name


@pytest.mark.parametrize(
    "change, message",
    [
        (["--clap", "/nonexistent/clap"], "does not exist"),
        (["--clap", "{tmp}/630k-audioset-best.pt"], "is a file, but --clap expects a folder"),
        (["--targets", "C", "H"], "no class 'H'"),
        (["--seeds", "0"], "at least two"),
        (["--layer-modes", "top"], "unknown layer mode"),
        (["--target-bpm", "120"], "--target-bpm is the target of the tempos concept"),
        (["--crossfade-span", "0.6"], "--crossfade-span must be positive and at most the clip (0.5 s), got 0.6"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_renders_nothing(tmp_path, change, message):
    (tmp_path / "630k-audioset-best.pt").write_bytes(b"laion-clap weights")
    argv = args(tmp_path / "out", tmp_path / "no-clap")
    argv = [a for a in argv if a not in ("--clap", str(tmp_path / "no-clap"))]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in change]
    status, _, stderr = run(argv)
    assert status == 2 and message in stderr and stderr.count("\n") == 1
    assert not list((tmp_path / "out").glob("clips/**/*.wav"))


@pytest.fixture(scope="module")
def tempo_banks(tmp_path_factory, tiny):
    """A real regression bank ("tempos", class "value") for the tiny model, fitted on synthetic activations whose
    value is linear in them: the eval's regression path needs a bank of that kind, not a trained one."""
    import torch

    from probes.train import build_bank

    rng = np.random.default_rng(0)
    L, d = tiny.num_layers, tiny.hidden_size
    x = torch.tensor(rng.standard_normal((L, 40, d)), dtype=torch.float32)
    y = 120 + 30 * x[0, :, 0]
    bank = build_bank(
        "tempos",
        ["value"],
        x[:, :30],
        y[:30],
        x[:, 30:],
        y[30:],
        tiny.signature,
        k=1,
        progress=False,
        hparams={"iters": 1},
    )
    folder = tmp_path_factory.mktemp("banks")
    bank.save(folder / "tempos")
    return folder


def test_a_regression_concept_reports_values_and_tempo_hits(tmp_path, tempo_banks):
    """Tempos: the DSP tempo of every clip, recomputed from its WAV, and with --target-bpm a hit within 4% of it, so
    the table has a DSP accuracy as notes and chords do."""
    base = [
        "--model",
        "tiny",
        "--bank",
        str(tempo_banks),
        "--device",
        "cpu",
        "--concept",
        "tempos",
        "--prompts",
        "a",
        "--seeds",
        "0",
        "1",
        "--seconds",
        "0.5",
        "--no-progress",
    ]
    out = tmp_path / "out"
    status, stdout, stderr = run(
        base
        + [
            "--out",
            str(out),
            "--experiments",
            "sweep",
            "--strengths",
            "0.5",
            "--layer-modes",
            "uniform",
            "--gates",
            "1",
            "--target-bpm",
            "120",
        ]
    )
    assert status == 0, stderr
    rows = table(out / "sweep.csv")
    assert [r["condition"] for r in rows] == ["baseline", "s0.5-uniform-p1"]
    clips = table(out / "clips.csv")
    for row in rows:
        for metric in ("probe_value", "dsp_value", "fd_acts", "mmd_acts"):
            assert np.isfinite(float(row[metric])), metric
        assert "probe_acc" not in row
        mine = [r for r in clips if r["condition"] == row["condition"]]
        tempos = [estimate_tempo(sf.read(out / r["file"], dtype="float32")[0], 32000).bpm for r in mine]
        hits = [float(abs(bpm - 120) <= TEMPO_TOLERANCE * 120) for bpm in tempos]
        assert [float(r["dsp_value"]) for r in mine] == pytest.approx(tempos, rel=1e-9)
        assert [float(r["dsp_hit"]) for r in mine] == hits and all(r["target_bpm"] == "120.0" for r in mine)
        assert float(row["dsp_value"]) == pytest.approx(np.mean(tempos))
        assert float(row["dsp_acc"]) == pytest.approx(np.mean(hits))
    assert (out / "pareto_drift.png").is_file()
    status, _, stderr = run(base + ["--out", str(tmp_path / "out2"), "--experiments", "crossfade"])
    assert status == 2 and "regression bank" in stderr
