"""Tests for studio/ui/schedule_editor.py: the pure conversions and presets, then the editor itself in Debian's Chromium
(driven by Playwright) inside a real Gradio app, asserting on the values that reach Python."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile as sf

from studio.errors import InputError
from studio.ui import schedule_editor as se
from studio.ui.schedule_editor import (
    EditorValue,
    ScheduleEditor,
    constant_points,
    crossfade_points,
    decay_points,
    ramp_points,
)

FRAME_RATE = 50  # MusicGen's: decoder steps per second of audio, which the decay preset counts in

# ---------------------------------------------------------------- pure Python


def test_constant_value_and_wire_form():
    value = EditorValue.constant(10, ["notes: C", "chords: minor"])
    assert value.to_json() == {
        "seconds": 10.0,
        "curves": {"notes: C": [[0.0, 1.0], [10.0, 1.0]], "chords: minor": [[0.0, 1.0], [10.0, 1.0]]},
    }
    assert EditorValue.from_json(json.dumps(value.to_json())) == value
    assert list(EditorValue.from_json(value.to_json()).curves) == ["notes: C", "chords: minor"]


def test_recipe_schedules_round_trip():
    value = EditorValue(6.0, {"a": ((0.0, 1.0), (2.5, 0.25), (6.0, 0.0)), "b": ((0.0, 0.0), (6.0, 1.0))})
    schedules = value.to_recipe_schedules()
    assert schedules == {
        "a": {"kind": "points", "points": [[0.0, 1.0], [2.5, 0.25], [6.0, 0.0]]},
        "b": {"kind": "points", "points": [[0.0, 0.0], [6.0, 1.0]]},
    }
    assert EditorValue.from_recipe_schedules(6.0, schedules) == value


def test_recipe_points_inside_the_clip_are_held_to_its_ends_and_none_is_constant():
    value = EditorValue.from_recipe_schedules(10, {"a": {"kind": "points", "points": [[2, 0.5], [6, 1.0]]}, "b": None})
    assert value.curves["a"] == ((0.0, 0.5), (2.0, 0.5), (6.0, 1.0), (10.0, 1.0))
    assert value.curves["b"] == ((0.0, 1.0), (10.0, 1.0))


@pytest.mark.parametrize(
    "schedule, field",
    [
        ({"kind": "exponential", "rate": 0.998}, "schedules['a']"),
        ({"kind": "points", "points": [[0, 1], [12, 0]]}, "schedules['a'].points"),  # past the 10 s clip
        ({"kind": "points", "points": [[0, 1], [5, 1.5]]}, "schedules['a'].points[1] v"),
    ],
)
def test_recipe_schedules_the_editor_cannot_draw_are_refused(schedule, field):
    with pytest.raises(InputError, match=field.replace("[", r"\[").replace("]", r"\]")):
        EditorValue.from_recipe_schedules(10, {"a": schedule})


def test_retarget_rescales_times_adds_and_drops_controls():
    value = EditorValue(10.0, {"a": ((0.0, 1.0), (4.0, 0.5), (10.0, 0.0)), "gone": ((0.0, 1.0), (10.0, 1.0))})
    moved = value.retarget(5, ["new", "a"])
    assert list(moved.curves) == ["new", "a"]
    assert moved.seconds == 5.0
    assert moved.curves["a"] == ((0.0, 1.0), (2.0, 0.5), (5.0, 0.0))
    assert moved.curves["new"] == ((0.0, 1.0), (5.0, 1.0))
    grown = value.retarget(7.5, ["a"])
    assert grown.curves["a"] == ((0.0, 1.0), (3.0, 0.5), (7.5, 0.0))


def test_retarget_drops_points_that_would_collide_when_the_clip_shrinks():
    value = EditorValue(10.0, {"a": ((0.0, 1.0), (0.1, 0.2), (0.2, 0.3), (9.99, 0.4), (10.0, 0.0))})
    shrunk = value.retarget(0.05, ["a"])
    # 0.1 -> 0.0005 -> 0.0 (not after t=0), 0.2 -> 0.001 -> 0.0, 9.99 -> 0.04995 -> 0.05 (not before the end)
    assert shrunk.curves["a"] == ((0.0, 1.0), (0.05, 0.0))
    EditorValue.from_json(shrunk.to_json())  # still valid


def test_an_audio_prompt_is_given_on_the_wire_and_kept_or_replaced_by_retarget():
    value = EditorValue.constant(10, ["a"]).retarget(10, ["a"], given=3.333)
    assert value.given == 3.33 and value.to_json()["given"] == 3.33
    assert EditorValue.from_json(value.to_json()) == value
    assert value.retarget(20, ["a"]).given == 3.33  # the prompt keeps its length when the clip grows
    assert value.retarget(20, ["a"], given=0).to_json().keys() == {"seconds", "curves"}
    assert value.retarget(3, ["a"]).given == 3.33  # longer than the clip: kept (generating refuses it, saying why)
    for bad, words in [(-1, r"given must be at least 0"), ("x", "given must be a finite number")]:
        with pytest.raises(InputError, match=words):
            EditorValue.from_json({**value.to_json(), "given": bad})


def test_a_restored_recipe_shades_its_audio_prompt_and_a_missing_clip_shades_nothing(tmp_path):
    from studio.recipe import parse_recipe
    from studio.ui.widgets import values_from_recipe

    clip = tmp_path / "opening.wav"
    sf.write(clip, np.zeros(int(2.5 * 32000), dtype=np.float32), 32000)
    for path, shown, given in [(clip, str(clip), 2.5), (tmp_path / "elsewhere.wav", None, 0.0)]:
        recipe = parse_recipe(
            {"version": 1, "model": "tiny", "bank": "b", "prompt": "p", "seconds": 6, "audio_prompt": str(path)}
        )
        values = values_from_recipe(recipe)
        assert values["audio_prompt"] == shown and values["schedule"].given == given


def test_presets_closed_forms():
    assert constant_points(8) == ((0.0, 1.0), (8.0, 1.0))
    assert ramp_points(8, 0.0, 1.0) == ((0.0, 0.0), (8.0, 1.0))
    falling, rising = crossfade_points(30)
    assert falling == ((0.0, 1.0), (30.0, 0.0)) and rising == ((0.0, 0.0), (30.0, 1.0))
    times = np.linspace(0, 30, 301)
    total = np.interp(times, *zip(*falling)) + np.interp(times, *zip(*rising))
    assert np.allclose(total, 1.0)  # complementary, crossing at 15 s


@pytest.mark.parametrize("seconds, segments", [(0.5, 4), (8, 4), (10, 5), (30, 15), (47, 24)])
def test_decay_is_the_papers_exponential_sampled_in_seconds(seconds, segments):
    points = decay_points(seconds, FRAME_RATE)
    assert len(points) == segments + 1
    assert points[0] == (0.0, 1.0) and points[-1][0] == seconds
    for t, v in points:
        assert v == pytest.approx(0.998 ** (50 * t), abs=5e-4)  # on the curve, to the 0.001 rounding
    # piecewise-linear use stays within 0.006 of the exponential at every 20 ms step
    steps = np.arange(int(seconds * 50) + 1) / 50
    drawn = np.interp(steps, [p[0] for p in points], [p[1] for p in points])
    assert np.max(np.abs(drawn - 0.998 ** (50 * steps))) <= 0.006


def test_decay_of_a_tiny_clip_keeps_times_strictly_increasing():
    points = decay_points(0.02, FRAME_RATE)
    assert [t for t, _ in points] == [0.0, 0.01, 0.02]


GOOD = {"seconds": 10, "curves": {"a": [[0, 1], [5, 0.5], [10, 0]]}}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda v: "{not json", "not valid JSON"),
        (lambda v: {"curves": v["curves"]}, '"seconds", "curves" and optionally "given"'),
        (lambda v: {**v, "extra": 1}, '"seconds", "curves" and optionally "given"'),
        (lambda v: {**v, "seconds": 0}, "seconds must be above 0"),
        (lambda v: {**v, "seconds": float("nan")}, "seconds must be a finite number"),
        (lambda v: {**v, "seconds": True}, "seconds must be a finite number"),
        (lambda v: {**v, "curves": [1, 2]}, '"curves" must be an object'),
        (lambda v: {**v, "curves": {"a": [[0, 1]]}}, r"curves\['a'\] must be a list of 2 to 512"),
        (lambda v: {**v, "curves": {"a": [[0, 1]] * 600}}, r"curves\['a'\] must be a list of 2 to 512"),
        (lambda v: {**v, "curves": {"a": [[0, 1], [5], [10, 0]]}}, r"curves\['a'\]\[1\] must be a \[t, v\] pair"),
        (lambda v: {**v, "curves": {"a": [[0, 1], ["5", 1], [10, 0]]}}, r"curves\['a'\]\[1\] t must be a finite"),
        (lambda v: {**v, "curves": {"a": [[0, 1], [5, -0.1], [10, 0]]}}, r"\[1\] v=-0.1 must lie in \[0, 1\]"),
        (lambda v: {**v, "curves": {"a": [[0, 1], [5, 1], [5, 0.5], [10, 0]]}}, r"\[2\] t=5.0 must be after"),
        (lambda v: {**v, "curves": {"a": [[1, 1], [10, 0]]}}, "must start at t=0 and end at t=seconds=10"),
        (lambda v: {**v, "curves": {"a": [[0, 1], [9, 0]]}}, "must start at t=0 and end at t=seconds=10"),
        (lambda v: {**v, "curves": {"": [[0, 1], [10, 0]]}}, "non-empty strings"),
        (lambda v: {**v, "curves": {str(i): [[0, 1], [10, 0]] for i in range(33)}}, "at most 32 controls"),
    ],
)
def test_malformed_values_are_refused_with_the_field_named(mutate, message):
    EditorValue.from_json(GOOD)  # the unmutated value is fine
    with pytest.raises(InputError, match=message):
        EditorValue.from_json(mutate(GOOD))


def test_component_converts_both_ways_and_reports_bad_input_as_a_page_error():
    editor = ScheduleEditor(10, ["a", "b"], steps_per_second=FRAME_RATE, render=False)
    assert editor.value == EditorValue.constant(10, ["a", "b"]).to_json()
    assert editor.preprocess(GOOD) == EditorValue(10.0, {"a": ((0.0, 1.0), (5.0, 0.5), (10.0, 0.0))})
    assert editor.preprocess(None) is None
    with pytest.raises(gr.Error, match="Schedule editor: seconds must be above 0"):
        editor.preprocess({**GOOD, "seconds": -1})
    assert editor.postprocess(json.dumps(GOOD)) == editor.postprocess(EditorValue.from_json(GOOD))
    assert editor.postprocess(None) is None
    config = editor.get_config()
    assert config["js_on_load"] == (se.ASSETS / "schedule_editor.js").read_text()
    assert config["css_template"] == (se.ASSETS / "schedule_editor.css").read_text()
    assert "seconds" not in config and "controls" not in config  # gr.HTML's quoted-name lookup did not fire
    assert not Path(se.__file__).with_suffix(".pyi").exists()  # Gradio's stub writer was kept out
    assert config["props"] == {"steps_per_second": FRAME_RATE}  # the frame rate reaches the browser as a prop


def test_input_listeners_default_to_always_last_so_no_edit_is_dropped():
    with gr.Blocks() as app:
        editor = ScheduleEditor(10, ["a"], steps_per_second=FRAME_RATE)
        editor.input(lambda value: None, editor, None)
        editor.input(lambda value: None, editor, None, trigger_mode="multiple")
    assert [fn.trigger_mode for fn in app.fns.values()] == ["always_last", "multiple"]


def test_css_asset_with_template_markers_is_refused(tmp_path, monkeypatch):
    (tmp_path / "bad.css").write_text(".x { content: '${oops}'; }")
    monkeypatch.setattr(se, "ASSETS", tmp_path)
    with pytest.raises(RuntimeError, match="must not contain"):
        se._asset("bad.css")
    se._asset.cache_clear()


# ---------------------------------------------------------------- in a real browser

CONTROLS = ["notes: C", "notes: G", "chords: minor"]
RETARGETED = ["notes: C", "tempo: fast"]


@dataclass
class Served:
    url: str
    browser: object
    received: dict[str, list[EditorValue]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(chromium_options):
    """A small studio page (the editor, a textbox mirroring each user edit, a button that retargets the editor from
    Python) on 127.0.0.1, and Debian's Chromium. Tests record every value Python receives in `received`."""
    from playwright import sync_api

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    received: dict[str, list[EditorValue]] = {"input": [], "change": []}

    def on_input(value: EditorValue) -> str:
        received["input"].append(value)
        return json.dumps(value.to_json())

    with gr.Blocks() as app:
        editor = ScheduleEditor(10, CONTROLS, steps_per_second=FRAME_RATE, elem_id="editor")
        mirror = gr.Textbox(label="Value that reached Python", elem_id="mirror")
        retarget = gr.Button("Make it 8 s, swap the controls", elem_id="retarget")
        editor.input(on_input, editor, mirror)
        editor.change(lambda value: received["change"].append(value), editor, None)
        retarget.click(lambda value: value.retarget(8, RETARGETED), editor, editor, show_progress="hidden")
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(**chromium_options)
            yield Served(f"http://127.0.0.1:{port}/", browser, received)
            browser.close()
    finally:
        app.close()


@pytest.fixture
def open_page(served):
    """Open the page in a fresh browser context (closed after the test) with nothing recorded yet."""
    contexts = []

    def open_(**context_options):
        for kind in served.received.values():
            kind.clear()
        context = served.browser.new_context(**context_options)
        contexts.append(context)
        page = context.new_page()
        page.goto(served.url, wait_until="load")
        page.wait_for_selector("#editor svg .se-pt-sel", timeout=20_000)
        _wait_for_layout(page)
        return context, page

    yield open_
    for context in contexts:
        context.close()
    time.sleep(0.3)  # let events still in flight land before the next test clears the record


def _wait_for_layout(page) -> None:
    """Wait until fonts are in and the editor's plot has kept its place for 10 frames: a page still styling itself
    (under load, on a closed network whose font requests fail) moves the plot, and a click aimed before then misses."""
    page.evaluate(
        """async () => {
            await document.fonts.ready;
            const svg = document.querySelector('#editor svg');
            const where = () => JSON.stringify(svg.getBoundingClientRect());
            let last = where(), still = 0;
            while (still < 10) {
                await new Promise((r) => requestAnimationFrame(r));
                const now = where();
                still = now === last ? still + 1 : 0;
                last = now;
            }
        }"""
    )


def _plot_mapper(page) -> Callable[[float, float], tuple[float, float]]:
    """(t seconds, v level) -> page pixel, from the plot geometry the editor writes on its <svg>."""
    svg = page.locator("#editor svg")
    box = svg.bounding_box()
    geometry = svg.evaluate("s => ({...s.dataset, W: s.viewBox.baseVal.width})")
    scale = box["width"] / float(geometry["W"])
    x0, x1, y0, y1, seconds = (float(geometry[k]) for k in ("x0", "x1", "y0", "y1", "seconds"))

    def at(t: float, v: float) -> tuple[float, float]:
        return box["x"] + (x0 + t / seconds * (x1 - x0)) * scale, box["y"] + (y1 - v * (y1 - y0)) * scale

    return at


def _next(served: Served, kind: str, count: int, timeout: float = 8.0) -> EditorValue:
    """Wait until Python has received `count + 1` values of this kind, and return the newest."""
    received = served.received[kind]
    deadline = time.monotonic() + timeout
    while len(received) <= count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no new {kind} value reached Python within {timeout} s (have {len(received)})")
        time.sleep(0.02)
    assert len(received) == count + 1, f"expected one new {kind} value, got {len(received) - count}"
    return received[-1]


def _assert_points(actual, expected, t_tol=0.03, v_tol=0.01):
    assert len(actual) == len(expected), f"{actual} != {expected}"
    for (t, v), (et, ev) in zip(actual, expected):
        assert t == pytest.approx(et, abs=t_tol) and v == pytest.approx(ev, abs=v_tol), f"{actual} != {expected}"


def _wait_for_mirror(page, value: EditorValue) -> None:
    """The textbox that Python filled from this value shows it in the page."""
    page.wait_for_function(
        "t => document.querySelector('#mirror textarea').value === t", arg=json.dumps(value.to_json())
    )


def _settle_and_count(served: Served, kind: str) -> int:
    time.sleep(0.4)  # long enough for any stray extra event to arrive
    return len(served.received[kind])


def test_mouse_and_keyboard_edits_reach_python(served, open_page, tmp_path):
    context, page = open_page(viewport={"width": 1280, "height": 800})
    at = _plot_mapper(page)
    constant = constant_points(10)

    page.mouse.click(*at(4, 0.5))  # click empty space: add a point
    value = _next(served, "input", 0)
    _assert_points(value.curves["notes: C"], [(0, 1), (4, 0.5), (10, 1)])
    assert value.curves["notes: G"] == constant and value.curves["chords: minor"] == constant
    _wait_for_mirror(page, value)

    start = at(*value.curves["notes: C"][1])  # drag it: one value, on release
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*at(6, 0.25), steps=8)
    page.mouse.up()
    value = _next(served, "input", 1)
    _assert_points(value.curves["notes: C"], [(0, 1), (6, 0.25), (10, 1)])
    assert _settle_and_count(served, "input") == 2

    page.mouse.move(*at(10, 1))  # the end point moves only up and down
    page.mouse.down()
    page.mouse.move(*at(7, 0.2), steps=5)
    page.mouse.up()
    value = _next(served, "input", 2)
    curve = value.curves["notes: C"]
    assert curve[-1][0] == 10.0 and curve[-1][1] == pytest.approx(0.2, abs=0.01)

    page.mouse.dblclick(*at(*curve[1]))  # double-click deletes a point
    value = _next(served, "input", 3)
    assert value.curves["notes: C"] == (curve[0], curve[-1])

    page.mouse.dblclick(*at(0, 1))  # ... but never an end point
    assert _settle_and_count(served, "input") == 4
    assert "end points stay" in page.locator("#editor .se-help").inner_text()

    page.get_by_role("button", name="Crossfade into").click()  # notes: C fades into notes: G
    value = _next(served, "input", 4)
    falling, rising = crossfade_points(10)
    assert (value.curves["notes: C"], value.curves["notes: G"]) == (falling, rising)
    assert value.curves["chords: minor"] == constant

    page.get_by_role("radio", name="chords: minor").click()  # pick another curve; apply the decay
    page.get_by_role("button", name="Decay").click()
    value = _next(served, "input", 5)
    _assert_points(value.curves["chords: minor"], decay_points(10, FRAME_RATE), t_tol=0, v_tol=1e-3)  # JS == Python

    page.focus("#editor .se-pt-sel[data-i='1']")  # keyboard on a focused point
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.i") == "2"  # Tab moves between points
    before = value.curves["chords: minor"][2]
    page.keyboard.press("ArrowUp")
    value = _next(served, "input", 6)
    assert value.curves["chords: minor"][2] == (before[0], pytest.approx(before[1] + 0.01, abs=1e-9))
    for _ in range(3):  # held key: keydowns repeat, one value
        page.keyboard.down("ArrowDown")
    page.keyboard.up("ArrowDown")
    value = _next(served, "input", 7)
    assert value.curves["chords: minor"][2] == (before[0], pytest.approx(before[1] - 0.02, abs=1e-9))
    page.keyboard.press("Shift+ArrowRight")
    value = _next(served, "input", 8)
    assert value.curves["chords: minor"][2][0] == pytest.approx(before[0] + 1.0, abs=1e-9)
    _wait_for_mirror(page, value)
    page.screenshot(path=tmp_path / "schedule_editor_1280x800.png")
    page.keyboard.press("Delete")
    value = _next(served, "input", 9)
    assert len(value.curves["chords: minor"]) == len(decay_points(10, FRAME_RATE)) - 1
    assert page.evaluate("document.activeElement.dataset.i") == "1"  # focus stays on the curve

    # .change fires for user edits too; under load the page may coalesce two quick edits into one .change, so the
    # changes must be the user's values, in order, ending with the last one.
    inputs = [v.to_json() for v in served.received["input"]]
    deadline = time.monotonic() + 5
    while (
        not served.received["change"] or served.received["change"][-1].to_json() != inputs[-1]
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    changes = iter(inputs)
    assert all(any(c == i for i in changes) for c in (v.to_json() for v in served.received["change"]))
    assert served.received["change"][-1].to_json() == inputs[-1] and len(served.received["change"]) >= 8


def test_python_updates_rescale_and_redraw_the_editor(served, open_page, tmp_path):
    context, page = open_page(viewport={"width": 1280, "height": 800})
    at = _plot_mapper(page)
    page.mouse.click(*at(5, 0.3))
    edited = _next(served, "input", 0)

    page.click("#retarget")  # Python sets the value
    value = _next(served, "change", 1)
    assert value == edited.retarget(8, RETARGETED)
    _assert_points(value.curves["notes: C"], [(0, 1), (4, 0.3), (8, 1)])
    assert len(served.received["input"]) == 1  # .input is for the user's edits only
    page.wait_for_function(
        "() => [...document.querySelectorAll('#editor .se-chip')].map(c => c.textContent)"
        ".join('|') === 'notes: C|tempo: fast'"
    )
    assert page.locator("#editor .se-tick").last.text_content() == "8 s"
    assert page.locator("#editor .se-pt-sel[data-i='1']").get_attribute("aria-valuetext") == "4 s, 30%"

    at = _plot_mapper(page)  # editing goes on in the new timeline
    page.get_by_role("radio", name="tempo: fast").click()
    page.mouse.click(*at(2, 0.5))
    value = _next(served, "input", 1)
    assert value.seconds == 8.0 and list(value.curves) == RETARGETED
    _assert_points(value.curves["tempo: fast"], [(0, 1), (2, 0.5), (8, 1)])


def test_decay_counts_in_the_frame_rate_python_gives_the_editor(served):
    """A model at 25 steps per second: the browser's decay preset and its tooltip follow the rate Python passed."""
    received: list[EditorValue] = []
    with gr.Blocks() as app:
        editor = ScheduleEditor(10, ["a"], steps_per_second=25, elem_id="editor")
        editor.input(lambda value: received.append(value), editor, None)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    context = served.browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
        page.wait_for_selector("#editor svg .se-pt-sel", timeout=20_000)
        _wait_for_layout(page)
        decay = page.get_by_role("button", name="Decay")
        assert "25 steps/s" in decay.get_attribute("title")
        decay.click()
        deadline = time.monotonic() + 8
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert received, "the decay preset's value did not reach Python"
        _assert_points(received[-1].curves["a"], decay_points(10, 25), t_tol=0, v_tol=1e-3)
        assert decay_points(10, 25) != decay_points(10, FRAME_RATE)
    finally:
        context.close()
        app.close()


def _touch(cdp, kind: str, xy: tuple[float, float] | None = None) -> None:
    points = [] if xy is None else [{"x": xy[0], "y": xy[1]}]
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})


def test_phone_width_and_touch(served, open_page, tmp_path):
    context, page = open_page(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True, device_scale_factor=1
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
    for selector in ("#editor .se-chip", "#editor .se-btn", "#editor .se-select", "#editor .se-pt-sel .se-hit"):
        for box in (page.locator(selector).nth(i).bounding_box() for i in range(page.locator(selector).count())):
            assert box["width"] >= 24 and box["height"] >= 24, f"{selector} is a {box} touch target"
    assert "Tap to add" in page.locator("#editor .se-help").inner_text()

    at = _plot_mapper(page)
    page.touchscreen.tap(*at(3, 0.6))  # tap: add
    value = _next(served, "input", 0)
    _assert_points(value.curves["notes: C"], [(0, 1), (3, 0.6), (10, 1)], t_tol=0.06)

    cdp = context.new_cdp_session(page)  # touch drag
    _touch(cdp, "touchStart", at(*value.curves["notes: C"][1]))
    for step in range(1, 7):
        _touch(cdp, "touchMove", at(3 + step / 3, 0.6 + step * 0.03))
    _touch(cdp, "touchEnd")
    value = _next(served, "input", 1)
    _assert_points(value.curves["notes: C"], [(0, 1), (5, 0.78), (10, 1)], t_tol=0.06)
    _wait_for_mirror(page, value)
    page.screenshot(path=tmp_path / "schedule_editor_390x844.png", full_page=True)

    middle = at(*value.curves["notes: C"][1])  # double-tap: delete
    page.touchscreen.tap(*middle)
    page.touchscreen.tap(*middle)
    value = _next(served, "input", 2)
    assert value.curves["notes: C"] == constant_points(10)
    assert math.isclose(
        page.locator("#editor svg").bounding_box()["width"],
        float(page.locator("#editor svg").evaluate("s => s.viewBox.baseVal.width")),
        abs_tol=1,
    )
