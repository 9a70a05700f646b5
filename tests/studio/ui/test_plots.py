"""The studio's figures without a browser: what the readout plot draws for steps outside the probe's range."""

import pytest

from studio.ui.plots import readout_figure


def test_steps_outside_the_probe_range_are_a_labelled_band_not_a_reading():
    times = [t / 10 for t in range(10)]
    probs = [[0.7, 0.3]] * 4 + [[0.5, 0.5]] * 3 + [[0.6, 0.4]] * 3
    outside = [False] * 4 + [True] * 3 + [False] * 3
    fig = readout_figure(times, probs, ["C", "D"], ["C"], 1.0, outside=outside)
    (band,) = fig.layout.shapes
    assert (band.x0, band.x1) == pytest.approx((0.4, 0.65)) and band.type == "rect"
    assert [a.text for a in fig.layout.annotations] == ["outside the probe's range"]
    steered = next(trace for trace in fig.data if trace.name == "C")
    assert list(steered.y) == [0.7] * 4 + [None] * 3 + [0.6] * 3
    plain = readout_figure(times, probs, ["C", "D"], ["C"], 1.0)
    assert not plain.layout.shapes and not plain.layout.annotations
