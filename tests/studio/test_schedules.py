"""Tests for studio/schedules.py: every kind against its closed form at MusicGen's 50 Hz step rate."""

import numpy as np
import pytest

from studio.errors import InputError
from studio.schedules import Constant, Exponential, Linear, Points, crossfade, step_times

FRAME_RATE = 50


def test_step_times_are_step_over_frame_rate():
    assert np.array_equal(step_times(4, FRAME_RATE), np.array([0.0, 0.02, 0.04, 0.06]))


def test_constant():
    values = Constant(0.25).values(7, FRAME_RATE)
    assert values.shape == (7,) and np.all(values == 0.25)


def test_paper_exponential_decay_is_0998_to_the_step():
    steps = 1503
    values = Exponential(rate=0.998).values(steps, FRAME_RATE)
    expected = np.array([0.998**t for t in range(steps)])
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=0)
    assert values[0] == 1.0


def test_exponential_holds_initial_value_until_its_start():
    values = Exponential(rate=0.5, initial=0.8, start_s=0.1).values(10, FRAME_RATE)  # start at step 5
    assert np.array_equal(values, [0.8] * 6 + [0.4, 0.2, 0.1, 0.05])


def test_linear_ramp_over_1500_steps():
    # 0 -> 1 over 30 s = 1500 steps at 50 Hz: value t / 1500, then held at 1.
    values = Linear(start_s=0.0, end_s=30.0).values(1503, FRAME_RATE)
    t = np.arange(1503)
    np.testing.assert_allclose(values, np.minimum(t / 1500, 1.0), rtol=0, atol=1e-15)
    assert values[750] == 0.5 and values[1500] == 1.0 and values[1502] == 1.0


def test_linear_holds_before_start_and_after_end():
    values = Linear(start_s=0.1, end_s=0.2, from_value=1.0, to_value=-1.0).values(15, FRAME_RATE)
    assert np.all(values[:6] == 1.0)  # steps 0..5 at or before 0.1 s
    np.testing.assert_allclose(values[6:10], [0.6, 0.2, -0.2, -0.6], atol=1e-12)
    assert np.all(values[10:] == -1.0)  # from 0.2 s on


def test_points_are_piecewise_linear_in_seconds():
    schedule = Points(((0.1, 0.0), (0.3, 1.0), (0.5, 0.5)))
    values = schedule.values(30, FRAME_RATE)
    assert np.all(values[:6] == 0.0)  # held before the first point
    np.testing.assert_allclose(values[10], 0.5, atol=1e-12)  # halfway up the first segment (0.2 s)
    assert values[15] == 1.0  # on the second point
    np.testing.assert_allclose(values[20], 0.75, atol=1e-12)  # halfway down the second segment (0.4 s)
    assert np.all(values[25:] == 0.5)  # held after the last point
    assert schedule.latest_time() == 0.5


def test_crossfade_is_two_complementary_ramps():
    fade_out, fade_in = crossfade(0.2, 0.8)
    a, b = fade_out.values(50, FRAME_RATE), fade_in.values(50, FRAME_RATE)
    np.testing.assert_allclose(a + b, 1.0, atol=1e-15)
    assert a[0] == 1.0 and b[0] == 0.0 and a[-1] == 0.0 and b[-1] == 1.0
    np.testing.assert_allclose([a[25], b[25]], [0.5, 0.5], atol=1e-12)  # 0.5 s, the middle of the fade


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: Constant(1.5), "value"),
        (lambda: Exponential(rate=1.01), "rate"),
        (lambda: Exponential(rate=0.0), "rate"),
        (lambda: Linear(start_s=2.0, end_s=1.0), "end"),
        (lambda: Linear(start_s=-1.0, end_s=1.0), "start"),
        (lambda: Points(()), "points"),
        (lambda: Points(((0.5, 0.0), (0.5, 1.0))), "points[1][0]"),
        (lambda: Points(((0.0, 0.0), (1.0, float("nan")))), "points[1][1]"),
    ],
)
def test_invalid_parameters_name_the_field(make, field):
    with pytest.raises(InputError) as err:
        make()
    assert err.value.field == field and str(err.value).startswith(field)


def test_to_dict_names_the_kind():
    assert Constant(0.5).to_dict() == {"kind": "constant", "value": 0.5}
    assert Exponential(0.99, 1.0, 0.0).to_dict() == {"kind": "exponential", "rate": 0.99, "initial": 1.0, "start": 0.0}
    assert Points(((0.0, 1.0),)).to_dict() == {"kind": "points", "points": [[0.0, 1.0]]}
