"""Tests for studio/plan.py: layer weights, gates and the coefficient tensor against their closed forms."""

import math

import numpy as np
import pytest
import torch

from bench.workloads import random_bank
from studio.model import ModelSignature
from studio.plan import build_plan, coefficients, draw_gates, layer_weights, strongest_push
from studio.recipe import Control, LayerSpec, Recipe
from studio.schedules import Constant, Linear

SIGNATURE = ModelSignature("tiny", "0123456789abcdef", hidden_size=8, num_layers=6)
AUC = torch.tensor([0.50, 0.90, 0.60, 0.90, 0.70, 0.80])


def test_uniform_defaults_to_all_layers_but_the_first():
    assert layer_weights(LayerSpec(mode="uniform"), AUC).tolist() == [0, 1, 1, 1, 1, 1]
    assert layer_weights(LayerSpec(mode="uniform", layers=(0, 4)), AUC).tolist() == [1, 0, 0, 0, 1, 0]


def test_topk_takes_the_highest_auc_layers_lower_layer_first_on_ties():
    assert layer_weights(LayerSpec(mode="topk", k=2), AUC).tolist() == [0, 1, 0, 1, 0, 0]
    assert layer_weights(LayerSpec(mode="topk", k=3), AUC).tolist() == [0, 1, 0, 1, 0, 1]
    assert layer_weights(LayerSpec(mode="topk", k=1, layers=(2, 4, 5)), AUC).tolist() == [0, 0, 0, 0, 0, 1]
    assert layer_weights(LayerSpec(mode="topk", k=1, layers=(1, 3)), AUC).tolist() == [0, 1, 0, 0, 0, 0]


def test_exponential_weights_closed_form():
    spec = LayerSpec(mode="exp", kappa=0.5, w0=2.0)
    # Chosen layers 1..5 have AUC 0.9, 0.6, 0.9, 0.7, 0.8: min-max normalised 1, 0, 1, 1/3, 2/3.
    s = np.array([1.0, 0.0, 1.0, 1 / 3, 2 / 3])
    expected = [0.0] + list(2.0 * s ** (1 / 0.5))
    np.testing.assert_allclose(layer_weights(spec, AUC).numpy(), expected, rtol=1e-6)
    paper = layer_weights(LayerSpec(mode="exp", kappa=0.95, w0=1.0), AUC)
    np.testing.assert_allclose(paper[4].item(), (1 / 3) ** (1 / 0.95), rtol=1e-6)
    flat = layer_weights(LayerSpec(mode="exp", kappa=0.95, w0=0.5), torch.full((6,), 0.7))
    assert flat.tolist() == [0, 0.5, 0.5, 0.5, 0.5, 0.5]


def test_manual_weights_are_taken_as_given():
    spec = LayerSpec(mode="manual", weights=(0.0, 0.5, 1.0, 2.0, 0.0, 0.25))
    assert layer_weights(spec, AUC).tolist() == [0.0, 0.5, 1.0, 2.0, 0.0, 0.25]


def test_gates_are_reproducible_independent_per_control_and_at_rate_p():
    gates = draw_gates([0.3, 1.0], steps=1500, num_layers=24, seed=11)
    assert gates.shape == (1500, 24, 2) and gates.dtype == torch.bool
    assert torch.equal(gates, draw_gates([0.3, 1.0], 1500, 24, seed=11))
    assert not torch.equal(gates, draw_gates([0.3, 1.0], 1500, 24, seed=12))
    n = 1500 * 24
    rate = gates[..., 0].float().mean().item()
    assert abs(rate - 0.3) <= 5 * math.sqrt(0.3 * 0.7 / n)  # within 5 binomial standard deviations
    assert gates[..., 1].all()  # p = 1: always on
    # Adding a control never changes the gates of the controls before it.
    assert torch.equal(draw_gates([0.3, 1.0, 0.5], 1500, 24, seed=11)[..., :2], gates)


def test_coefficients_closed_form():
    strength = torch.tensor([0.5, -2.0])
    schedules = torch.tensor([[1.0, 0.25], [0.5, 1.0], [0.0, 0.75]])
    weights = torch.tensor([[0.0, 1.0], [1.0, 0.5], [2.0, 0.0]])
    gates = torch.rand(3, 3, 2, generator=torch.Generator().manual_seed(0)) < 0.5
    c = coefficients(strength, schedules, weights, gates)
    for t in range(3):
        for layer in range(3):
            for k in range(2):
                expected = strength[k] * schedules[t, k] * weights[layer, k] * float(gates[t, layer, k])
                assert c[t, layer, k].item() == expected.item()


def test_build_plan_compiles_every_control():
    bank = random_bank(SIGNATURE, classes=["C", "D", "E"], components=3, seed=4)
    chords = random_bank(SIGNATURE, concept="chords", classes=["major", "minor"], components=2, seed=5)
    controls = (
        Control(
            "notes", "D", 0.4, component=2, schedule=Linear(0.0, 0.5), layers=LayerSpec(mode="uniform"), gate_p=0.5
        ),
        Control("chords", "minor", -0.3, component=1, schedule=Constant(0.5), layers=LayerSpec(mode="exp"), gate_p=1.0),
        Control("notes", "E", 3.0, enabled=False),
    )
    recipe = Recipe(seconds=1.0, seed=99, controls=controls)
    steps = 53
    plan = build_plan(recipe, {"notes": bank, "chords": chords}, steps=steps, frame_rate=50)
    assert plan.coefficients.shape == (steps, 6, 2) and plan.directions.shape == (6, 2, 8)
    assert plan.labels == ("notes/D/2", "chords/minor/1")
    assert torch.equal(plan.directions[:, 0], bank.directions[:, 1, 2])
    assert torch.equal(plan.directions[:, 1], chords.directions[:, 1, 1])
    assert torch.equal(plan.gates, draw_gates([0.5, 1.0], steps, 6, seed=99))
    ramp = torch.from_numpy(Linear(0.0, 0.5).values(steps, 50)).float()
    w_exp = layer_weights(LayerSpec(mode="exp"), chords.val_score[:, 1])
    for t in (0, 10, 25, 52):
        for layer in range(6):
            expected0 = 0.4 * ramp[t].item() * (1.0 if layer > 0 else 0.0) * float(plan.gates[t, layer, 0])
            expected1 = -0.3 * 0.5 * w_exp[layer] * float(plan.gates[t, layer, 1])
            assert plan.coefficients[t, layer, 0].item() == pytest.approx(expected0, rel=1e-6, abs=0)
            assert plan.coefficients[t, layer, 1].item() == pytest.approx(expected1.item(), rel=1e-6, abs=0)
    delta = plan.delta(25)
    manual = sum(plan.coefficients[25, :, k, None] * plan.directions[:, k] for k in range(2))
    torch.testing.assert_close(delta, manual, rtol=1e-6, atol=1e-7)


def test_a_recipe_without_enabled_controls_is_an_empty_plan():
    bank = random_bank(SIGNATURE, classes=["C", "D"])
    plan = build_plan(
        Recipe(seconds=1.0, controls=(Control("notes", "C", 1.0, enabled=False),)),
        {"notes": bank},
        steps=10,
        frame_rate=50,
    )
    assert plan.coefficients.shape == (10, 6, 0) and plan.directions.shape == (6, 0, 8)
    assert torch.equal(plan.delta(3), torch.zeros(6, 8))


# ------------------------------------------------------------------------------------ banks trained on some layers only

TRAINED = (2, 4, 5)
PARTIAL_AUC = torch.tensor([float("nan"), float("nan"), 0.60, float("nan"), 0.70, 0.80])


def partial_bank(seed: int = 4):
    """A bank with probes on layers 2, 4 and 5 only, stored as banks trained with `--layers` are."""
    bank = random_bank(SIGNATURE, classes=["C", "D", "E"], components=2, readout_layer=4, seed=seed)
    untrained = [layer for layer in range(6) if layer not in TRAINED]
    bank.directions[untrained] = 0.0
    bank.val_score[untrained] = float("nan")
    bank.layers = TRAINED
    bank.validate()
    return bank


@pytest.mark.parametrize(
    "spec, expected",
    [
        (LayerSpec(mode="uniform"), [0, 0, 1, 0, 1, 1]),
        (LayerSpec(mode="topk", k=2), [0, 0, 0, 0, 1, 1]),
        (LayerSpec(mode="topk", k=1, layers=(1, 2, 3)), [0, 0, 1, 0, 0, 0]),
        (LayerSpec(mode="exp", kappa=0.5, w0=2.0), [0, 0, 0, 0, 2 * 0.5**2, 2]),  # min-max over 0.6, 0.7, 0.8
        (LayerSpec(mode="manual", weights=(1.0, 1.0, 0.5, 1.0, 2.0, 0.0)), [0, 0, 0.5, 0, 2.0, 0]),
    ],
)
def test_weights_go_to_trained_layers_only(spec, expected):
    np.testing.assert_allclose(layer_weights(spec, PARTIAL_AUC).numpy(), expected, rtol=1e-6)
    # An explicit trained list wins over the AUCs: the same weights with the untrained AUCs filled in.
    filled = PARTIAL_AUC.nan_to_num(0.99)
    np.testing.assert_allclose(layer_weights(spec, filled, trained=TRAINED).numpy(), expected, rtol=1e-6)


def test_no_chosen_trained_layer_gives_no_weight():
    assert layer_weights(LayerSpec(mode="exp", layers=(0, 1)), PARTIAL_AUC).tolist() == [0.0] * 6


def test_manual_weights_of_the_wrong_length_are_a_value_error():
    with pytest.raises(ValueError, match="got 3, need one per decoder layer"):
        layer_weights(LayerSpec(mode="manual", weights=(1.0, 1.0, 1.0)), AUC)


def test_plan_never_steers_an_untrained_layer():
    bank = partial_bank()
    every_layer = LayerSpec(mode="manual", weights=(1.0,) * 6)
    controls = (
        Control("notes", "D", 0.5, layers=LayerSpec(mode="uniform"), gate_p=1.0),
        Control("notes", "E", 0.5, layers=LayerSpec(mode="exp"), gate_p=1.0),
        Control("notes", "C", 0.5, layers=every_layer, gate_p=1.0),
    )
    plan = build_plan(Recipe(seconds=1.0, controls=controls), {"notes": bank}, steps=20, frame_rate=50)
    untrained = [0, 1, 3]
    assert plan.layer_weights[untrained].abs().sum() == 0 and plan.coefficients[:, untrained].abs().sum() == 0
    assert plan.layer_weights[[2, 4, 5], 0].tolist() == [1.0, 1.0, 1.0]
    assert plan.layer_weights[5, 1] > 0
    assert plan.delta(7)[untrained].abs().sum() == 0


def test_the_strongest_push_is_strength_times_weight_over_the_layers_norm():
    weights, norms = torch.tensor([0.0, 0.5, 1.0, 1.0]), torch.tensor([2.0, 4.0, 10.0, 5.0])
    # pushes: 0, 2 * 0.5 / 4 = 0.25, 2 / 10 = 0.2, 2 / 5 = 0.4
    assert strongest_push(2.0, weights, norms) == (3, pytest.approx(0.4))
    assert strongest_push(-2.0, weights, norms) == (3, pytest.approx(0.4))  # a push away is as hard
    assert strongest_push(2.0, weights, None) is None  # an older bank: no norms kept
    assert strongest_push(2.0, torch.zeros(4), norms) is None  # nothing weighted
