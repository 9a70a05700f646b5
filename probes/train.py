"""The whole probes pipeline for one concept: SynTheory clips -> pooled activations -> RFM probes -> ConceptBank.

``train_concept_bank`` runs it on a loaded model; ``build_bank`` is its last step, from activations to a bank. The
directions come from RFM probes or, with another ``method``, from probes/directions.py, on the same cached
activations (their cache key does not name the method); the readout probe is an RFM probe either way.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from probes.activations import NORM, cached_activations
from probes.bank import POOLINGS, REGRESSION_CLASSES, ConceptBank, check_layers
from probes.directions import check_method, fit_directions
from probes.rfm import DEFAULT_HPARAMS, LayerFits, concat_layers, fit_rfm, fit_rfm_layers
from probes.syntheory import load_concept
from studio.errors import BankError, RFMError
from studio.model import LoadedModel, ModelSignature

log = logging.getLogger(__name__)

# Bandwidths are searched as multiples of the median pairwise distance of the training activations, because the
# activation scale differs by orders of magnitude between models and layers.
BANDWIDTH_MULTIPLES = (0.5, 1.0, 2.0)


@dataclass
class TrainOptions:
    """What to train on and how; the defaults train a small but usable bank."""

    instruments: list | None = None  # GM programs or names; None: every instrument of the concept
    octaves: list[int] | None = None  # notes only
    max_per_class: int | None = None  # a seeded cap per class
    val_fraction: float = 0.25
    seed: int = 0
    pooling: str = "mean"
    method: str = "rfm"  # how the directions are found: one of probes.directions.METHODS
    components: int = 4  # K directions kept per (layer, class); 1 for the methods with one direction
    readout_layer: int | str = "best"  # "best" or one of `layers`
    layers: tuple[int, ...] | None = None  # decoder layers to train probes on; None: all
    bandwidth_multiples: tuple[float, ...] = BANDWIDTH_MULTIPLES
    hparams: dict = field(default_factory=dict)  # RFM hyper-parameters (lists are searched); overrides the bandwidths
    cache_dir: Path | None = None
    device: str | None = None
    progress: bool = True
    # called as work finishes, for a progress bar outside: ("render", clips), ("activations", clips), ("probes", fits)
    on_done: Callable[[str, int], None] | None = None
    cluster: Any = None  # probes.cluster.Cluster: clips, activation batches and each layer's probes as Ray tasks

    def tick(self, stage: str) -> Callable[[int], None] | None:
        return None if self.on_done is None else functools.partial(self.on_done, stage)


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int, regression: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (train, val): every class keeps at least one clip on each side; regression splits at random."""
    rng = np.random.default_rng(seed)
    if regression:
        order = rng.permutation(len(labels))
        cut = max(1, int(round(len(labels) * val_fraction)))
        return np.sort(order[cut:]), np.sort(order[:cut])
    train, val = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        cut = min(max(1, int(round(len(members) * val_fraction))), len(members) - 1)
        val.extend(members[:cut])
        train.extend(members[cut:])
    return np.sort(np.array(train)), np.sort(np.array(val))


def median_distance(acts: torch.Tensor, sample: int = 512) -> float:
    """Median pairwise Euclidean distance of [n, d] activations (on at most `sample` rows)."""
    rows = acts[:sample].double()
    dists = torch.cdist(rows, rows)
    return float(dists[torch.triu(torch.ones_like(dists, dtype=torch.bool), diagonal=1)].median())


@dataclass
class ConceptActivations:
    """A concept's clips as the probes see them: pooled activations, the split, and the bandwidths to search."""

    classes: list[str]
    labels: np.ndarray  # [N] class indices, or values (regression)
    acts: torch.Tensor  # [L, N, width] pooled activations, layers first
    train: np.ndarray  # indices of the training clips
    val: np.ndarray  # indices of the validation clips
    hparams: dict  # RFM hyper-parameters: the bandwidths from the training activations' scale, then options.hparams
    dataset: dict  # provenance, as a bank records it
    residual_norm: torch.Tensor  # [L]: each layer's typical residual norm over the training clips (see ConceptBank)

    def split(self) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
        """(X_train [L, n, width], y_train, X_val, y_val)."""
        return self.acts[:, self.train], self.labels[self.train], self.acts[:, self.val], self.labels[self.val]


def concept_activations(loaded: LoadedModel, concept: str, options: TrainOptions) -> ConceptActivations:
    """Render (or reuse) the concept's clips, read their activations pooled by ``options.pooling`` (cached), split
    them and size the bandwidths."""
    data = load_concept(
        concept,
        instruments=options.instruments,
        octaves=options.octaves,
        max_per_class=options.max_per_class,
        seed=options.seed,
        progress=options.progress,
        on_done=options.tick("render"),
        cluster=options.cluster,
    )
    log.info("%s: %d clips, %d classes, %s directions", concept, len(data.labels), len(data.classes), options.method)
    cache_dir = options.cache_dir or Path(".cache") / "activations"
    acts, norms = (
        cached_activations(
            loaded,
            lambda: data.audio,
            _dataset_key(data.description),
            cache_dir,
            pooling=pooling,
            progress=options.progress,
            on_done=options.tick("activations"),
            cluster=options.cluster,
        )
        for pooling in (options.pooling, NORM)  # the first pass caches both
    )  # [N, L, width], [N, L, 1]
    train, val = stratified_split(data.labels, options.val_fraction, options.seed, data.is_regression)
    layers_first = acts.transpose(0, 1)  # [L, N, width]
    trained = options.layers if options.layers is not None else range(loaded.num_layers)
    # The scale of the layers that are fitted: untrained layers must not move the bandwidths of the trained ones.
    scale = float(np.median([median_distance(layers_first[layer, train]) for layer in trained]))
    hparams = {"bandwidth": [round(scale * m, 6) for m in options.bandwidth_multiples], **options.hparams}
    dataset = {
        **data.description,
        "n_train": int(len(train)),
        "n_val": int(len(val)),
        "val_fraction": options.val_fraction,
        "split_seed": options.seed,
    }
    residual_norm = norms[train, :, 0].median(dim=0).values
    classes = list(data.classes)
    return ConceptActivations(classes, data.labels, layers_first, train, val, hparams, dataset, residual_norm)


def train_concept_bank(loaded: LoadedModel, concept: str, options: TrainOptions) -> ConceptBank:
    """Render (or reuse) the concept's clips, extract activations (cached), fit every layer's probes, build the bank."""
    prepared = concept_activations(loaded, concept, options)
    return build_bank(
        concept,
        prepared.classes,
        *prepared.split(),
        loaded.signature,
        k=options.components,
        method=options.method,
        pooling=options.pooling,
        readout_layer=options.readout_layer,
        hparams=prepared.hparams,
        dataset=prepared.dataset,
        residual_norm=prepared.residual_norm,
        layers=options.layers,
        device=options.device,
        progress=options.progress,
        on_done=options.tick("probes"),
        cluster=options.cluster,
    )


def build_bank(
    concept: str,
    classes: list[str],
    acts_train: torch.Tensor,
    y_train,
    acts_val: torch.Tensor,
    y_val,
    signature: ModelSignature,
    *,
    k: int = 4,
    method: str = "rfm",
    pooling: str = "mean",
    readout_layer: int | str = "best",
    hparams: dict | None = None,
    dataset: dict | None = None,
    residual_norm: torch.Tensor | None = None,
    layers=None,
    device=None,
    progress: bool = True,
    on_done: Callable[[int], None] | None = None,
    cluster=None,
) -> ConceptBank:
    """Train a ConceptBank from pooled activations acts_train [L, n, d] / acts_val [L, n_val, d].

    Classification: y are class indices into ``classes`` (C >= 2); per layer and class a one-vs-rest RFM probe gives
    the top-k AGOP eigenvectors and the validation AUC. Regression (``classes == ["value"]``): y are float values, one
    regression probe per layer, scored by R^2. Another ``method`` gives its own directions and scores instead of the
    probes' (probes/directions.py; k is 1 for the methods with one direction). ``layers``: the decoder layers to train
    (default all); the others are left untrained (see the module docstring). The readout probe (multiclass, or
    regression) is fitted at ``readout_layer``, a trained layer: "best" is the trained layer with the highest mean
    validation score (the earliest on ties). ``hparams``: RFM hyper-parameters (lists are searched per probe), see
    ``probes.rfm.DEFAULT_HPARAMS``. ``residual_norm`` [L]: kept in the bank (see ConceptBank). ``on_done``: see
    ``probes.rfm.fit_rfm_layers``. ``cluster``
    (probes.cluster.Cluster): each layer's RFM probes are fitted by a Ray task, the same fit as that layer's slice here;
    the other methods' directions, a few matrix products per layer, are computed here.
    """
    classes = [str(c) for c in classes]
    regression = classes == REGRESSION_CLASSES
    if not regression and len(classes) < 2:
        raise BankError(
            f"a classification concept needs at least 2 classes, got {classes}; "
            f"use classes={REGRESSION_CLASSES} for a regression concept"
        )
    if len(set(classes)) != len(classes):
        raise BankError(f"class names must be unique, got {classes}")
    if pooling not in POOLINGS:
        raise BankError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    check_method(method)
    acts_train, acts_val = torch.as_tensor(acts_train), torch.as_tensor(acts_val)
    expected = (signature.num_layers, signature.hidden_size)
    for name, acts in (("acts_train", acts_train), ("acts_val", acts_val)):
        if acts.ndim != 3 or (acts.shape[0], acts.shape[2]) != expected:
            raise BankError(
                f"{name} has shape {list(acts.shape)}, expected [{expected[0]}, n, {expected[1]}] for "
                f"{signature.describe()}"
            )
    layers = tuple(range(signature.num_layers)) if layers is None else tuple(int(layer) for layer in layers)
    check_layers(layers, signature.num_layers, "layers")
    unknown = set(hparams or {}) - set(DEFAULT_HPARAMS)
    if unknown:
        raise BankError(f"unknown RFM hyper-parameter(s) {sorted(unknown)}; known: {sorted(DEFAULT_HPARAMS)}")
    hparams = {**DEFAULT_HPARAMS, **(hparams or {})}
    task = "regression" if regression else "multiclass"
    fit_args = dict(task=task, n_classes=None if regression else len(classes), device=device, **hparams)
    index = list(layers)
    try:
        data = (acts_train[index], y_train, acts_val[index], y_val)
        fit = functools.partial(fit_rfm_layers, one_vs_rest=True, k=k, **fit_args)
        if method != "rfm":  # a few matrix products per layer: here, with or without a cluster
            fits = fit_directions(method, *data, task=task, n_classes=fit_args["n_classes"], k=k, device=device)
        elif cluster is None:
            fits = fit(*data, progress=progress, on_done=on_done)
        else:
            fits = concat_layers(
                cluster.map(
                    _fit_slice,
                    index,
                    desc=f"{concept} probes",
                    describe=lambda layer: f"the probes of layer {layer}",
                    payload=lambda layer: (acts_train[[layer]], y_train, acts_val[[layer]], y_val),
                    gpu=str(device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda"),
                    shared=fit,
                )
            )
        val_score, directions, eigenvalues = _scatter_layers(fits, layers, signature.num_layers)
        layer = _pick_readout_layer(val_score, readout_layer, layers)
        readout = fit_rfm(acts_train[layer], y_train, acts_val[layer], y_val, **fit_args).to("cpu")
    except RFMError as err:
        raise BankError(f"cannot train the {concept!r} bank: {err}") from None
    bank = ConceptBank(
        concept=concept,
        classes=classes,
        directions=directions,
        val_score=val_score,
        readout_layer=layer,
        readout=readout,
        signature=signature,
        pooling=pooling,
        hparams={k_: list(v) if isinstance(v, tuple) else v for k_, v in hparams.items()},
        dataset=dict(dataset or {}),
        eigenvalues=eigenvalues,
        val_metric=fits.val_metric,
        layers=layers,
        method=method,
        residual_norm=None if residual_norm is None else torch.as_tensor(residual_norm, dtype=torch.float32),
    )
    bank.validate()
    return bank


def _fit_slice(data: tuple, fit: Callable) -> LayerFits:
    """A cluster task: `fit` on (acts_train, y_train, acts_val, y_val) of one layer."""
    return fit(*data)


def _scatter_layers(fits, layers: tuple[int, ...], num_layers: int):
    """Per-layer results of the trained layers placed at their layer indices: val_score (NaN elsewhere), directions and
    eigenvalues (zero elsewhere; None when the method has none)."""
    index = list(layers)
    P, K, d = fits.directions.shape[1:]
    val_score = torch.full((num_layers, P), float("nan"))
    directions = torch.zeros(num_layers, P, K, d)
    val_score[index], directions[index] = fits.val_score, fits.directions
    if fits.eigenvalues is None:
        return val_score, directions, None
    eigenvalues = torch.zeros(num_layers, P, K)
    eigenvalues[index] = fits.eigenvalues
    return val_score, directions, eigenvalues


def _pick_readout_layer(val_score: torch.Tensor, readout_layer: int | str, layers: tuple[int, ...]) -> int:
    if readout_layer == "best":
        return layers[int(val_score[list(layers)].mean(dim=1).argmax())]
    if isinstance(readout_layer, int) and readout_layer in layers:
        return readout_layer
    allowed = (
        f"a layer in 0..{val_score.shape[0] - 1}"
        if len(layers) == val_score.shape[0]
        else f"one of the trained layers {', '.join(map(str, layers))}"
    )
    raise BankError(f"readout_layer must be 'best' or {allowed}, got {readout_layer!r}")


def _dataset_key(description: dict) -> str:
    return json.dumps(description, sort_keys=True, default=str)
