"""Measure a set of clips once: what each bank's probe reads in the re-encoded audio, what the DSP checks hear, what
an outside transcriber hears (basic-pitch, for notes and chords), what CLAP says, and the embeddings that distribution
drift is computed on. Rows per (clip, target) are derived from it.

Probe: the audio goes back through EnCodec and the MusicGen decoder (probes.activations, conditioned on the empty
prompt, exactly as the probes' training clips were), is pooled as the bank was trained, and the bank's readout probe
classifies it: the paper's classification accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm import tqdm

from probes import transcribe
from probes.activations import extract_activations
from studio.errors import EvaluationError

from . import dsp
from .clap import ClapResult, ClapScorer
from .metrics import ProbeReadout, probe_readout

DSP_CONCEPTS = ("notes", "chords", "tempos")
TRANSCRIBED_CONCEPTS = ("notes", "chords")
NOTHING_HEARD = "(none)"


@dataclass(frozen=True)
class DspCheck:
    """One clip's independent check for one concept (by DSP, or by transcription): the predicted label (pitch class
    name, triad quality) or value (tempo in BPM), and per-target support: the target pitch class's share of the
    profile, the target quality's template score."""

    concept: str
    predicted: str | float
    support: dict[str, float]

    def hit(self, target: str, target_value: float | None = None) -> float | None:
        """1.0 / 0.0 whether the prediction is the target class, or for a value (tempo) whether it lies within 4% of
        `target_value` (MIREX accuracy 1, as dsp.tempo_matches); None for a value without a target value."""
        if isinstance(self.predicted, float):
            return None if target_value is None else float(dsp.tempo_matches(self.predicted, target_value))
        return float(self.predicted == target)


def _profile_check(concept: str, profile: np.ndarray) -> DspCheck:
    """A notes or chords check from a [12] pitch-class profile (chroma, or transcribed notes)."""
    if not profile.any():
        return DspCheck(concept, NOTHING_HEARD, {})
    if concept == "notes":
        return DspCheck(concept, dsp.pitch_class_from_profile(profile).name, dict(zip(dsp.PITCH_CLASS_NAMES, profile)))
    estimate = dsp.chord_from_profile(profile)
    return DspCheck(concept, estimate.quality, {q: estimate.quality_score(q) for q in dsp.QUALITIES})


def dsp_check(concept: str, audio: np.ndarray, sample_rate: int) -> DspCheck | None:
    """The concept's DSP check of a clip, or None for concepts without one (intervals, scales, ...)."""
    if concept in TRANSCRIBED_CONCEPTS:
        return _profile_check(concept, dsp.chroma_profile(audio, sample_rate))
    if concept == "tempos":
        return DspCheck(concept, dsp.estimate_tempo(audio, sample_rate).bpm, {})
    return None


def transcription_check(concept: str, audio: np.ndarray, sample_rate: int) -> DspCheck | None:
    """What basic-pitch hears, as a check of a notes or chords clip; None for other concepts."""
    if concept not in TRANSCRIBED_CONCEPTS:
        return None
    return _profile_check(concept, transcribe.pitch_profile(audio, sample_rate))


@dataclass
class ClipSetFacts:
    """Everything measured on a list of clips (index i everywhere is clip i)."""

    audio: list[np.ndarray]
    readouts: dict[str, ProbeReadout]  # concept -> readout of its bank
    classes: dict[str, list[str]]  # concept -> class names of its bank
    dsp: dict[str, list[DspCheck | None]]  # concept -> per-clip check
    transcribed: dict[str, list[DspCheck | None]]  # concept -> per-clip basic-pitch check ({} when skipped)
    clap: ClapResult
    activations: np.ndarray  # [N, d] drift embeddings: pooled activations at one layer

    def __len__(self) -> int:
        return len(self.audio)

    def target_row(self, i: int, concept: str, target: str, target_value: float | None = None) -> dict:
        """Per-clip metric columns of clip i judged against class `target` of `concept`; for a value concept (tempo),
        `target_value` (BPM) adds a DSP hit within 4% of it."""
        readout, classes = self.readouts[concept], self.classes[concept]
        row: dict = {}
        if readout.probabilities is None:  # regression (tempos): the predicted value
            row.update(probe_pred_value=float(readout.predicted[i]))
        else:
            c = classes.index(target)
            row.update(
                probe_pred=classes[int(readout.predicted[i])],
                probe_p_target=float(readout.probabilities[i, c]),
                probe_hit=float(readout.predicted[i] == c),
            )
        check = self.dsp[concept][i]
        if check is not None and isinstance(check.predicted, float):
            row.update(dsp_value=check.predicted)
            if target_value is not None:
                row.update(dsp_hit=check.hit(target, target_value))
        elif check is not None:
            row.update(dsp_pred=check.predicted, dsp_hit=check.hit(target), dsp_support=check.support.get(target))
        heard = self.transcribed.get(concept, [None] * len(self))[i]
        if heard is not None:
            row.update(bp_pred=heard.predicted, bp_hit=heard.hit(target))
        if self.clap.ok:
            row.update(clap=float(self.clap.similarities[i]))
        return row


def measure(
    loaded,
    banks: dict,
    clips: Sequence[np.ndarray],
    sample_rate: int,
    prompts: Sequence[str],
    drift_layer: int,
    drift_pooling: str,
    clap: ClapScorer | None,
    clap_reason: str,
    progress: bool = False,
) -> ClipSetFacts:
    """Measure clips (float32 at the model's rate; stereo ones by their mono mix) with every bank in `banks`
    (concept -> ConceptBank).

    Activations are extracted once for every pooling the banks (and the drift embedding) need; the drift embedding is
    pooled activations at `drift_layer` with `drift_pooling`. CLAP runs when `clap` is given, else the result is
    skipped with `clap_reason`. basic-pitch transcribes notes and chords clips when it is installed."""
    if sample_rate != loaded.sample_rate:
        raise EvaluationError(f"clips are at {sample_rate} Hz but the model reads {loaded.sample_rate} Hz")
    if len(clips) == 0:
        raise EvaluationError("no clips to measure")
    clips = [clip.mean(axis=-1) if clip.ndim == 2 else clip for clip in clips]  # a stereo render: its mono mix
    poolings = sorted({bank.pooling for bank in banks.values()} | {drift_pooling})
    pooled = extract_activations(loaded, list(clips), poolings, progress=progress)
    readouts = {concept: probe_readout(bank, pooled[bank.pooling]) for concept, bank in banks.items()}
    checks = {
        concept: [
            dsp_check(concept, clip, sample_rate)
            for clip in tqdm(clips, desc=f"dsp {concept}", unit="clip", disable=not progress)
        ]
        for concept in banks
    }
    transcribed = {}
    if transcribe.unavailable() is None:
        transcribed = {
            concept: [
                transcription_check(concept, clip, sample_rate)
                for clip in tqdm(clips, desc=f"basic-pitch {concept}", unit="clip", disable=not progress)
            ]
            for concept in banks
            if concept in TRANSCRIBED_CONCEPTS
        }
    result = clap.score(list(clips), sample_rate, list(prompts)) if clap else ClapResult.skipped(clap_reason)
    return ClipSetFacts(
        list(clips),
        readouts,
        {c: list(b.classes) for c, b in banks.items()},
        checks,
        transcribed,
        result,
        pooled[drift_pooling][:, drift_layer].double().numpy(),
    )
