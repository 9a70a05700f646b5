"""probes/evaluate/conditions.py: layer-mode parsing, sweep layouts, clamping and merging on a small model, and
recipes that pass the strict reader."""

import logging

import pytest

from probes.evaluate import EvaluationError
from probes.evaluate.conditions import (
    PAPER_GATES,
    PAPER_LAYER_MODES,
    PAPER_STRENGTHS,
    Condition,
    clamped_modes,
    effective_mode,
    layer_spec,
    recipe,
    resolve_conditions,
    sweep_conditions,
)


def test_layer_modes():
    assert layer_spec("uniform", 24) == {"mode": "uniform"}
    assert layer_spec("top12", 24) == {"mode": "topk", "k": 12}
    assert layer_spec("top16", 6) == {"mode": "topk", "k": 5}  # clamped to the 5 layers after the first
    assert layer_spec("exp0.95", 24) == {"mode": "exp", "kappa": 0.95, "w0": 1.0}
    assert layer_spec("exp1", 24)["kappa"] == 1.0
    for bad in ("top0", "exp1.5", "exp0", "best", "top"):
        with pytest.raises(EvaluationError, match="layer mode"):
            layer_spec(bad, 24)


def test_paper_sweep_varies_one_factor_at_a_time():
    conditions = sweep_conditions(PAPER_STRENGTHS, PAPER_LAYER_MODES, PAPER_GATES)
    names = [c.name for c in conditions]
    assert len(names) == len(set(names)) == 4 + 6 + 1
    assert names[:4] == ["s0.15-exp0.95-p0.3", "s0.3-exp0.95-p0.3", "s0.45-exp0.95-p0.3", "s0.6-exp0.95-p0.3"]
    assert "s0.3-uniform-p0.3" in names and "s0.3-top12-p0.3" in names and "s0.3-exp0.95-p1" in names
    assert all(c.strength == 0.3 for c in conditions if c.layers != "exp0.95" or c.gate_p != 0.3)


def test_paper_sweep_without_the_paper_defaults_takes_first_entries():
    conditions = sweep_conditions([1.0, 2.0], ["uniform"], [1.0])
    assert [c.name for c in conditions] == ["s1-uniform-p1", "s2-uniform-p1"]


def test_product_sweep():
    conditions = sweep_conditions([0.1, 0.2], ["uniform", "top2"], [1.0, 0.3], sweep="product")
    assert len(conditions) == 8 and Condition(0.2, "top2", 0.3) in conditions


def test_sweep_refuses_bad_lists():
    with pytest.raises(EvaluationError, match="at least one"):
        sweep_conditions([], ["uniform"], [1.0])
    with pytest.raises(EvaluationError, match="gate p"):
        sweep_conditions([0.3], ["uniform"], [0.0])
    with pytest.raises(EvaluationError, match="unknown sweep"):
        sweep_conditions([0.3], ["uniform"], [1.0], sweep="grid")


def test_condition_compiles_to_a_recipe_the_studio_reads():
    control = Condition(0.45, "top3", 0.3).control("notes", "C#", num_layers=6)
    made = recipe(
        "tiny",
        "assets/banks/tiny",
        "warm piano",
        2.0,
        7,
        [control],
        3.0,
        readout={"concept": "notes", "layer": "best", "window_s": 0.5},
    )
    (parsed,) = made.controls
    assert (parsed.concept, parsed.class_name, parsed.strength, parsed.gate_p) == ("notes", "C#", 0.45, 0.3)
    assert parsed.layers.mode == "topk" and parsed.layers.k == 3
    assert made.seed == 7 and made.sampling.guidance_scale == 3.0 and made.readout.window_s == 0.5
    assert made.to_dict()["controls"][0]["schedule"] == {"kind": "constant", "value": 1.0}


def test_a_clamped_top_k_is_named_by_the_k_it_uses_and_warned_about(caplog):
    assert effective_mode("top16", 6) == "top5" and effective_mode("top3", 6) == "top3"
    assert effective_mode("exp0.95", 6) == "exp0.95" and effective_mode("top16", 24) == "top16"
    assert effective_mode("top05", 6) == "top05" and clamped_modes(["top05"], 6) == {}  # K = 5 is not clamped
    assert clamped_modes(["uniform", "top8", "top3", "top16", "top8"], 6) == {"top8": 5, "top16": 5}
    with caplog.at_level(logging.WARNING, logger="probes.evaluate.conditions"):
        (only,) = resolve_conditions([Condition(0.3, "top16", 1.0)], num_layers=6)
    assert only.condition == Condition(0.3, "top5", 1.0) and only.condition.name == "s0.3-top5-p1"
    assert only.requested == ("s0.3-top16-p1",) and only.merged == ()
    assert only.to_dict(6)["layer_spec"] == {"mode": "topk", "k": 5}
    assert only.to_dict(6)["requested"] == ["s0.3-top16-p1"]
    assert "top16 needs 16 layers, the model steers 5: using k=5" in caplog.text


def test_conditions_that_steer_identically_run_once_as_the_first(caplog):
    """The paper's sweep on the tiny model (6 layers, 5 steerable): top8/12/16 all become all 5 layers at weight 1,
    which is uniform; so they merge into the uniform condition, and nothing else merges."""
    requested = sweep_conditions(PAPER_STRENGTHS, PAPER_LAYER_MODES, PAPER_GATES)
    with caplog.at_level(logging.WARNING, logger="probes.evaluate.conditions"):
        resolved = resolve_conditions(requested, num_layers=6)
    names = [r.condition.name for r in resolved]
    assert len(names) == len(set(names)) == 11 - 3
    assert not any("top" in name for name in names)
    uniform = next(r for r in resolved if r.condition.layers == "uniform")
    assert uniform.requested == ("s0.3-uniform-p0.3", "s0.3-top8-p0.3", "s0.3-top12-p0.3", "s0.3-top16-p0.3")
    assert [r for r in resolved if r.merged] == [uniform]
    assert "running them once, as s0.3-uniform-p0.3" in caplog.text
    assert [r.condition for r in resolve_conditions(requested, num_layers=24)] == requested  # nothing to clamp


def test_clamped_top_ks_without_uniform_keep_the_first_and_differ_by_strength_and_gate():
    resolved = resolve_conditions(
        [
            Condition(0.3, "top8", 1.0),
            Condition(0.3, "top16", 1.0),
            Condition(0.6, "top16", 1.0),
            Condition(0.3, "top16", 0.3),
            Condition(0.3, "top4", 1.0),
        ],
        num_layers=6,
    )
    assert [(r.condition.name, r.requested) for r in resolved] == [
        ("s0.3-top5-p1", ("s0.3-top8-p1", "s0.3-top16-p1")),
        ("s0.6-top5-p1", ("s0.6-top16-p1",)),
        ("s0.3-top5-p0.3", ("s0.3-top16-p0.3",)),
        ("s0.3-top4-p1", ("s0.3-top4-p1",)),
    ]
