"""When does a handover happen? Switch-point fitting for the crossfade experiment, as pure functions.

The same estimator serves the schedule (when does the second control's weight overtake the first's?) and the readout
(when does the probe's probability of the second class overtake the first's?), so the scheduled and the measured
crossover are defined alike and can be compared directly.
"""

from __future__ import annotations

import numpy as np

from studio.errors import EvaluationError


def switch_time(times, signal) -> float | None:
    """The best single switch point from negative to positive of a sampled `signal` (e.g. p2(t) - p1(t)), or None
    when the signal does not cross over.

    It is the tau minimising the number of disagreeing samples, #{t_i < tau: s_i > 0} + #{t_i >= tau: s_i < 0}
    (zeros count for neither side), i.e. the step function closest to the signs, which noise crossing zero now and
    then does not fool. Split j (the first j samples before tau) maps to tau = (t_{j-1} + t_j) / 2, j = 0 to t_0 and
    j = n to t_{n-1}; when several splits are equally good the median of their taus is returned (a sample exactly at
    zero between a negative and a positive run gives its own time). Times must be strictly increasing.

    Crossover criterion: the best split must disagree with strictly fewer samples than both splits without a switch
    (j = 0, "positive throughout", and j = n, "negative throughout"). That is the same as saying the samples before
    it are mostly negative and those after it mostly positive (strict majorities of the non-zero samples on each
    side). Otherwise (a signal of one sign, one that goes from positive to negative, all zeros, or a tie with a
    constant sign) there is no crossover and the result is None, never an end point of `times`."""
    t = np.asarray(times, dtype=np.float64).ravel()
    s = np.asarray(signal, dtype=np.float64).ravel()
    if len(t) != len(s) or len(t) == 0:
        raise EvaluationError(f"switch_time needs equally long, non-empty times and signal, got {len(t)} and {len(s)}")
    if np.any(np.diff(t) <= 0):
        raise EvaluationError("switch_time needs strictly increasing times")
    if not np.all(np.isfinite(s)):
        raise EvaluationError("switch_time got NaN or infinite signal values")
    positive_before = np.concatenate([[0], np.cumsum(s > 0)])  # j = 0..n
    negative_after = np.concatenate([np.cumsum((s < 0)[::-1])[::-1], [0]])  # j = 0..n
    errors = positive_before + negative_after
    if errors.min() >= min(errors[0], errors[-1]):  # no switch explains the signs as well
        return None
    midpoints = np.concatenate([[t[0]], (t[:-1] + t[1:]) / 2, [t[-1]]])  # tau of split j = 0..n
    return float(np.median(midpoints[errors == errors.min()]))


def window_centres(steps: int, window: int, frame_rate: float) -> np.ndarray:
    """[steps] time in seconds of the centre of each sliding readout window: step t averages steps
    max(0, t - window + 1)..t, so its centre lies at their midpoint; a window readout lags the schedule by about
    (window - 1) / 2 steps, and timing it at the centre removes that lag."""
    if window < 1 or frame_rate <= 0:
        raise EvaluationError(f"need window >= 1 and frame_rate > 0, got {window} and {frame_rate}")
    t = np.arange(steps, dtype=np.float64)
    return (np.maximum(0.0, t - window + 1) + t) / 2 / frame_rate
