"""Tests for studio/readout.py: window and running means, batch and live readout with a real RFM probe."""

import torch

from bench.workloads import random_bank, random_probe
from studio.model import ModelSignature
from studio.readout import LiveReadout, classify, compute_readout, probe_on, running_means, window_means

SIGNATURE = ModelSignature("tiny", "0123456789abcdef", hidden_size=16, num_layers=4)


def naive_window_means(states, window):
    return torch.stack([states[max(0, t - window + 1) : t + 1].mean(0) for t in range(len(states))])


def test_window_and_running_means_match_their_definitions():
    states = torch.randn(40, 16, generator=torch.Generator().manual_seed(0))
    for window in (1, 3, 10, 40, 100):
        torch.testing.assert_close(
            window_means(states, window), naive_window_means(states, window), rtol=1e-6, atol=1e-6
        )
    assert torch.equal(window_means(states, 1), states)
    torch.testing.assert_close(running_means(states), naive_window_means(states, 40), rtol=1e-6, atol=1e-6)


def test_compute_readout_classifies_the_pooled_states_with_the_bank_probe():
    bank = random_bank(SIGNATURE, classes=["C", "D", "E"], probe_points=64, seed=1)
    states = torch.randn(30, 16, generator=torch.Generator().manual_seed(2))
    readout = compute_readout(states, bank.readout, "notes", bank.classes, layer=2, frame_rate=50, window_steps=5)
    assert readout.window.shape == readout.running.shape == (30, 3)
    torch.testing.assert_close(readout.window, bank.readout.predict_proba(naive_window_means(states, 5)))
    torch.testing.assert_close(readout.running, bank.readout.predict_proba(naive_window_means(states, 30)))
    torch.testing.assert_close(readout.window.sum(1), torch.ones(30))
    record = readout.to_dict()
    assert record["classes"] == ["C", "D", "E"] and len(record["steps"]) == 30
    assert record["steps"][25]["time_s"] == 0.5 and len(record["steps"][25]["window"]) == 3


def test_live_readout_matches_the_batch_readout_at_any_step():
    bank = random_bank(SIGNATURE, classes=["C", "D", "E", "F"], probe_points=64, seed=3)
    states = torch.randn(50, 16, generator=torch.Generator().manual_seed(4))
    batch = compute_readout(states, bank.readout, "notes", bank.classes, layer=2, frame_rate=50, window_steps=10)
    live = LiveReadout(states, bank.readout, window_steps=10)
    for step in (0, 4, 5, 9, 30, 49):  # in order, skipping steps, as the stream does
        window, running, outside = live.at(step)
        torch.testing.assert_close(torch.tensor(window), batch.window[step], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.tensor(running), batch.running[step], rtol=1e-5, atol=1e-6)
        assert outside == bool(batch.outside[step])


def test_states_far_from_every_training_state_are_marked_outside_the_probe_range():
    """Pushed far from the probe's training states, the reading collapses to 1/C for every class, which would read as
    "no concept": those windows, and only those, are marked outside."""
    bank = random_bank(SIGNATURE, classes=["C", "D", "E", "F"], probe_points=64, seed=6)
    centers = bank.readout.centers
    # 1 on a training state (up to the rounding of distances computed through norms)
    assert torch.allclose(bank.readout.nearest_similarity(centers), torch.ones(len(centers)), atol=1e-3)
    gen = torch.Generator().manual_seed(7)
    near = centers[:20] + 0.01 * torch.randn(20, 16, generator=gen)
    far = centers[:20] + 1000 * torch.randn(20, 16, generator=gen)
    states = torch.cat([near, far])
    readout = compute_readout(states, bank.readout, "notes", bank.classes, layer=2, frame_rate=50, window_steps=1)
    assert readout.outside.tolist() == [False] * 20 + [True] * 20
    torch.testing.assert_close(readout.window[20:], torch.full((20, 4), 0.25))  # the collapse it explains
    assert [step["outside"] for step in readout.to_dict()["steps"]] == readout.outside.tolist()


def test_regression_probe_reads_out_its_predicted_value():
    gen = torch.Generator().manual_seed(5)
    centers, alphas = torch.randn(20, 16, generator=gen), torch.randn(20, 1, generator=gen)
    probe = random_probe(centers, alphas, task="regression", val_score=0.9, y_mean=120.0, y_scale=30.0)
    X = torch.randn(3, 16, generator=gen)
    assert torch.equal(classify(probe, X), probe.predict(X).reshape(3, 1).float())


def test_probe_on_leaves_the_bank_probe_where_it_is():
    bank = random_bank(SIGNATURE, classes=["C", "D"], probe_points=8)
    assert probe_on(bank.readout, torch.device("cpu")) is bank.readout
    moved = probe_on(bank.readout, torch.device("meta"))
    assert moved.device.type == "meta" and bank.readout.device.type == "cpu"


def test_the_tiny_model_steered_past_its_probe_reads_outside_not_a_class(tiny):
    """Measured on the tiny model and its committed notes bank: up to strength 6 no window leaves the probe's range;
    at 40 the readout collapses to 1/12 each (its argmax would say "C", whatever the target), and those windows are
    the ones marked outside."""
    from dataclasses import replace

    from studio.banks import BANKS_DIR, load_bank
    from studio.generate import generate
    from studio.recipe import Control, LayerSpec, ReadoutSpec, Recipe

    bank = load_bank(BANKS_DIR / "tiny" / "notes")
    base = Recipe(seconds=2, model="tiny", seed=0, prompt="a note on a piano", readout=ReadoutSpec("notes"))
    for strength, far in ((0, False), (2, False), (40, True)):
        controls = (Control("notes", "E", strength, layers=LayerSpec(mode="exp", kappa=0.95)),) if strength else ()
        readout = generate(tiny, replace(base, controls=controls), banks={"notes": bank}).readout
        uniform = (readout.window - 1 / 12).abs().amax(dim=1) < 1e-6
        if far:
            assert readout.outside.float().mean() > 0.9 and uniform.any()
            assert not (uniform & ~readout.outside).any()  # every collapsed reading is marked
        else:
            assert not readout.outside.any() and not uniform.any()
