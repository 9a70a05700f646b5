"""Recursive Feature Machines (RFM) in torch: kernel ridge probes that learn a Mahalanobis metric by AGOP.

Model. A probe predicts ``f(x) = sum_i alpha_i k_M(x, x_i)`` over its training points ``x_i`` (the centers) with

    k_M(x, z) = exp(-||x - z||_M^gamma / L^gamma),   ||u||_M^2 = u^T M u,

``L`` the bandwidth and ``gamma`` in (0, 2] the exponent (gamma = 1 is the Laplace kernel, 2 the Gaussian).
``alpha`` solves the ridge system ``(K + reg I) alpha = Y`` (Cholesky; float32, redone in float64 where float32 fails).

Feature learning. One RFM round fits ``alpha`` with the current ``M``, scores it on the validation set and computes the
average gradient outer product of the fitted predictor over the training points, all outputs summed:

    AGOP = (1/n) sum_j sum_c grad f_c(x_j) grad f_c(x_j)^T,   grad f_c(x) = M sum_i alpha_ic w(x, x_i) (x - x_i),

with ``w = -(gamma / L^gamma) k_M r^(gamma - 2)`` and ``r = ||x - x_i||_M`` (the term of a center at distance 0 is 0,
the subgradient at the kernel's kink). With ``center_grads`` the mean gradient of each output over the training points
is subtracted first. The AGOP is rescaled (``m_norm``: by its largest eigenvalue, the default; or its trace; or its
largest entry, as xRFM does) and becomes the next round's ``M`` (the first round uses ``M = I``). The round with the
best validation score is kept (ties go to the later round); with ``early_stop`` a probe stops at the first round whose
score falls below its best.

What a probe keeps: ``M`` (the metric its kernel used), ``alphas``, and ``agop``: the rescaled AGOP of its own
predictor. ``top_directions`` are eigenvectors of ``agop``: the input directions the selected predictor is most
sensitive to (when the selected round is not the first, ``M`` is the previous round's AGOP and nearly the same).

Scores. Binary: ROC AUC of the output. Multiclass (one-hot targets, one output per class): mean one-vs-rest AUC.
Regression (targets standardised inside): R^2 on the validation set, reported in ``val_score`` with
``val_metric = "r2"``.

Batching. Everything runs on a leading batch of probes: all layers x hyper-parameter configurations x target sets
(e.g. one-vs-rest classes) of ``fit_rfm_layers`` go through batched matmuls and Cholesky factorisations, in chunks that
fit a memory budget. In the first round ``M = I`` for every target set of a (layer, configuration), so their kernel is
factorised once and solved for all their targets together.

Shared metric (``shared_metric=True``). From round 1 on, one-vs-rest probes normally each learn their own ``M`` from
their own AGOP (as xRFM fitted once per class does), so every class needs its own kernel, factorisation and gradients.
With a shared metric the target sets of a (layer, configuration) keep sharing one ``M`` in every round: the AGOP of all
their outputs together (the sum of their AGOPs, rescaled), which is what a multiclass RFM learns. One kernel per layer
and round then serves every class; each class still keeps its own best round, ``alphas`` and predictor AGOP (its
directions). Early stopping then stops a (layer, configuration) at the first round whose mean score falls below its
best mean.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from studio.errors import RFMError

log = logging.getLogger(__name__)

TASKS = ("binary", "multiclass", "regression")
M_NORMS = ("max_eig", "trace", "max_entry")
DEFAULT_HPARAMS: dict[str, Any] = {
    "bandwidth": 10.0,
    "exponent": 1.0,
    "reg": 1e-3,
    "center_grads": False,
    "iters": 5,
    "early_stop": True,
    "m_norm": "max_eig",
    "shared_metric": True,
}
SEARCHABLE = ("bandwidth", "exponent", "reg", "center_grads")
_PREDICT_CHUNK_ELEMENTS = 1 << 24  # rows x centers per kernel block when predicting, to bound memory


# ----------------------------------------------------------------------------------------------------------------------
# Pure math (batched over any leading dimensions)


def squared_distances(
    X: torch.Tensor, Z: torch.Tensor, M: torch.Tensor | None = None, same: bool = False, prepared: tuple | None = None
) -> torch.Tensor:
    """``D[..., i, j] = (x_i - z_j)^T M (x_i - z_j)`` for X [..., n, d], Z [..., m, d], M [..., d, d] (None: identity);
    the leading dimensions must match or be absent.

    Computed as ``x^T M x - 2 x^T M z + z^T M z`` (one batched matmul) after moving the origin to the mean of Z, which
    keeps the cancellation small when all points share a large offset; clamped at 0. ``same=True`` (Z is X) sets the
    diagonal to exactly 0. ``prepared``: ``prepare_centers(Z, M)``, to reuse Z's part across many X.
    """
    batch = torch.broadcast_shapes(X.shape[:-2], Z.shape[:-2], () if M is None else M.shape[:-2])
    n, d = X.shape[-2], X.shape[-1]
    origin, Z, z_sq = prepared if prepared is not None else prepare_centers(Z, M, batch, with_norms=not same)
    X = X.expand(*batch, n, d).reshape(-1, n, d) - origin
    if same:
        Z = X
    XM = X if M is None else torch.bmm(X, M.expand(*batch, d, d).reshape(-1, d, d))
    x_sq = (XM * X).sum(-1)
    D = torch.baddbmm(x_sq.unsqueeze(-1), XM, Z.transpose(1, 2), alpha=-2.0)
    D.add_((x_sq if same else z_sq).unsqueeze(-2)).clamp_(min=0.0)
    if same:
        D.diagonal(dim1=-2, dim2=-1).zero_()
    return D.reshape(*batch, n, Z.shape[1])


def prepare_centers(Z: torch.Tensor, M: torch.Tensor | None, batch: tuple = (), with_norms: bool = True) -> tuple:
    """Z's part of ``squared_distances``: (origin [B, 1, d], Z - origin [B, m, d], z^T M z [B, m] or None), with the
    leading dimensions `batch` flattened to B. A fitted probe keeps it, so that predicting a few rows (the live
    readout) does not redo the m x d x d product with M every time."""
    m, d = Z.shape[-2], Z.shape[-1]
    Z = Z.expand(*batch, m, d).reshape(-1, m, d)
    origin = Z.mean(dim=1, keepdim=True)
    Z = Z - origin
    z_sq = None
    if with_norms:
        ZM = Z if M is None else torch.bmm(Z, M.expand(*batch, d, d).reshape(-1, d, d))
        z_sq = (ZM * Z).sum(-1)
    return origin, Z, z_sq


def _distance_power_(D: torch.Tensor, exponent) -> torch.Tensor:
    """In place: squared distances D -> ``r^gamma = D^(gamma/2)``."""
    return D.sqrt_() if _all_equal(exponent, 1.0) else D.pow_(_as_col(exponent) / 2)


def _kernel_from_power(P: torch.Tensor, bandwidth, exponent) -> torch.Tensor:
    """``exp(-r^gamma / L^gamma)`` from P = r^gamma (a new tensor; P is kept)."""
    return torch.mul(P, -1.0 / _as_col(bandwidth) ** _as_col(exponent)).exp_()


def _weights_(P: torch.Tensor, K: torch.Tensor, exponent) -> torch.Tensor:
    """In place on P = r^gamma: ``K r^(gamma - 2)``, and 0 where r = 0 (the kernel's kink; a center's own term).

    Times ``_gradient_scale`` this is the factor w of ``grad_x k(x, z) = w M (x - z)``."""
    if _all_equal(exponent, 1.0):
        torch.div(K, P, out=P)
    else:
        P.pow_((_as_col(exponent) - 2) / _as_col(exponent)).mul_(K)
    return P.nan_to_num_(nan=0.0, posinf=0.0)  # r = 0 gave K / 0 = inf: that term is dropped


def _gradient_scale(bandwidth, exponent):
    """``-gamma / L^gamma``: float, or a tensor over the batch."""
    return -exponent / bandwidth**exponent


def kernel_matrix(
    X: torch.Tensor, Z: torch.Tensor, M: torch.Tensor | None, bandwidth, exponent, prepared: tuple | None = None
) -> torch.Tensor:
    """``K[..., i, j] = exp(-||x_i - z_j||_M^gamma / L^gamma)`` for X [..., n, d], Z [..., m, d], M [..., d, d]."""
    distances = squared_distances(X, Z, M, prepared=prepared)
    return _kernel_from_power(_distance_power_(distances, exponent), bandwidth, exponent)


def _raw_gradients(
    W: torch.Tensor, X_eval: torch.Tensor, centers: torch.Tensor, alphas: torch.Tensor, scale
) -> torch.Tensor:
    """``G[..., j, c, :] = scale sum_i alpha_ic W_ji (x_j - x_i)`` [..., n_eval, c, d]: the input gradient before the
    factor M. W [..., n_eval, n], X_eval [..., n_eval, d], centers [..., n, d], alphas [..., n, c]."""
    *batch, n, c = alphas.shape
    d = centers.shape[-1]
    origin = centers.mean(dim=-2, keepdim=True)  # x_j - x_i is unchanged; the cancellation is smaller
    X_eval, centers = X_eval - origin, centers - origin
    weighted = (alphas.unsqueeze(-1) * centers.unsqueeze(-2)).reshape(*batch, n, c * d)
    G = (W @ alphas).unsqueeze(-1) * X_eval.unsqueeze(-2)
    G.sub_((W @ weighted).reshape(*G.shape))
    return G.mul_(_as_col(scale, G.dtype, extra=1))


def _raw_gradients_at(X_eval, centers, alphas, M, bandwidth, exponent, same: bool) -> torch.Tensor:
    P = _distance_power_(squared_distances(X_eval, centers, M, same=same), exponent)
    W = _weights_(P, _kernel_from_power(P, bandwidth, exponent), exponent)
    return _raw_gradients(W, X_eval, centers, alphas, _gradient_scale(bandwidth, exponent))


def predictor_gradients(X_eval, centers, alphas, M, bandwidth, exponent, same: bool = False) -> torch.Tensor:
    """Input gradients of the kernel predictor ``f_c(x) = sum_i alphas[i, c] k_M(x, centers[i])`` at X_eval.

    Returns [..., n_eval, c, d]. ``same=True`` when X_eval are the centers (self terms are exactly 0).
    """
    G = _raw_gradients_at(X_eval, centers, alphas, M, bandwidth, exponent, same)
    return G if M is None else G @ M.unsqueeze(-3)


def agop_from_raw(G: torch.Tensor, M: torch.Tensor | None, center_grads) -> torch.Tensor:
    """AGOP ``(1/n) sum_j sum_c g_jc g_jc^T`` [..., d, d] from raw gradients G [..., n, c, d] (true gradient = M g).

    ``center_grads`` (bool or bool tensor over the batch): subtract each output's mean gradient over the n points.
    """
    n = G.shape[-3]
    if isinstance(center_grads, torch.Tensor) or center_grads:
        G = G - G.mean(dim=-3, keepdim=True) * _as_col(center_grads, G.dtype, extra=1)
    flat = G.reshape(*G.shape[:-3], -1, G.shape[-1])
    A = flat.transpose(-1, -2) @ flat / n
    return A if M is None else M @ A @ M


def agop(X_eval, centers, alphas, M, bandwidth, exponent, center_grads=False, same: bool = False) -> torch.Tensor:
    """Unnormalised AGOP ``(1/n_eval) sum_j sum_c grad f_c(x_j) grad f_c(x_j)^T`` [..., d, d] of the kernel predictor
    over X_eval (``same=True``: X_eval are the centers); ``center_grads`` subtracts each output's mean gradient."""
    G = _raw_gradients_at(X_eval, centers, alphas, M, bandwidth, exponent, same)
    return agop_from_raw(G, M, center_grads)


def normalize_metric(A: torch.Tensor, mode: str = "max_eig") -> torch.Tensor:
    """Rescale AGOPs A [..., d, d]: divided by the largest eigenvalue ("max_eig"), the trace, or the largest entry.

    A zero matrix stays zero.
    """
    A = (A + A.transpose(-1, -2)) / 2
    if mode == "max_eig":
        scale = torch.linalg.eigvalsh(A)[..., -1]
    elif mode == "trace":
        scale = A.diagonal(dim1=-2, dim2=-1).sum(-1)
    elif mode == "max_entry":
        scale = A.amax(dim=(-2, -1))
    else:
        raise RFMError(f"m_norm must be one of {M_NORMS}, got {mode!r}")
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return A / scale[..., None, None]


def binary_auc(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """ROC AUC per row: scores [..., n], positive [..., n] bool -> [...] float64.

    Mann-Whitney U with average ranks (ties count 1/2); NaN for a row without both classes.
    """
    ordered = scores.sort(dim=-1).values.contiguous()
    scores = scores.contiguous()
    lo = torch.searchsorted(ordered, scores, right=False)
    hi = torch.searchsorted(ordered, scores, right=True)
    ranks = (lo + hi + 1).double() / 2
    pos = positive.double()
    n_pos = pos.sum(-1)
    n_neg = positive.shape[-1] - n_pos
    u = (ranks * pos).sum(-1) - n_pos * (n_pos + 1) / 2
    return torch.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg).clamp(min=1), torch.full_like(u, float("nan")))


def r_squared(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Coefficient of determination per row over the last dimension: 1 - SSE / SST (SST about the target mean)."""
    pred, target = pred.double(), target.double()
    sse = (pred - target).square().sum(-1)
    sst = (target - target.mean(-1, keepdim=True)).square().sum(-1)
    return 1 - sse / sst.clamp(min=torch.finfo(torch.float64).tiny)


def ridge_solve(K: torch.Tensor, reg, Y: torch.Tensor, exact_kernel=None) -> torch.Tensor:
    """Solve ``(K + reg I) alpha = Y`` per batch row of K [..., n, n] (reg: float or [...] tensor).

    Cholesky in K's dtype; rows where it fails are redone in float64 with ``exact_kernel(rows)`` (the kernel recomputed
    in float64 from its inputs; default: K's rows converted). K's diagonal is shifted during the call and restored
    before returning (saves a copy of K)."""
    diagonal = K.diagonal(dim1=-2, dim2=-1)
    original = diagonal.clone()
    diagonal.add_(_as_col(reg, K.dtype, extra=-1))
    chol, info = torch.linalg.cholesky_ex(K)
    diagonal.copy_(original)
    alpha = _cholesky_solve(chol, Y)
    failed = info != 0
    if failed.any():
        rows = failed.nonzero(as_tuple=True)
        log.debug("%s Cholesky failed for %d kernel(s); redoing them in float64", K.dtype, int(failed.sum()))
        K64 = K[rows].double() if exact_kernel is None else exact_kernel(rows)
        reg64 = reg[rows].double() if isinstance(reg, torch.Tensor) else reg
        K64.diagonal(dim1=-2, dim2=-1).add_(_as_col(reg64, extra=-1))
        chol64, info64 = torch.linalg.cholesky_ex(K64)
        if (info64 != 0).any():
            raise RFMError("kernel matrix is not positive definite even in float64; increase reg (e.g. reg=1e-2)")
        alpha[rows] = _cholesky_solve(chol64, Y.expand(*K.shape[:-2], *Y.shape[-2:])[rows].double()).to(alpha.dtype)
    return alpha


def _cholesky_solve(chol: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``(L L^T)^-1 Y`` by two triangular solves (several times faster than torch.cholesky_solve on CPU)."""
    return torch.linalg.solve_triangular(chol.mT, torch.linalg.solve_triangular(chol, Y, upper=False), upper=True)


def _as_col(value, dtype=None, extra: int = 0):
    """A per-batch hyper-parameter as something that broadcasts against [..., n, m] (floats pass through)."""
    if not isinstance(value, torch.Tensor):
        return value
    value = value if dtype is None else value.to(dtype)
    return value.reshape(*value.shape, *([1] * (2 + extra)))


def _all_equal(value, target: float) -> bool:
    if isinstance(value, torch.Tensor):
        return bool((value == target).all())
    return value == target


# ----------------------------------------------------------------------------------------------------------------------
# Targets


@dataclass
class _Targets:
    """Regression targets for the kernel solve: columns of Y, grouped into target sets (one probe per set)."""

    task: str
    Y: torch.Tensor  # [n, T]
    Y_val: torch.Tensor  # [n_val, T]
    sets: torch.Tensor  # [P, c] column indices: target set p is fitted by one probe with c outputs
    y_mean: float = 0.0
    y_scale: float = 1.0

    @property
    def metric(self) -> str:
        return "r2" if self.task == "regression" else "auc"


def _infer_task(y: torch.Tensor, task: str) -> str:
    if task != "auto":
        if task not in TASKS:
            raise RFMError(f"task must be 'auto' or one of {TASKS}, got {task!r}")
        return task
    zero_one = bool(((y == 0) | (y == 1)).all())
    if y.dtype == torch.bool or zero_one:
        return "binary"
    return "regression" if y.is_floating_point() else "multiclass"


def encode_targets(y_train, y_val, task: str, one_vs_rest: bool, n_classes: int | None, device, dtype) -> _Targets:
    y_train, y_val = torch.as_tensor(y_train).reshape(-1), torch.as_tensor(y_val).reshape(-1)
    task = _infer_task(torch.cat([y_train, y_val]), task)
    if task == "regression":
        yt, yv = y_train.to(device, torch.float64), y_val.to(device, torch.float64)
        if not (torch.isfinite(yt).all() and torch.isfinite(yv).all()):
            raise RFMError("regression targets contain NaN or infinity")
        mean, scale = float(yt.mean()), float(yt.std()) if len(yt) > 1 else 1.0
        scale = scale if scale > 0 else 1.0
        Y, Yv = ((yt - mean) / scale).to(dtype)[:, None], ((yv - mean) / scale).to(dtype)[:, None]
        return _Targets(task, Y, Yv, torch.zeros(1, 1, dtype=torch.long), mean, scale)
    labels, labels_val = y_train.long().to(device), y_val.long().to(device)
    if task == "binary":
        n_classes = 2
    n_classes = n_classes or int(max(labels.max(), labels_val.max())) + 1
    if labels.min() < 0 or labels_val.min() < 0 or max(labels.max(), labels_val.max()) >= n_classes:
        raise RFMError(f"class labels must lie in 0..{n_classes - 1}")
    Y = torch.nn.functional.one_hot(labels, n_classes).to(dtype)
    Yv = torch.nn.functional.one_hot(labels_val, n_classes).to(dtype)
    _require_both_classes(Y, Yv, range(1, 2) if task == "binary" else range(n_classes))
    if task == "binary":
        return _Targets(task, Y[:, 1:], Yv[:, 1:], torch.zeros(1, 1, dtype=torch.long))
    if one_vs_rest:
        return _Targets("binary", Y, Yv, torch.arange(n_classes)[:, None])
    return _Targets(task, Y, Yv, torch.arange(n_classes)[None, :])


def _require_both_classes(Y: torch.Tensor, Y_val: torch.Tensor, classes: Iterable[int]) -> None:
    """Every class scored needs positives and negatives in both splits, or its AUC is undefined."""
    missing = []
    for c in classes:
        for name, split in (("training", Y), ("validation", Y_val)):
            count = int(split[:, c].sum())
            if count == 0 or count == len(split):
                missing.append(f"class {c} has {'no' if count == 0 else 'only'} examples in the {name} split")
    if missing:
        raise RFMError("cannot fit a probe: " + "; ".join(missing) + ". Use more clips per class or a different split.")


# ----------------------------------------------------------------------------------------------------------------------
# Hyper-parameters


@dataclass(frozen=True)
class RFMConfig:
    """One point of the hyper-parameter grid."""

    bandwidth: float
    exponent: float
    reg: float
    center_grads: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "bandwidth": self.bandwidth,
            "exponent": self.exponent,
            "reg": self.reg,
            "center_grads": self.center_grads,
        }


@dataclass(frozen=True)
class _Settings:
    configs: tuple[RFMConfig, ...]
    iters: int
    early_stop: bool
    m_norm: str
    shared_metric: bool


def _settings(hparams: dict[str, Any]) -> _Settings:
    """Validate hyper-parameters; any of ``SEARCHABLE`` given as a list/tuple is searched (Cartesian product)."""
    unknown = set(hparams) - set(DEFAULT_HPARAMS)
    if unknown:
        raise RFMError(f"unknown RFM hyper-parameter(s) {sorted(unknown)}; known: {sorted(DEFAULT_HPARAMS)}")
    hp = {**DEFAULT_HPARAMS, **hparams}
    grids = [list(hp[k]) if isinstance(hp[k], (list, tuple)) else [hp[k]] for k in SEARCHABLE]
    configs = tuple(RFMConfig(float(b), float(g), float(r), bool(c)) for b, g, r, c in itertools.product(*grids))
    for cfg in configs:
        if not cfg.bandwidth > 0:
            raise RFMError(f"bandwidth must be > 0, got {cfg.bandwidth}")
        if not 0 < cfg.exponent <= 2:
            raise RFMError(
                f"exponent must lie in (0, 2] (the kernel is positive definite only there), got {cfg.exponent}"
            )
        if not cfg.reg >= 0:
            raise RFMError(f"reg must be >= 0, got {cfg.reg}")
    if not (isinstance(hp["iters"], int) and hp["iters"] >= 1):
        raise RFMError(f"iters must be an integer >= 1, got {hp['iters']!r}")
    if hp["m_norm"] not in M_NORMS:
        raise RFMError(f"m_norm must be one of {M_NORMS}, got {hp['m_norm']!r}")
    if not configs:
        raise RFMError("the hyper-parameter grid is empty")
    return _Settings(configs, hp["iters"], bool(hp["early_stop"]), hp["m_norm"], bool(hp["shared_metric"]))


def check_hparams(hparams: dict[str, Any]) -> None:
    """Refuse unknown or out-of-range hyper-parameters (RFMError) before any data is prepared for them."""
    _settings(hparams)


# ----------------------------------------------------------------------------------------------------------------------
# The probe


@dataclass
class RFMProbe:
    """A fitted RFM predictor ``f(x) = sum_i alphas[i] k_M(x, centers[i])``.

    Outputs: binary -> 1 (the positive class); multiclass -> one per class (one-hot targets); regression -> 1 (the
    standardised target; ``predict`` maps it back to target units).
    """

    centers: torch.Tensor  # [n, d] training points
    alphas: torch.Tensor  # [n, c]
    M: torch.Tensor  # [d, d] metric used by the kernel
    agop: torch.Tensor  # [d, d] rescaled AGOP of this predictor (source of top_directions)
    bandwidth: float
    exponent: float
    reg: float
    center_grads: bool
    task: str
    val_score: float  # validation AUC (binary, multiclass: mean one-vs-rest) or R^2 (regression)
    best_iter: int  # 0-based RFM round that was kept
    m_norm: str = "max_eig"
    y_mean: float = 0.0
    y_scale: float = 1.0
    _eig: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False, compare=False)
    _prepared: tuple | None = field(default=None, repr=False, compare=False)  # prepare_centers(centers, M)

    @property
    def val_metric(self) -> str:
        return "r2" if self.task == "regression" else "auc"

    @property
    def num_outputs(self) -> int:
        return self.alphas.shape[1]

    @property
    def device(self) -> torch.device:
        return self.centers.device

    def to(self, device) -> "RFMProbe":
        for name in ("centers", "alphas", "M", "agop"):
            setattr(self, name, getattr(self, name).to(device))
        self._eig = self._prepared = None
        return self

    def _as_input(self, X) -> torch.Tensor:
        X = torch.as_tensor(X).to(self.device, self.centers.dtype)
        if X.ndim != 2 or X.shape[1] != self.centers.shape[1]:
            raise RFMError(f"expected inputs of shape [n, {self.centers.shape[1]}], got {list(X.shape)}")
        return X

    def _kernel_blocks(self, X: torch.Tensor):
        """The kernel matrix of X [n, d] against the centers, a block of rows at a time (bounded memory)."""
        rows = max(1, _PREDICT_CHUNK_ELEMENTS // max(1, len(self.centers)))
        for i in range(0, len(X), rows):
            yield self._kernel(X[i : i + rows])

    def _kernel(self, X: torch.Tensor) -> torch.Tensor:
        if self._prepared is None:  # a fitted probe's centers and M do not change
            self._prepared = prepare_centers(self.centers, self.M)
        return kernel_matrix(X, self.centers, self.M, self.bandwidth, self.exponent, self._prepared)

    def _outputs(self, X: torch.Tensor) -> torch.Tensor:
        if not len(X):
            return X.new_zeros(0, self.num_outputs)
        return torch.cat([block @ self.alphas for block in self._kernel_blocks(X)])

    @torch.no_grad()
    def nearest_similarity(self, X) -> torch.Tensor:
        """[n]: each input's kernel similarity to the training point nearest it in the probe's metric (1 on a training
        point, towards 0 far from all of them): how much the output rests on what the probe was trained on."""
        X = self._as_input(X)
        if not len(X):
            return X.new_zeros(0)
        return torch.cat([block.amax(dim=1) for block in self._kernel_blocks(X)])

    @torch.no_grad()
    def predict(self, X) -> torch.Tensor:
        """Raw kernel outputs: [n] for binary (about 0..1) and regression (target units), [n, C] for multiclass."""
        out = self._outputs(self._as_input(X))
        if self.task == "regression":
            return out[:, 0] * self.y_scale + self.y_mean
        return out[:, 0] if self.task == "binary" else out

    @torch.no_grad()
    def predict_proba(self, X, eps: float = 1e-3) -> torch.Tensor:
        """Binary: the output clipped to [0, 1], [n]. Multiclass: outputs clipped to [eps, 1], rows divided by their
        sum, [n, C] (one-hot regression targets make outputs near 0/1, so this keeps sharp, honest probabilities where a
        softmax of such outputs would flatten them). Regression probes have no probabilities (RFMError; use predict)."""
        return self._probabilities(self._outputs(self._as_input(X)), eps)

    def _probabilities(self, out: torch.Tensor, eps: float) -> torch.Tensor:
        if self.task == "regression":
            raise RFMError("a regression probe has no class probabilities; use predict() for the predicted value")
        if self.task == "binary":
            return out[:, 0].clamp(0.0, 1.0)
        out = out.clamp(eps, 1.0)
        return out / out.sum(dim=1, keepdim=True)

    @torch.no_grad()
    def proba_and_similarity(self, X, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
        """``predict_proba(X)`` and ``nearest_similarity(X)`` from one kernel evaluation, for a few rows (the whole
        kernel block is held at once), with no value read back to the host (the closed-loop controller's step)."""
        kernel = self._kernel(self._as_input(X))
        return self._probabilities(kernel @ self.alphas, eps), kernel.amax(dim=1)

    @torch.no_grad()
    def gradients(self, X=None) -> torch.Tensor:
        """Input gradients of the raw outputs (standardised units for regression) at X (default: the centers),
        [n, c, d]."""
        same = X is None
        X = self.centers if same else self._as_input(X)
        return predictor_gradients(X, self.centers, self.alphas, self.M, self.bandwidth, self.exponent, same=same)

    def _eigh(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._eig is None:
            self._eig = top_eigh(self.agop, self.agop.shape[-1])
        return self._eig

    def top_directions(self, k: int = 1) -> torch.Tensor:
        """[k, d] unit eigenvectors of ``agop``, largest eigenvalue first; each with its largest-magnitude entry > 0."""
        if not 1 <= k <= self.agop.shape[-1]:
            raise RFMError(f"k must lie in 1..{self.agop.shape[-1]}, got {k}")
        return self._eigh()[1][:k].clone()

    def top_eigenvalues(self, k: int = 1) -> torch.Tensor:
        return self._eigh()[0][:k].clone()

    def directional_sign(self, v: torch.Tensor, X=None, output: int = 0) -> int:
        """+1 if moving along +v raises output ``output`` on average over X (default: the centers), else -1.

        The average is the mean directional derivative ``mean_j <grad f_output(x_j), v>``; 0 counts as +1."""
        mean_grad = self.gradients(X)[:, output].mean(0)
        return 1 if float(mean_grad @ v.to(mean_grad)) >= 0 else -1

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, scalars) for safetensors + JSON: tensors centers/alphas/M/agop (contiguous CPU float32)."""
        tensors = {
            name: getattr(self, name).detach().to("cpu", torch.float32).contiguous()
            for name in ("centers", "alphas", "M", "agop")
        }
        scalars = {
            "bandwidth": self.bandwidth,
            "exponent": self.exponent,
            "reg": self.reg,
            "center_grads": self.center_grads,
            "task": self.task,
            "val_score": self.val_score,
            "best_iter": self.best_iter,
            "m_norm": self.m_norm,
            "y_mean": self.y_mean,
            "y_scale": self.y_scale,
        }
        return tensors, scalars

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], scalars: dict[str, Any], device=None) -> "RFMProbe":
        """Inverse of ``state_dict``; raises RFMError naming what is missing or inconsistent."""
        missing = [k for k in ("centers", "alphas", "M", "agop") if k not in tensors]
        missing += [
            k
            for k in ("bandwidth", "exponent", "reg", "center_grads", "task", "val_score", "best_iter")
            if k not in scalars
        ]
        if missing:
            raise RFMError(f"probe state lacks {missing}")
        n, d = tensors["centers"].shape
        if tensors["alphas"].shape[0] != n or tensors["M"].shape != (d, d) or tensors["agop"].shape != (d, d):
            raise RFMError("probe state has inconsistent tensor shapes")
        if scalars["task"] not in TASKS:
            raise RFMError(f"probe state has unknown task {scalars['task']!r}")
        probe = cls(
            centers=tensors["centers"],
            alphas=tensors["alphas"],
            M=tensors["M"],
            agop=tensors["agop"],
            bandwidth=float(scalars["bandwidth"]),
            exponent=float(scalars["exponent"]),
            reg=float(scalars["reg"]),
            center_grads=bool(scalars["center_grads"]),
            task=scalars["task"],
            val_score=float(scalars["val_score"]),
            best_iter=int(scalars["best_iter"]),
            m_norm=scalars.get("m_norm", "max_eig"),
            y_mean=float(scalars.get("y_mean", 0.0)),
            y_scale=float(scalars.get("y_scale", 1.0)),
        )
        return probe.to(device) if device is not None else probe


def directional_sign(probe: RFMProbe, v: torch.Tensor, X=None, output: int = 0) -> int:
    """+1 if moving along +v raises the probe's output ``output`` on average over X (default: its centers), else -1."""
    return probe.directional_sign(v, X, output)


def top_eigh(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs of symmetric A [..., d, d]: values [..., k] descending, vectors [..., k, d] as rows, each
    vector's largest-magnitude entry made positive so results do not depend on the eigensolver's sign choice."""
    values, vectors = torch.linalg.eigh((A + A.transpose(-1, -2)) / 2)
    values = values.flip(-1)[..., :k]
    vectors = vectors.flip(-1)[..., :k].transpose(-1, -2)
    pivot = vectors.gather(-1, vectors.abs().argmax(-1, keepdim=True))
    return values, vectors * torch.where(pivot < 0, -1.0, 1.0).to(vectors.dtype)


# ----------------------------------------------------------------------------------------------------------------------
# The batched engine


@dataclass
class _ChunkBest:
    """The kept round of each probe of a chunk (probe b = unit * P + target set)."""

    score: torch.Tensor  # [B] float64
    iteration: torch.Tensor  # [B] long
    alphas: torch.Tensor  # [B, n, c]
    M: torch.Tensor  # [B, d, d]
    agop: torch.Tensor  # [B, d, d]
    mean_grad: torch.Tensor  # [B, c, d] mean true input gradient over the training points


def _score(pred: torch.Tensor, Y_val: torch.Tensor, metric: str) -> torch.Tensor:
    """pred, Y_val [B, n_val, c] -> [B]: mean over outputs of AUC (targets > 0.5 positive) or R^2."""
    pred, Y_val = pred.transpose(-1, -2), Y_val.transpose(-1, -2)
    values = r_squared(pred, Y_val) if metric == "r2" else binary_auc(pred, Y_val > 0.5)
    return values.nanmean(-1)


def _fit_chunk(
    X: torch.Tensor, X_val: torch.Tensor, targets: _Targets, cfg: dict[str, torch.Tensor], settings: _Settings
) -> _ChunkBest:
    """Run RFM for U units (X [U, n, d], X_val [U, n_val, d], per-unit hyper-parameters cfg[name] [U]) times the P
    target sets of ``targets``: B = U * P probes, probe b = unit * P + set.

    A round is shared (one kernel per unit, factorised once, all P * c target columns solved together) in round 0,
    where M = I for every probe, and in every round with ``shared_metric``, where a unit's probes share the metric
    made from the sum of their AGOPs; otherwise each probe has its own kernel from round 1 on."""
    U, n, d = X.shape
    P, c = targets.sets.shape
    B = U * P
    unit = torch.arange(B, device=X.device) // P
    Y = targets.Y[:, targets.sets.reshape(-1).to(targets.Y.device)]  # [n, P * c], set-major columns
    Y_val = targets.Y_val[:, targets.sets.reshape(-1).to(targets.Y.device)]
    Y_probe = Y.reshape(n, P, c).permute(1, 0, 2).repeat(U, 1, 1)  # [B, n, c]
    Yv_probe = Y_val.reshape(-1, P, c).permute(1, 0, 2).repeat(U, 1, 1)

    best = _ChunkBest(
        score=torch.full((B,), -math.inf, dtype=torch.float64, device=X.device),
        iteration=torch.zeros(B, dtype=torch.long, device=X.device),
        alphas=X.new_zeros(B, n, c),
        M=X.new_zeros(B, d, d),
        agop=X.new_zeros(B, d, d),
        mean_grad=X.new_zeros(B, c, d),
    )
    unit_best = torch.full((U,), -math.inf, dtype=torch.float64, device=X.device)  # mean score, for early stopping
    active = torch.arange(B, device=X.device)  # probes still fitted; whole units while rounds are shared
    M = None  # round 0: M = I for every probe; then [active units or probes, d, d]
    for it in range(settings.iters):
        shared = M is None or settings.shared_metric
        if shared:
            units = active[::P] // P
            Xr, hp = X[units], {k: v[units] for k, v in cfg.items()}
            Rg, K = _train_kernel(Xr, M, hp)
            alpha_rows = ridge_solve(K, hp["reg"], Y.expand(len(units), n, P * c), _exact_kernel(Xr, M, hp))
            pred_rows = kernel_matrix(X_val[units], Xr, M, hp["bandwidth"], hp["exponent"]) @ alpha_rows
            alphas = _per_probe(alpha_rows, P, c)
            pred = _per_probe(pred_rows, P, c)
        else:
            u = unit[active]
            Xr, hp = X[u], {k: v[u] for k, v in cfg.items()}
            Rg, K = _train_kernel(Xr, M, hp)
            alphas = ridge_solve(K, hp["reg"], Y_probe[active], _exact_kernel(Xr, M, hp))
            pred = kernel_matrix(X_val[u], Xr, M, hp["bandwidth"], hp["exponent"]) @ alphas
        score = _score(pred, Yv_probe[active], targets.metric)
        improved = score >= best.score[active]
        fell = score < best.score[active]
        keep = active[improved]
        best.score[keep], best.iteration[keep] = score[improved], it
        best.alphas[keep] = alphas[improved]
        if M is None:
            best.M[keep] = torch.eye(d, dtype=X.dtype, device=X.device)
        else:
            best.M[keep] = (M.repeat_interleave(P, dim=0) if shared else M)[improved]

        # Probes go on to the next round (early stopping: a probe stops at the first round whose score falls below its
        # best; with a shared metric, a unit at the first round whose mean score does). The AGOP is needed where it
        # becomes the next metric or the kept probe's directions.
        if it == settings.iters - 1:
            going = torch.zeros_like(improved)
        elif not settings.early_stop:
            going = torch.ones_like(improved)
        elif settings.shared_metric:
            unit_score = score.reshape(-1, P).mean(1)
            going = ~(unit_score < unit_best[units]).repeat_interleave(P)
            unit_best[units] = torch.maximum(unit_best[units], unit_score)
        else:
            going = ~fell
        need = improved | going
        if not need.any():
            break
        W = _weights_(Rg, K, hp["exponent"])
        scale = _gradient_scale(hp["bandwidth"], hp["exponent"])
        if shared:
            G = _raw_gradients(W, Xr, Xr, alpha_rows, scale)  # [units, n, P * c, d]
            G = G.reshape(len(units), n, P, c, d).transpose(1, 2).reshape(-1, n, c, d)[need]
            Mn = None if M is None else M.repeat_interleave(P, dim=0)[need]
            centering = hp["center_grads"].repeat_interleave(P)[need]
        else:
            every = bool(need.all())  # skip copying W when all need it
            pick = (lambda t: t) if every else (lambda t: t[need])
            G = _raw_gradients(pick(W), pick(Xr), pick(Xr), pick(alphas), pick(scale))
            centering, Mn = pick(hp["center_grads"]), pick(M)
        del Rg, K, W
        A_raw = agop_from_raw(G, Mn, centering)  # [probes needing it, d, d]
        A = normalize_metric(A_raw, settings.m_norm)
        mean_grad = G.mean(dim=1) if Mn is None else G.mean(dim=1) @ Mn
        kept = improved[need]
        best.agop[active[need][kept]] = A[kept]
        best.mean_grad[active[need][kept]] = mean_grad[kept]
        if not going.any():
            break
        active, goes_on = active[going], going[need]
        if settings.shared_metric:  # the AGOP of all a unit's outputs together: the sum of its probes' AGOPs
            M = normalize_metric(A_raw[goes_on].reshape(-1, P, d, d).sum(1), settings.m_norm)
        else:
            M = A if bool(goes_on.all()) else A[goes_on]
    return best


def _per_probe(rows: torch.Tensor, P: int, c: int) -> torch.Tensor:
    """[units, m, P * c] (target sets side by side) -> [units * P, m, c] (probe b = unit * P + set)."""
    units, m = rows.shape[:2]
    return rows.reshape(units, m, P, c).permute(0, 2, 1, 3).reshape(units * P, m, c)


def _train_kernel(X: torch.Tensor, M: torch.Tensor | None, hp: dict[str, torch.Tensor]):
    """(r^gamma, K) among the training points of each batch row."""
    Rg = _distance_power_(squared_distances(X, X, M, same=True), hp["exponent"])
    return Rg, _kernel_from_power(Rg, hp["bandwidth"], hp["exponent"])


def _exact_kernel(X: torch.Tensor, M: torch.Tensor | None, hp: dict[str, torch.Tensor]):
    """For ridge_solve: the training kernel of some batch rows recomputed in float64."""

    def compute(rows):
        row_hp = {k: v[rows].double() if v.is_floating_point() else v[rows] for k, v in hp.items()}
        return _train_kernel(X[rows].double(), None if M is None else M[rows].double(), row_hp)[1]

    return compute


def _chunk_units(n: int, n_val: int, d: int, c: int, P: int, budget_bytes: float, itemsize: int) -> int:
    """How many units (each P probes) one chunk may hold within the memory budget (at least 1)."""
    per_probe = itemsize * (5 * n * n + 2 * n_val * n + n * d * (4 + 2 * c) + 2 * n_val * d + 6 * d * d)
    return max(1, int(budget_bytes // (per_probe * P)))


def _default_budget(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.5 * free
    return 2e9


@dataclass
class LayerFits:
    """RFM probes fitted on every layer: P = classes (one-vs-rest) or 1 (one multiclass / regression probe per layer).

    ``directions[l, p, k]`` is the k-th eigenvector (largest first) of the kept probe's AGOP, signed so that moving
    along it raises the probe's first output on average (the mean directional derivative over its training points): the
    class score of a one-vs-rest or binary probe, the value of a regression probe. A multiclass probe's directions are
    signed for its class 0 only; use one-vs-rest probes for per-class directions."""

    val_score: torch.Tensor  # [L, P] float32: AUC (classification) or R^2 (regression) of the kept probe
    directions: torch.Tensor  # [L, P, k, d] float32 unit vectors
    eigenvalues: torch.Tensor  # [L, P, k] float32 (of the rescaled AGOP)
    best_iter: torch.Tensor  # [L, P] long
    configs: list[list[RFMConfig]]  # [L][P] kept hyper-parameters
    task: str
    val_metric: str
    probes: list[list[RFMProbe]] | None = None


def concat_layers(parts: Sequence[LayerFits]) -> LayerFits:
    """Fits of consecutive layer slices joined into one, as if fitted together (a fit's layers are independent)."""
    first = parts[0]
    return LayerFits(
        val_score=torch.cat([p.val_score for p in parts]),
        directions=torch.cat([p.directions for p in parts]),
        eigenvalues=torch.cat([p.eigenvalues for p in parts]),
        best_iter=torch.cat([p.best_iter for p in parts]),
        configs=[row for p in parts for row in p.configs],
        task=first.task,
        val_metric=first.val_metric,
        probes=None if first.probes is None else [row for p in parts for row in p.probes],
    )


def fit_rfm_layers(
    X_train: torch.Tensor,
    y_train,
    X_val: torch.Tensor,
    y_val,
    *,
    one_vs_rest: bool = True,
    k: int = 4,
    task: str = "auto",
    n_classes: int | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
    keep_probes: bool = False,
    memory_budget_gb: float | None = None,
    progress: bool = False,
    on_done: Callable[[int], None] | None = None,
    **hparams,
) -> LayerFits:
    """Fit RFM probes for every layer of X_train [L, n, d] / X_val [L, n_val, d] in batches; `on_done` is called with
    the number of probe fits (layers x hyper-parameter configurations x targets) of each batch as it finishes.

    y: class ids [n] (binary if only 0/1 or bool), or float values (regression). With ``one_vs_rest`` a classification
    target gives one binary probe per class; otherwise one probe per layer (multiclass or binary). Any hyper-parameter
    in ``SEARCHABLE`` given as a list is searched; each (layer, target set) keeps its best-scoring configuration (ties:
    the earlier configuration in grid order). Other hyper-parameters: see ``DEFAULT_HPARAMS``.
    """
    settings = _settings(hparams)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    X_train, X_val = _as_layers(X_train, "X_train"), _as_layers(X_val, "X_val")
    if X_train.shape[0] != X_val.shape[0] or X_train.shape[2] != X_val.shape[2]:
        raise RFMError(f"X_train {list(X_train.shape)} and X_val {list(X_val.shape)} disagree on layers or width")
    L, n, d = X_train.shape
    targets = encode_targets(y_train, y_val, task, one_vs_rest, n_classes, device, dtype)
    if targets.Y.shape[0] != n or targets.Y_val.shape[0] != X_val.shape[1]:
        raise RFMError(
            f"{n} training / {X_val.shape[1]} validation inputs but {targets.Y.shape[0]} / "
            f"{targets.Y_val.shape[0]} labels"
        )
    if not 1 <= k <= d:
        raise RFMError(f"k must lie in 1..{d}, got {k}")
    P, c = targets.sets.shape
    configs = settings.configs
    units = [(layer, ci) for layer in range(L) for ci in range(len(configs))]
    budget = memory_budget_gb * 1e9 if memory_budget_gb else _default_budget(device)
    per_chunk = _chunk_units(n, X_val.shape[1], d, c, P, budget, torch.finfo(dtype).bits // 8)

    best_score = torch.full((L, P), -math.inf, dtype=torch.float64)
    best_cfg = [[configs[0]] * P for _ in range(L)]
    best_iter = torch.zeros(L, P, dtype=torch.long)
    kept = {name: None for name in ("agop", "mean_grad", "alphas", "M")}
    bar = tqdm(total=len(units) * P, desc="RFM probes", unit="probe", disable=not progress)
    for start in range(0, len(units), per_chunk):
        chunk = units[start : start + per_chunk]
        layers = torch.tensor([u[0] for u in chunk])
        Xc = X_train[layers].to(device, dtype)
        Xvc = X_val[layers].to(device, dtype)
        cfg = {
            name: torch.tensor(
                [getattr(configs[u[1]], name) for u in chunk],
                device=device,
                dtype=torch.bool if name == "center_grads" else dtype,
            )
            for name in SEARCHABLE
        }
        res = _fit_chunk(Xc, Xvc, targets, cfg, settings)
        for b, (score, it) in enumerate(zip(res.score.tolist(), res.iteration.tolist())):
            (layer, ci), p = chunk[b // P], b % P
            if score > best_score[layer, p]:
                best_score[layer, p], best_iter[layer, p], best_cfg[layer][p] = score, it, configs[ci]
                for name in kept:
                    if name in ("agop", "mean_grad") or keep_probes:
                        value = getattr(res, name)[b]
                        if kept[name] is None:
                            kept[name] = value.new_zeros(L, P, *value.shape)
                        kept[name][layer, p] = value
        bar.update(len(chunk) * P)
        if on_done is not None:
            on_done(len(chunk) * P)
    bar.close()
    if not torch.isfinite(best_score).all():
        raise RFMError("some probes got no finite validation score (NaN features or constant targets?)")

    values, vectors = top_eigh(kept["agop"], k)  # [L, P, k], [L, P, k, d]
    slope = (vectors * kept["mean_grad"][:, :, :1, :]).sum(-1)  # directional derivative of output 0
    vectors = vectors * torch.where(slope < 0, -1.0, 1.0).unsqueeze(-1)
    probes = None
    if keep_probes:
        probes = [
            [
                RFMProbe(
                    centers=X_train[layer].to(device, dtype).clone(),
                    alphas=kept["alphas"][layer, p],
                    M=kept["M"][layer, p],
                    agop=kept["agop"][layer, p],
                    task=targets.task,
                    val_score=float(best_score[layer, p]),
                    best_iter=int(best_iter[layer, p]),
                    m_norm=settings.m_norm,
                    y_mean=targets.y_mean,
                    y_scale=targets.y_scale,
                    **best_cfg[layer][p].as_dict(),
                )
                for p in range(P)
            ]
            for layer in range(L)
        ]
    return LayerFits(
        val_score=best_score.float(),
        directions=vectors.float().cpu(),
        eigenvalues=values.float().cpu(),
        best_iter=best_iter,
        configs=best_cfg,
        task=targets.task,
        val_metric=targets.metric,
        probes=probes,
    )


def _as_layers(X, name: str) -> torch.Tensor:
    X = torch.as_tensor(X)
    if X.ndim != 3:
        raise RFMError(f"{name} must be [layers, n, d], got shape {list(X.shape)}")
    if not X.is_floating_point() or not torch.isfinite(X).all():
        raise RFMError(f"{name} must be finite floating-point features (found NaN/inf or an integer tensor)")
    return X


def fit_rfm(X_train: torch.Tensor, y_train, X_val: torch.Tensor, y_val, **hparams) -> RFMProbe:
    """Fit one RFM probe on X_train [n, d] (labels or values y_train [n]) scored on X_val / y_val.

    Binary labels (bool or 0/1) give a one-output probe; more classes a multiclass probe (one-hot targets, mean
    one-vs-rest AUC); float values a regression probe (R^2). Hyper-parameters: ``DEFAULT_HPARAMS`` (lists are searched),
    plus ``task``, ``n_classes``, ``device``, ``dtype``, ``memory_budget_gb``, ``progress``.
    """
    X_train, X_val = torch.as_tensor(X_train), torch.as_tensor(X_val)
    if X_train.ndim != 2 or X_val.ndim != 2:
        raise RFMError(f"X_train and X_val must be [n, d], got {list(X_train.shape)} and {list(X_val.shape)}")
    fits = fit_rfm_layers(
        X_train[None], y_train, X_val[None], y_val, one_vs_rest=False, k=1, keep_probes=True, **hparams
    )
    return fits.probes[0][0]
