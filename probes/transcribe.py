"""An outside judge of pitch that no one here wrote: Spotify's basic-pitch (ICASSP 2022) note transcription.

Its model ships as ONNX inside the basic-pitch wheel and runs with onnxruntime; the wheel's tensorflow pin is not
needed for that path (setup.sh installs it with --no-deps plus what the ONNX path uses). ``transcribe`` gives the
notes it hears in a clip; ``pitch_profile`` how much each pitch class sounds (duration x amplitude), from which the
evaluation reads a note's pitch class or a chord's quality as it does from a chroma profile.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.errors import StudioError
from studio.files import write_wav

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
INSTALL = (
    "pip install --no-deps basic-pitch==0.4.0 onnxruntime pretty-midi mir-eval resampy scikit-learn (./setup.sh dev)"
)


@dataclass(frozen=True)
class Note:
    start_s: float
    end_s: float
    pitch: int  # MIDI note number
    amplitude: float

    @property
    def weight(self) -> float:
        return (self.end_s - self.start_s) * self.amplitude


def unavailable() -> str | None:
    """Why basic-pitch cannot run here, or None when it can."""
    try:
        import onnxruntime  # noqa: F401

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # importing it warns on the root logger about every backend but ONNX
        try:
            import basic_pitch  # noqa: F401
        finally:
            root.setLevel(level)
    except ImportError as err:
        return f"basic-pitch is not installed ({err.name}); {INSTALL}"
    return None


@functools.cache
def _model():
    reason = unavailable()
    if reason:
        raise StudioError(reason)
    from basic_pitch import ICASSP_2022_MODEL_PATH
    from basic_pitch.inference import Model

    return Model(ICASSP_2022_MODEL_PATH)


def transcribe(audio: np.ndarray, sample_rate: int) -> list[Note]:
    """The notes basic-pitch hears in mono float `audio`, with its default thresholds."""
    from basic_pitch.inference import predict

    with tempfile.TemporaryDirectory() as folder:
        path = write_wav(Path(folder) / "clip.wav", audio, sample_rate, subtype="FLOAT")
        # it prints a line per file, and divides by zero on silence (which then has no notes, as it should)
        with contextlib.redirect_stdout(io.StringIO()), np.errstate(invalid="ignore", divide="ignore"):
            _, _, events = predict(path, _model())
    return [Note(float(start), float(end), int(pitch), float(amp)) for start, end, pitch, amp, _ in events]


def pitch_profile(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """[12] float64 (C first): the duration x amplitude of the notes heard per pitch class, scaled to sum 1; all
    zeros when no note is heard."""
    weights = np.zeros(12)
    for note in transcribe(audio, sample_rate):
        weights[note.pitch % 12] += note.weight
    return weights / weights.sum() if weights.any() else weights


def pitch_class(audio: np.ndarray, sample_rate: int) -> str | None:
    """The pitch class that sounds most; None when no note is heard."""
    profile = pitch_profile(audio, sample_rate)
    return PITCH_CLASSES[int(profile.argmax())] if profile.any() else None
