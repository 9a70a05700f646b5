"""Rendered concept clips with their labels, as a lazy sequence (ConceptDataset) or stacked arrays (load_concept)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np

from .concepts import CLIP_SECONDS, Sample, get_concept, list_samples
from .renderer import RENDERER_VERSION, RenderConfig, read_clip, render

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConceptItem:
    """One clip: mono float32 audio [n] in [-1, 1], its rate, its label (class name or BPM) and class index."""

    audio: np.ndarray
    sample_rate: int
    label: str | float
    class_index: int


@dataclass
class ConceptArrays:
    """A whole concept subset in memory.

    audio: [N, n] float32, every clip the same length. labels: [N] int64 class indices into `classes`, or for a
    regression concept float32 target values (tempos: BPM). `description` is JSON-serialisable provenance
    (suitable for ConceptBank.dataset); `samples` gives each row's construction (empty for the published set).
    """

    concept: str
    audio: np.ndarray
    labels: np.ndarray
    classes: list[str]
    is_regression: bool
    sample_rate: int
    description: dict
    samples: list[Sample]


def labels_array(values: Sequence[str | float], class_indices: Sequence[int], is_regression: bool) -> np.ndarray:
    """Training targets: float32 values for regression, else int64 class indices."""
    if is_regression:
        return np.asarray(values, dtype=np.float32)
    return np.asarray(class_indices, dtype=np.int64)


class ConceptDataset(Sequence[ConceptItem]):
    """Rendered clips of one concept, read from the cache on access. Build one with `ConceptDataset.generate`."""

    def __init__(
        self, concept: str, samples: Sequence[Sample], paths: Sequence[Path], sample_rate: int, description: dict
    ):
        if len(samples) != len(paths):
            raise ValueError("samples and paths must have the same length")
        self.spec = get_concept(concept)
        self.samples = list(samples)
        self.paths = list(paths)
        self.sample_rate = sample_rate
        self.description = description

    @classmethod
    def generate(
        cls,
        concept: str,
        *,
        instruments: Iterable[int | str] | None = None,
        octaves: Iterable[int] | None = None,
        max_per_class: int | None = None,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        workers: int | None = None,
        progress: bool = True,
        config: RenderConfig | None = None,
        drop_silent: bool = True,
        on_done: Callable[[int], None] | None = None,
        cluster=None,
    ) -> ConceptDataset:
        """List the concept's clips (see `list_samples` for the subset options), render the missing ones (`on_done`,
        `cluster`: see `render`), and drop clips the soundfont renders silent unless `drop_silent` is False."""
        config = config or RenderConfig()
        instruments = list(instruments) if instruments is not None else None
        octaves = list(octaves) if octaves is not None else None
        samples = list_samples(
            concept, instruments=instruments, octaves=octaves, max_per_class=max_per_class, seed=seed
        )
        paths = render(
            samples,
            cache_dir=cache_dir,
            workers=workers,
            progress=progress,
            config=config,
            on_done=on_done,
            cluster=cluster,
        )
        dropped = 0
        if drop_silent:
            audible = [bool(np.any(read_clip(path, config.sample_rate))) for path in paths]
            dropped = len(paths) - sum(audible)
            samples = [sample for sample, keep in zip(samples, audible) if keep]
            paths = [path for path, keep in zip(paths, audible) if keep]
            if dropped:
                logger.info("SynTheory %s: dropped %d silent clips of %d", concept, dropped, len(audible))
        description = {
            "source": "syntheory-generated",
            "concept": concept,
            "instruments": instruments,
            "octaves": octaves,
            "max_per_class": max_per_class,
            "seed": seed,
            "n_clips": len(samples),
            "dropped_silent": dropped,
            "soundfont": Path(config.soundfont).name,
            "sample_rate": config.sample_rate,
            "renderer_version": RENDERER_VERSION,
        }
        return cls(concept, samples, paths, config.sample_rate, description)

    @property
    def concept(self) -> str:
        return self.spec.name

    @property
    def classes(self) -> list[str]:
        return list(self.spec.classes)

    @property
    def is_regression(self) -> bool:
        return self.spec.is_regression

    @property
    def labels(self) -> np.ndarray:
        """[N] int64 class indices, or float32 values for a regression concept."""
        return labels_array([s.label for s in self.samples], [s.class_index for s in self.samples], self.is_regression)

    def __len__(self) -> int:
        return len(self.samples)

    @overload
    def __getitem__(self, index: int) -> ConceptItem: ...
    @overload
    def __getitem__(self, index: slice) -> list[ConceptItem]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        sample = self.samples[index]
        return ConceptItem(
            read_clip(self.paths[index], self.sample_rate), self.sample_rate, sample.label, sample.class_index
        )

    def to_arrays(self) -> ConceptArrays:
        """Read every clip into one [N, n] float32 array (4 s at 32 kHz: 512 kB per clip)."""
        n_samples = int(round(CLIP_SECONDS * self.sample_rate))
        audio = np.zeros((len(self), n_samples), dtype=np.float32)
        for row, path in enumerate(self.paths):
            clip = read_clip(path, self.sample_rate)
            audio[row, : len(clip)] = clip[:n_samples]
        return ConceptArrays(
            self.concept,
            audio,
            self.labels,
            self.classes,
            self.is_regression,
            self.sample_rate,
            dict(self.description),
            list(self.samples),
        )


def load_concept(concept: str, **options) -> ConceptArrays:
    """Generate (or reuse from the cache) a concept subset and return it as arrays.

    Options are those of `ConceptDataset.generate`: instruments, octaves, max_per_class, seed, cache_dir, workers,
    progress, config, drop_silent, on_done, cluster.
    """
    return ConceptDataset.generate(concept, **options).to_arrays()
