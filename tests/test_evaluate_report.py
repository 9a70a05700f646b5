"""probes/evaluate/report.py: aggregation with bootstrap intervals, Pareto fronts, CSV files."""

import csv

import pytest

from probes.evaluate.metrics import bootstrap_ci
from probes.evaluate.report import mean_columns, pareto_front, write_csv


def test_mean_columns_aggregate_present_columns_only():
    rows = [{"probe_hit": 1.0, "dsp_hit": None, "clap": 0.2}, {"probe_hit": 0.0, "dsp_hit": 1.0, "clap": 0.4},
            {"probe_hit": 1.0, "clap": 0.3}]
    out = mean_columns(rows, resamples=500, seed=3)
    assert out["n"] == 3
    assert out["probe_acc"] == pytest.approx(2 / 3) and out["clap"] == pytest.approx(0.3)
    assert out["dsp_acc"] == 1.0 and out["dsp_acc_low"] == out["dsp_acc_high"] == 1.0  # one value
    ci = bootstrap_ci([1.0, 0.0, 1.0], resamples=500, seed=3)
    assert (out["probe_acc_low"], out["probe_acc_high"]) == (ci.low, ci.high)
    assert "probe_value" not in out and "dsp_support" not in out


def test_pareto_front_minimising_drift():
    x = [1.0, 2.0, 0.5, 3.0, 2.0]
    y = [0.5, 0.9, 0.2, 0.95, 0.6]
    assert pareto_front(x, y, minimize_x=True) == [2, 0, 1, 3]   # 4 is beaten by 1
    assert pareto_front(x, y, minimize_x=False) == [3]           # maximising both: 3 beats everyone


def test_pareto_front_keeps_ties_and_drops_nan():
    assert pareto_front([1.0, 1.0], [0.5, 0.5], minimize_x=True) == [0, 1]
    assert pareto_front([float("nan"), 1.0], [1.0, 0.5], minimize_x=True) == [1]


def test_write_csv_unions_columns_and_blanks_none(tmp_path):
    path = write_csv(tmp_path / "sub" / "t.csv", [{"a": 1, "b": None}, {"a": 2.5, "c": "x"}])
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"a": "1", "b": "", "c": ""}, {"a": "2.5", "b": "", "c": "x"}]
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]  # no temporary file left
