"""The clips the tiny model learns from: SynTheory renders of notes, chords, intervals, scales and tempos on ten
General MIDI instruments, and the notes held out to judge it.

A fifth of the notes clips, drawn with a fixed seed, is held out: pitch classes, octaves and instruments are mixed
on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probes.syntheory import load_concept

# piano, electric piano, vibraphone, nylon guitar, violin, string ensemble, trumpet, clarinet, flute, square lead
INSTRUMENTS = (0, 4, 11, 24, 40, 48, 56, 71, 73, 80)
NOTE_OCTAVES = (2, 3, 4, 5)
HELD_OUT_FRACTION = 0.2
HELD_OUT_SEED = 0
# Clips per class of the other concepts (tempos: in all): enough variety for a codec, a few minutes of rendering.
CAPS = {"chords": 60, "intervals": 15, "scales": 20, "tempos": 100}


@dataclass(frozen=True)
class Clips:
    audio: np.ndarray  # [N, samples] float32 at sample_rate
    labels: list[str]  # the class of each clip ("C", "minor", "120.0"...)
    concepts: list[str]  # the concept of each clip
    sample_rate: int


def training_clips(progress: bool = True) -> tuple[Clips, Clips]:
    """(training clips, held-out notes): rendered with fluidsynth once, then read from SynTheory's cache."""
    parts = [load_concept("notes", instruments=INSTRUMENTS, octaves=NOTE_OCTAVES, progress=progress)]
    for concept, cap in CAPS.items():
        instruments = None if concept == "tempos" else INSTRUMENTS
        parts.append(load_concept(concept, instruments=instruments, max_per_class=cap, progress=progress))
    notes = parts[0]
    held = held_out(len(notes.labels))
    audio, labels, concepts = [notes.audio[~held]], _names(notes)[~held].tolist(), ["notes"] * int((~held).sum())
    for part in parts[1:]:
        audio.append(part.audio)
        labels += _names(part).tolist()
        concepts += [part.concept] * len(part.labels)
    rate = notes.sample_rate
    train = Clips(np.concatenate(audio), labels, concepts, rate)
    return train, Clips(notes.audio[held], _names(notes)[held].tolist(), ["notes"] * int(held.sum()), rate)


def held_out(count: int) -> np.ndarray:
    """bool [count]: which of the notes clips (in SynTheory's order) are held out."""
    mask = np.zeros(count, dtype=bool)
    mask[np.random.default_rng(HELD_OUT_SEED).permutation(count)[: round(count * HELD_OUT_FRACTION)]] = True
    return mask


def _names(part) -> np.ndarray:
    if part.is_regression:
        return np.array([f"{value:g}" for value in part.labels])
    return np.array(part.classes)[part.labels]
