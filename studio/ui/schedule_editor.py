"""The drawable time-schedule editor: one curve per steering control over the clip, as a Gradio 6 `gr.HTML` component.

Value (on the wire, through the API, and `EditorValue.to_json()`):
    {"seconds": S, "curves": {"<control name>": [[t, v], ...], ...}, "given": G}
"given" (optional, seconds) is the opening the clip continues (an audio prompt): the editor shades 0 .. G, where
steering adds nothing (all of the clip, and says so, when the prompt is longer than the clip).
Each curve is piecewise linear in seconds: t rises strictly from exactly 0 to exactly S (the end points are pinned
there) and every v lies in [0, 1]; v multiplies the control's strength at time t. Curve order is control order (JSON
object order; a browser puts integer-like names such as "3" first, so give controls non-numeric names).

The drawing lives in assets/schedule_editor.js and assets/schedule_editor.css; this module reads them, validates values
both ways, converts to and from the recipe's per-control `{"kind": "points", "points": [...]}` schedules, and computes
the same presets as the editor's buttons so that Python and the browser agree on them. The decay preset counts decoder
steps, so the editor is told the model's frame rate (`steps_per_second`); the browser reads it from the component's
props.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import gradio as gr
import gradio.component_meta

from studio.errors import InputError
from studio.files import ASSETS

Point = tuple[float, float]

MAX_CURVES = 32
MAX_POINTS = 512
DECAY_RATE = 0.998  # the paper's exponential schedule: the level is multiplied by this at every decoder step


def _round_half_up(x: float, decimals: int) -> float:
    """Round like JavaScript's Math.round (ties upwards), so presets computed here equal the browser's."""
    scale = 10**decimals
    return math.floor(x * scale + 0.5) / scale


def round_time(t: float) -> float:
    """The editor keeps times to 0.01 s (half of MusicGen's 20 ms frame)."""
    return _round_half_up(t, 2)


def round_level(v: float) -> float:
    """The editor keeps levels to 0.001."""
    return _round_half_up(v, 3)


def _strictly_increasing(points: Sequence[Point], seconds: float) -> tuple[Point, ...]:
    """Drop interior points whose t does not lie strictly between the kept previous point and `seconds`."""
    kept = [points[0]]
    for t, v in points[1:-1]:
        if kept[-1][0] < t < seconds:
            kept.append((t, v))
    kept.append(points[-1])
    return tuple(kept)


# Presets: the same shapes as the editor's buttons (assets/schedule_editor.js computes them identically).


def constant_points(seconds: float, level: float = 1.0) -> tuple[Point, ...]:
    """A flat curve at `level` (1.0: the control acts at its full strength throughout)."""
    return ((0.0, level), (float(seconds), level))


def ramp_points(seconds: float, start: float, end: float) -> tuple[Point, ...]:
    """A straight line from `start` at t = 0 to `end` at t = seconds (ramp up: 0 -> 1, ramp down: 1 -> 0)."""
    return ((0.0, start), (float(seconds), end))


def decay_points(seconds: float, steps_per_second: float, rate: float = DECAY_RATE) -> tuple[Point, ...]:
    """The paper's exponential decay v(t) = rate ** (steps_per_second * t), sampled as points for piecewise-linear use;
    `steps_per_second` is the model's frame rate (decoder steps per second of audio).

    n = max(4, ceil(seconds / 2)) equal segments; t_i = round_time(seconds * i / n) except t_n = seconds exactly;
    v_i = round_level(rate ** (steps_per_second * t_i)), so every point lies on the curve (to 0.0005). With at most 2 s
    between points, linear interpolation stays within 0.006 of the exponential at the default rate and MusicGen's 50
    steps per second (the chord error k^2 h^2 / 8 = 0.00501 for k = 50 ln(1 / 0.998) per second and h = 2 s, plus the
    rounding).
    """
    n = max(4, math.ceil(seconds / 2))
    times = [round_time(seconds * i / n) for i in range(n)] + [float(seconds)]
    return _strictly_increasing([(t, round_level(rate ** (steps_per_second * t))) for t in times], seconds)


def crossfade_points(seconds: float) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    """Complementary linear curves (the paper's n1 -> n2 crossfade): the first falls 1 -> 0 while the second rises
    0 -> 1 over the whole clip, so they cross at seconds / 2 and always sum to 1."""
    return ramp_points(seconds, 1.0, 0.0), ramp_points(seconds, 0.0, 1.0)


def _number(raw: Any, field: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise InputError(f"{field} must be a finite number, got {raw!r}")
    return float(raw)


def _seconds(raw: Any) -> float:
    seconds = _number(raw, "seconds")
    if seconds <= 0:
        raise InputError(f"seconds must be above 0 (the clip length), got {seconds}")
    return seconds


def _validated_points(raw: Any, seconds: float, field: str, *, held_to_ends: bool = False) -> tuple[Point, ...]:
    """Check one curve: up to MAX_POINTS [t, v] pairs, t strictly increasing, v in [0, 1], and t running from exactly 0
    to exactly `seconds` (at least 2 points). With `held_to_ends`, the points need only lie within [0, seconds] (at
    least 1 point); the first and last levels are then held out to the clip's ends, as piecewise-linear evaluation
    does."""
    least = 1 if held_to_ends else 2
    if not isinstance(raw, (list, tuple)) or not least <= len(raw) <= MAX_POINTS:
        raise InputError(f"{field} must be a list of {least} to {MAX_POINTS} [t, v] points")
    points: list[Point] = []
    for i, pair in enumerate(raw):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise InputError(f"{field}[{i}] must be a [t, v] pair, got {pair!r}")
        t, v = _number(pair[0], f"{field}[{i}] t"), _number(pair[1], f"{field}[{i}] v")
        if not 0.0 <= v <= 1.0:
            raise InputError(f"{field}[{i}] v={v} must lie in [0, 1] (it multiplies the control's strength)")
        if points and t <= points[-1][0]:
            raise InputError(f"{field}[{i}] t={t} must be after the previous point's t={points[-1][0]}")
        points.append((t, v))
    first, last = points[0][0], points[-1][0]
    if not held_to_ends and (first != 0.0 or last != seconds):
        raise InputError(f"{field} must start at t=0 and end at t=seconds={seconds}, got {first} .. {last}")
    if first < 0.0 or last > seconds:
        raise InputError(f"{field} must lie within the clip, 0 .. {seconds} s, got {first} .. {last}")
    if first > 0.0:
        points.insert(0, (0.0, points[0][1]))
    if last < seconds:
        points.append((seconds, points[-1][1]))
    return tuple(points)


def _control_names(controls: Sequence[str]) -> list[str]:
    names = list(controls)
    if len(names) > MAX_CURVES:
        raise InputError(f"at most {MAX_CURVES} controls can be scheduled, got {len(names)}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise InputError(f"control names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        raise InputError(f"control names must be unique, got {names}")
    return names


@dataclass(frozen=True)
class EditorValue:
    """What the editor holds: the clip length and, in control order, one validated curve per control."""

    seconds: float
    curves: dict[str, tuple[Point, ...]]
    given: float = 0.0  # seconds of audio prompt at the start, shaded

    @classmethod
    def constant(cls, seconds: float, controls: Sequence[str]) -> EditorValue:
        """Every control at full strength (level 1) for the whole clip."""
        seconds = _seconds(seconds)
        return cls(seconds, {name: constant_points(seconds) for name in _control_names(controls)})

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | str) -> EditorValue:
        """Validate a value as the browser or an API client sends it (a dict, or its JSON text)."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as err:
                raise InputError(f"the schedule value is not valid JSON: {err}") from None
        if not isinstance(raw, Mapping) or not {"seconds", "curves"} <= set(raw) <= {"seconds", "curves", "given"}:
            raise InputError('the schedule value must be an object with "seconds", "curves" and optionally "given"')
        seconds = _seconds(raw["seconds"])
        curves = raw["curves"]
        if not isinstance(curves, Mapping):
            raise InputError('"curves" must be an object mapping control names to point lists')
        names = _control_names(list(curves))
        given = _number(raw.get("given", 0.0), "given")
        if given < 0.0:
            raise InputError(f"given must be at least 0 (the audio prompt's length), got {given}")
        curves = {name: _validated_points(curves[name], seconds, f"curves[{name!r}]") for name in names}
        return cls(seconds, curves, given)

    def to_json(self) -> dict[str, Any]:
        """The wire form: plain lists, curves in control order; "given" only when there is an audio prompt."""
        curves = {name: [list(p) for p in pts] for name, pts in self.curves.items()}
        return {"seconds": self.seconds, "curves": curves} | ({"given": self.given} if self.given else {})

    def to_recipe_schedules(self) -> dict[str, dict[str, Any]]:
        """Per control, the recipe's schedule: {"kind": "points", "points": [[t, v], ...]} (t in seconds)."""
        return {name: {"kind": "points", "points": [list(p) for p in pts]} for name, pts in self.curves.items()}

    @classmethod
    def from_recipe_schedules(cls, seconds: float, schedules: Mapping[str, Mapping[str, Any] | None]) -> EditorValue:
        """Build the editor's value from recipe schedules, one per control name, in the mapping's order.

        None means no schedule: constant at level 1. A "points" schedule may start after 0 or end before `seconds`;
        its first and last levels are then held out to the clip's ends. Other kinds are refused: evaluate them to
        points first.
        """
        seconds = _seconds(seconds)
        curves: dict[str, tuple[Point, ...]] = {}
        for name in _control_names(list(schedules)):
            schedule = schedules[name]
            field = f"schedules[{name!r}]"
            if schedule is None:
                curves[name] = constant_points(seconds)
                continue
            if not isinstance(schedule, Mapping) or schedule.get("kind") != "points" or "points" not in schedule:
                raise InputError(
                    f'{field} must be {{"kind": "points", "points": [[t, v], ...]}}; '
                    "the editor draws only point schedules"
                )
            curves[name] = _validated_points(schedule["points"], seconds, f"{field}.points", held_to_ends=True)
        return cls(seconds, curves)

    def retarget(self, seconds: float, controls: Sequence[str], given: float | None = None) -> EditorValue:
        """Follow a new clip length and control set: times scale by seconds / self.seconds (rounded to 0.01 s; an
        interior point that would no longer lie strictly inside is dropped), controls keep their curves in the new
        order, new ones start constant at level 1, removed ones are dropped. `given` (None: kept) is the new audio
        prompt's length."""
        seconds = _seconds(seconds)
        given = self.given if given is None else given
        scale = seconds / self.seconds
        curves: dict[str, tuple[Point, ...]] = {}
        for name in _control_names(controls):
            old = self.curves.get(name)
            if old is None:
                curves[name] = constant_points(seconds)
                continue
            scaled = [(0.0, old[0][1])] + [(round_time(t * scale), v) for t, v in old[1:-1]] + [(seconds, old[-1][1])]
            curves[name] = _strictly_increasing(scaled, seconds)
        return EditorValue(seconds, curves, round_time(given))


@cache
def _asset(name: str) -> str:
    """An asset's text. gr.HTML runs its CSS through Handlebars and a JS template literal: their markers are refused."""
    text = (ASSETS / name).read_text(encoding="utf-8")
    if name.endswith(".css") and any(marker in text for marker in ("`", "${", "{{", "\\")):
        raise RuntimeError(f"{ASSETS / name} must not contain `, ${{, {{{{ or backslashes (gr.HTML templates it)")
    return text


@contextmanager
def _no_stub_file() -> Iterator[None]:
    """Gradio's ComponentMeta writes (and keeps rewriting) a .pyi stub beside any module that defines a component
    subclass; a stale stub there would shadow this module for type checkers, so that write is skipped here."""
    write_stub = gradio.component_meta.create_or_modify_pyi
    gradio.component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        gradio.component_meta.create_or_modify_pyi = write_stub


with _no_stub_file():

    class ScheduleEditor(gr.HTML):
        """The schedule editor; `value`, when given, wins over `seconds` and `controls`. `steps_per_second` is the
        model's frame rate, which the decay preset counts in (the browser reads it as `props.steps_per_second`).

        Python functions receive an `EditorValue` (or None) and may return an `EditorValue`, its `to_json()` dict or
        JSON text. Events: `.change` (any new value, from the user or from Python) and `.input` (user edits only: a
        click, a finished drag, a preset, a key press). Drags and held arrow keys send one value, on release.
        """

        def __init__(
            self,
            seconds: float = 10.0,
            controls: Sequence[str] = (),
            *,
            value: EditorValue | Mapping[str, Any] | str | None = None,
            steps_per_second: float,
            label: str | None = "Schedule",
            **kwargs: Any,
        ):
            initial = EditorValue.constant(seconds, controls) if value is None else value
            super().__init__(
                value=initial,
                label=label,
                html_template='<div class="se-root"></div>',
                css_template=_asset("schedule_editor.css"),
                js_on_load=_asset("schedule_editor.js"),
                apply_default_css=False,
                container=kwargs.pop("container", True),
                padding=kwargs.pop("padding", True),
                steps_per_second=steps_per_second,  # a gr.HTML prop: the JS reads props.steps_per_second
                **kwargs,
            )

        def input(  # type: ignore[override]
            self, fn: Any = "decorator", inputs: Any = None, outputs: Any = None, **kwargs: Any
        ) -> Any:
            """gr.HTML's `.input`, with trigger_mode "always_last" unless told otherwise: Gradio's default for .input,
            "once", silently drops an edit made while the previous one is still being handled, leaving Python stale."""
            kwargs.setdefault("trigger_mode", "always_last")
            return gr.HTML.input(self, fn, inputs, outputs, **kwargs)

        def preprocess(self, payload: Any) -> EditorValue | None:  # type: ignore[override]
            """The browser's value, validated; a malformed one (say from an API client) becomes an error in the page."""
            if payload is None:
                return None
            try:
                return EditorValue.from_json(payload)
            except InputError as err:
                raise gr.Error(f"Schedule editor: {err}") from None

        def postprocess(self, value: Any) -> dict[str, Any] | None:  # type: ignore[override]
            if value is None:
                return None
            if not isinstance(value, EditorValue):
                value = EditorValue.from_json(value)
            return value.to_json()

        def api_info(self) -> dict[str, Any]:
            point = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
            return {
                "type": "object",
                "properties": {
                    "seconds": {"type": "number"},
                    "curves": {"type": "object", "additionalProperties": {"type": "array", "items": point}},
                },
                "required": ["seconds", "curves"],
            }

        def example_payload(self) -> Any:
            return EditorValue.constant(10.0, ["notes: C"]).to_json()

        def example_value(self) -> Any:
            return EditorValue.constant(10.0, ["notes: C"])
