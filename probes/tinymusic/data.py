"""The clips the tiny model learns from: SynTheory renders of notes, chords, intervals, scales and tempos on ten
General MIDI instruments, and the notes held out to judge it.

A fifth of the notes clips, drawn with a fixed seed, is held out: pitch classes, octaves and instruments are mixed
on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probes.syntheory import load_concept
from probes.syntheory.instruments import TEN_FAMILIES

INSTRUMENTS = TEN_FAMILIES
NOTE_OCTAVES = (2, 3, 4, 5)
HELD_OUT_FRACTION = 0.2
HELD_OUT_SEED = 0
# Clips per class of the other concepts (tempos: in all): enough variety for a codec, a few minutes of rendering.
CAPS = {"chords": 60, "intervals": 15, "scales": 20, "tempos": 100}


@dataclass(frozen=True)
class Clips:
    audio: np.ndarray  # [N, samples] float32 at sample_rate
    labels: list[str]  # the class of each clip ("C", "minor", "120"...)
    concepts: list[str]  # the concept of each clip
    programs: list[int | None]  # the GM program of each clip (None: tempos, on percussion)
    sample_rate: int


def training_clips(progress: bool = True, per_class: int | None = None) -> tuple[Clips, Clips]:
    """(training clips, held-out notes): rendered with fluidsynth once, then read from SynTheory's cache. `per_class`
    caps every concept's clips per class (tempos: in all), for a trial build on a few clips."""
    caps = {"notes": None, **CAPS}
    if per_class is not None:
        caps = {concept: per_class if cap is None else min(cap, per_class) for concept, cap in caps.items()}
    parts = [
        load_concept(
            concept,
            instruments=None if concept == "tempos" else INSTRUMENTS,
            octaves=NOTE_OCTAVES if concept == "notes" else None,
            max_per_class=cap,
            progress=progress,
        )
        for concept, cap in caps.items()
    ]
    notes = parts[0]
    held = held_out(len(notes.labels))
    train = [_clips(notes, ~held)] + [_clips(part) for part in parts[1:]]
    joined = Clips(
        np.concatenate([c.audio for c in train]),
        *(sum((getattr(c, name) for c in train), []) for name in ("labels", "concepts", "programs")),
        sample_rate=notes.sample_rate,
    )
    return joined, _clips(notes, held)


def _clips(part, keep: np.ndarray | None = None) -> Clips:
    rows = np.arange(len(part.labels)) if keep is None else np.flatnonzero(keep)
    if part.is_regression:
        names = [f"{part.labels[i]:g}" for i in rows]
    else:
        names = [part.classes[part.labels[i]] for i in rows]
    programs = [part.samples[i].params.get("program") for i in rows]
    return Clips(part.audio[rows], names, [part.concept] * len(rows), programs, part.sample_rate)


def held_out(count: int) -> np.ndarray:
    """bool [count]: which of the notes clips (in SynTheory's order) are held out."""
    mask = np.zeros(count, dtype=bool)
    mask[np.random.default_rng(HELD_OUT_SEED).permutation(count)[: round(count * HELD_OUT_FRACTION)]] = True
    return mask
