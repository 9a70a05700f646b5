"""The numbers of an evaluation, as pure functions: distribution drift (Frechet distance, MMD), bootstrap confidence
intervals, probe accuracy from pooled activations, and cosines between steering directions.

Embedding sets are [n, d] arrays (numpy or torch), one row per clip; all arithmetic is float64.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from studio.errors import EvaluationError


def _as_rows(x, name: str, min_rows: int = 1) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    array = array.astype(np.float64)
    if array.ndim != 2:
        raise EvaluationError(f"{name} must be a [n, d] array of embeddings, got shape {list(array.shape)}")
    if len(array) < min_rows:
        raise EvaluationError(f"{name} has {len(array)} rows; this metric needs at least {min_rows}")
    if not np.all(np.isfinite(array)):
        raise EvaluationError(f"{name} holds NaN or infinite values")
    return array


def _same_width(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise EvaluationError(
            f"the two embedding sets differ in width ({x.shape[1]} vs {y.shape[1]}); "
            "compare embeddings of the same layer and model"
        )


# ------------------------------------------------------------------------------------------------- Frechet distance


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; eigenvalues that rounding made negative count as 0."""
    values, vectors = np.linalg.eigh((a + a.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_gaussians(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mean_a, cov_a) and N(mean_b, cov_b):
    ||mean_a - mean_b||^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a^1/2 cov_b cov_a^1/2)^1/2).

    The cross term is computed from the eigenvalues of the symmetric PSD matrix cov_a^1/2 cov_b cov_a^1/2, so it is
    real and exact for singular covariances (fewer samples than dimensions) with no complex parts to discard, unlike
    sqrtm of the non-symmetric product cov_a cov_b. The result is clipped at 0 against rounding."""
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = np.asarray(mean_a) - np.asarray(mean_b)
    return float(max(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross, 0.0))


def gaussian_fit(x, ridge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(mean [d], covariance [d, d]) of the rows of x; unbiased covariance (divides by n - 1), plus ridge * I."""
    rows = _as_rows(x, "embeddings", min_rows=2)
    if ridge < 0:
        raise EvaluationError(f"ridge must be >= 0, got {ridge}")
    cov = np.cov(rows, rowvar=False).reshape(rows.shape[1], rows.shape[1])
    return rows.mean(axis=0), cov + ridge * np.eye(rows.shape[1])


def frechet_distance(x, y, ridge: float = 0.0) -> float:
    """Frechet distance between Gaussians fitted to two embedding sets [n, d] and [m, d] (n, m >= 2).

    With fewer samples than dimensions the covariances are singular; the eigenvalue formulation above handles that
    exactly, so no regularisation is needed for a finite answer and the default adds none. `ridge` > 0 adds ridge * I to
    both covariances (shrinkage towards isotropy, for callers who want the estimate less dominated by a few noisy
    directions); it leaves the distance of identical sets at 0. Like every FD estimate this one is biased upwards by
    the sampling noise of the covariances (roughly by tr(cov)/n per set), so compare FDs only between sets of equal
    sizes."""
    a, b = _as_rows(x, "x", 2), _as_rows(y, "y", 2)
    _same_width(a, b)
    return frechet_gaussians(*gaussian_fit(a, ridge), *gaussian_fit(b, ridge))


# --------------------------------------------------------------------------------------------------------------- MMD


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.clip(d2, 0.0, None)


def median_bandwidth(x, y=None) -> float:
    """The median heuristic: the median Euclidean distance between distinct rows of x (stacked with y if given).
    Falls back to 1.0 when all rows coincide."""
    rows = _as_rows(x, "x", 2) if y is None else np.vstack([_as_rows(x, "x"), _as_rows(y, "y")])
    if len(rows) < 2:
        raise EvaluationError("the median heuristic needs at least two embeddings")
    upper = np.triu_indices(len(rows), k=1)
    median = float(np.median(np.sqrt(_squared_distances(rows, rows)[upper])))
    return median if median > 0 else 1.0


def mmd_squared(x, y, bandwidth: float | None = None, unbiased: bool = True) -> float:
    """Squared maximum mean discrepancy between two embedding sets with the RBF kernel
    k(a, b) = exp(-||a - b||^2 / (2 bandwidth^2)).

    bandwidth: None uses `median_bandwidth(x, y)` on the pooled sets. When several sets are compared with one
    reference (a sweep against its baseline), pass one fixed bandwidth (e.g. the reference's own median) so the
    numbers share a kernel.
    unbiased: the U-statistic (within-set sums skip i == j; needs n, m >= 2), which is unbiased for MMD^2 and can come
    out slightly negative when the sets match; False gives the V-statistic, which is >= 0 and exactly 0 for identical
    sets."""
    a, b = _as_rows(x, "x", 2 if unbiased else 1), _as_rows(y, "y", 2 if unbiased else 1)
    _same_width(a, b)
    sigma = median_bandwidth(a, b) if bandwidth is None else float(bandwidth)
    if not sigma > 0:
        raise EvaluationError(f"the MMD bandwidth must be positive, got {bandwidth}")
    scale = -1.0 / (2.0 * sigma * sigma)
    k_aa, k_bb = np.exp(scale * _squared_distances(a, a)), np.exp(scale * _squared_distances(b, b))
    k_ab = np.exp(scale * _squared_distances(a, b))
    n, m = len(a), len(b)
    if unbiased:
        within_a = (k_aa.sum() - np.trace(k_aa)) / (n * (n - 1))
        within_b = (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    else:
        within_a, within_b = k_aa.mean(), k_bb.mean()
    return float(within_a + within_b - 2.0 * k_ab.mean())


def drift_against(reference, sets: Sequence) -> dict:
    """Mean Frechet distance and mean MMD^2 (U-statistic) of each embedding set in `sets` against `reference`:
    {"fd": ..., "mmd": ...}. MMD's RBF bandwidth is the median heuristic on the reference alone, shared by every set
    so that all values compare under one kernel. Give sets of the reference's size (e.g. steered clips of one target
    against the unsteered clips of the same prompts and seeds): both estimates carry a small-sample bias that depends
    on the set sizes."""
    ref = _as_rows(reference, "reference", 2)
    if not sets:
        raise EvaluationError("drift needs at least one set to compare with the reference")
    bandwidth = median_bandwidth(ref)
    fds = [frechet_distance(x, ref) for x in sets]
    mmds = [mmd_squared(x, ref, bandwidth=bandwidth) for x in sets]
    return {"fd": float(np.mean(fds)), "mmd": float(np.mean(mmds))}


# ----------------------------------------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class ConfidenceInterval:
    """A mean with its percentile-bootstrap interval: `low <= mean <= high` for any data; n values were averaged."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> ConfidenceInterval:
    """Percentile bootstrap interval of the mean of per-clip values (e.g. 0/1 correctness).

    `resamples` means of n values drawn with replacement (numpy's default_rng(seed), so the interval is a function of
    (values, confidence, resamples, seed)); low/high are their (1 - confidence)/2 and (1 + confidence)/2 quantiles,
    widened if needed to contain the sample mean. One value gives low = mean = high. NaNs are refused, not dropped:
    a metric that failed on a clip should say so upstream."""
    data = np.asarray(values, dtype=np.float64).ravel()
    if len(data) == 0:
        raise EvaluationError("cannot bootstrap an empty set of values; evaluate at least one clip")
    if not np.all(np.isfinite(data)):
        raise EvaluationError("bootstrap values hold NaN or infinite entries; drop or fix the failed clips first")
    if not 0 < confidence < 1:
        raise EvaluationError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if resamples < 1:
        raise EvaluationError(f"resamples must be at least 1, got {resamples}")
    mean = float(data.mean())
    if len(data) == 1:
        return ConfidenceInterval(mean, mean, mean, 1, confidence)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return ConfidenceInterval(mean, float(min(low, mean)), float(max(high, mean)), len(data), confidence)


# ------------------------------------------------------------------------------------------------------ probe readout


@dataclass(frozen=True)
class ProbeReadout:
    """What a bank's readout probe says about clips: for classification concepts the class probabilities [N, C] and
    the argmax class [N]; for regression concepts (tempos) the predicted values [N] (probabilities None)."""

    layer: int
    predicted: np.ndarray  # [N] int64 class indices, or float64 values for regression
    probabilities: np.ndarray | None  # [N, C] rows summing to 1, or None for regression


def probe_readout(bank, pooled) -> ProbeReadout:
    """Classify pooled activations [N, L, d] (from `probes.activations.extract_activations` with the bank's pooling)
    with the bank's readout probe at `bank.readout_layer`."""
    acts = torch.as_tensor(pooled, dtype=torch.float32)
    if acts.ndim != 3 or acts.shape[1] != bank.num_layers or acts.shape[2] != bank.directions.shape[-1]:
        raise EvaluationError(
            f"pooled activations have shape {list(acts.shape)}, expected "
            f"[N, {bank.num_layers}, {bank.directions.shape[-1]}] for this bank's model"
        )
    features = acts[:, bank.readout_layer]
    if bank.readout.task == "regression":
        values = bank.readout.predict(features).double().cpu().numpy()
        return ProbeReadout(bank.readout_layer, values, None)
    proba = bank.readout.predict_proba(features).double().cpu().numpy()
    if proba.ndim == 1:  # a two-class bank's binary probe: the probability of class 1
        proba = np.stack([1.0 - proba, proba], axis=1)
    return ProbeReadout(bank.readout_layer, proba.argmax(axis=1), proba)


def probe_hits(readout: ProbeReadout, targets: Sequence[int]) -> np.ndarray:
    """[N] 1.0 where the readout's class is the target class index, else 0.0 (the paper's classification accuracy
    per clip; average it, or bootstrap it)."""
    if readout.probabilities is None:
        raise EvaluationError("a regression bank has no classes to be accurate about; compare predicted values instead")
    targets = np.asarray(targets, dtype=np.int64)
    if targets.shape != readout.predicted.shape:
        raise EvaluationError(f"{len(targets)} targets for {len(readout.predicted)} clips")
    return (readout.predicted == targets).astype(np.float64)


def probe_accuracy(bank, pooled, targets: Sequence[int]) -> float:
    """Fraction of clips whose readout class equals their target class index."""
    return float(probe_hits(probe_readout(bank, pooled), targets).mean())


# ------------------------------------------------------------------------------------------------ direction geometry


def direction_cosines(a, b) -> np.ndarray:
    """[L] cosine between a[l] and b[l] for two stacks of directions [L, d] (e.g. two concepts' steering directions
    per layer): 0 means the directions do not interfere, +-1 that they push along the same axis."""
    left, right = _as_rows(a, "a"), _as_rows(b, "b")
    _same_width(left, right)
    if len(left) != len(right):
        raise EvaluationError(f"direction stacks differ in layer count ({len(left)} vs {len(right)})")
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    if np.any(norms == 0):
        raise EvaluationError("a direction has zero length; its cosine is undefined")
    return (left * right).sum(axis=1) / norms
