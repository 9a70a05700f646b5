"""Independent musical checks on audio, with no MusicGen inside: pitch class, triad quality and root, tempo.

They judge steered audio by signal processing alone, so a steering result is not graded by the same model (and probe)
that produced it.

Pitch class and chords read one time-summed chroma profile: librosa's constant-Q chroma with the tuning fixed at
A4 = 440 Hz (the clips are equal-tempered; estimating the tuning on a single note only adds error), frames left
unnormalised so loud frames weigh more than silence or noise, summed over time and scaled to sum 1.

Chords: cosine similarity between that profile and 48 templates (4 triad qualities x 12 roots). Each template sums,
for the triad's three notes, the pitch classes of their first six harmonics weighted 0.6^(h-1), the harmonic
weighting of Gomez's HPCP (2006); binary three-note templates confuse a chord with others sharing the strong third
harmonic (a fifth above each note). Augmented triads are symmetric: C+, E+ and G#+ hold the same pitch classes, so
their root is only defined modulo 4 semitones (`same_root` compares roots that way).

Tempo: a matched comb filter on librosa's onset-strength envelope. For every candidate tempo and phase, the score is
the cosine similarity between the envelope and a unit pulse train at that tempo, maximised over phase; the estimate
is the best candidate, refined on a finer grid. Autocorrelation and beat trackers score half the tempo (twice the
period) as high as the true one, since every second beat lines up as well, hence their octave errors (librosa's
`feature.tempo` is off by a factor ~2 on about a fifth of SynTheory click tracks). The cosine normalisation is the
principled prior against both octave errors: a train at half the tempo misses half of the onsets, one at twice the
tempo puts half its pulses on silence, and either loses a factor ~sqrt(2) against the true period. Candidates span
`min_bpm..max_bpm` (default 40..240). `tempo_matches` is MIREX's "accuracy 1" (within 4%),
`tempo_matches_up_to_octave` its "accuracy 2" (also at x2, x3, x1/2, x1/3), for music where the metrical level is
itself ambiguous.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import librosa
import numpy as np
from scipy.ndimage import gaussian_filter1d

from probes.syntheory.theory import PITCH_CLASS_NAMES, TRIAD_QUALITIES
from studio.errors import EvaluationError

CHROMA_HOP = 2048  # 64 ms at 32 kHz; the profile is summed over time, so a coarse hop loses nothing
HARMONIC_DECAY = 0.6  # weight of harmonic h is HARMONIC_DECAY ** (h - 1) (Gomez 2006)
TEMPLATE_HARMONICS = 6
ONSET_HOP = 128  # 4 ms at 32 kHz: fine enough for 4% tempo accuracy at 240 BPM
ONSET_SMOOTH_S = 0.008  # Gaussian smoothing of the onset envelope, so pulses between frames still score
TEMPO_RANGE = (40.0, 240.0)
TEMPO_TOLERANCE = 0.04  # MIREX tempo tolerance
_COARSE_STEP = 0.005  # relative spacing of the coarse tempo grid (0.5%)
_FINE_STEP = 0.0005  # relative spacing of the refinement grid around the coarse best (0.05%)
QUALITIES: tuple[str, ...] = tuple(TRIAD_QUALITIES)


def _mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise EvaluationError(f"expected mono audio [n], got shape {list(audio.shape)}; average the channels first")
    if sample_rate <= 0:
        raise EvaluationError(f"sample rate must be positive, got {sample_rate}")
    if not np.all(np.isfinite(audio)):
        raise EvaluationError("audio holds NaN or infinite samples")
    return audio


def chroma_profile(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """[12] float64 time-summed constant-Q chroma (C first), scaled to sum 1; all zeros for silent audio."""
    audio = _mono(audio, sample_rate)
    if not np.any(audio):
        return np.zeros(12)
    with warnings.catch_warnings():
        # On clips of a few seconds, the lowest octaves' constant-Q filters outlast the (downsampled) signal and librosa
        # warns about the FFT size; those bins are merely blurred, and they are summed over time anyway.
        warnings.filterwarnings("ignore", message="n_fft=.* is too large for input signal")
        chroma = librosa.feature.chroma_cqt(y=audio, sr=sample_rate, hop_length=CHROMA_HOP, tuning=0.0, norm=None)
    profile = chroma.sum(axis=1).astype(np.float64)
    total = profile.sum()
    return profile / total if total > 0 else np.zeros(12)


@dataclass(frozen=True)
class PitchClassEstimate:
    """The strongest pitch class: index 0..11 (C = 0), its name, and its share of the chroma profile (0..1)."""

    pitch_class: int
    name: str
    share: float


def pitch_class_from_profile(profile: np.ndarray) -> PitchClassEstimate:
    """The argmax of a [12] chroma profile (ties: the lowest index). Silence gives pitch class 0 with share 0."""
    profile = np.asarray(profile, dtype=np.float64)
    if profile.shape != (12,):
        raise EvaluationError(f"a chroma profile has 12 entries, got shape {list(profile.shape)}")
    index = int(np.argmax(profile))
    total = profile.sum()
    return PitchClassEstimate(index, PITCH_CLASS_NAMES[index], float(profile[index] / total) if total > 0 else 0.0)


def estimate_pitch_class(audio: np.ndarray, sample_rate: int) -> PitchClassEstimate:
    """The pitch class that dominates the clip's chroma."""
    return pitch_class_from_profile(chroma_profile(audio, sample_rate))


def chord_templates(decay: float = HARMONIC_DECAY, harmonics: int = TEMPLATE_HARMONICS) -> np.ndarray:
    """[Q, 12, 12] unit-norm templates: [quality, root, pitch class], qualities in QUALITIES order.

    Each chord note adds decay**(h-1) at the pitch class of its h-th harmonic (h = 1..harmonics), i.e. at
    round(12 log2 h) semitones above it."""
    if harmonics < 1 or not 0 <= decay <= 1:
        raise EvaluationError(f"need harmonics >= 1 and decay in [0, 1], got {harmonics} and {decay}")
    offsets = [int(round(12 * np.log2(h))) for h in range(1, harmonics + 1)]
    weights = decay ** np.arange(harmonics)
    templates = np.zeros((len(QUALITIES), 12, 12))
    for q, quality in enumerate(QUALITIES):
        for root in range(12):
            for interval in TRIAD_QUALITIES[quality]:
                for offset, weight in zip(offsets, weights):
                    templates[q, root, (root + interval + offset) % 12] += weight
    return templates / np.linalg.norm(templates, axis=-1, keepdims=True)


_TEMPLATES = chord_templates()


@dataclass(frozen=True)
class ChordEstimate:
    """The best-matching triad: quality name, root pitch class (0..11) and name, its cosine score, and all scores
    [Q, 12] (quality x root) for callers that want a soft answer."""

    quality: str
    root: int
    root_name: str
    score: float
    scores: np.ndarray

    def quality_score(self, quality: str) -> float:
        """The best score of `quality` over all roots."""
        if quality not in QUALITIES:
            raise EvaluationError(f"unknown triad quality {quality!r}; choose one of {', '.join(QUALITIES)}")
        return float(self.scores[QUALITIES.index(quality)].max())


def chord_from_profile(profile: np.ndarray) -> ChordEstimate:
    """Template matching of a [12] chroma profile against `chord_templates()` (ties: the first in quality, root
    order)."""
    profile = np.asarray(profile, dtype=np.float64)
    if profile.shape != (12,):
        raise EvaluationError(f"a chroma profile has 12 entries, got shape {list(profile.shape)}")
    norm = np.linalg.norm(profile)
    scores = _TEMPLATES @ (profile / norm) if norm > 0 else np.zeros(_TEMPLATES.shape[:2])
    q, root = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return ChordEstimate(QUALITIES[q], int(root), PITCH_CLASS_NAMES[root], float(scores[q, root]), scores)


def estimate_chord(audio: np.ndarray, sample_rate: int) -> ChordEstimate:
    """The triad whose template best matches the clip's chroma."""
    return chord_from_profile(chroma_profile(audio, sample_rate))


def same_root(quality: str, root_a: int, root_b: int) -> bool:
    """Whether two roots name the same triad of `quality`: equal pitch classes, or equal modulo 4 for augmented."""
    step = 4 if quality == "augmented" else 12
    return (root_a - root_b) % step == 0


@dataclass(frozen=True)
class TempoEstimate:
    """Estimated tempo in BPM and the comb's cosine score (0..1, higher is more periodic; 0 for silence). Each onset
    spreads over several envelope frames while a pulse reads one, so even clean SynTheory click tracks score about
    0.45; white noise scores about 0.25."""

    bpm: float
    strength: float


def onset_envelope(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """librosa's spectral-flux onset strength at ONSET_HOP, lightly smoothed, with its median (the noise floor)
    removed and clipped at 0, so a constant floor does not reward trains with more pulses."""
    audio = _mono(audio, sample_rate)
    envelope = librosa.onset.onset_strength(y=audio, sr=sample_rate, hop_length=ONSET_HOP)
    envelope = gaussian_filter1d(envelope.astype(np.float64), ONSET_SMOOTH_S * sample_rate / ONSET_HOP)
    return np.maximum(envelope - np.median(envelope), 0.0)


def comb_scores(envelope: np.ndarray, frame_rate: float, bpms: np.ndarray) -> np.ndarray:
    """[len(bpms)] max over phase of the cosine between `envelope` and a unit pulse train at each tempo.

    Pulses sit at phase + k * period (in frames, fractional, read by linear interpolation); phases are tried one
    frame apart. A candidate whose period is longer than the envelope scores its single best pulse."""
    n = len(envelope)
    norm = np.linalg.norm(envelope)
    if n < 2 or norm == 0:
        return np.zeros(len(bpms))
    frames = np.arange(n)
    scores = np.empty(len(bpms))
    for i, bpm in enumerate(bpms):
        period = 60.0 * frame_rate / bpm
        phases = np.arange(0.0, min(period, n - 1), 1.0)
        positions = phases[:, None] + np.arange(int(np.ceil(n / period)) + 1)[None, :] * period
        inside = positions <= n - 1
        values = np.interp(np.where(inside, positions, 0.0), frames, envelope) * inside
        scores[i] = np.max(values.sum(axis=1) / np.sqrt(np.maximum(inside.sum(axis=1), 1)))
    return scores / norm


def _log_grid(low: float, high: float, step: float) -> np.ndarray:
    return np.exp(np.arange(np.log(low), np.log(high) + step / 2, step))


def estimate_tempo(
    audio: np.ndarray, sample_rate: int, min_bpm: float = TEMPO_RANGE[0], max_bpm: float = TEMPO_RANGE[1]
) -> TempoEstimate:
    """The tempo whose pulse train best matches the clip's onsets (see the module docstring), in min_bpm..max_bpm."""
    if not 0 < min_bpm < max_bpm:
        raise EvaluationError(f"need 0 < min_bpm < max_bpm, got {min_bpm} and {max_bpm}")
    envelope = onset_envelope(audio, sample_rate)
    frame_rate = sample_rate / ONSET_HOP
    coarse = _log_grid(min_bpm, max_bpm, _COARSE_STEP)
    scores = comb_scores(envelope, frame_rate, coarse)
    best = coarse[int(np.argmax(scores))]
    fine = _log_grid(
        max(min_bpm, best * (1 - 2 * _COARSE_STEP)), min(max_bpm, best * (1 + 2 * _COARSE_STEP)), _FINE_STEP
    )
    fine_scores = comb_scores(envelope, frame_rate, fine)
    index = int(np.argmax(fine_scores))
    return TempoEstimate(float(fine[index]), float(fine_scores[index]))


def tempo_matches(estimate_bpm: float, target_bpm: float, tolerance: float = TEMPO_TOLERANCE) -> bool:
    """|estimate - target| <= tolerance * target (MIREX accuracy 1)."""
    return abs(estimate_bpm - target_bpm) <= tolerance * target_bpm


def tempo_matches_up_to_octave(estimate_bpm: float, target_bpm: float, tolerance: float = TEMPO_TOLERANCE) -> bool:
    """Accuracy 1 at the target times 1, 2, 3, 1/2 or 1/3 (MIREX accuracy 2)."""
    return any(tempo_matches(estimate_bpm, target_bpm * factor, tolerance) for factor in (1, 2, 3, 1 / 2, 1 / 3))
