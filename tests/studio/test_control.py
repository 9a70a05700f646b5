"""Closed-loop steering (studio/control.py): the controller's arithmetic against a scripted readout, and closed-loop
generations on the trained tiny model with its committed notes bank."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from probes.bank import ConceptBank
from studio.banks import check_for_banks
from studio.control import Controller
from studio.errors import InputError
from studio.generate import generate, run_decode
from studio.recipe import Control, Extension, LayerSpec, ReadoutSpec, Recipe, Sampling, Target
from studio.reference import run_reference

COMMITTED_BANK = Path(__file__).resolve().parents[2] / "assets" / "banks" / "tiny" / "notes"


class ScriptedReadout:
    """A readout probe that answers each reading with the next scripted (probability of class 1, similarity) and keeps
    the pooled states it was asked about."""

    def __init__(self, script, width=3):
        self.script, self.asked = list(script), []
        self.centers = torch.zeros(1, width)

    def proba_and_similarity(self, X):
        self.asked.append(X.clone())
        p, similarity = self.script.pop(0)
        return torch.tensor([[1 - p, p]]), torch.tensor([similarity])


def drive(controller, states):
    """What the hooks do, one step per forward: take the step's gains, then let the controller read its state."""
    gains = []
    for t, state in enumerate(states):
        position = torch.tensor([t])
        gains.append(controller.gains_for(position)[0].tolist())
        controller.observe(state[None], position)
    return torch.tensor(gains)


def test_the_controller_gives_the_expected_gains_for_a_scripted_readout():
    """Target 0.3, kp 2, ki 5 per second at 10 steps per second (ki * dt = 0.5), ceiling 2; the second control has no
    target and keeps gain 1. By hand: g0 = clamp(2 * 0.3) = 0.6; read 0.2: e = 0.1, J = 0.05, g1 = 0.25; read 0.5:
    e = -0.2, J = clamp(-0.05) = 0, g2 = clamp(-0.4) = 0; an outside reading holds g3 = 0 and J = 0; read 0.1:
    e = 0.2, J = 0.1, g4 = 0.5."""
    probe = ScriptedReadout([(0.2, 0.9), (0.5, 0.9), (0.9, 0.001), (0.1, 0.9), (0.3, 0.9)])
    controller = Controller(probe, [0.3, None], [1, 0], kp=[2.0, 0.0], ki=[5.0, 0.0], frame_rate=10, steps=5)
    states = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0], [3.0, 0, 0], [0, 0, 0]])
    gains = drive(controller, states)
    torch.testing.assert_close(gains[:, 0], torch.tensor([0.6, 0.25, 0.0, 0.0, 0.5]))
    assert (gains[:, 1] == 1).all()
    torch.testing.assert_close(controller.realised(torch.tensor([2.0, -1.5])), gains * torch.tensor([2.0, -1.5]))
    # it reads the running mean of the states so far, not the latest one
    for t, asked in enumerate(probe.asked):
        torch.testing.assert_close(asked[0], states[: t + 1].mean(dim=0))


def test_steps_made_before_keep_their_gains_and_are_not_read_again():
    """A forward that recomputes steps already made (transformers' doubled prefill; a later window's opening) steers
    them with their recorded gains, reads nothing new and leaves the controller as it was."""
    probe = ScriptedReadout([(0.0, 0.9), (0.0, 0.9), (0.0, 0.9), (1.0, 0.9)])
    controller = Controller(probe, [0.5], [1], kp=[1.0], ki=[10.0], frame_rate=10, steps=6)
    drive(controller, torch.ones(2, 3))  # g0 = 0.5; then J = 0.5, g1 = 1; then J = 1, g2 = 1
    before = (controller.gain.clone(), controller.integral.clone(), int(controller.read))
    again = controller.gains_for(torch.tensor([0, 1]))
    torch.testing.assert_close(again[:, 0], torch.tensor([0.5, 1.0]))
    controller.observe(torch.full((2, 3), 100.0), torch.tensor([0, 1]))  # nothing fresh: no reading acts
    assert torch.equal(controller.gain, before[0]) and torch.equal(controller.integral, before[1])
    assert int(controller.read) == before[2] == 2
    controller.next_pass(2)  # a window starting at clip step 2: its position 0 is step 2
    assert controller.gains_for(torch.tensor([0, 1]))[:, 0].tolist() == [1.0, 1.0]
    assert int(controller.recorded) == 4
    # positions that are no step of the clip (a melody prefix's, past its end) record nothing and read nothing
    controller.next_pass(0)
    controller.gains_for(torch.tensor([-3, -2, -1]))
    controller.gains_for(torch.tensor([6, 7]))
    controller.observe(torch.ones(3, 3), torch.tensor([-3, -2, -1]))  # a reading of 1.0 that must not act
    assert int(controller.recorded) == 4 and int(controller.read) == 2
    assert torch.equal(controller.gain, before[0]) and torch.equal(controller.integral, before[1])


@pytest.fixture(scope="module")
def banks():
    return {"notes": ConceptBank.load(COMMITTED_BANK)}


def closed(p=0.8, strength=3.0, seconds=1.0, kp=1.0, ki=2.0, **changes) -> Recipe:
    control = Control("notes", "E", strength, layers=LayerSpec(mode="exp"), target=Target(p=p, kp=kp, ki=ki))
    recipe = Recipe(
        seconds=seconds,
        model="tiny",
        prompt="a note on a piano",
        seed=3,
        controls=(control,),
        readout=ReadoutSpec("notes"),
    )
    return replace(recipe, **changes)


def test_a_closed_loop_render_records_its_strengths_and_repeats_exactly(tiny, banks):
    first, second = generate(tiny, closed(), banks=banks), generate(tiny, closed(), banks=banks)
    assert np.array_equal(first.audio, second.audio) and torch.equal(first.strengths, second.strengths)
    realised = first.strengths[:, 0]
    assert realised.shape == (tiny.steps_for(tiny.frames_for(1.0)),)
    assert float(realised.min()) >= 0 and float(realised.max()) <= 3.0
    # nothing read yet: kp * p = 0.8 of the ceiling; then it moves with the readings
    assert float(realised[0]) == pytest.approx(2.4) and len(set(realised.tolist())) > 5
    record = json.loads(json.dumps(first.record()))
    assert record["strengths"]["controls"] == ["notes/E/0"]
    assert [row[0] for row in record["strengths"]["steps"]] == pytest.approx(realised.tolist(), abs=1e-6)
    fixed = generate(tiny, replace(closed(), controls=(replace(closed().controls[0], target=None),)), banks=banks)
    assert fixed.strengths is None and not torch.equal(fixed.tokens, first.tokens)


def test_zero_gains_steer_nothing(tiny, banks):
    """kp = ki = 0 hold the gain at 0 from the first step: the unsteered clip, and its readout."""
    off = generate(tiny, closed(kp=0.0, ki=0.0), banks=banks)
    plain = generate(tiny, replace(closed(), controls=()), banks=banks)
    assert (off.strengths == 0).all() and torch.equal(off.tokens, plain.tokens)
    torch.testing.assert_close(off.readout.running, plain.readout.running, rtol=0, atol=0)


def test_the_controller_holds_the_readout_near_its_target_with_less_push(tiny, banks):
    """Seeds 0-3, 2 s: unsteered the running readout of E ends near 0, at a fixed strength of 3 above 0.85. A target of
    0.6 under a ceiling of 3 ends at 0.51-0.81 (0.64 on average; the controller cannot pull back a model that goes on
    playing E by itself), with a mean strength of 0.61-0.97."""
    e = banks["notes"].class_index("E")
    ends, pushes = [], []
    for seed in range(4):
        plain = generate(tiny, replace(closed(seconds=2.0), controls=(), seed=seed), banks=banks)
        held = generate(tiny, closed(p=0.6, seconds=2.0, seed=seed), banks=banks)
        fixed_control = replace(closed().controls[0], target=None)
        fixed = generate(tiny, closed(seconds=2.0, seed=seed, controls=(fixed_control,)), banks=banks)
        assert float(plain.readout.running[-1, e]) < 0.2 and float(fixed.readout.running[-1, e]) > 0.85
        ends.append(float(held.readout.running[-1, e]))
        pushes.append(float(held.strengths.mean()))
    assert min(ends) > 0.45 and abs(np.mean(ends) - 0.6) < 0.1, ends
    assert max(pushes) < 1.5, pushes


def test_both_engines_and_long_clips_give_one_sequence_of_gains(tiny, banks):
    """transformers' generate (which runs its prefill twice) and our loop give the same tokens and gains; a clip made
    in two windows keeps the first window's gains as a one-window clip made them."""
    recipe = closed(sampling=Sampling(greedy=True))
    fast, hf = (generate(tiny, recipe, banks=banks, engine=e) for e in (run_decode, run_reference))
    assert torch.equal(fast.tokens, hf.tokens)
    torch.testing.assert_close(fast.strengths, hf.strengths, rtol=0, atol=1e-4)  # states differ by ~1e-7, x kp x 3
    long = generate(tiny, closed(seconds=1.6, extend=Extension(window_s=1.0, stride_s=0.6)), banks=banks)
    one = generate(tiny, closed(seconds=1.0), banks=banks)
    steps = one.strengths.shape[0]
    assert long.strengths.shape[0] == tiny.steps_for(tiny.frames_for(1.6))
    assert torch.equal(long.strengths[:steps], one.strengths)


def test_a_target_needs_a_classification_readout(tiny, banks):
    tempos = replace(banks["notes"], concept="tempos", classes=["value"], readout=replace(banks["notes"].readout))
    tempos.readout.task = "regression"
    recipe = replace(
        closed(),
        controls=(replace(closed().controls[0], concept="tempos", class_name="value"),),
        readout=ReadoutSpec("tempos"),
    )
    with pytest.raises(InputError, match=r"controls\[0\].target needs class probabilities"):
        check_for_banks(recipe, {"tempos": tempos})
