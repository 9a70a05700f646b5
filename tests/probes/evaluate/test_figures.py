"""probes/evaluate/figures.py: what the static PNGs can show without hover: strengths on the Pareto plot, and a
crossfade figure that does not draw a crossover that did not happen."""

import numpy as np

from probes.evaluate.figures import crossfade_figure, pareto_figure


def rows(points) -> list[dict]:
    return [
        {"condition": f"s{s:g}-{mode}-p{p:g}", "strength": s, "layers": mode, "gate_p": p, "fd": x, "acc": y}
        for s, mode, p, x, y in points
    ]


def labels(fig) -> dict[str, tuple[float, float]]:
    """{label text: marker position} of the Pareto figure's text trace."""
    (trace,) = [t for t in fig.data if t.mode and "text" in t.mode]
    return {text: (x, y) for text, x, y in zip(trace.text, trace.x, trace.y)}


def test_every_strength_is_written_beside_its_marker():
    # strength, then FD and accuracy: one condition per strength at exp0.95, p 0.3
    sweep = [(0.15, 0.2, 0.4), (0.3, 0.3, 0.6), (0.45, 0.4, 0.7), (0.6, 0.55, 0.95)]
    conditions = rows([(strength, "exp0.95", 0.3, fd, acc) for strength, fd, acc in sweep])
    fig = pareto_figure(conditions, {"fd": 0.0, "acc": 0.2}, "fd", "acc", "FD", "accuracy", True, "t")
    assert labels(fig) == {"0.15": (0.2, 0.4), "0.3": (0.3, 0.6), "0.45": (0.4, 0.7), "0.6": (0.55, 0.95)}
    (text,) = [t for t in fig.data if t.mode and "text" in t.mode]
    # the marker in the right quarter of the plotted range (baseline at 0 included) has its label on its left
    assert list(text.textposition) == ["middle right"] * 3 + ["middle left"]
    assert sum(1 for t in fig.data if t.showlegend is not False) == 3  # one series, the front, the baseline
    assert "strength" in fig.layout.legend.title.text


def test_coincident_markers_share_one_label_instead_of_overprinting():
    conditions = rows(
        [
            (0.3, "uniform", 1.0, 1.0, 0.5),
            (0.6, "uniform", 1.0, 1.0, 0.5),
            (0.3, "exp0.95", 1.0, 1.0, 0.5),
            (0.15, "top2", 1.0, 3.0, 0.9),
        ]
    )
    assert labels(pareto_figure(conditions, None, "fd", "acc", "FD", "accuracy", True, "t")) == {
        "0.3, 0.6": (1.0, 0.5),
        "0.15": (3.0, 0.9),
    }


def test_crossfade_figure_draws_only_the_crossovers_that_exist():
    t = np.linspace(0, 1, 5)
    p = np.tile(np.linspace(1, 0, 5), (2, 1))
    both = crossfade_figure(t, p, 1 - p, ("C", "G"), 0.5, 0.55)
    assert [shape.x0 for shape in both.layout.shapes] == [0.5, 0.55] and "never" not in both.layout.title.text
    none = crossfade_figure(t, p, p, ("C", "G"), 0.5, None, uncrossed=2)
    assert [shape.x0 for shape in none.layout.shapes] == [0.5]
    assert "2 of 2 clips never crossed over" in none.layout.title.text


def test_crossfade_labels_sit_on_the_outer_sides_of_their_lines():
    """Lines a fraction of a second apart must not print their labels over each other."""
    t = np.linspace(0, 10, 11)
    p = np.tile(np.linspace(1, 0, 11), (2, 1))
    for scheduled, measured in ((5.0, 5.5), (5.0, 4.5)):
        fig = crossfade_figure(t, p, 1 - p, ("C", "E"), scheduled, measured)
        sides = {a.text: a.xanchor for a in fig.layout.annotations}
        assert (sides["scheduled"], sides["measured"]) == (
            ("right", "left") if measured > scheduled else ("left", "right")
        ), sides
