"""Tests for studio/recipe.py: strict parsing with field-path messages, round trips, model and bank checks."""

import copy
import dataclasses
import json

import pytest

from bench.workloads import random_bank
from studio.banks import check_for_banks, load_banks
from studio.errors import BankError, InputError
from studio.model import ModelSignature
from studio.recipe import (
    Control,
    LayerSpec,
    Recipe,
    Target,
    check_for_model,
    crossfade_controls,
    load_recipe,
    parse_recipe,
    with_overrides,
)
from studio.schedules import Constant, Linear, Points

DESIGN_EXAMPLE = {
    "version": 1,
    "model": "facebook/musicgen-small",
    "bank": "path-or-id",
    "prompt": "warm lofi piano",
    "seconds": 10,
    "seed": 1234,
    "sampling": {"guidance_scale": 3.0, "top_k": 250, "temperature": 1.0},
    "cfg_mode": "both",
    "controls": [
        {
            "concept": "notes",
            "class": "C",
            "strength": 0.3,
            "component": 0,
            "schedule": {"kind": "points", "points": [[0, 1.0], [5, 1.0], [10, 0.0]]},
            "layers": {"mode": "exp", "kappa": 0.95, "w0": 1.0},
            "gate_p": 0.3,
        }
    ],
    "readout": {"concept": "notes", "layer": "best", "window_s": 1.0},
}
SIGNATURE = ModelSignature("tiny", "0123456789abcdef", hidden_size=16, num_layers=6)


def example(**changes):
    obj = copy.deepcopy(DESIGN_EXAMPLE)
    obj.update(changes)
    return obj


def with_control(**changes):
    obj = example()
    obj["controls"][0].update(changes)
    return obj


def test_design_example_parses_and_round_trips():
    recipe = parse_recipe(DESIGN_EXAMPLE)
    control = recipe.controls[0]
    assert (recipe.seconds, recipe.seed, recipe.sampling.top_k, recipe.cfg_mode) == (10.0, 1234, 250, "both")
    assert (control.concept, control.class_name, control.strength, control.gate_p) == ("notes", "C", 0.3, 0.3)
    assert control.schedule == Points(((0.0, 1.0), (5.0, 1.0), (10.0, 0.0)))
    assert control.layers == LayerSpec(mode="exp", kappa=0.95, w0=1.0)
    assert recipe.readout.layer == "best" and recipe.concepts() == ["notes"]
    again = Recipe.from_json(recipe.to_json())
    assert again == recipe
    assert json.loads(again.to_json()) == recipe.to_dict()


def test_a_target_round_trips_and_a_recipe_without_one_keeps_its_json():
    recipe = parse_recipe(with_control(target={"p": 0.8}))
    assert recipe.controls[0].target == Target(p=0.8, kp=1.0, ki=2.0)
    assert recipe.to_dict()["controls"][0]["target"] == {"p": 0.8, "kp": 1.0, "ki": 2.0}
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert "target" not in parse_recipe(DESIGN_EXAMPLE).to_dict()["controls"][0]  # old recipes' JSON is unchanged


def test_minimal_recipe_takes_the_documented_defaults():
    recipe = parse_recipe({"version": 1, "seconds": 2})
    assert recipe == Recipe(seconds=2.0)
    control = parse_recipe(example(controls=[{"concept": "notes", "class": "D", "strength": -1}])).controls[0]
    assert control == Control(
        "notes",
        "D",
        -1.0,
        component=0,
        schedule=Constant(1.0),
        layers=LayerSpec(mode="exp", kappa=0.95, w0=1.0),
        gate_p=0.3,
        enabled=True,
    )


@pytest.mark.parametrize(
    "obj, message",
    [
        (with_control(gate_p=1.5), "controls[0].gate_p must be in (0, 1], got 1.5"),
        (with_control(gate_p=0), "controls[0].gate_p must be in (0, 1], got 0"),
        (with_control(strength=5.5), "controls[0].strength must be in [-5, 5], got 5.5"),
        (with_control(strength="0.3"), "controls[0].strength must be a number, got a string"),
        (with_control(strength=True), "controls[0].strength must be a number, got a boolean"),
        (with_control(component=1.0), "controls[0].component must be an integer"),
        (with_control(component=-1), "controls[0].component must be >= 0, got -1"),
        (with_control(gate=0.3), "controls[0].gate is not a known field here"),
        (with_control(layers={"mode": "exp", "kappa": 0}), "controls[0].layers.kappa must be in (0, 1], got 0"),
        (with_control(layers={"mode": "exp", "kappa": 1.2}), "controls[0].layers.kappa must be in (0, 1], got 1.2"),
        (with_control(layers={"mode": "uniform", "kappa": 0.9}), "controls[0].layers.kappa is not a known field here"),
        (with_control(layers={"mode": "topk", "k": 0}), "controls[0].layers.k must be >= 1, got 0"),
        (with_control(layers={"mode": "topk"}), "controls[0].layers.k is required"),
        (with_control(layers={"mode": "best"}), "controls[0].layers.mode must be one of uniform, topk, exp, manual"),
        (with_control(layers={"mode": "uniform", "layers": [1, 1]}), "controls[0].layers.layers names a layer twice"),
        (
            with_control(layers={"mode": "manual", "weights": [1, -0.5]}),
            "controls[0].layers.weights[1] must be in [0, 5], got -0.5",
        ),
        (
            with_control(schedule={"kind": "points", "points": [[0, 1], [12, 0]]}),
            "controls[0].schedule names time 12 s, outside the clip (0 to 10 s)",
        ),
        (
            with_control(schedule={"kind": "points", "points": [[0, 1], [0, 0]]}),
            "controls[0].schedule.points[1][0] must be later than the point before",
        ),
        (
            with_control(schedule={"kind": "points", "points": [[0, 1, 2]]}),
            "controls[0].schedule.points[0] must be a [seconds, value] pair",
        ),
        (with_control(schedule={"kind": "linear", "start": 0, "end": 20}), "controls[0].schedule names time 20 s"),
        (with_control(schedule={"kind": "exponential", "rate": 1.5}), "controls[0].schedule.rate must be in (0, 1]"),
        (with_control(schedule={"kind": "constant", "value": 2}), "controls[0].schedule.value must be in [-1, 1]"),
        (with_control(schedule={"kind": "sine"}), "controls[0].schedule.kind must be one of constant, linear"),
        (with_control(schedule={"kind": "constant", "rate": 1}), "controls[0].schedule.rate is not a known field here"),
        (with_control(target={"p": 0}), "controls[0].target.p must be in (0, 1], got 0"),
        (with_control(target={"p": 0.8, "kd": 1}), "controls[0].target.kd is not a known field here"),
        (with_control(target={"kp": 2}), "controls[0].target.p is required"),
        (
            with_control(target={"p": 0.8}, strength=-1),
            "controls[0].strength is the ceiling of a control with a target and must be positive, got -1",
        ),
        (
            example(readout=None, controls=[{"concept": "notes", "class": "C", "strength": 2, "target": {"p": 0.8}}]),
            "controls[0].target needs the readout to read 'notes', which it steers towards; the readout reads nothing",
        ),
        (example(seconds=0), "seconds must be in (0, 600], got 0"),
        (example(seconds=-1), "seconds must be in (0, 600], got -1"),
        (example(seconds="10"), "seconds must be a number, got a string"),
        (example(seconds=float("nan")), "seconds must be a finite number"),
        (example(seed=1.5), "seed must be an integer"),
        (example(seed=-3), "seed must be in [0, 2**63), got -3"),
        (example(version=2), "version must be 1"),
        (example(cfg_mode="uncond"), "cfg_mode must be one of both, cond_only, got 'uncond'"),
        (example(controls={"concept": "notes"}), "controls must be a list, got an object"),
        (example(controls=[3]), "controls[0] must be an object, got an integer"),
        (example(sampling={"top_k": -1}), "sampling.top_k must be >= 0, got -1"),
        (example(sampling={"temperature": 0}), "sampling.temperature must be in (0, 10], got 0"),
        (example(sampling={"guidance_scale": 0.5}), "sampling.guidance_scale must be in [1, 20], got 0.5"),
        (example(sampling={"beams": 4}), "sampling.beams is not a known field here"),
        (example(readout={"concept": "notes", "window_s": 0}), "readout.window_s must be in (0, 30], got 0"),
        (example(readout={"concept": "notes", "layer": "worst"}), 'readout.layer must be "best" or a decoder layer'),
        (example(tempo=120), "tempo is not a known field here"),
        ([1, 2], "recipe must be an object, got a list"),
        ({"seconds": 1}, "version is required"),
    ],
)
def test_invalid_recipes_are_refused_naming_the_field(obj, message):
    with pytest.raises(InputError) as err:
        parse_recipe(obj)
    assert str(err.value).startswith(message), str(err.value)


def test_malformed_json_is_a_recipe_error(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"version": 1, "seconds": }')
    with pytest.raises(InputError, match=r"r.json is not valid JSON: Expecting value at line 1 column 27"):
        load_recipe(path)
    with pytest.raises(InputError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.json")


def test_a_render_record_loads_as_its_recipe(tmp_path):
    recipe = parse_recipe(DESIGN_EXAMPLE)
    path = tmp_path / "out.json"
    path.write_text(json.dumps({"recipe": recipe.to_dict(), "readout": {"steps": []}}))
    assert load_recipe(path) == recipe


def test_checks_against_the_model(tiny_random):
    tiny = tiny_random  # 6 layers: the messages below name them
    check_for_model(parse_recipe(example(seconds=30)), tiny)
    short = dataclasses.replace(tiny, max_seconds=8.0, model_id="short")
    check_for_model(parse_recipe(DESIGN_EXAMPLE), short)  # 10 s: two windows of 8 s
    with pytest.raises(InputError, match=r"^extend.window_s must be at most 8 for short, got 9"):
        check_for_model(parse_recipe(example(extend={"window_s": 9})), short)
    with pytest.raises(InputError, match=r"^extend.stride_s must be shorter than the window \(8 s\), got 8"):
        check_for_model(parse_recipe(example(extend={"stride_s": 8})), short)
    check_for_model(parse_recipe(example(seconds=8, controls=[], extend={"stride_s": 8})), short)  # one pass
    cases = [
        ({"mode": "uniform", "layers": [1, 6]}, r"controls\[0\]\.layers\.layers\[1\] must be a decoder layer 0..5"),
        (
            {"mode": "topk", "k": 6},
            r"controls\[0\]\.layers\.k must be at most the number of layers it chooses "
            r"from \(5 of 6\), got 6",
        ),
        ({"mode": "topk", "k": 7, "layers": [0, 1, 2, 3, 4, 5]}, r"controls\[0\]\.layers\.k .* got 7"),
        (
            {"mode": "manual", "weights": [1, 1, 1]},
            r"controls\[0\]\.layers\.weights must hold one weight per "
            r"decoder layer \(6\), got 3",
        ),
    ]
    for layers, message in cases:
        with pytest.raises(InputError, match=message):
            check_for_model(parse_recipe(with_control(layers=layers)), tiny)
    with pytest.raises(InputError, match=r"^readout.layer must be a decoder layer 0..5, got 9"):
        check_for_model(parse_recipe(example(readout={"concept": "notes", "layer": 9})), tiny)


def test_checks_against_the_banks():
    banks = {"notes": random_bank(SIGNATURE, classes=["C", "D", "E"], components=2, readout_layer=3)}
    check_for_banks(parse_recipe(DESIGN_EXAMPLE), banks)
    cases = [
        (
            with_control(**{"class": "H"}),
            r"controls\[0\]\.class 'H' is not a class of the 'notes' bank; "
            r"choose one of: C, D, E",
        ),
        (with_control(component=2), r"controls\[0\]\.component must be below 2 .* got 2"),
        (with_control(concept="chords"), r"controls\[0\]\.concept names concept 'chords' but no bank"),
        (
            example(readout={"concept": "notes", "layer": 2}),
            r"readout.layer the 'notes' bank has its readout "
            r"probe at layer 3 only",
        ),
        (example(readout={"concept": "tempos"}), r"readout.concept names concept 'tempos'"),
    ]
    for obj, message in cases:
        with pytest.raises(InputError, match=message):
            check_for_banks(parse_recipe(obj), banks)
    check_for_banks(parse_recipe(example(readout={"concept": "notes", "layer": 3})), banks)


def bank_on_layers(trained, readout_layer):
    """A notes bank with probes on `trained` only (zero directions and NaN AUCs elsewhere), as `--layers` makes."""
    bank = random_bank(SIGNATURE, classes=["C", "D", "E"], components=2, readout_layer=readout_layer)
    untrained = [layer for layer in range(SIGNATURE.num_layers) if layer not in trained]
    bank.directions[untrained] = 0.0
    bank.val_score[untrained] = float("nan")
    bank.layers = tuple(trained)
    bank.validate()
    return {"notes": bank}


def test_checks_refuse_layers_the_bank_has_no_probes_on():
    banks = bank_on_layers((2, 4, 5), readout_layer=4)
    fine = [
        {"mode": "exp"},
        {"mode": "uniform", "layers": [2, 5]},
        {"mode": "topk", "k": 3},
        {"mode": "manual", "weights": [0, 0, 1, 0, 0.5, 2]},
    ]
    for layers in fine:
        check_for_banks(parse_recipe(with_control(layers=layers)), banks)
    trained = r"the 'notes' bank is trained on layers 2, 4, 5 of 6 only"
    cases = [
        (
            {"mode": "manual", "weights": [0, 1, 1, 0, 1, 1]},
            rf"^controls\[0\]\.layers\.weights\[1\] puts weight 1 on layer 1, but {trained}; set it to 0",
        ),
        (
            {"mode": "uniform", "layers": [2, 3]},
            rf"^controls\[0\]\.layers\.layers\[1\] names layer 3, but {trained}; choose among those",
        ),
        ({"mode": "topk", "k": 4}, rf"^controls\[0\]\.layers\.k must be at most .* \(3: {trained}\), got 4"),
        ({"mode": "topk", "k": 2, "layers": [1, 2, 3]}, r"^controls\[0\]\.layers\.layers\[0\] names layer 1"),
    ]
    for layers, message in cases:
        with pytest.raises(InputError, match=message):
            check_for_banks(parse_recipe(with_control(layers=layers)), banks)
    # The default layers are all but the first: a bank of layer 0 alone leaves none of them.
    with pytest.raises(
        InputError,
        match=r"^controls\[0\]\.layers\.layers defaults to every layer but the first, "
        r"and the 'notes' bank is trained on layer 0 of 6 only; list the layers",
    ):
        check_for_banks(parse_recipe(with_control(layers={"mode": "exp"})), bank_on_layers((0,), readout_layer=0))


def test_load_banks_finds_concept_folders_and_refuses_foreign_banks(tmp_path):
    random_bank(SIGNATURE, classes=["C", "D", "E"]).save(tmp_path / "banks" / "notes")
    recipe = parse_recipe(example(bank=str(tmp_path / "banks")))
    banks = load_banks(recipe.bank, recipe.model, recipe.concepts())
    assert list(banks) == ["notes"] and banks["notes"].classes == ["C", "D", "E"]
    check_for_banks(recipe, banks, SIGNATURE)
    assert load_banks(str(tmp_path / "banks" / "notes"), "tiny", ["notes"])["notes"].concept == "notes"
    other = ModelSignature("facebook/musicgen-small", "fedcba9876543210", hidden_size=1024, num_layers=24)
    with pytest.raises(BankError, match=r"was trained for tiny .* but the loaded model is facebook/musicgen-small"):
        check_for_banks(recipe, banks, other)
    with pytest.raises(InputError, match=r"^bank has no bank for concept 'chords'"):
        load_banks(str(tmp_path / "banks"), "tiny", ["chords"])
    with pytest.raises(InputError, match=r"^bank 'no-such-bank' is neither a folder nor a bank under"):
        load_banks("no-such-bank", "tiny", ["notes"])


def test_crossfade_controls_and_overrides():
    first, second = Control("notes", "C", 0.3), Control("notes", "G", 0.3)
    a, b = crossfade_controls(first, second, 1.0, 3.0)
    assert (a.class_name, a.schedule, b.class_name, b.schedule) == (
        "C",
        Linear(1.0, 3.0, 1.0, 0.0),
        "G",
        Linear(1.0, 3.0, 0.0, 1.0),
    )
    recipe = with_overrides(parse_recipe(DESIGN_EXAMPLE), seed=7, guidance_scale=1.0, prompt=None)
    assert (recipe.seed, recipe.sampling.guidance_scale, recipe.prompt) == (7, 1.0, "warm lofi piano")
    with pytest.raises(InputError, match=r"^seconds must be in \(0, 600\]"):
        with_overrides(recipe, seconds=-2.0)
