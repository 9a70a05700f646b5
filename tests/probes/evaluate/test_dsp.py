"""probes/evaluate/dsp.py: the independent checks, on synthetic signals with exact answers and on SynTheory clips
rendered by fluidsynth with known labels (the issue's thresholds: pitch class >= 0.9, chord quality >= 0.8, tempo
within 4%)."""

import logging

import numpy as np
import pytest

from probes.evaluate import EvaluationError
from probes.evaluate.dsp import (
    QUALITIES,
    chord_from_profile,
    chord_templates,
    chroma_profile,
    estimate_chord,
    estimate_pitch_class,
    estimate_tempo,
    pitch_class_from_profile,
    same_root,
    tempo_matches,
    tempo_matches_up_to_octave,
)
from probes.syntheory import CLEAN_PROGRAMS, list_samples, read_clip, render
from probes.syntheory.theory import frequency

SR = 32000
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("syntheory")


def rendered(samples, cache):
    return [read_clip(path) for path in render(samples, cache_dir=cache, progress=False)]


def tone(midi_note: float, seconds: float = 2.0, harmonics=(1.0,)) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0 = frequency(midi_note)
    return sum(a * np.sin(2 * np.pi * f0 * (h + 1) * t) for h, a in enumerate(harmonics)).astype(np.float32)


def clicks(bpm: float, seconds: float = 4.0, offset_s: float = 0.13) -> np.ndarray:
    """Short decaying noise bursts every beat, starting offset_s into the clip."""
    audio = np.zeros(int(seconds * SR), dtype=np.float32)
    burst = np.random.default_rng(0).standard_normal(320) * np.exp(-np.arange(320) / 60)
    for start in np.arange(offset_s, seconds, 60.0 / bpm):
        i = int(start * SR)
        audio[i : i + 320] += burst[: len(audio) - i]
    return audio


# ------------------------------------------------------------------------------------------------ synthetic signals


@pytest.mark.parametrize("midi_note, name", [(69, "A"), (60, "C"), (43, "G"), (85, "C#")])
def test_pure_tone_pitch_class(midi_note, name):
    estimate = estimate_pitch_class(tone(midi_note), SR)
    assert estimate.name == name and estimate.pitch_class == midi_note % 12
    assert estimate.share > 0.5


def test_chroma_profile_sums_to_one_and_silence_is_zero():
    profile = chroma_profile(tone(64, harmonics=(1.0, 0.5, 0.3)), SR)
    assert profile.shape == (12,) and abs(profile.sum() - 1) < 1e-9
    silent = chroma_profile(np.zeros(SR, dtype=np.float32), SR)
    assert not silent.any()
    assert pitch_class_from_profile(silent).share == 0.0


def test_bad_audio_is_refused():
    with pytest.raises(EvaluationError, match="mono"):
        chroma_profile(np.zeros((2, SR)), SR)
    with pytest.raises(EvaluationError, match="NaN"):
        estimate_tempo(np.full(SR, np.nan, dtype=np.float32), SR)
    with pytest.raises(EvaluationError, match="12 entries"):
        chord_from_profile(np.ones(11))


def test_chord_templates_are_unit_and_root_shifts_are_rotations():
    templates = chord_templates()
    assert templates.shape == (4, 12, 12)
    np.testing.assert_allclose(np.linalg.norm(templates, axis=-1), 1.0)
    for q in range(4):
        for root in range(12):
            np.testing.assert_allclose(templates[q, root], np.roll(templates[q, 0], root))
    # with one harmonic, a template is the plain three-note chord: C major = C, E, G
    plain = chord_templates(harmonics=1)[QUALITIES.index("major"), 0]
    np.testing.assert_allclose(plain, np.isin(np.arange(12), [0, 4, 7]) / np.sqrt(3))


def test_chord_from_an_exact_template_profile():
    templates = chord_templates()
    for q, quality in enumerate(QUALITIES):
        for root in (0, 5, 11):
            estimate = chord_from_profile(templates[q, root])
            assert estimate.quality == quality and same_root(quality, estimate.root, root)
            assert estimate.score == pytest.approx(1.0)
            assert estimate.quality_score(quality) == pytest.approx(1.0)


def test_synthetic_triads_of_harmonic_tones():
    harmonics = (1.0, 0.6, 0.36, 0.2)
    for quality, steps in (("major", (0, 4, 7)), ("minor", (0, 3, 7)), ("diminished", (0, 3, 6))):
        audio = sum(tone(62 + s, harmonics=harmonics) for s in steps)
        estimate = estimate_chord(audio / np.abs(audio).max(), SR)
        assert (estimate.quality, estimate.root_name) == (quality, "D")


def test_same_root_is_modulo_four_for_augmented_only():
    assert same_root("augmented", 0, 4) and same_root("augmented", 0, 8) and not same_root("augmented", 0, 3)
    assert same_root("major", 2, 14) and not same_root("major", 0, 4)


@pytest.mark.parametrize("bpm", [52.0, 97.0, 143.0, 206.0])
def test_synthetic_click_tempo(bpm):
    estimate = estimate_tempo(clicks(bpm), SR)
    assert abs(estimate.bpm - bpm) / bpm < 0.01
    noise = np.random.default_rng(1).standard_normal(4 * SR).astype(np.float32)
    assert estimate.strength > estimate_tempo(noise, SR).strength + 0.1


def test_silence_has_no_tempo_strength():
    assert estimate_tempo(np.zeros(2 * SR, dtype=np.float32), SR).strength == 0.0


def test_tempo_match_rules():
    assert tempo_matches(104.0, 100.0) and not tempo_matches(104.1, 100.0)
    assert tempo_matches(96.0, 100.0) and not tempo_matches(95.9, 100.0)
    assert not tempo_matches(200.0, 100.0) and tempo_matches_up_to_octave(200.0, 100.0)
    assert tempo_matches_up_to_octave(33.4, 100.0) and not tempo_matches_up_to_octave(150.0, 100.0)
    with pytest.raises(EvaluationError):
        estimate_tempo(np.zeros(SR, dtype=np.float32), SR, min_bpm=100, max_bpm=50)


def test_a_tempo_check_is_a_hit_within_four_percent_of_the_target_bpm():
    """The eval's tempo check (measure.dsp_check): a click track at 120 BPM hits targets 116..124, misses beyond, and
    without a target tempo there is no hit at all (a value, not a class)."""
    from probes.evaluate.measure import dsp_check

    check = dsp_check("tempos", clicks(120.0), SR)
    assert abs(check.predicted - 120.0) < 1.2
    assert check.hit("value", 120.0) == 1.0 and check.hit("value", 117.0) == 1.0
    assert check.hit("value", 110.0) == 0.0 and check.hit("value", 60.0) == 0.0  # half tempo is a miss too
    assert check.hit("value") is None
    assert check.hit("value", check.predicted * 1.039) == 1.0 and check.hit("value", check.predicted * 0.95) == 0.0


# ------------------------------------------------------------------------------------------- rendered SynTheory clips


def test_pitch_class_accuracy_on_clean_single_notes(cache):
    samples = list_samples("notes", instruments=list(CLEAN_PROGRAMS), octaves=[2, 3, 4, 5, 6], max_per_class=3, seed=0)
    assert len(samples) == 36 and {s.params["octave"] for s in samples} == {2, 3, 4, 5, 6}
    audio = rendered(samples, cache)
    hits = [estimate_pitch_class(clip, SR).pitch_class == s.class_index for s, clip in zip(samples, audio)]
    accuracy = float(np.mean(hits))
    log.info("pitch-class accuracy on %d clean notes: %.3f", len(hits), accuracy)
    assert accuracy >= 0.9


def test_chord_quality_accuracy_on_root_position_triads(cache):
    programs = [0, 19, 24, 48]  # piano, church organ, nylon guitar, strings: one per root, in turn
    samples = [
        s
        for s in list_samples("chords", instruments=programs)
        if s.params["inversion"] == 0 and s.params["program"] == programs[s.params["root"] % len(programs)]
    ]
    assert len(samples) == 48
    audio = rendered(samples, cache)
    estimates = [estimate_chord(clip, SR) for clip in audio]
    quality = np.mean([e.quality == s.label for s, e in zip(samples, estimates)])
    root = np.mean(
        [e.quality == s.label and same_root(s.label, e.root, s.params["root"]) for s, e in zip(samples, estimates)]
    )
    log.info("chord quality accuracy %.3f, quality+root %.3f on %d triads", quality, root, len(samples))
    assert quality >= 0.8
    assert root >= 0.8


def test_tempo_within_four_percent_on_click_tracks(cache):
    samples = list_samples("tempos", max_per_class=20, seed=3)
    assert len({s.params["click"] for s in samples}) >= 4  # several click sounds across the 50..210 BPM range
    audio = rendered(samples, cache)
    errors = np.array([abs(estimate_tempo(clip, SR).bpm - s.label) / s.label for s, clip in zip(samples, audio)])
    log.info(
        "tempo relative errors on %d click tracks: max %.4f, median %.4f", len(errors), errors.max(), np.median(errors)
    )
    assert np.all(errors <= 0.04), [(s.label, round(e, 3)) for s, e in zip(samples, errors) if e > 0.04]
