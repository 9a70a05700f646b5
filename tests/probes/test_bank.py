"""Tests for probes/bank.py: build, save/load round trip, refusal of damaged banks and of banks for another model."""

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import probes.bank as bank_module
from probes.bank import META_FILE, TENSORS_FILE, ConceptBank
from probes.train import build_bank
from studio.banks import check_model
from studio.errors import BankError
from studio.model import ModelSignature

CLASSES = ["C", "D", "E", "F"]
LAYERS, WIDTH, N_TRAIN, N_VAL = 3, 16, 240, 120
SIGNATURE = ModelSignature(model_id="tiny", config_hash="ab12ab12ab12ab12", hidden_size=WIDTH, num_layers=LAYERS)
HPARAMS = {"iters": 3, "bandwidth": 10.0}


def load_checked(folder, signature):
    """Load a bank as the studio does: the file verified, then checked against the model."""
    bank = ConceptBank.load(folder)
    check_model(bank, signature)
    return bank


def _class_axes() -> torch.Tensor:
    """Class c is planted along its own unit direction (fixed per test run)."""
    return torch.linalg.qr(torch.randn(WIDTH, len(CLASSES), generator=torch.Generator().manual_seed(1)))[0].T


def _activations(n: int, seed: int, strength: tuple[float, ...] = (0.3, 1.5, 3.0)):
    """[L, n, d] stand-in pooled activations: class signal grows with depth, so layer 2 reads best."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(CLASSES)
    signal = torch.nn.functional.one_hot(labels, len(CLASSES)).float() @ _class_axes()
    acts = torch.stack([torch.randn(n, WIDTH, generator=gen) + s * signal for s in strength])
    return acts, labels


def fit_notes(**options) -> ConceptBank:
    """The notes bank of the synthetic activations, k = 4, on the CPU; `options` go to build_bank."""
    acts, y = _activations(N_TRAIN, 2)
    acts_val, y_val = _activations(N_VAL, 3)
    defaults = dict(k=4, hparams=HPARAMS, device="cpu", progress=False)
    return build_bank("notes", CLASSES, acts, y, acts_val, y_val, SIGNATURE, **(defaults | options))


@pytest.fixture(scope="module")
def bank() -> ConceptBank:
    return fit_notes(dataset={"concept": "notes", "n_clips": N_TRAIN + N_VAL, "seed": 0})


@pytest.fixture
def saved(bank, tmp_path):
    path = tmp_path / "banks" / "notes"
    bank.save(path)
    return path


def _rewrite_tensors(path, edit):
    """Replace the bank's tensors with edit(tensors) and record the new checksum, as buggy training code would."""
    tensors = load_file(str(path / TENSORS_FILE))
    edit(tensors)
    save_file(tensors, str(path / TENSORS_FILE))
    meta = json.loads((path / META_FILE).read_text())
    meta["sha256"] = hashlib.sha256((path / TENSORS_FILE).read_bytes()).hexdigest()
    (path / META_FILE).write_text(json.dumps(meta))


def test_build_gives_signed_unit_directions_and_a_readout(bank):
    assert bank.directions.shape == (LAYERS, len(CLASSES), 4, WIDTH)
    assert bank.directions.dtype == torch.float32
    assert torch.allclose(bank.directions.norm(dim=-1), torch.ones(LAYERS, len(CLASSES), 4), atol=1e-5)
    assert bank.val_score.shape == (LAYERS, len(CLASSES)) and bank.val_metric == "auc"
    assert bank.readout_layer == int(bank.val_score.mean(1).argmax()) == 2
    assert float(bank.val_score[2].min()) >= 0.95
    # A one-vs-rest probe of class c separates c from the rest: its top direction is the contrast axis_c - mean(others),
    # signed toward class c.
    axes = _class_axes()
    contrast = axes - (axes.sum(0, keepdim=True) - axes) / (len(CLASSES) - 1)
    cos = (bank.directions[2, :, 0, :] * contrast / contrast.norm(dim=1, keepdim=True)).sum(-1)
    assert float(cos.min()) >= 0.9
    acts_val, y_val = _activations(N_VAL, 3)
    proba = bank.readout.predict_proba(acts_val[bank.readout_layer])
    assert proba.shape == (N_VAL, len(CLASSES))
    assert (proba.argmax(1) == y_val).float().mean() >= 0.9


def test_round_trip_is_exact(bank, saved):
    assert sorted(p.name for p in saved.iterdir()) == [META_FILE, TENSORS_FILE]  # safetensors + JSON, no pickle
    assert saved.stat().st_mode & 0o777 == 0o755  # readable by others (a Space)
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in saved.iterdir())
    loaded = load_checked(saved, SIGNATURE)
    for name in ("directions", "val_score", "eigenvalues"):
        assert torch.equal(getattr(loaded, name), getattr(bank, name))
    for name in ("concept", "classes", "readout_layer", "signature", "pooling", "hparams", "dataset", "val_metric"):
        assert getattr(loaded, name) == getattr(bank, name)
    X = _activations(N_VAL, 3)[0][bank.readout_layer]
    assert torch.equal(loaded.readout.predict_proba(X), bank.readout.predict_proba(X))
    meta = json.loads((saved / META_FILE).read_text())
    assert meta["K"] == 4 and meta["tensors"]["directions"] == [LAYERS, len(CLASSES), 4, WIDTH]
    assert meta["sha256"] == hashlib.sha256((saved / TENSORS_FILE).read_bytes()).hexdigest()


def test_the_method_is_recorded_and_a_bank_without_one_is_an_rfm_bank(saved):
    meta = json.loads((saved / META_FILE).read_text())
    assert meta["method"] == "rfm"
    del meta["method"]  # as banks saved before methods existed
    (saved / META_FILE).write_text(json.dumps(meta))
    assert ConceptBank.load(saved).method == "rfm"
    meta["method"] = "svm"
    (saved / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BankError, match="has method 'svm'; expected one of rfm, mean-diff, pca, linear, logistic"):
        ConceptBank.load(saved)


@pytest.mark.parametrize(
    "field,value",
    [
        ("model_id", "facebook/musicgen-small"),
        ("config_hash", "cd34cd34cd34cd34"),
        ("hidden_size", 1024),
        ("num_layers", 24),
    ],
)
def test_bank_for_another_model_is_refused(saved, field, value):
    other = dataclasses.replace(SIGNATURE, **{field: value})
    with pytest.raises(BankError) as err:
        load_checked(saved, other)
    message = str(err.value)
    assert "tiny (config ab12ab12ab12ab12, 3 layers, d=16)" in message
    assert f"{other.model_id} (config {other.config_hash}, {other.num_layers} layers, d={other.hidden_size})" in message


def test_truncated_file_is_refused(saved):
    data = (saved / TENSORS_FILE).read_bytes()
    (saved / TENSORS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(BankError, match="damaged.*python -m probes train --model tiny --concept notes"):
        ConceptBank.load(saved)


def test_flipped_bytes_are_refused(saved):
    data = bytearray((saved / TENSORS_FILE).read_bytes())
    data[-20] ^= 0xFF
    (saved / TENSORS_FILE).write_bytes(bytes(data))
    with pytest.raises(BankError, match="damaged"):
        ConceptBank.load(saved)


def test_corrupted_metadata_is_refused(saved):
    (saved / META_FILE).write_text('{"format": "musicrfm-concept-bank", "version": 1, "conc')
    with pytest.raises(BankError, match="damaged"):
        ConceptBank.load(saved)


def test_missing_bank_is_refused(tmp_path):
    with pytest.raises(BankError, match="no concept bank"):
        ConceptBank.load(tmp_path / "nowhere")


def test_nan_direction_is_refused(saved):
    def poison(t):
        t["directions"][1, 2, 0, 5] = float("nan")

    _rewrite_tensors(saved, poison)
    with pytest.raises(BankError, match="NaN.*layer 1, class 'E'"):
        ConceptBank.load(saved)


def test_zero_norm_direction_is_refused(saved):
    def zero(t):
        t["directions"][0, 3, 2] = 0.0

    _rewrite_tensors(saved, zero)
    with pytest.raises(BankError, match="zero-norm.*layer 0, class 'F', component 2"):
        ConceptBank.load(saved)


def test_saving_a_broken_bank_is_refused(bank, tmp_path):
    broken = dataclasses.replace(bank, directions=bank.directions.clone())
    broken.directions[0, 0, 0] = float("nan")
    with pytest.raises(BankError, match="NaN"):
        broken.save(tmp_path / "broken")
    assert not (tmp_path / "broken").exists()


def test_unknown_class_names_the_available_ones(bank):
    assert bank.class_index("E") == 2
    with pytest.raises(BankError, match="no class 'H'.*C, D, E, F"):
        bank.class_index("H")


@pytest.mark.parametrize("failing", ["save_file", "_write_text", "_swap_into_place"])
def test_failed_save_leaves_the_old_bank_untouched(bank, saved, monkeypatch, failing):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    original = getattr(bank_module, failing)

    def write_then_fail(*args, **kwargs):
        if failing != "_swap_into_place":
            original(*args, **kwargs)  # a half-finished write ...
        raise OSError("disk full")  # ... then the failure

    monkeypatch.setattr(bank_module, failing, write_then_fail)
    changed = dataclasses.replace(bank, concept="notes-v2")
    with pytest.raises(BankError, match="could not save .*disk full.*nothing there was changed"):
        changed.save(saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["notes"]  # no temporary folders left
    assert load_checked(saved, SIGNATURE).concept == "notes"


def test_failed_final_rename_restores_the_old_bank(bank, saved, monkeypatch):
    """The old folder is moved aside before the new one is renamed in; if that rename fails it comes back."""
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    real_rename = bank_module.os.rename

    def rename(src, dst):
        if ".tmp-" in str(src):
            raise OSError("rename refused")
        real_rename(src, dst)

    monkeypatch.setattr(bank_module.os, "rename", rename)
    with pytest.raises(BankError, match="rename refused"):
        dataclasses.replace(bank, concept="notes-v2").save(saved)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["notes"]


def test_unwritable_destination_is_a_bank_error(bank, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(BankError, match="not a folder"):
        bank.save(tmp_path / "file")
    with pytest.raises(BankError, match="could not save"):
        bank.save(tmp_path / "file" / "inside")


def test_saving_over_a_bank_replaces_it_and_keeps_other_files(bank, saved):
    (saved / "auc_by_layer.html").write_text("<html></html>")
    dataclasses.replace(bank, concept="notes-v2").save(saved)
    assert ConceptBank.load(saved).concept == "notes-v2"
    assert (saved / "auc_by_layer.html").read_text() == "<html></html>"
    assert sorted(p.name for p in saved.parent.iterdir()) == ["notes"]


def test_regression_bank_stores_r2_and_a_value_readout(tmp_path):
    axis = _class_axes()[0]

    def data(n, seed):
        acts = torch.randn(LAYERS, n, WIDTH, generator=torch.Generator().manual_seed(seed))
        return acts, 120 + 40 * torch.tanh(acts[2] @ axis)  # tempo read from layer 2

    acts, bpm = data(300, 5)
    acts_val, bpm_val = data(150, 6)
    tempo = build_bank(
        "tempos", ["value"], acts, bpm, acts_val, bpm_val, SIGNATURE, k=4, hparams=HPARAMS, device="cpu", progress=False
    )
    assert tempo.val_metric == "r2" and tempo.readout_layer == 2 and float(tempo.val_score[2, 0]) >= 0.8
    assert float(tempo.directions[2, 0, 0] @ axis) >= 0.9  # signed to raise the tempo
    tempo.save(tmp_path / "tempos")
    loaded = load_checked(tmp_path / "tempos", SIGNATURE)
    assert loaded.val_metric == "r2"
    assert torch.equal(loaded.readout.predict(acts_val[2]), tempo.readout.predict(acts_val[2]))


def test_build_refuses_bad_input():
    acts, y = _activations(N_TRAIN, 2)
    acts_val, y_val = _activations(N_VAL, 3)
    with pytest.raises(BankError, match=r"expected \[3, n, 16\]"):
        build_bank("notes", CLASSES, acts[:2], y, acts_val[:2], y_val, SIGNATURE, hparams=HPARAMS, progress=False)
    with pytest.raises(BankError, match="pooling"):
        build_bank("notes", CLASSES, acts, y, acts_val, y_val, SIGNATURE, pooling="median", progress=False)
    with pytest.raises(BankError, match="unknown RFM hyper-parameter"):
        build_bank("notes", CLASSES, acts, y, acts_val, y_val, SIGNATURE, hparams={"bandwith": 2}, progress=False)
    with pytest.raises(BankError, match="class 3 has no examples in the validation split"):
        build_bank(
            "notes",
            CLASSES,
            acts,
            y,
            acts_val[:, y_val < 3],
            y_val[y_val < 3],
            SIGNATURE,
            hparams=HPARAMS,
            progress=False,
        )


def test_bank_for_the_tiny_model_loads_against_its_signature(tiny, tmp_path):
    sig = tiny.signature
    gen = torch.Generator().manual_seed(7)
    labels = torch.arange(96) % 3
    acts = torch.randn(sig.num_layers, 96, sig.hidden_size, generator=gen)
    acts[:, :, :3] += 3 * torch.nn.functional.one_hot(labels, 3)
    tiny_bank = build_bank(
        "chords",
        ["major", "minor", "diminished"],
        acts[:, :64],
        labels[:64],
        acts[:, 64:],
        labels[64:],
        sig,
        hparams={"iters": 2},
        device="cpu",
        progress=False,
    )
    tiny_bank.save(tmp_path / "chords")
    loaded = load_checked(tmp_path / "chords", sig)
    assert loaded.signature == sig and loaded.directions.shape == (sig.num_layers, 3, 4, sig.hidden_size)
    with pytest.raises(BankError, match="trained for tiny"):
        load_checked(tmp_path / "chords", dataclasses.replace(sig, num_layers=sig.num_layers + 1))


# ------------------------------------------------------------------------------------------ banks on a subset of layers


@pytest.fixture(scope="module")
def partial(bank) -> ConceptBank:
    return fit_notes(layers=(0, 1))


def test_partial_bank_trains_the_listed_layers_only(bank, partial):
    assert partial.layers == (0, 1) and bank.layers == (0, 1, 2)
    assert partial.directions.shape == bank.directions.shape  # layer indices keep their meaning
    assert torch.isnan(partial.val_score[2]).all() and not torch.isnan(partial.val_score[:2]).any()
    assert partial.directions[2].abs().sum() == 0 and partial.eigenvalues[2].abs().sum() == 0
    # The trained layers get the same probes as in a bank of every layer.
    torch.testing.assert_close(partial.val_score[:2], bank.val_score[:2], atol=1e-5, rtol=0)
    cos = (partial.directions[:2, :, 0] * bank.directions[:2, :, 0]).sum(-1)
    assert float(cos.min()) >= 0.999
    assert partial.readout_layer == 1  # the best trained layer, not layer 2
    assert partial.trained_val_score.shape == (2, len(CLASSES)) and partial.describe_layers() == "layers 0, 1 of 3"


def test_partial_bank_round_trip_records_its_layers(partial, tmp_path):
    partial.save(tmp_path / "notes")
    assert json.loads((tmp_path / "notes" / META_FILE).read_text())["layers"] == [0, 1]
    loaded = load_checked(tmp_path / "notes", SIGNATURE)
    assert loaded.layers == (0, 1) and loaded.readout_layer == 1
    assert torch.equal(loaded.directions, partial.directions)
    assert torch.equal(torch.isnan(loaded.val_score), torch.isnan(partial.val_score))


def test_bank_saved_without_a_layer_list_holds_every_layer(saved):
    meta = json.loads((saved / META_FILE).read_text())
    del meta["layers"]  # as banks saved before the field
    (saved / META_FILE).write_text(json.dumps(meta))
    assert load_checked(saved, SIGNATURE).layers == (0, 1, 2)


@pytest.mark.parametrize("concept", ["notes", "chords"])
def test_committed_tiny_banks_fit_the_committed_tiny_model_at_every_layer(tiny, concept):
    folder = Path(__file__).resolve().parents[2] / "assets" / "banks" / "tiny" / concept
    committed = load_checked(folder, tiny.signature)
    assert committed.layers == tuple(range(tiny.num_layers))


@pytest.mark.parametrize(
    "layers, readout, words",
    [
        ((), "best", "at least one decoder layer"),
        ((0, 3), "best", r"decoder layers 0..2, got \[0, 3\]"),
        ((1, 1), "best", "each layer once"),
        ((2, 0), "best", "ascending"),
        ((0, 1), 2, "readout_layer must be 'best' or one of the trained layers 0, 1, got 2"),
    ],
)
def test_build_refuses_bad_layer_lists_and_an_untrained_readout_layer(layers, readout, words):
    with pytest.raises(BankError, match=words):
        fit_notes(layers=layers, readout_layer=readout)


def test_validate_keeps_untrained_layers_untrained(partial, tmp_path):
    with pytest.raises(BankError, match="readout layer 2, which is not one of its trained layers 0, 1 of 3"):
        dataclasses.replace(partial, readout_layer=2).validate()
    stray = dataclasses.replace(partial, directions=partial.directions.clone())
    stray.directions[2, 0, 0, 0] = 1.0
    with pytest.raises(BankError, match="directions on layers it was not trained on"):
        stray.validate()
    scored = dataclasses.replace(partial, val_score=partial.val_score.nan_to_num(0.5))
    with pytest.raises(BankError, match="validation scores on layers it was not trained on"):
        scored.validate()
    with pytest.raises(BankError, match="NaN/infinite validation scores"):
        dataclasses.replace(partial, layers=(0, 1, 2)).validate()  # a trained layer needs a score
    partial.save(tmp_path / "notes")
    meta = json.loads((tmp_path / "notes" / META_FILE).read_text())
    meta["layers"] = [0, 1, 7]
    (tmp_path / "notes" / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BankError, match=r"trained layers of the concept bank at .* 0..2, got \[0, 1, 7\]"):
        ConceptBank.load(tmp_path / "notes")


def test_auc_figure_shows_the_trained_layers_only(partial):
    from probes.figures import auc_by_layer_figure

    fig = auc_by_layer_figure(partial)
    assert all(list(trace.x) == [0, 1] for trace in fig.data)
    assert all(all(v == v for v in trace.y) for trace in fig.data)  # no NaN plotted
    assert list(fig.data[-1].y) == pytest.approx(partial.val_score[:2].mean(1).tolist())


def test_the_residual_norm_is_kept_checked_and_absent_from_older_banks(tmp_path):
    norm = torch.tensor([3.5, 5.25, 9.0])
    path = tmp_path / "notes"
    fit_notes(residual_norm=norm).save(path)
    assert torch.equal(ConceptBank.load(path).residual_norm, norm)
    _rewrite_tensors(path, lambda tensors: tensors.pop("residual_norm"))  # as a bank saved before it was measured
    meta = json.loads((path / META_FILE).read_text())
    del meta["tensors"]["residual_norm"]
    (path / META_FILE).write_text(json.dumps(meta))
    assert ConceptBank.load(path).residual_norm is None
    for bad in (torch.tensor([3.5, 0.0, 9.0]), torch.tensor([3.5, float("nan"), 9.0]), torch.tensor([1.0, 2.0])):
        with pytest.raises(BankError, match="residual norms"):
            fit_notes(residual_norm=bad)
