"""probes/transcribe.py: basic-pitch, an outside judge, hears the labels of SynTheory's renders: the pitch class of
notes, the triad quality of chords (read from its notes as the evaluation reads it)."""

import pytest

from probes import transcribe
from probes.syntheory import load_concept

pytestmark = pytest.mark.skipif(transcribe.unavailable() is not None, reason=str(transcribe.unavailable()))


def test_basic_pitch_hears_the_pitch_class_of_rendered_notes():
    notes = load_concept("notes", instruments=[0, 24], octaves=[3, 4], progress=False)
    picks = range(0, len(notes.labels), 3)
    heard = [transcribe.pitch_class(notes.audio[i], notes.sample_rate) for i in picks]
    expected = [notes.classes[notes.labels[i]] for i in picks]
    assert sum(h == e for h, e in zip(heard, expected)) >= len(expected) - 1, list(zip(heard, expected))


def test_silence_has_no_pitch_class():
    import numpy as np

    assert transcribe.pitch_class(np.zeros(32000, dtype=np.float32), 32000) is None
    assert transcribe.transcribe(np.zeros(32000, dtype=np.float32), 32000) == []


def test_basic_pitch_hears_the_quality_of_rendered_chords():
    from probes.evaluate.measure import transcription_check

    chords = load_concept("chords", instruments=[0], max_per_class=4, progress=False)
    heard = [transcription_check("chords", clip, chords.sample_rate).predicted for clip in chords.audio]
    expected = [chords.classes[label] for label in chords.labels]
    assert sum(h == e for h, e in zip(heard, expected)) >= len(expected) - 2, list(zip(heard, expected))
