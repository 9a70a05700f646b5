"""Time schedules eta(t): how strongly a control acts at each decoder step.

A schedule is a small frozen object, written in seconds for people, that evaluates to one value per decoder step.
Step t sits at time t / frame_rate seconds (MusicGen: 50 steps per second). Values are fractions of a control's
strength and lie in [-1, 1]. Kinds:

- ``Constant(value)``: the same value at every step.
- ``Linear(start_s, end_s, from_value, to_value)``: ``from_value`` until ``start_s``, a straight ramp to ``to_value``
  at ``end_s``, then ``to_value``.
- ``Exponential(rate, initial, start_s)``: ``initial`` until the step at ``start_s``, then
  ``initial * rate ** (t - t_start)`` with a per-step rate (the paper's decay is ``rate = 0.998``).
- ``Points(points)``: piecewise linear through ``(seconds, value)`` points, held flat before the first and after the
  last point.

``crossfade`` makes two complementary schedules (they sum to 1 at every step) for a handover between two controls.
Schedules read and write their JSON form (``{"kind": "linear", "start": 0, "end": 10, "from": 0, "to": 1}``) through
studio/fields.py: ``read_schedule``, ``Schedule.to_dict``. Invalid parameters raise ``InputError`` naming the parameter,
placed under the recipe's field path when read from a recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from studio.errors import InputError
from studio.fields import fail, fields_to_json, items, json_fields, number, read, spec, tag

MAX_POINTS = 2000


def _check_value(field: str, value: float) -> None:
    if not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise InputError.at(field, f"must be in [-1, 1] (a fraction of the control's strength), got {value}")


def _check_time(field: str, seconds: float) -> None:
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InputError.at(field, f"must be a time in seconds >= 0, got {seconds}")


def step_times(steps: int, frame_rate: float) -> np.ndarray:
    """Time in seconds of each decoder step: t / frame_rate for t = 0 .. steps - 1."""
    return np.arange(steps, dtype=np.float64) / float(frame_rate)


@dataclass(frozen=True)
class Schedule:
    """Base class: subclasses define ``kind``, their fields and ``_evaluate``."""

    kind: ClassVar[str] = ""

    def values(self, steps: int, frame_rate: float) -> np.ndarray:
        """float64 [steps]: the schedule at every decoder step."""
        return self._evaluate(step_times(steps, frame_rate), frame_rate)

    def _evaluate(self, times: np.ndarray, frame_rate: float) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"kind": self.kind, **fields_to_json(self)}

    def latest_time(self) -> float:
        """The latest time in seconds the schedule names (a recipe checks it lies inside the clip)."""
        return 0.0


@dataclass(frozen=True)
class Constant(Schedule):
    value: float = spec(1.0, read=number())
    kind: ClassVar[str] = "constant"

    def __post_init__(self):
        _check_value("value", self.value)

    def _evaluate(self, times, frame_rate):
        return np.full(times.shape, float(self.value))


@dataclass(frozen=True)
class Linear(Schedule):
    start_s: float = spec(read=number(), key="start")
    end_s: float = spec(read=number(), key="end")
    from_value: float = spec(0.0, read=number(), key="from")
    to_value: float = spec(1.0, read=number(), key="to")
    kind: ClassVar[str] = "linear"

    def __post_init__(self):
        _check_time("start", self.start_s)
        _check_time("end", self.end_s)
        if not self.end_s > self.start_s:
            raise InputError.at("end", f"must be after start ({self.start_s} s), got {self.end_s}")
        _check_value("from", self.from_value)
        _check_value("to", self.to_value)

    def _evaluate(self, times, frame_rate):
        progress = np.clip((times - self.start_s) / (self.end_s - self.start_s), 0.0, 1.0)
        return self.from_value + (self.to_value - self.from_value) * progress

    def latest_time(self):
        return self.end_s


@dataclass(frozen=True)
class Exponential(Schedule):
    rate: float = spec(0.998, read=number(), required=True)
    initial: float = spec(1.0, read=number())
    start_s: float = spec(0.0, read=number(), key="start")
    kind: ClassVar[str] = "exponential"

    def __post_init__(self):
        if not (math.isfinite(self.rate) and 0.0 < self.rate <= 1.0):
            raise InputError.at("rate", f"must be in (0, 1] (a per-step decay factor), got {self.rate}")
        _check_value("initial", self.initial)
        _check_time("start", self.start_s)

    def _evaluate(self, times, frame_rate):
        # Whole steps since the start step, so that rate ** t is exactly the paper's per-step decay.
        elapsed = np.maximum(np.round(times * frame_rate) - round(self.start_s * frame_rate), 0.0)
        return self.initial * np.power(self.rate, elapsed)

    def latest_time(self):
        return self.start_s


def _point(value, path: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        fail(path, "must be a [seconds, value] pair")
    return number()(value[0], f"{path}[0]"), number()(value[1], f"{path}[1]")


@dataclass(frozen=True)
class Points(Schedule):
    points: tuple[tuple[float, float], ...] = spec(read=items(_point, MAX_POINTS))
    kind: ClassVar[str] = "points"

    def __post_init__(self):
        if len(self.points) == 0:
            raise InputError.at("points", "must hold at least one [seconds, value] point")
        previous = -math.inf
        for i, (seconds, value) in enumerate(self.points):
            _check_time(f"points[{i}][0]", seconds)
            _check_value(f"points[{i}][1]", value)
            if not seconds > previous:
                raise InputError.at(
                    f"points[{i}][0]", f"must be later than the point before ({previous} s), got {seconds}"
                )
            previous = seconds

    def _evaluate(self, times, frame_rate):
        xs = np.array([p[0] for p in self.points], dtype=np.float64)
        ys = np.array([p[1] for p in self.points], dtype=np.float64)
        return np.interp(times, xs, ys)

    def latest_time(self):
        return self.points[-1][0]


def crossfade(start_s: float, end_s: float) -> tuple[Linear, Linear]:
    """Two complementary ramps over [start_s, end_s]: the first falls 1 -> 0 while the second rises 0 -> 1.

    At every step the two values are ``1 - p`` and ``p`` for the same ramp progress ``p``, so they sum to 1.
    """
    return Linear(start_s, end_s, 1.0, 0.0), Linear(start_s, end_s, 0.0, 1.0)


SCHEDULES = {cls.kind: cls for cls in (Constant, Linear, Exponential, Points)}


def read_schedule(obj, path: str) -> Schedule:
    """A schedule from its JSON form at `path` (InputError naming the field otherwise)."""
    cls = SCHEDULES[tag(obj, path, "kind", tuple(SCHEDULES))]
    return read(cls, obj, path, keys=("kind", *json_fields(cls)))
