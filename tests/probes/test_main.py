"""`python -m probes train`: the whole pipeline on the tiny model, and its refusals."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import probes.train as train_module
from probes.__main__ import _search_hparams, build_parser, main
from probes.bank import ConceptBank
from probes.train import BANDWIDTH_MULTIPLES, stratified_split
from studio.banks import check_model
from studio.generate import generate
from studio.recipe import Control, LayerSpec, ReadoutSpec, Recipe

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def load_checked(folder, signature):
    """Load a bank as the studio does: the file verified, then checked against the model."""
    bank = ConceptBank.load(folder)
    check_model(bank, signature)
    return bank


TRAIN_NOTES = "train --model tiny --concept notes --instruments 79 80 --octaves 4 5"


def probes(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "probes", *args], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=timeout
    )


def test_stratified_split_keeps_every_class_on_both_sides():
    labels = np.repeat(np.arange(5), 4)
    train, val = stratified_split(labels, 0.25, seed=3, regression=False)
    assert set(labels[train]) == set(labels[val]) == set(range(5))
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(20))
    again = stratified_split(labels, 0.25, seed=3, regression=False)
    assert all(np.array_equal(a, b) for a, b in zip((train, val), again))


def test_train_writes_a_loadable_bank_with_plots_and_a_summary(tiny, tmp_path):
    out = tmp_path / "notes"
    run = probes(*TRAIN_NOTES.split(), "--out", str(out), "--cache-dir", str(tmp_path / "acts"))
    assert run.returncode == 0, run.stderr
    bank = load_checked(out, tiny.signature)
    assert bank.classes[:3] == ["C", "C#", "D"] and bank.directions.shape == (4, 12, 4, 128)
    assert (out / "auc_by_layer.html").exists() and (out / "auc_by_layer.png").stat().st_size > 10_000
    assert "* readout" in run.stdout and run.stdout.count("\n") >= 6  # header + 4 layers + saved line
    assert bank.dataset["n_train"] + bank.dataset["n_val"] == 48
    # the command as typed, for the model card when the bank is published
    assert bank.command == f"python -m probes {TRAIN_NOTES} --out {out} --cache-dir {tmp_path / 'acts'}"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--concept", "harmonics"], "invalid choice"),
        (["--concept", "notes", "--components", "2"], "--components must be at least 4"),
        (["--concept", "notes", "--pooling", "windows"], "invalid choice"),  # a bank's directions must steer
        (["--concept", "notes", "--instruments", "banjo-9000"], "banjo-9000"),
        (["--concept", "notes", "--model", "nobody/none"], "nobody/none"),
        (["--concept", "notes", "--readout-layer", "6"], "--readout-layer must be a decoder layer 0..3 of tiny, got 6"),
        (["--concept", "notes", "--layers", "2", "2"], "--layers names layer(s) 2 more than once"),
        (["--concept", "notes", "--exponents", "2.5"], "--exponents: exponent must lie in (0, 2]"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_leaves_an_existing_bank_alone(tmp_path, args, words):
    out = tmp_path / "bank"
    out.mkdir()
    (out / "bank.json").write_text("{}")
    run = probes("train", *args, "--out", str(out), timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], run.stderr
    assert [p.name for p in out.iterdir()] == ["bank.json"] and (out / "bank.json").read_text() == "{}"


def test_train_on_some_layers_with_a_searched_grid(tiny, tmp_path):
    out = tmp_path / "notes"
    search = (
        "--layers 0 2-3 --exponents 1 1.5 --regs 1e-3 --center-grads search --bandwidth-multiples 1 2 --metric shared"
    )
    run = probes(*TRAIN_NOTES.split(), *search.split(), "--out", str(out), "--cache-dir", str(tmp_path / "acts"))
    assert run.returncode == 0, run.stderr
    bank = load_checked(out, tiny.signature)
    assert bank.layers == (0, 2, 3) and bank.readout_layer in bank.layers
    assert bank.directions[[1]].abs().sum() == 0 and bank.val_score[[1]].isnan().all()
    assert bank.hparams["exponent"] == [1.0, 1.5] and bank.hparams["reg"] == 1e-3
    assert bank.hparams["center_grads"] == [False, True] and len(bank.hparams["bandwidth"]) == 2
    assert bank.hparams["shared_metric"] is True
    rows = [line.split()[0] for line in run.stdout.splitlines()[1:] if line.split()[0].isdigit()]
    assert rows == ["0", "2", "3"]  # untrained layers have no row


def test_default_command_searches_what_it_always_did():
    args = build_parser().parse_args(["train", "--concept", "notes", "--out", "x"])
    assert args.layers is None and args.bandwidth_multiples is None and _search_hparams(args) == {}
    assert BANDWIDTH_MULTIPLES == (0.5, 1.0, 2.0)
    layered = build_parser().parse_args(["train", "--concept", "notes", "--out", "x", "--layers", "5", "0-2"])
    assert layered.layers == [[5], [0, 1, 2]]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--layers", "6"], "--layers must be decoder layers 0..3 of tiny, got 6"),
        (["--layers", "-1", "2"], "--layers must be decoder layers 0..3 of tiny, got -1 2"),
        (["--layers", "1-3", "3"], "--layers names layer(s) 3 more than once"),
        (["--layers"], "expected at least one argument"),
        (["--layers", "4-2"], "--layers range '4-2' is empty"),
        (["--layers", "six"], "--layers takes layer indices or ranges like 4-8, got 'six'"),
        (["--layers", "0", "2", "--readout-layer", "3"], "--readout-layer 3 is not among --layers (0 2)"),
        (["--readout-layer", "12"], "--readout-layer must be a decoder layer 0..3 of tiny, got 12"),
        (["--components", "129"], "--components must be at most the hidden size of tiny (128), got 129"),
        (["--method", "svm"], "argument --method: invalid choice: 'svm'"),
        (["--method", "mean-diff", "--components", "4"], "--method mean-diff finds one direction per layer and class"),
        (["--method", "pca", "--components", "3"], "--components must be at least 4 for --method pca, got 3"),
        (["--regs", "-1"], "--regs: reg must be >= 0"),
        (["--exponents", "0"], "--exponents: exponent must lie in (0, 2]"),
        (["--bandwidth-multiples", "1", "0"], "--bandwidth-multiples must all be > 0"),
        (["--center-grads", "maybe"], "invalid choice: 'maybe'"),
    ],
)
def test_bad_layers_and_search_options_are_refused_before_any_work(tiny, tmp_path, monkeypatch, capsys, args, words):
    def must_not_run(*_args, **_kwargs):
        raise AssertionError("rendering/fitting started despite bad input")

    monkeypatch.setattr(train_module, "train_concept_bank", must_not_run)
    out = tmp_path / "bank"
    out.mkdir()
    (out / "bank.json").write_text("{}")
    status = main(
        [
            "train",
            "--model",
            "tiny",
            "--concept",
            "notes",
            *args,
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "acts"),
        ]
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(errors) == 1 and words in errors[0], errors
    assert [p.name for p in out.iterdir()] == ["bank.json"] and (out / "bank.json").read_text() == "{}"
    assert not (tmp_path / "acts").exists()


def test_an_instruments_bank_trains_reads_and_steers_like_any_other(tiny, tmp_path):
    """Timbre as a concept: the twelve GM families, one program each, every pitch class of octave 4 (144 clips)."""
    one_per_family = "0 11 16 24 33 40 48 56 65 73 80 89".split()
    out = tmp_path / "instruments"
    argv = ["train", "--model", "tiny", "--concept", "instruments", "--instruments", *one_per_family, "--octaves", "4"]
    assert main([*argv, "--out", str(out), "--cache-dir", str(tmp_path / "acts")]) == 0
    bank = load_checked(out, tiny.signature)
    assert bank.classes[:3] == ["Piano", "Chromatic Percussion", "Organ"] and bank.directions.shape == (4, 12, 4, 128)
    # the tiny model's residual stream tells families apart well above chance (0.5), though it learnt ten programs
    assert float(bank.val_score[bank.readout_layer].mean()) > 0.7
    base = Recipe(seconds=0.5, model="tiny", seed=1, readout=ReadoutSpec("instruments"))
    steered = replace(base, controls=(Control("instruments", "Organ", 2.0, layers=LayerSpec(mode="uniform")),))
    plain, pushed = (generate(tiny, recipe, banks={"instruments": bank}) for recipe in (base, steered))
    assert not np.array_equal(plain.audio, pushed.audio)
    assert pushed.readout is not None and len(pushed.readout.classes) == 12


def test_training_keeps_each_layers_typical_residual_norm(tiny, tmp_path):
    """The median over the training clips of each layer's mean residual norm, checked against the norms read here
    with hooks of our own on the decoder layers."""
    from probes.activations import delayed_decoder_input, encode_clips
    from probes.syntheory import load_concept
    from probes.train import stratified_split

    out = tmp_path / "notes"
    assert main([*TRAIN_NOTES.split(), "--out", str(out), "--cache-dir", str(tmp_path / "acts")]) == 0
    bank = load_checked(out, tiny.signature)
    data = load_concept("notes", instruments=[79, 80], octaves=[4, 5], progress=False)
    train, _ = stratified_split(data.labels, 0.25, 0, regression=False)
    norms = []  # [clips, L]
    for clip in data.audio[train]:
        codes = encode_clips(tiny, torch.from_numpy(clip[None].astype(np.float32)))
        ids = delayed_decoder_input(codes, tiny.model.config.decoder.pad_token_id)
        seen = []
        hooks = [layer.register_forward_hook(lambda _m, _i, out: seen.append(out)) for layer in tiny.decoder_layers()]
        try:
            text = tiny.tokenizer([""], return_tensors="pt")
            with torch.inference_mode():
                tiny.model(**text, decoder_input_ids=ids.reshape(tiny.num_codebooks, -1), use_cache=False)
        finally:
            for hook in hooks:
                hook.remove()
        norms.append([float(states[0].norm(dim=-1).mean()) for states in seen])
    expected = torch.tensor(norms).median(dim=0).values
    torch.testing.assert_close(bank.residual_norm, expected, rtol=1e-4, atol=0)
    assert bank.residual_norm.shape == (tiny.num_layers,) and (bank.residual_norm > 1).all()
