"""probes/evaluate/report.py: aggregation with bootstrap intervals, Pareto fronts, CSV files."""

import csv

import pytest

from probes.evaluate.metrics import bootstrap_ci
from probes.evaluate.report import mean_columns, pareto_front, write_csv


def test_mean_columns_aggregate_present_columns_only():
    rows = [
        {"probe_hit": 1.0, "dsp_hit": None, "clap": 0.2},
        {"probe_hit": 0.0, "dsp_hit": 1.0, "clap": 0.4},
        {"probe_hit": 1.0, "clap": 0.3},
    ]
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
    assert pareto_front(x, y, minimize_x=True) == [2, 0, 1, 3]  # 4 is beaten by 1
    assert pareto_front(x, y, minimize_x=False) == [3]  # maximising both: 3 beats everyone


def test_pareto_front_keeps_ties_and_drops_nan():
    assert pareto_front([1.0, 1.0], [0.5, 0.5], minimize_x=True) == [0, 1]
    assert pareto_front([float("nan"), 1.0], [1.0, 0.5], minimize_x=True) == [1]


def test_write_csv_unions_columns_and_blanks_none(tmp_path):
    path = write_csv(tmp_path / "sub" / "t.csv", [{"a": 1, "b": None}, {"a": 2.5, "c": "x"}])
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"a": "1", "b": "", "c": ""}, {"a": "2.5", "b": "", "c": "x"}]
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]  # no temporary file left


def _summary(**parts) -> dict:
    return {"clap": {"status": "skipped", "reason": "no CLAP"}, "clips": {"rendered": 3, "reused": 0}, **parts}


def _crossfade(measured, no_crossover: int, n_clips: int = 4) -> dict:
    return {
        "first": "C",
        "second": "G",
        "scheduled_s": 5.0,
        "measured_s": measured,
        "no_crossover": no_crossover,
        "n_clips": n_clips,
        "first_third_probe_acc": 0.5,
        "last_third_probe_acc": 0.75,
    }


def test_stdout_says_no_crossover_instead_of_a_time():
    from probes.evaluate.cli import format_summary

    text = format_summary(_summary(crossfade=_crossfade(None, 4)))
    assert "scheduled 5.00 s, no crossover in any of the 4 clips" in text and "measured" not in text
    text = format_summary(_summary(crossfade=_crossfade({"mean": 5.5, "low": 5.0, "high": 6.0}, 1)))
    assert "measured 5.50 s [5.00, 6.00] (1 of 4 clips: no crossover)" in text


def test_stdout_names_clamped_and_merged_conditions():
    from probes.evaluate.cli import format_summary

    row = {"condition": "s0.3-top5-p1", "probe_acc": 0.5, "fd_acts": 0.1, "mmd_acts": 0.01}
    sweep = {
        "table": [row],
        "clamped": {"top8": 5, "top16": 5},
        "merged": [{"kept": "s0.3-top5-p1", "requested": ["s0.3-top8-p1", "s0.3-top16-p1"]}],
    }
    lines = format_summary(_summary(sweep=sweep)).splitlines()
    assert lines[1].startswith("s0.3-top5-p1 ")
    assert "top16 asks for more layers than the model steers: run with k=5" in lines
    assert "same steering on this model, run once as s0.3-top5-p1: s0.3-top8-p1, s0.3-top16-p1" in lines
