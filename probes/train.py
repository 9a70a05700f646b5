"""The whole probes pipeline for one concept: SynTheory clips -> pooled activations -> RFM probes -> ConceptBank."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from probes.activations import cached_activations
from probes.bank import ConceptBank, build_bank
from probes.syntheory import load_concept
from studio.model import LoadedModel

log = logging.getLogger(__name__)

# Bandwidths are searched as multiples of the median pairwise distance of the training activations, because the
# activation scale differs by orders of magnitude between models and layers.
BANDWIDTH_MULTIPLES = (0.5, 1.0, 2.0)


@dataclass
class TrainOptions:
    """What to train on and how; the defaults train a small but usable bank."""

    instruments: list | None = None      # GM programs or names; None: every instrument of the concept
    octaves: list[int] | None = None     # notes only
    max_per_class: int | None = None     # a seeded cap per class
    val_fraction: float = 0.25
    seed: int = 0
    pooling: str = "mean"
    components: int = 4                  # K eigenvectors kept per (layer, class)
    readout_layer: int | str = "best"    # "best" or one of `layers`
    layers: tuple[int, ...] | None = None  # decoder layers to train probes on; None: all
    bandwidth_multiples: tuple[float, ...] = BANDWIDTH_MULTIPLES
    hparams: dict = field(default_factory=dict)  # RFM hyper-parameters (lists are searched); overrides the bandwidths
    cache_dir: Path | None = None
    device: str | None = None
    progress: bool = True


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int, regression: bool) -> tuple[np.ndarray, np.ndarray]:
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


def train_concept_bank(loaded: LoadedModel, concept: str, options: TrainOptions) -> ConceptBank:
    """Render (or reuse) the concept's clips, extract activations (cached), fit every layer's probes, build the bank."""
    data = load_concept(concept, instruments=options.instruments, octaves=options.octaves,
                        max_per_class=options.max_per_class, seed=options.seed, progress=options.progress)
    log.info("%s: %d clips, %d classes", concept, len(data.labels), len(data.classes))
    cache_dir = options.cache_dir or Path(".cache") / "activations"
    acts = cached_activations(loaded, lambda: data.audio, _dataset_key(data.description), cache_dir,
                              pooling=options.pooling, progress=options.progress)   # [N, L, d]
    train, val = stratified_split(data.labels, options.val_fraction, options.seed, data.is_regression)
    layers_first = acts.transpose(0, 1)                                               # [L, N, d]
    trained = options.layers if options.layers is not None else range(loaded.num_layers)
    # The scale of the layers that are fitted: untrained layers must not move the bandwidths of the trained ones.
    scale = float(np.median([median_distance(layers_first[layer, train]) for layer in trained]))
    hparams = {"bandwidth": [round(scale * m, 6) for m in options.bandwidth_multiples], **options.hparams}
    dataset = {**data.description, "n_train": int(len(train)), "n_val": int(len(val)),
               "val_fraction": options.val_fraction, "split_seed": options.seed}
    return build_bank(concept, data.classes, layers_first[:, train], data.labels[train], layers_first[:, val],
                      data.labels[val], loaded.signature, k=options.components, pooling=options.pooling,
                      readout_layer=options.readout_layer, hparams=hparams, dataset=dataset,
                      layers=options.layers, device=options.device, progress=options.progress)


def _dataset_key(description: dict) -> str:
    return json.dumps(description, sort_keys=True, default=str)
