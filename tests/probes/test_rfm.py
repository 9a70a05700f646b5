"""Tests for probes/rfm.py: exact kernel/AGOP math, planted directions, xRFM as an oracle, batching, bad input."""

import itertools

import pytest
import torch

from probes.rfm import (
    RFMError,
    RFMProbe,
    agop,
    binary_auc,
    directional_sign,
    fit_rfm,
    fit_rfm_layers,
    kernel_matrix,
    normalize_metric,
    predictor_gradients,
    ridge_solve,
)


def _unit(d: int, seed: int) -> torch.Tensor:
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def _gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _psd(d: int, seed: int) -> torch.Tensor:
    A = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return A @ A.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def _brute_predictor(x, centers, alphas, M, L, g):
    """f(x) = sum_i alphas[i] exp(-((x - c_i)^T M (x - c_i))^(g/2) / L^g), written term by term."""
    out = torch.zeros(alphas.shape[1], dtype=x.dtype)
    for c_i, a_i in zip(centers, alphas):
        u = x - c_i
        out = out + a_i * torch.exp(-((u @ M @ u) ** (g / 2)) / L**g)
    return out


# ---------------------------------------------------------------------------------------------------------- exact math


@pytest.mark.parametrize("exponent", [0.5, 1.0, 1.5, 2.0])
def test_kernel_matrix_matches_definition(exponent):
    X, Z = _gaussian(5, 3, 0).double(), _gaussian(4, 3, 1).double()
    M, L = _psd(3, 2), 1.7
    expected = torch.tensor(
        [[float(torch.exp(-(((x - z) @ M @ (x - z)) ** (exponent / 2)) / L**exponent)) for z in Z] for x in X],
        dtype=torch.float64,
    )
    assert torch.allclose(kernel_matrix(X, Z, M, L, exponent), expected, rtol=1e-12, atol=1e-14)
    identity = torch.exp(-(torch.cdist(X, Z) ** exponent) / L**exponent)
    assert torch.allclose(kernel_matrix(X, Z, None, L, exponent), identity, rtol=1e-10)


@pytest.mark.parametrize("exponent", [1.0, 1.3, 2.0])
@pytest.mark.parametrize("center", [False, True])
def test_gradients_and_agop_match_autograd(exponent, center):
    centers, X_eval = _gaussian(6, 3, 3).double(), _gaussian(4, 3, 4).double()
    alphas = _gaussian(6, 2, 5).double()
    M, L = _psd(3, 6), 1.3
    jac = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda x: _brute_predictor(x, centers, alphas, M, L, exponent), x)
            for x in X_eval
        ]
    )  # [n, c, d]
    grads = predictor_gradients(X_eval, centers, alphas, M, L, exponent)
    assert torch.allclose(grads, jac, rtol=1e-10, atol=1e-12)
    J = jac - jac.mean(0, keepdim=True) if center else jac
    expected = torch.einsum("ncd,nce->de", J, J) / len(X_eval)
    assert torch.allclose(
        agop(X_eval, centers, alphas, M, L, exponent, center_grads=center), expected, rtol=1e-10, atol=1e-12
    )


def test_agop_at_the_centers_drops_each_points_own_term():
    """At a center the Laplace kernel has a kink; RFM's convention takes the gradient of the other terms only."""
    centers, alphas, M, L = _gaussian(5, 3, 7).double(), _gaussian(5, 1, 8).double(), _psd(3, 9), 2.0
    rows = []
    for j, x in enumerate(centers):
        others = [i for i in range(len(centers)) if i != j]
        rows.append(
            torch.autograd.functional.jacobian(
                lambda x: _brute_predictor(x, centers[others], alphas[others], M, L, 1.0), x
            )
        )
    jac = torch.stack(rows)
    assert torch.allclose(predictor_gradients(centers, centers, alphas, M, L, 1.0, same=True), jac, rtol=1e-10)
    expected = torch.einsum("ncd,nce->de", jac, jac) / len(centers)
    assert torch.allclose(agop(centers, centers, alphas, M, L, 1.0, same=True), expected, rtol=1e-10)


def test_normalize_metric_modes():
    A = _psd(4, 10)
    assert torch.isclose(torch.linalg.eigvalsh(normalize_metric(A, "max_eig"))[-1], torch.tensor(1.0, dtype=A.dtype))
    assert torch.isclose(normalize_metric(A, "trace").trace(), torch.tensor(1.0, dtype=A.dtype))
    assert torch.isclose(normalize_metric(A, "max_entry").max(), torch.tensor(1.0, dtype=A.dtype))
    assert torch.equal(normalize_metric(torch.zeros(3, 3)), torch.zeros(3, 3))


def test_binary_auc_matches_pair_counting_with_ties():
    gen = torch.Generator().manual_seed(11)
    scores = torch.randint(0, 5, (3, 40), generator=gen).float()  # many ties
    labels = torch.rand(3, 40, generator=gen) > 0.5
    for s, y in zip(scores, labels):
        pos, neg = s[y], s[~y]
        pairs = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
        assert binary_auc(s, y).item() == pytest.approx(pairs.mean().item(), abs=1e-12)
    assert torch.isnan(binary_auc(torch.rand(10), torch.zeros(10, dtype=torch.bool)))


def test_ridge_solve_falls_back_to_float64():
    """K = all ones is singular; with reg = 1e-9 float32 Cholesky fails but float64 succeeds."""
    K = torch.ones(1, 6, 6)
    Y = torch.arange(6.0).reshape(1, 6, 1)
    alpha = ridge_solve(K.clone(), 1e-9, Y)
    exact = torch.linalg.solve(
        torch.ones(6, 6, dtype=torch.float64) + 1e-9 * torch.eye(6, dtype=torch.float64), Y[0].double()
    )
    assert torch.allclose(alpha[0].double(), exact, rtol=1e-4)


def test_a_large_common_offset_changes_nothing():
    """Distances are translation invariant; activations with a big shared offset (as real ones have) must not lose
    precision to cancellation in float32."""
    X, y, Xv, yv, u = _planted_binary(n=300, n_val=150, d=16, seed=12)
    X, Xv = 0.05 * X, 0.05 * Xv  # tightly clustered ...
    plain = fit_rfm(X, y, Xv, yv, bandwidth=0.2, iters=3, device="cpu")
    shifted = fit_rfm(X + 30.0, y, Xv + 30.0, yv, bandwidth=0.2, iters=3, device="cpu")  # ... far from the origin
    assert shifted.val_score == pytest.approx(plain.val_score, abs=2e-3)
    assert abs(float(shifted.top_directions(1)[0] @ plain.top_directions(1)[0])) >= 0.999


def test_failed_float32_solves_are_redone_from_the_inputs_in_float64(caplog):
    X, y, Xv, yv, _ = _planted_binary(n=200, n_val=100, d=8, seed=13)
    X, y = torch.cat([X, X[:50]]), torch.cat([y, y[:50]])  # exact duplicates: K is singular
    with caplog.at_level("DEBUG", logger="probes.rfm"):
        probe = fit_rfm(X, y, Xv, yv, reg=1e-9, iters=2, device="cpu")
    assert "redoing them in float64" in caplog.text
    assert torch.isfinite(probe.alphas).all() and probe.val_score >= 0.8


# ---------------------------------------------------------------------------------------------------- planted signals


def _planted_binary(n=800, n_val=400, d=48, seed=0, rule="sign"):
    u = _unit(d, seed + 100)
    X, Xv = _gaussian(n, d, seed), _gaussian(n_val, d, seed + 1)
    label = (lambda X: (X @ u > 0).long()) if rule == "sign" else (lambda X: ((X @ u).abs() < 0.7).long())
    return X, label(X), Xv, label(Xv), u


@pytest.mark.parametrize("rule", ["sign", "band"])
def test_planted_direction_is_recovered(rule):
    X, y, Xv, yv, u = _planted_binary(rule=rule, d=32 if rule == "band" else 48)
    probe = fit_rfm(X, y, Xv, yv, bandwidth=10.0, reg=1e-3, iters=5, device="cpu")
    assert probe.val_score >= 0.95
    assert abs(float(probe.top_directions(1)[0] @ u)) >= 0.95
    dirs = probe.top_directions(3)
    assert torch.allclose(dirs @ dirs.T, torch.eye(3), atol=1e-5)
    proba = probe.predict_proba(Xv)
    assert proba.shape == (len(Xv),) and float(proba.min()) >= 0 and float(proba.max()) <= 1
    assert binary_auc(probe.predict(Xv), yv.bool()).item() == pytest.approx(probe.val_score, abs=1e-9)
    if rule == "sign":
        assert directional_sign(probe, u) == 1 and directional_sign(probe, -u) == -1


def test_planted_multiclass_recovers_the_span():
    d, gen = 40, torch.Generator().manual_seed(21)
    Q = torch.linalg.qr(torch.randn(d, 2, generator=gen))[0].T  # two orthonormal directions
    X, Xv = _gaussian(900, d, 22), _gaussian(400, d, 23)
    label = lambda X: (X @ Q[0] > 0).long() * 2 + (X @ Q[1] > 0).long()  # 4 quadrant classes
    probe = fit_rfm(X, label(X), Xv, label(Xv), bandwidth=10.0, iters=5, device="cpu")
    assert probe.task == "multiclass" and probe.num_outputs == 4
    assert probe.val_score >= 0.95
    overlap = torch.linalg.svdvals(probe.top_directions(2) @ Q.T)  # cosines of principal angles
    assert float(overlap.min()) >= 0.95
    proba = probe.predict_proba(Xv)
    assert proba.shape == (400, 4) and torch.allclose(proba.sum(1), torch.ones(400), atol=1e-5)
    assert (proba.argmax(1) == label(Xv)).float().mean() >= 0.85


def test_regression_probe_finds_and_signs_its_direction():
    d = 32
    u = _unit(d, 31)
    X, Xv = _gaussian(700, d, 32), _gaussian(300, d, 33)
    value = lambda X: 120 + 40 * torch.tanh(X @ u)  # e.g. a tempo in BPM
    fits = fit_rfm_layers(
        X[None], value(X), Xv[None], value(Xv), task="regression", iters=4, device="cpu", keep_probes=True
    )
    probe = fits.probes[0][0]
    assert fits.val_metric == "r2" and probe.val_score >= 0.9
    assert float(fits.directions[0, 0, 0] @ u) >= 0.95  # signed to raise the value
    assert torch.corrcoef(torch.stack([probe.predict(Xv), value(Xv)]))[0, 1] >= 0.95
    with pytest.raises(RFMError, match="predict"):
        probe.predict_proba(Xv)


# ------------------------------------------------------------------------------------------------------ xRFM oracle


def _xrfm_fit(X, Y, Xv, Yv, bandwidth, exponent, reg, center, rounds):
    xrfm = pytest.importorskip("xrfm")
    from xrfm.rfm_src.class_conversion import ClassificationConverter

    classes = 2 if Y.shape[1] == 1 else Y.shape[1]
    model = xrfm.RFM(
        kernel="laplace",
        bandwidth=bandwidth,
        exponent=exponent,
        iters=rounds - 1,
        device="cpu",
        tuning_metric="auc",
        verbose=False,
        class_converter=ClassificationConverter("zero_one", classes),
    )
    model.fit((X, Y), (Xv, Yv), reg=reg, iters=rounds - 1, center_grads=center, early_stop_rfm=False, verbose=False)
    return model


@pytest.mark.parametrize("bandwidth,exponent,center", [(10.0, 1.0, False), (5.0, 1.5, True)])
def test_matches_xrfm_binary(bandwidth, exponent, center):
    X, y, Xv, yv, u = _planted_binary(rule="band", d=32, seed=40)
    model = _xrfm_fit(X, y[:, None].float(), Xv, yv[:, None].float(), bandwidth, exponent, 1e-3, center, rounds=4)
    ours = fit_rfm(
        X,
        y,
        Xv,
        yv,
        bandwidth=bandwidth,
        exponent=exponent,
        reg=1e-3,
        center_grads=center,
        iters=4,
        early_stop=False,
        m_norm="max_entry",
        device="cpu",
    )
    their_auc = binary_auc(model.predict(Xv)[:, 0], yv.bool()).item()
    assert abs(ours.val_score - their_auc) <= 0.02
    their_top = torch.linalg.eigh(model.M)[1][:, -1]
    assert abs(float(torch.linalg.eigh(ours.M)[1][:, -1] @ their_top)) >= 0.9
    assert abs(float(ours.top_directions(1)[0] @ their_top)) >= 0.9


def test_matches_xrfm_multiclass():
    d = 24
    Q = torch.linalg.qr(torch.randn(d, 2, generator=torch.Generator().manual_seed(50)))[0].T
    X, Xv = _gaussian(600, d, 51), _gaussian(300, d, 52)
    label = lambda X: (X @ Q[0] > 0).long() * 2 + (X @ Q[1] > 0).long()
    y, yv = label(X), label(Xv)
    onehot = lambda y: torch.nn.functional.one_hot(y, 4).float()
    model = _xrfm_fit(X, onehot(y), Xv, onehot(yv), 10.0, 1.0, 1e-3, False, rounds=3)
    ours = fit_rfm(X, y, Xv, yv, bandwidth=10.0, reg=1e-3, iters=3, early_stop=False, m_norm="max_entry", device="cpu")
    pred = model.predict(Xv)
    their_auc = float(torch.stack([binary_auc(pred[:, c], yv == c) for c in range(4)]).mean())
    assert abs(ours.val_score - their_auc) <= 0.02
    their_top = torch.linalg.eigh(model.M)[1][:, -1]
    assert abs(float(torch.linalg.eigh(ours.M)[1][:, -1] @ their_top)) >= 0.9
    assert abs(float(ours.top_directions(1)[0] @ their_top)) >= 0.9


# ----------------------------------------------------------------------------------------------------- batching, search


def _planted_classes(L: int, n: int, d: int, C: int, seed: int):
    """[L, n, d] and [L, 120, d] Gaussian features with class c (labels cycling 0..C-1) shifted along +e_c."""
    gen = torch.Generator().manual_seed(seed)
    X, Xv = torch.randn(L, n, d, generator=gen), torch.randn(L, 120, d, generator=gen)
    y, yv = torch.arange(n) % C, torch.arange(120) % C
    X[:, :, :C] += 1.5 * torch.nn.functional.one_hot(y, C)
    Xv[:, :, :C] += 1.5 * torch.nn.functional.one_hot(yv, C)
    return X, y, Xv, yv


def test_batched_layers_equal_separate_fits():
    """Layers x one-vs-rest classes in one batch (shared first-round factorisation) = one probe at a time, when each
    probe learns its own metric."""
    L, n, d, C = 2, 240, 16, 3
    X, y, Xv, yv = _planted_classes(L, n, d, C, seed=60)
    fits = fit_rfm_layers(X, y, Xv, yv, task="multiclass", k=2, iters=3, shared_metric=False, device="cpu")
    assert fits.val_score.shape == (L, C) and fits.directions.shape == (L, C, 2, d)
    assert torch.allclose(fits.directions.norm(dim=-1), torch.ones(L, C, 2), atol=1e-5)
    for layer, c in itertools.product(range(L), range(C)):
        single = fit_rfm(X[layer], (y == c).long(), Xv[layer], (yv == c).long(), iters=3, device="cpu")
        assert fits.val_score[layer, c].item() == pytest.approx(single.val_score, abs=1e-4)
        v = fits.directions[layer, c, 0]
        assert abs(float(v @ single.top_directions(1)[0])) >= 0.999
        assert directional_sign(single, v) == 1  # directions come signed
        assert float(v[c]) > 0  # class c lives on +e_c


def _shared_metric_reference(X, y, Xv, yv, C, rounds, early_stop, bandwidth=10.0, reg=1e-3):
    """RFM with one metric for all one-vs-rest classes, written out in float64: each round fits every class with the
    same M, each class keeps its best round's AGOP, and the next M is the AGOP of all classes' outputs together; with
    early_stop the fit stops after the first round whose mean AUC falls below the best mean."""
    X, Xv = X.double(), Xv.double()
    Y = torch.nn.functional.one_hot(y, C).double()
    best, kept, best_mean, M = torch.full((C,), -1.0, dtype=torch.float64), [None] * C, -1.0, None
    for _ in range(rounds):
        alphas = torch.linalg.solve(kernel_matrix(X, X, M, bandwidth, 1.0) + reg * torch.eye(len(X)), Y)
        pred = kernel_matrix(Xv, X, M, bandwidth, 1.0) @ alphas
        scores = torch.stack([binary_auc(pred[:, c], yv == c) for c in range(C)])
        for c in torch.nonzero(scores >= best).flatten().tolist():
            best[c] = scores[c]
            kept[c] = normalize_metric(agop(X, X, alphas[:, c : c + 1], M, bandwidth, 1.0, same=True))
        if early_stop and scores.mean() < best_mean:
            break
        best_mean = max(best_mean, float(scores.mean()))
        M = normalize_metric(agop(X, X, alphas, M, bandwidth, 1.0, same=True))
    return best, torch.stack(kept)


@pytest.mark.parametrize("early_stop", [False, True])
def test_shared_metric_fits_every_class_with_the_agop_of_all_classes(early_stop):
    """shared_metric: one kernel per layer and round for all one-vs-rest classes (what makes it fast), as written out
    by hand; each class still gets its own directions, from the AGOP of its own predictor."""
    L, n, d, C = 2, 240, 16, 3
    X, y, Xv, yv = _planted_classes(L, n, d, C, seed=61)
    fits = fit_rfm_layers(
        X, y, Xv, yv, task="multiclass", k=1, iters=4, early_stop=early_stop, shared_metric=True, device="cpu"
    )
    for layer in range(L):
        scores, agops = _shared_metric_reference(X[layer], y, Xv[layer], yv, C, 4, early_stop)
        assert torch.allclose(fits.val_score[layer].double(), scores, atol=1e-4)
        top = torch.linalg.eigh(agops)[1][..., -1]  # [C, d]
        assert (fits.directions[layer, :, 0].double() * top).sum(-1).abs().min() >= 0.999
        assert all(float(fits.directions[layer, c, 0, c]) > 0 for c in range(C))  # class c lives on +e_c
    separate = fit_rfm_layers(
        X, y, Xv, yv, task="multiclass", k=1, iters=4, early_stop=early_stop, shared_metric=False, device="cpu"
    )
    assert not torch.allclose(separate.directions, fits.directions, atol=1e-3)  # the per-probe metric differs


def test_search_keeps_the_best_configuration():
    X, y, Xv, yv, _ = _planted_binary(n=400, n_val=200, d=24, seed=70)
    best = fit_rfm(X, y, Xv, yv, bandwidth=[1e-3, 10.0], reg=[1e-3, 1.0], iters=3, device="cpu")
    singles = {
        (b, r): fit_rfm(X, y, Xv, yv, bandwidth=b, reg=r, iters=3, device="cpu").val_score
        for b, r in itertools.product([1e-3, 10.0], [1e-3, 1.0])
    }
    assert best.val_score == pytest.approx(max(singles.values()), abs=1e-9)
    assert singles[(best.bandwidth, best.reg)] == pytest.approx(best.val_score, abs=1e-9)
    assert best.bandwidth == 10.0  # 1e-3 makes K the identity


def test_more_rounds_never_lower_the_kept_score():
    X, y, Xv, yv, _ = _planted_binary(n=400, n_val=200, d=24, seed=80, rule="band")
    scores = []
    for rounds in range(1, 5):
        probe = fit_rfm(X, y, Xv, yv, iters=rounds, early_stop=False, device="cpu")
        assert 0 <= probe.best_iter < rounds
        scores.append(probe.val_score)
    assert scores == sorted(scores)
    first = fit_rfm(X, y, Xv, yv, iters=1, device="cpu")
    assert torch.equal(first.M, torch.eye(24))  # round 0 uses M = I


def test_state_round_trip_predicts_identically():
    X, y, Xv, yv, _ = _planted_binary(n=300, n_val=150, d=16, seed=90)
    probe = fit_rfm(X, y, Xv, yv, iters=3, device="cpu")
    tensors, scalars = probe.state_dict()
    again = RFMProbe.from_state({k: v.clone() for k, v in tensors.items()}, dict(scalars))
    assert torch.equal(again.predict(Xv), probe.predict(Xv))
    assert torch.equal(again.top_directions(4), probe.top_directions(4))
    with pytest.raises(RFMError, match="lacks"):
        RFMProbe.from_state({k: v for k, v in tensors.items() if k != "M"}, scalars)


def test_repeated_predictions_reuse_the_centers_and_equal_the_definition():
    """The probe keeps its centers' part of the distances (the live readout predicts a few rows at every update)."""
    X, y, Xv, yv, _ = _planted_binary(n=120, n_val=40, d=8, seed=91)
    probe = fit_rfm(X, y, Xv, yv, iters=2, device="cpu")
    first = probe.predict(Xv[:3])
    kept = probe._prepared
    assert kept is not None and torch.equal(probe.predict(Xv[:3]), first) and probe._prepared is kept
    expected = torch.stack(
        [
            _brute_predictor(
                x, probe.centers.double(), probe.alphas.double(), probe.M.double(), probe.bandwidth, probe.exponent
            )[0]
            for x in Xv[:3].double()
        ]
    )
    torch.testing.assert_close(first.double(), expected, rtol=1e-4, atol=1e-5)
    probe.to("cpu")
    assert probe._prepared is None


@pytest.mark.gpu
def test_gpu_matches_cpu():
    X, y, Xv, yv, u = _planted_binary(seed=95)
    cpu = fit_rfm(X, y, Xv, yv, iters=4, device="cpu")
    gpu = fit_rfm(X, y, Xv, yv, iters=4, device="cuda")
    assert abs(cpu.val_score - gpu.val_score) <= 0.01
    assert abs(float(cpu.top_directions(1)[0] @ gpu.top_directions(1)[0].cpu())) >= 0.99


# -------------------------------------------------------------------------------------------------------- bad input


def test_bad_inputs_are_refused_with_a_reason():
    X, y, Xv, yv, _ = _planted_binary(n=60, n_val=30, d=8, seed=99)
    with pytest.raises(RFMError, match="exponent"):
        fit_rfm(X, y, Xv, yv, exponent=2.5)
    with pytest.raises(RFMError, match="bandwidth"):
        fit_rfm(X, y, Xv, yv, bandwidth=0.0)
    with pytest.raises(RFMError, match="unknown"):
        fit_rfm(X, y, Xv, yv, bandwith=3.0)
    bad = X.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(RFMError, match="NaN"):
        fit_rfm(bad, y, Xv, yv)
    with pytest.raises(RFMError, match="validation split"):
        fit_rfm(X, y, Xv, torch.zeros_like(yv))
    with pytest.raises(RFMError, match="labels"):
        fit_rfm(X, y[:-1], Xv, yv)
    probe = fit_rfm(X, y, Xv, yv, iters=2, device="cpu")
    with pytest.raises(RFMError, match="shape"):
        probe.predict(torch.zeros(3, 9))
