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


def test_without_a_crossover_the_result_is_none_not_an_end_point():
    t = np.linspace(0, 1, 11)
    assert switch_time(t, np.ones(11)) is None  # positive throughout: nothing handed over here
    assert switch_time(t, -np.ones(11)) is None  # negative throughout: never crossed
    assert switch_time(t, np.zeros(11)) is None
    assert switch_time(t, np.where(t < 0.5, 1.0, -1.0)) is None  # the wrong way round
    assert switch_time(t, [-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1]) is None  # a step fits no better than constant


def test_a_crossover_needs_mostly_negative_before_and_mostly_positive_after():
    t = np.arange(10, dtype=float)
    # one positive sample at the very end is a (late) crossover, since it beats "negative throughout" by one sample
    assert switch_time(t, [-1] * 9 + [1]) == 8.5
    # mostly negative, then mostly positive, with noise on both sides: still a crossover, between the runs
    assert switch_time(t, [-1, -1, 1, -1, -1, 1, 1, -1, 1, 1]) == 4.5
    # as many positive as negative samples after the best split: no better than "negative throughout"
    assert switch_time(t, [-1] * 8 + [1, -1]) is None


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


def test_clips_without_a_crossover_are_counted_and_left_out_of_the_timing():
    from probes.evaluate.crossfade import timing_row, timing_summary

    rows = [timing_row(0.25, 0.3), timing_row(0.25, None), timing_row(0.25, 0.1)]
    assert rows[1] == {"scheduled_s": 0.25, "crossover": "no crossover", "measured_s": None, "error_s": None}
    assert rows[0]["crossover"] == "crossed" and rows[0]["error_s"] == pytest.approx(0.05)
    summary = timing_summary(rows, resamples=200)
    assert summary["n_clips"] == 3 and summary["no_crossover"] == 1 and summary["scheduled_s"] == 0.25
    assert summary["measured_s"]["mean"] == pytest.approx(0.2) and summary["measured_s"]["n"] == 2
    assert summary["mean_abs_error_s"] == pytest.approx((0.05 + 0.15) / 2)
    none = timing_summary([timing_row(0.25, None), timing_row(0.25, None)], resamples=200)
    assert none["no_crossover"] == 2 and none["measured_s"] is None and none["mean_abs_error_s"] is None
