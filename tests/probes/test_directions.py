"""Direction methods side by side: each finds a planted direction with its sign, from one activation cache."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import probes.activations as activations_module
from probes.__main__ import main
from probes.bank import ConceptBank
from probes.directions import METHODS, ONE_DIRECTION, fit_directions
from probes.train import BANDWIDTH_MULTIPLES, build_bank, median_distance
from studio.banks import check_model
from studio.errors import BankError
from studio.generate import generate
from studio.model import ModelSignature
from studio.recipe import Control, LayerSpec, ReadoutSpec, Recipe

WIDTH, N_TRAIN, N_VAL = 32, 400, 200
CLASSES = ["a", "b", "c"]
SIGNATURE = ModelSignature(model_id="synthetic", config_hash="ab12ab12ab12ab12", hidden_size=WIDTH, num_layers=2)
OTHERS = [method for method in METHODS if method != "rfm"]


def _planted_axes() -> torch.Tensor:
    """[C, d]: the class means of a centred simplex in a random 3-D subspace, as unit vectors. With means that sum to
    zero, mean(class) - mean(rest) points along the class's own mean: each class's planted direction."""
    basis = torch.linalg.qr(torch.randn(WIDTH, 3, generator=torch.Generator().manual_seed(7)))[0]
    simplex = torch.eye(3) - 1 / 3
    means = simplex @ basis.T
    return means / means.norm(dim=1, keepdim=True)


def _offset() -> torch.Tensor:
    """A large common offset, as real activations have, that every method must see past."""
    return 5 * torch.randn(WIDTH, generator=torch.Generator().manual_seed(8))


def _classes(n: int, seed: int):
    """[2, n, d] activations: layer 0 is noise, layer 1 holds class c at 2 * axis_c; labels [n]."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(CLASSES)
    planted = _offset() + torch.randn(n, WIDTH, generator=gen) + 2 * _planted_axes()[labels]
    return torch.stack([_offset() + torch.randn(n, WIDTH, generator=gen), planted]), labels


def _values(n: int, seed: int):
    """[2, n, d] activations and values: at layer 1 the value is 3 * (x . u) plus noise, u the planted unit vector."""
    gen = torch.Generator().manual_seed(seed)
    u = _planted_axes()[0]
    noise = torch.randn(2, n, WIDTH, generator=gen)
    values = 3 * noise[1] @ u + 0.5 * torch.randn(n, generator=gen)
    return _offset() + noise, values.double(), u


def _bank(method: str, classes, train, val) -> ConceptBank:
    """A bank as train_concept_bank builds it: bandwidths from the training activations' scale."""
    scale = float(np.median([median_distance(layer) for layer in train[0]]))
    hparams = {"bandwidth": [scale * m for m in BANDWIDTH_MULTIPLES], "iters": 3}
    return build_bank(
        "planted", classes, *train, *val, SIGNATURE, method=method, hparams=hparams, device="cpu", progress=False
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_method_finds_each_planted_class_direction_with_its_sign(method):
    bank = _bank(method, CLASSES, _classes(N_TRAIN, 0), _classes(N_VAL, 1))
    assert bank.method == method and bank.num_components == (1 if method in ONE_DIRECTION else 4)
    cos = (bank.directions[1, :, 0] * _planted_axes()).sum(-1)
    assert float(cos.min()) > 0.9, cos  # positive: +v raises the class, as the sign rule says
    assert float(bank.val_score[1].min()) > 0.95 and float(bank.val_score[0].max()) < 0.75
    assert bank.readout_layer == 1  # the scores pick the layer that holds the concept, for the readout as well


@pytest.mark.parametrize("method", METHODS)
def test_every_method_finds_a_planted_value_direction_with_its_sign(method):
    (acts, values, u), (acts_val, values_val, _) = _values(N_TRAIN, 2), _values(N_VAL, 3)
    bank = _bank(method, ["value"], (acts, values), (acts_val, values_val))
    assert bank.val_metric == "r2"
    assert float(bank.directions[1, 0, 0] @ u) > 0.9  # positive: +v raises the value
    assert float(bank.val_score[1, 0]) > 0.8 and float(bank.val_score[0, 0]) < 0.2


def test_mean_difference_is_the_difference_of_the_means():
    acts, labels = _classes(N_TRAIN, 0)
    fits = fit_directions("mean-diff", acts, labels, *_classes(N_VAL, 1), task="multiclass", device="cpu")
    inside = torch.stack([acts[:, labels == c].double().mean(1) for c in range(len(CLASSES))], 1)
    outside = torch.stack([acts[:, labels != c].double().mean(1) for c in range(len(CLASSES))], 1)
    expected = (inside - outside) / (inside - outside).norm(dim=-1, keepdim=True)
    assert fits.directions.shape == (2, len(CLASSES), 1, WIDTH) and fits.eigenvalues is None
    assert torch.allclose(fits.directions[:, :, 0].double(), expected, atol=1e-6)


def test_pca_keeps_k_orthonormal_directions_each_signed_towards_its_class():
    acts, labels = _classes(N_TRAIN, 0)
    fits = fit_directions("pca", acts, labels, *_classes(N_VAL, 1), task="multiclass", k=4, device="cpu")
    assert fits.directions.shape == (2, len(CLASSES), 4, WIDTH)
    gram = fits.directions @ fits.directions.transpose(-1, -2)
    assert torch.allclose(gram, torch.eye(4).expand_as(gram), atol=1e-5)
    assert (fits.eigenvalues.diff(dim=-1) <= 0).all() and (fits.eigenvalues >= 0).all()
    for c in range(len(CLASSES)):
        contrast = acts[1, labels == c].mean(0) - acts[1, labels != c].mean(0)
        assert (fits.directions[1, c] @ contrast >= 0).all()  # every component, not only the first


@pytest.mark.parametrize("method", OTHERS)
def test_the_directions_are_deterministic(method):
    train, val = _classes(N_TRAIN, 0), _classes(N_VAL, 1)
    first, second = (fit_directions(method, *train, *val, task="multiclass", device="cpu") for _ in range(2))
    assert torch.equal(first.directions, second.directions) and torch.equal(first.val_score, second.val_score)


def test_an_unknown_method_is_one_clear_error():
    train, val = _classes(40, 0), _classes(20, 1)
    for call in (
        lambda: fit_directions("svm", *train, *val, task="multiclass"),
        lambda: build_bank("planted", CLASSES, *train, *val, SIGNATURE, method="svm"),
    ):
        with pytest.raises(BankError) as err:
            call()
        assert str(err.value) == "method must be one of rfm, mean-diff, pca, linear, logistic, got 'svm'"


def test_a_one_direction_bank_with_more_directions_is_refused():
    bank = _bank("mean-diff", CLASSES, _classes(N_TRAIN, 0), _classes(N_VAL, 1))
    doubled = replace(bank, directions=bank.directions.repeat(1, 1, 2, 1))
    with pytest.raises(BankError, match="has 2 directions per class, but its method mean-diff gives one"):
        doubled.validate()


NOTES = ["--model", "tiny", "--concept", "notes", "--instruments", "79", "80", "--octaves", "4", "5"]


def test_every_method_trains_from_one_activation_cache_and_its_bank_steers(tiny, tmp_path, monkeypatch):
    cache = ["--cache-dir", str(tmp_path / "acts")]
    forward_passes = []
    extract = activations_module.extract_activations
    monkeypatch.setattr(
        activations_module, "extract_activations", lambda *a, **k: forward_passes.append(1) or extract(*a, **k)
    )
    assert main(["train", *NOTES, *cache, "--out", str(tmp_path / "rfm")]) == 0
    assert forward_passes == [1]

    def no_forward_pass(*_args, **_kwargs):
        raise AssertionError("the activations were computed again")

    monkeypatch.setattr(activations_module, "extract_activations", no_forward_pass)
    for method in OTHERS:
        assert main(["train", *NOTES, *cache, "--method", method, "--out", str(tmp_path / method)]) == 0
        bank = ConceptBank.load(tmp_path / method)
        check_model(bank, tiny.signature)
        assert bank.method == method and json.loads((tmp_path / method / "bank.json").read_text())["method"] == method
        assert bank.num_components == (1 if method in ONE_DIRECTION else 4)
        assert bank.dataset == ConceptBank.load(tmp_path / "rfm").dataset  # the same clips and split

    bank = ConceptBank.load(tmp_path / "mean-diff")
    base = Recipe(seconds=0.5, model="tiny", seed=3, readout=ReadoutSpec("notes"))
    steered = replace(base, controls=(Control("notes", "C", 2.0, layers=LayerSpec(mode="uniform")),))
    plain, pushed = (generate(tiny, recipe, banks={"notes": bank}) for recipe in (base, steered))
    assert pushed.plan is not None and pushed.readout is not None
    assert not np.array_equal(plain.audio, pushed.audio)
