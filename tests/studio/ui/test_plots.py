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


def test_closed_loop_strengths_get_a_panel_under_the_readout_and_targets_a_line():
    times = [t / 10 for t in range(5)]
    probs = [[0.3, 0.7]] * 5
    running = [[0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5], [0.6, 0.4]]
    strengths = {"notes: D": [3.0, 2.0, 1.5, 1.0, 0.5]}
    fig = readout_figure(
        times, probs, ["C", "D"], ["D"], 0.5, strengths=strengths, targets={"notes: D": 0.8}, running=running, ceiling=3
    )
    on = {trace.name: (trace.xaxis, trace.yaxis) for trace in fig.data}
    assert on["strength D"] == ("x2", "y2") and on["D"] == ("x", "y") and on["running D"] == ("x", "y")
    assert list(next(t for t in fig.data if t.name == "strength D").y) == strengths["notes: D"]
    assert list(next(t for t in fig.data if t.name == "running D").y) == [0.8, 0.7, 0.6, 0.5, 0.4]  # D's column
    assert fig.layout.xaxis.matches == "x2" and fig.layout.yaxis2.title.text == "strength"
    assert tuple(fig.layout.yaxis2.range) == pytest.approx((0, 3.15))  # the ceiling in view
    assert fig.layout.yaxis.domain[0] > fig.layout.yaxis2.domain[1]  # the readout on top
    (line,) = [shape for shape in fig.layout.shapes if shape.type == "line"]
    assert (line.y0, line.y1, line.yref) == (0.8, 0.8, "y")
    assert [a.text for a in fig.layout.annotations] == ["target D 0.80"]
    assert fig.layout.height > 360


def test_without_strengths_the_readout_is_one_panel():
    fig = readout_figure([0.0, 0.1], [[0.3, 0.7]] * 2, ["C", "D"], ["D"], 0.2)
    layout = fig.to_dict()["layout"]
    assert "yaxis2" not in layout and "xaxis2" not in layout and layout["height"] == 360
    assert all(trace.yaxis is None for trace in fig.data) and not fig.layout.shapes
