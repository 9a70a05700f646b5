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
Invalid parameters raise ``ScheduleError`` naming the parameter, so that a recipe can prefix it with its field path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


class ScheduleError(ValueError):
    """An invalid schedule parameter; ``field`` names it (e.g. ``rate`` or ``points[2]``)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def _check_value(field: str, value: float) -> None:
    if not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise ScheduleError(field, f"must be in [-1, 1] (a fraction of the control's strength), got {value}")


def _check_time(field: str, seconds: float) -> None:
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ScheduleError(field, f"must be a time in seconds >= 0, got {seconds}")


def step_times(steps: int, frame_rate: float) -> np.ndarray:
    """Time in seconds of each decoder step: t / frame_rate for t = 0 .. steps - 1."""
    return np.arange(steps, dtype=np.float64) / float(frame_rate)


@dataclass(frozen=True)
class Schedule:
    """Base class: subclasses define ``kind``, ``_evaluate`` and ``to_dict``."""

    kind: ClassVar[str] = ""

    def values(self, steps: int, frame_rate: float) -> np.ndarray:
        """float64 [steps]: the schedule at every decoder step."""
        return self._evaluate(step_times(steps, frame_rate), frame_rate)

    def _evaluate(self, times: np.ndarray, frame_rate: float) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    def latest_time(self) -> float:
        """The latest time in seconds the schedule names (a recipe checks it lies inside the clip)."""
        return 0.0


@dataclass(frozen=True)
class Constant(Schedule):
    value: float = 1.0
    kind: ClassVar[str] = "constant"

    def __post_init__(self):
        _check_value("value", self.value)

    def _evaluate(self, times, frame_rate):
        return np.full(times.shape, float(self.value))

    def to_dict(self):
        return {"kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class Linear(Schedule):
    start_s: float
    end_s: float
    from_value: float = 0.0
    to_value: float = 1.0
    kind: ClassVar[str] = "linear"

    def __post_init__(self):
        _check_time("start", self.start_s)
        _check_time("end", self.end_s)
        if not self.end_s > self.start_s:
            raise ScheduleError("end", f"must be after start ({self.start_s} s), got {self.end_s}")
        _check_value("from", self.from_value)
        _check_value("to", self.to_value)

    def _evaluate(self, times, frame_rate):
        progress = np.clip((times - self.start_s) / (self.end_s - self.start_s), 0.0, 1.0)
        return self.from_value + (self.to_value - self.from_value) * progress

    def to_dict(self):
        return {"kind": self.kind, "start": self.start_s, "end": self.end_s,
                "from": self.from_value, "to": self.to_value}

    def latest_time(self):
        return self.end_s


@dataclass(frozen=True)
class Exponential(Schedule):
    rate: float = 0.998
    initial: float = 1.0
    start_s: float = 0.0
    kind: ClassVar[str] = "exponential"

    def __post_init__(self):
        if not (math.isfinite(self.rate) and 0.0 < self.rate <= 1.0):
            raise ScheduleError("rate", f"must be in (0, 1] (a per-step decay factor), got {self.rate}")
        _check_value("initial", self.initial)
        _check_time("start", self.start_s)

    def _evaluate(self, times, frame_rate):
        # Whole steps since the start step, so that rate ** t is exactly the paper's per-step decay.
        elapsed = np.maximum(np.round(times * frame_rate) - round(self.start_s * frame_rate), 0.0)
        return self.initial * np.power(self.rate, elapsed)

    def to_dict(self):
        return {"kind": self.kind, "rate": self.rate, "initial": self.initial, "start": self.start_s}

    def latest_time(self):
        return self.start_s


@dataclass(frozen=True)
class Points(Schedule):
    points: tuple[tuple[float, float], ...]
    kind: ClassVar[str] = "points"

    def __post_init__(self):
        if len(self.points) == 0:
            raise ScheduleError("points", "must hold at least one [seconds, value] point")
        previous = -math.inf
        for i, (seconds, value) in enumerate(self.points):
            _check_time(f"points[{i}][0]", seconds)
            _check_value(f"points[{i}][1]", value)
            if not seconds > previous:
                raise ScheduleError(f"points[{i}][0]", f"must be later than the point before ({previous} s), "
                                                       f"got {seconds}")
            previous = seconds

    def _evaluate(self, times, frame_rate):
        xs = np.array([p[0] for p in self.points], dtype=np.float64)
        ys = np.array([p[1] for p in self.points], dtype=np.float64)
        return np.interp(times, xs, ys)

    def to_dict(self):
        return {"kind": self.kind, "points": [[s, v] for s, v in self.points]}

    def latest_time(self):
        return self.points[-1][0]


def crossfade(start_s: float, end_s: float) -> tuple[Linear, Linear]:
    """Two complementary ramps over [start_s, end_s]: the first falls 1 -> 0 while the second rises 0 -> 1.

    At every step the two values are ``1 - p`` and ``p`` for the same ramp progress ``p``, so they sum to 1.
    """
    return Linear(start_s, end_s, 1.0, 0.0), Linear(start_s, end_s, 0.0, 1.0)
