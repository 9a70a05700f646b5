"""What the page's widgets hold <-> a Recipe (studio/ui/widgets.py): a control row's target."""

import pytest

from studio.errors import InputError
from studio.recipe import Target, parse_recipe
from studio.ui.handlers import readout_for_target
from studio.ui.widgets import FIELDS, recipe_from_values, values_from_recipe

FIXED = {
    "version": 1,
    "model": "tiny",
    "prompt": "a note on a piano",
    "seconds": 2.0,
    "controls": [{"concept": "notes", "class": "E", "strength": 3.0}],
    "readout": {"concept": "notes"},
}


def page_values(**changes) -> dict:
    """The page's values (keyed by FIELDS) for the fixed-strength recipe, with `changes`."""
    values = values_from_recipe(parse_recipe(FIXED)) | changes
    assert set(values) == set(FIELDS)
    return values


def test_a_row_with_a_target_holds_it_and_a_recipe_gives_it_back():
    recipe = recipe_from_values(page_values(target0=0.8), model_id="tiny", bank=None)
    assert recipe.controls[0].target == Target(p=0.8) and recipe.controls[0].strength == 3.0
    assert values_from_recipe(recipe)["target0"] == 0.8
    assert "target" in recipe.to_dict()["controls"][0]


@pytest.mark.parametrize("off", [0, 0.0, None])  # None: the visitor emptied the box
def test_a_row_at_0_steers_at_a_fixed_strength(off):
    recipe = recipe_from_values(page_values(target0=off), model_id="tiny", bank=None)
    assert recipe.controls[0].target is None and "target" not in recipe.to_dict()["controls"][0]
    assert values_from_recipe(recipe)["target0"] == 0.0
    assert all(values_from_recipe(recipe)[f"target{i}"] == 0.0 for i in range(1, 4))  # the empty rows


def test_a_target_without_a_readout_of_its_concept_is_refused_naming_the_field():
    with pytest.raises(InputError, match=r"controls\[0\]\.target needs the readout to read 'notes'"):
        recipe_from_values(page_values(target0=0.8, readout=None), model_id="tiny", bank=None)
    with pytest.raises(InputError, match=r"controls\[0\]\.target\.p must be"):
        recipe_from_values(page_values(target0=1.5), model_id="tiny", bank=None)


def test_a_target_fills_an_empty_readout_with_its_concept_and_changes_a_chosen_one_not():
    assert readout_for_target(0.8, "notes", None) == "notes"
    for target, readout in ((0.8, "chords"), (0, None), (None, None)):
        assert readout_for_target(target, "notes", readout) == {"__type__": "update"}


def test_restoring_a_recipe_file_sets_each_rows_target(tiny, tmp_path):
    from studio.ui.handlers import Handlers
    from studio.ui.session import Studio

    path = tmp_path / "held.json"
    held = {**FIXED, "controls": [{**FIXED["controls"][0], "target": {"p": 0.6}}, {**FIXED["controls"][0]}]}
    path.write_text(parse_recipe(held).to_json())
    restored = dict(zip(FIELDS, Handlers(Studio(tiny)).restore(str(path))))
    assert [restored[f"target{i}"] for i in range(4)] == [0.6, 0.0, 0.0, 0.0]
