"""Concept directions by simpler methods than RFM, from the same pooled activations, to set them side by side.

``fit_directions`` takes what ``probes.rfm.fit_rfm_layers`` takes (activations X [L, n, d] of a training and a
validation split; class labels, or the values of a regression concept) and returns what a bank needs of it: per layer
and target (a class against the rest, or the one value of a regression concept) up to K unit directions
[L, P, K, d] and a validation score [L, P].

- ``mean-diff``: the mean of the class minus the mean of the rest. Regression: the mean of the top half by value minus
  the mean of the bottom half (split at the training median; values equal to it go to the bottom). One direction.
- ``pca``: the top K principal axes of the class's activations seen from the rest's mean (the uncentred second moment
  of x - mean(rest) over the class's clips; regression: the top half seen from the bottom half's mean). K directions,
  orthonormal.
- ``linear``: ridge regression of the class indicator (regression: the value) on the centred activations, its weight
  vector. One direction.
- ``logistic``: L2-regularised logistic regression of the class against the rest (regression: top half against bottom
  half), fitted by L-BFGS; its weight vector. One direction.

Sign, one rule for every method and component: each direction v is flipped so that moving along +v raises the target,
cov(v . x, t) > 0 over the training clips, t the class indicator (for which cov(v . x, t) is a positive multiple of
(mean(class) - mean(rest)) . v) or the value. RFM's directions are signed by its probe's mean directional derivative,
which is the same idea read off a non-linear probe.

Score. RFM's is its probe's validation AUC (R^2 for regression). A direction alone has no probe, so here the score is
the validation AUC of the projection onto the first direction (regression: the R^2 of the value predicted by a line
through that projection, the line fitted on the training split). It measures how well one line separates the class,
where RFM's measures a non-linear function of the whole layer: the same kind of number on the same split, not the same
measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probes.rfm import binary_auc, encode_targets, r_squared, top_eigh
from studio.errors import BankError, RFMError

METHODS = ("rfm", "mean-diff", "pca", "linear", "logistic")
ONE_DIRECTION = ("mean-diff", "linear", "logistic")  # the others keep K directions per layer and class
RIDGE = 0.1  # the ridge penalty over the centred Gram matrix's mean diagonal: one strength for every layer's scale
LOGISTIC_L2 = 0.1  # the L2 penalty on the weights of activations scaled to unit mean variance (as RIDGE, scale-free)
LOGISTIC_STEPS = 300


@dataclass
class DirectionFits:
    """What ``fit_directions`` found, laid out as ``probes.rfm.LayerFits`` so a bank is built from either alike."""

    val_score: torch.Tensor  # [L, P] float32: AUC of the first direction's projection, or R^2 (regression)
    directions: torch.Tensor  # [L, P, K, d] float32 unit vectors, signed to raise the target
    eigenvalues: torch.Tensor | None  # [L, P, K] float32: pca's second moments along its axes; None for the others
    val_metric: str  # "auc" or "r2"


def check_method(method: str) -> None:
    if method not in METHODS:
        raise BankError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def directions_kept(method: str, k: int) -> int:
    """K of a bank made by ``method`` when K directions are asked for: 1 for a method that has one direction."""
    check_method(method)
    return 1 if method in ONE_DIRECTION else k


def fit_directions(
    method: str,
    X_train: torch.Tensor,
    y_train,
    X_val: torch.Tensor,
    y_val,
    *,
    task: str,
    n_classes: int | None = None,
    k: int = 4,
    device=None,
) -> DirectionFits:
    """Directions of ``method`` (not "rfm": that is ``fit_rfm_layers``) for every layer of X_train [L, n, d] and every
    class against the rest (``task="multiclass"``, y class indices) or for the value (``task="regression"``).

    Computed in float64 on ``device`` (default: CUDA when present) and returned on the CPU. Deterministic: no sampling,
    and L-BFGS starts from zero. Raises BankError for an unknown method or K, RFMError for labels that cannot be fitted.
    """
    if method == "rfm":
        raise BankError("fit_directions makes the other methods' directions; RFM's come from fit_rfm_layers")
    k = directions_kept(method, k)
    L, _, d = X_train.shape
    if not 1 <= k <= d:
        raise BankError(f"k must lie in 1..{d}, got {k}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    targets = encode_targets(y_train, y_val, task, True, n_classes, device, torch.float64)
    regression = targets.task == "regression"
    vectors, values, scores = [], [], []
    for layer in range(L):
        X, X_held = (acts[layer].to(device, torch.float64) for acts in (X_train, X_val))
        layer_vectors, layer_values = _fit_layer(method, X, targets.Y, k, regression)
        vectors.append(layer_vectors)
        values.append(layer_values)
        scores.append(_score(layer_vectors[:, 0], X, targets.Y, X_held, targets.Y_val, regression))
    return DirectionFits(
        val_score=torch.stack(scores).float().cpu(),
        directions=torch.stack(vectors).float().cpu(),
        eigenvalues=None if values[0] is None else torch.stack(values).float().cpu(),
        val_metric=targets.metric,
    )


def _fit_layer(method: str, X: torch.Tensor, t: torch.Tensor, k: int, regression: bool):
    """One layer: X [n, d], targets t [n, P] (class indicators, or the standardised value) -> (directions [P, K, d]
    unit and signed, pca's second moments [P, K] or None)."""
    positive = _positive(t, regression)
    values = None
    if method == "mean-diff":
        vectors = _mean_difference(X, positive)[:, None]
    elif method == "pca":
        values, vectors = _principal_axes(X, positive, k)
    elif method == "linear":
        vectors = _ridge_weights(X, t)[:, None]
    else:
        vectors = _logistic_weights(X, positive)[:, None]
    vectors = vectors / vectors.norm(dim=-1, keepdim=True)
    covariance = (X - X.mean(0)).T @ (t - t.mean(0))  # [d, P]: how x moves with the target
    slope = (vectors * covariance.T[:, None, :]).sum(-1)
    return vectors * torch.where(slope < 0, -1.0, 1.0).to(vectors.dtype).unsqueeze(-1), values


def _positive(t: torch.Tensor, regression: bool) -> torch.Tensor:
    """[n, P] bool: the class's clips, or the top half by value; both sides must have clips."""
    positive = t > t.median(dim=0).values if regression else t > 0.5
    counts = positive.sum(0)
    if ((counts == 0) | (counts == len(t))).any():
        raise RFMError("cannot split the values into a top and a bottom half: they are all equal")
    return positive


def _group_means(X: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means of the positive and of the other clips, each [P, d]."""
    pos = positive.to(X.dtype)
    return (pos.T @ X) / pos.sum(0)[:, None], ((1 - pos).T @ X) / (1 - pos).sum(0)[:, None]


def _mean_difference(X: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    inside, outside = _group_means(X, positive)
    return inside - outside


def _principal_axes(X: torch.Tensor, positive: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs of the class's second moment about the rest's mean: [P, k], [P, k, d].

    About the rest's mean, not the class's own: centred on itself a class's axes would only describe its spread, while
    seen from the rest the first axis is the mean difference whenever the class's offset outweighs its spread, and
    the next ones are the directions in which it differs most from the rest besides."""
    _, outside = _group_means(X, positive)
    moments = []
    for p in range(positive.shape[1]):
        offsets = X[positive[:, p]] - outside[p]
        moments.append(offsets.T @ offsets / len(offsets))
    return top_eigh(torch.stack(moments), k)


def _ridge_weights(X: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """[P, d] ridge weights for the targets t [n, P], intercept left out by centring. A +-1 class target gives the same
    weights, doubled: centring removes the rest."""
    Xc, tc = X - X.mean(0), t - t.mean(0)
    gram = Xc.T @ Xc
    penalty = RIDGE * gram.diagonal().mean()
    eye = torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
    return torch.linalg.solve(gram + penalty * eye, Xc.T @ tc).T


def _logistic_weights(X: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """[P, d] weights of L2 logistic regressions (one per column of positive), all fitted at once: the loss is a sum of
    independent ones, so the joint minimum is each one's minimum."""
    Z = X - X.mean(0)
    Z = Z / Z.square().mean().sqrt().clamp(min=torch.finfo(Z.dtype).tiny)  # one scale for all: directions unchanged
    sign = positive.to(Z.dtype) * 2 - 1
    weights = torch.zeros(Z.shape[1], positive.shape[1], dtype=Z.dtype, device=Z.device, requires_grad=True)
    bias = torch.zeros(positive.shape[1], dtype=Z.dtype, device=Z.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weights, bias],
        max_iter=LOGISTIC_STEPS,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.softplus(-sign * (Z @ weights + bias)).mean(0).sum()
        value = value + LOGISTIC_L2 / 2 * weights.square().sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    return weights.detach().T


def _score(first, X, t, X_val, t_val, regression: bool) -> torch.Tensor:
    """[P]: validation AUC of the projection onto each first direction [P, d], or (regression) the validation R^2 of
    the value predicted by a least-squares line through the training projection."""
    projection_val = X_val @ first.T  # [n_val, P]
    if not regression:
        return binary_auc(projection_val.T, t_val.T > 0.5)
    projection = X @ first.T
    centred = projection - projection.mean(0)
    slope = (centred * (t - t.mean(0))).sum(0) / centred.square().sum(0).clamp(min=torch.finfo(X.dtype).tiny)
    predicted = t.mean(0) + slope * (projection_val - projection.mean(0))
    return r_squared(predicted.T, t_val.T)
