"""probes/evaluate/timing.py: switch-point fitting and readout window centres, exact values."""

import numpy as np
import pytest

from probes.evaluate import EvaluationError
from probes.evaluate.timing import switch_time, window_centres
from studio.schedules import crossfade, step_times


def test_clean_step_switches_between_the_last_negative_and_first_positive_sample():
    t = np.arange(10) * 0.1
    assert switch_time(t, np.where(t < 0.55, -1.0, 1.0)) == pytest.approx(0.55)
    assert switch_time(t, np.where(t < 0.05, -1.0, 1.0)) == pytest.approx(0.05)


def test_a_sample_at_zero_between_the_runs_gives_its_own_time():
    t = np.arange(5, dtype=float)
    assert switch_time(t, [-2, -1, 0, 1, 2]) == 2.0


def test_isolated_noise_does_not_move_the_switch():
    t = np.arange(20, dtype=float)
    s = np.where(t < 10, -1.0, 1.0)
    s[3], s[15] = 1.0, -1.0  # one flip on each side
    assert switch_time(t, s) == 9.5


def test_no_switch_lands_at_an_end():
    t = np.linspace(0, 1, 11)
    assert switch_time(t, np.ones(11)) == 0.0     # positive throughout: switched before the first sample
    assert switch_time(t, -np.ones(11)) == 1.0    # negative throughout: never switched


def test_scheduled_crossover_of_a_full_length_crossfade_is_the_midpoint():
    fade_out, fade_in = crossfade(0.0, 4.0)
    steps = 4 * 50 + 3
    times = step_times(steps, 50)
    assert switch_time(times, fade_in.values(steps, 50) - fade_out.values(steps, 50)) == pytest.approx(2.0)
    fade_out, fade_in = crossfade(1.0, 2.0)
    assert switch_time(times, fade_in.values(steps, 50) - fade_out.values(steps, 50)) == pytest.approx(1.5)


def test_switch_time_refuses_bad_input():
    with pytest.raises(EvaluationError, match="increasing"):
        switch_time([0, 0, 1], [1, 2, 3])
    with pytest.raises(EvaluationError, match="equally long"):
        switch_time([0, 1], [1])
    with pytest.raises(EvaluationError, match="NaN"):
        switch_time([0, 1], [np.nan, 1])


def test_window_centres():
    # window 3 at 10 steps/s: steps 0, 1 average what they have (centres 0, 0.5 steps), then t - 1 steps
    np.testing.assert_allclose(window_centres(5, 3, 10.0), [0.0, 0.05, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(window_centres(4, 1, 50.0), step_times(4, 50))
    with pytest.raises(EvaluationError):
        window_centres(4, 0, 50.0)
