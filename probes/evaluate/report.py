"""Tables of an evaluation: per-clip rows summarised into means with bootstrap intervals, Pareto fronts, CSV files."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from studio.files import atomic_path

from .metrics import bootstrap_ci

# Per-clip columns that are averaged per group, with the name of their aggregate.
AVERAGED = {
    "probe_hit": "probe_acc",
    "probe_p_target": "probe_p_target",
    "probe_pred_value": "probe_value",
    "dsp_hit": "dsp_acc",
    "dsp_support": "dsp_support",
    "dsp_value": "dsp_value",
    "bp_hit": "bp_acc",
    "clap": "clap",
}


def mean_columns(rows: Sequence[dict], confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict:
    """For every AVERAGED column with values in `rows`: `<name>`, `<name>_low`, `<name>_high` (percentile bootstrap of
    the mean over rows, seeded). Columns whose values are all None are left out; n is the row count."""
    out: dict = {"n": len(rows)}
    for column, name in AVERAGED.items():
        values = [row[column] for row in rows if row.get(column) is not None]
        if values:
            ci = bootstrap_ci(values, confidence=confidence, resamples=resamples, seed=seed)
            out.update({name: ci.mean, f"{name}_low": ci.low, f"{name}_high": ci.high})
    return out


def pareto_front(x: Sequence[float], y: Sequence[float], minimize_x: bool) -> list[int]:
    """Indices of the points no other point dominates, by increasing x. y is maximised; x minimised (drift) or
    maximised (CLAP). A point dominates another when it is at least as good on both axes and better on one."""
    xs = np.asarray(x, dtype=np.float64) * (1 if minimize_x else -1)  # smaller is better on xs
    ys = np.asarray(y, dtype=np.float64)
    front = []
    for i in range(len(xs)):
        dominated = np.any((xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i])))
        if not dominated and np.isfinite(xs[i]) and np.isfinite(ys[i]):
            front.append(i)
    return sorted(front, key=lambda i: x[i])


def write_csv(path: Path, rows: Sequence[dict]) -> Path:
    """Rows as CSV (columns: union of keys in first-seen order; None -> empty), written atomically."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path
