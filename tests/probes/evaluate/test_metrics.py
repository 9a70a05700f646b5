"""probes/evaluate/metrics.py: exact values of FD, MMD, bootstrap intervals, probe accuracy and direction cosines."""

import numpy as np
import pytest
import scipy.linalg
import torch

from probes.evaluate import EvaluationError
from probes.evaluate.metrics import (
    bootstrap_ci,
    direction_cosines,
    drift_against,
    frechet_distance,
    frechet_gaussians,
    gaussian_fit,
    median_bandwidth,
    mmd_squared,
    probe_accuracy,
    probe_hits,
    probe_readout,
)
from probes.train import build_bank
from studio.model import ModelSignature


def with_moments(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """n samples whose sample mean and (n - 1)-normalised covariance are exactly `mean` and `cov`."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(z, rowvar=False)))).T  # sample covariance exactly I
    return z @ np.linalg.cholesky(cov).T + mean


def random_spd(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def reference_fd(m1, s1, m2, s2) -> float:
    """The textbook formula with scipy's general sqrtm of the product (an independent implementation)."""
    cross = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross).real)


# --------------------------------------------------------------------------------------------------------------- FD


def test_fd_of_identical_sets_is_zero():
    x = np.random.default_rng(0).standard_normal((40, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(x, x, ridge=0.5) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(torch.from_numpy(x).float(), torch.from_numpy(x).float()) == pytest.approx(0.0, abs=1e-5)


def test_fd_of_diagonal_gaussians_matches_closed_form():
    m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    x, y = with_moments(50, m1, np.diag(v1), 1), with_moments(70, m2, np.diag(v2), 2)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)  # 1 + 6.25 + 4 + 1 + 0
    assert expected == pytest.approx(12.25)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-9)


def test_fd_of_one_dimensional_gaussians():
    x, y = (
        with_moments(10, np.array([2.0]), np.array([[4.0]]), 3),
        with_moments(12, np.array([-1.0]), np.array([[1.0]]), 4),
    )
    assert frechet_distance(x, y) == pytest.approx(9.0 + 1.0, rel=1e-9)  # (2 - -1)^2 + (2 - 1)^2


def test_fd_of_full_covariances_matches_scipy_sqrtm():
    d = 6
    m1, m2 = np.arange(d, dtype=float), np.ones(d)
    s1, s2 = random_spd(d, 5), random_spd(d, 6)
    x, y = with_moments(30, m1, s1, 7), with_moments(25, m2, s2, 8)
    mean_x, cov_x = gaussian_fit(x)
    np.testing.assert_allclose(cov_x, s1, atol=1e-9)
    np.testing.assert_allclose(mean_x, m1, atol=1e-9)
    assert frechet_distance(x, y) == pytest.approx(reference_fd(m1, s1, m2, s2), rel=1e-7)
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)


def test_fd_with_fewer_samples_than_dimensions_is_finite_and_exact():
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((5, 32)), rng.standard_normal((7, 32)) + 0.3
    fd = frechet_distance(x, y)
    (mx, sx), (my, sy) = gaussian_fit(x), gaussian_fit(y)
    assert np.linalg.matrix_rank(sx) == 4  # singular: n - 1
    assert np.isfinite(fd) and fd > 0
    assert fd == pytest.approx(reference_fd(mx, sx, my, sy), rel=1e-5)
    # the ridge shrinks both covariances towards isotropy and changes the value, but never below 0
    assert 0 <= frechet_distance(x, y, ridge=1.0) != pytest.approx(fd)


def test_fd_grows_with_mean_shift():
    x = np.random.default_rng(10).standard_normal((60, 4))
    values = [frechet_distance(x, x + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    np.testing.assert_allclose(values, [4 * s * s for s in (0.0, 0.5, 1.0, 2.0)], atol=1e-9)  # ||shift * 1||^2


def test_fd_refuses_bad_input():
    with pytest.raises(EvaluationError, match="width"):
        frechet_distance(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(EvaluationError, match="at least 2"):
        frechet_distance(np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(EvaluationError, match="NaN"):
        frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(EvaluationError, match="ridge"):
        frechet_distance(np.eye(3), np.eye(3), ridge=-1)


def test_frechet_gaussians_of_commuting_psd_matrices():
    s1, s2 = np.diag([4.0, 0.0]), np.diag([1.0, 9.0])  # one singular
    assert frechet_gaussians(np.zeros(2), s1, np.ones(2), s2) == pytest.approx(2 + 1 + 9)


# -------------------------------------------------------------------------------------------------------------- MMD


def test_mmd_hand_computed_values():
    x, y = np.array([[0.0], [1.0]]), np.array([[3.0], [4.0]])
    # bandwidth 1: k = exp(-d^2 / 2)
    within = np.exp(-0.5)
    cross = np.mean(np.exp(-np.array([9.0, 16.0, 4.0, 9.0]) / 2))
    assert mmd_squared(x, y, bandwidth=1.0) == pytest.approx(2 * within - 2 * cross)
    biased = (1 + within) / 2
    assert mmd_squared(x, y, bandwidth=1.0, unbiased=False) == pytest.approx(2 * biased - 2 * cross)
    assert mmd_squared(np.zeros((1, 1)), np.ones((1, 1)), bandwidth=1.0, unbiased=False) == pytest.approx(
        2 - 2 * np.exp(-0.5)
    )


def test_median_bandwidth():
    assert median_bandwidth(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)  # distances 1, 3, 2
    assert median_bandwidth(np.array([[0.0]]), np.array([[4.0], [1.0]])) == pytest.approx(3.0)  # 4, 1, 3
    assert median_bandwidth(np.zeros((3, 2))) == 1.0


def test_mmd_of_identical_sets():
    x = np.random.default_rng(11).standard_normal((50, 5))
    assert mmd_squared(x, x, unbiased=False) == 0.0
    unbiased = mmd_squared(x, x)
    assert -2 / len(x) < unbiased <= 0  # the U-statistic's within-set sums skip the diagonal the cross sum keeps


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_shift():
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((80, 3)), rng.standard_normal((80, 3))
    sigma = median_bandwidth(x)
    values = [mmd_squared(x, y + shift, bandwidth=sigma) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < 0.02
    assert values[0] < values[1] < values[2] < values[3]
    assert values[3] > 0.3


def test_mmd_refuses_bad_input():
    with pytest.raises(EvaluationError, match="width"):
        mmd_squared(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(EvaluationError, match="bandwidth"):
        mmd_squared(np.zeros((3, 2)), np.ones((3, 2)), bandwidth=0.0)
    with pytest.raises(EvaluationError, match="at least 2"):
        mmd_squared(np.zeros((1, 2)), np.ones((3, 2)))


def test_drift_against_averages_sets_under_the_reference_kernel():
    rng = np.random.default_rng(15)
    reference = rng.standard_normal((20, 3))
    sets = [reference + 0.5, rng.standard_normal((20, 3)) + 1.0]
    drift = drift_against(reference, sets)
    sigma = median_bandwidth(reference)
    assert drift["fd"] == pytest.approx(np.mean([frechet_distance(x, reference) for x in sets]))
    assert drift["mmd"] == pytest.approx(np.mean([mmd_squared(x, reference, bandwidth=sigma) for x in sets]))
    assert drift_against(reference, [reference])["fd"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(EvaluationError, match="at least one set"):
        drift_against(reference, [])


# -------------------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_covers_the_mean_and_is_seeded():
    values = np.random.default_rng(13).binomial(1, 0.3, size=100).astype(float)
    ci = bootstrap_ci(values, seed=5)
    assert ci.low < ci.mean < ci.high and ci.mean == pytest.approx(values.mean()) and ci.n == 100
    assert bootstrap_ci(values, seed=5) == ci
    continuous = np.random.default_rng(13).standard_normal(30)  # 0/1 data make quantiles land on the same grid
    assert bootstrap_ci(continuous, seed=5) == bootstrap_ci(continuous, seed=5)
    assert bootstrap_ci(continuous, seed=5) != bootstrap_ci(continuous, seed=6)
    # the normal approximation's half-width, 1.96 * sqrt(p (1 - p) / n), within 25%
    half = 1.96 * np.sqrt(values.mean() * (1 - values.mean()) / len(values))
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.25)
    wider = bootstrap_ci(values, confidence=0.99, seed=5)
    assert wider.low <= ci.low and wider.high >= ci.high


def test_bootstrap_degenerate_cases():
    assert bootstrap_ci([0.7]) == bootstrap_ci([0.7], seed=9)
    one = bootstrap_ci([0.7])
    assert (one.low, one.mean, one.high, one.n) == (0.7, 0.7, 0.7, 1)
    same = bootstrap_ci([1.0] * 10)
    assert (same.low, same.mean, same.high) == (1.0, 1.0, 1.0)
    for bad, match in (([], "empty"), ([1.0, np.nan], "NaN")):
        with pytest.raises(EvaluationError, match=match):
            bootstrap_ci(bad)
    with pytest.raises(EvaluationError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.0)


# -------------------------------------------------------------------------------------------------- probe accuracy


@pytest.fixture(scope="module")
def clustered_bank():
    """A real RFM bank (probes.bank.build_bank) on 3 well-separated classes at every layer, L = 2, d = 6."""
    layers, d, classes = 2, 6, ["A", "B", "C"]
    rng = np.random.default_rng(14)
    centers = 3.0 * np.eye(d)[:3]

    def draw(n):
        y = np.repeat(np.arange(3), n)
        x = centers[y] + 0.3 * rng.standard_normal((len(y), d))
        return torch.tensor(np.stack([x] * layers), dtype=torch.float32), torch.tensor(y)

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = draw(12), draw(6), draw(5)
    signature = ModelSignature("test", "0" * 16, d, layers)
    bank = build_bank(
        "toy", classes, x_train, y_train, x_val, y_val, signature, k=1, progress=False, hparams={"iters": 2}
    )
    return bank, x_test.permute(1, 0, 2), y_test.numpy()  # pooled as [N, L, d]


def test_probe_accuracy_of_a_real_bank(clustered_bank):
    bank, pooled, targets = clustered_bank
    readout = probe_readout(bank, pooled)
    assert readout.layer == bank.readout_layer and readout.probabilities.shape == (15, 3)
    np.testing.assert_allclose(readout.probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert probe_accuracy(bank, pooled, targets) == 1.0
    np.testing.assert_array_equal(probe_hits(readout, targets), 1.0)
    assert probe_accuracy(bank, pooled, (targets + 1) % 3) == 0.0
    half = targets.copy()
    half[:7] = (half[:7] + 1) % 3
    assert probe_accuracy(bank, pooled, half) == pytest.approx(8 / 15)


def test_probe_readout_refuses_wrong_shapes(clustered_bank):
    bank, pooled, targets = clustered_bank
    with pytest.raises(EvaluationError, match="expected"):
        probe_readout(bank, pooled[:, :1])
    with pytest.raises(EvaluationError, match="targets"):
        probe_hits(probe_readout(bank, pooled), targets[:3])


# ----------------------------------------------------------------------------------------------- direction cosines


def test_direction_cosines():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 2.0], [-3.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(direction_cosines(a, b), [0.0, -1.0, 1 / np.sqrt(2)])
    with pytest.raises(EvaluationError, match="zero length"):
        direction_cosines(a, np.zeros((3, 2)))
    with pytest.raises(EvaluationError, match="layer count"):
        direction_cosines(a, b[:2])
