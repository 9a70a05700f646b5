"""SynTheory generator: concept lists and labels, music theory, MIDI construction, and real fluidsynth rendering."""

from __future__ import annotations

import io
import json
import os
import sys
from collections import Counter
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from probes.syntheory import (
    CLEAN_PROGRAMS,
    CONCEPTS,
    TONAL_PROGRAMS,
    ConceptDataset,
    RenderConfig,
    SynTheoryError,
    get_concept,
    list_samples,
    load_concept,
    load_published,
    read_clip,
    render,
    render_clip,
)
from probes.syntheory import renderer as render_module
from probes.syntheory.published import convert_published_rows, published_label
from probes.syntheory.renderer import postprocess
from probes.syntheory.theory import (
    diatonic_triad,
    frequency,
    note_name,
    progression_name,
    roman_numeral,
    scale_notes,
    tonic_midi,
    triad,
)

SR = 32000
CLIP = 4 * SR


def note_sample(program: int, midi_note: int):
    """The notes-concept clip of one pitch on one program."""
    octave = midi_note // 12 - 1
    return next(
        s for s in list_samples("notes", instruments=[program], octaves=[octave]) if s.params["midi_note"] == midi_note
    )


def spectral_peak_hz(audio: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sample_rate)[np.argmax(spectrum)])


def note_ons(midi: mido.MidiFile) -> list[tuple[float, int, int]]:
    """(seconds, note, velocity) of every sounding note-on."""
    now, ons = 0.0, []
    for message in midi:
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            ons.append((now, message.note, message.velocity))
    return ons


# ------------------------------------------------------------------------------------------ concept lists and labels

FULL_LISTS = {  # concept: (clips, clips per class) with the default instruments (SynTheory's sizes)
    "notes": (108 * 92, 9 * 92),
    "intervals": (12 * 12 * 3 * 92, 12 * 3 * 92),
    "scales": (12 * 7 * 2 * 92, 12 * 2 * 92),
    "chords": (12 * 4 * 3 * 92, 12 * 3 * 92),
    "progressions": (12 * 19 * 92, 12 * 92),
    "time_signatures": (8 * 3 * 5 * 10, 3 * 5 * 10),
}


@pytest.mark.parametrize("concept", sorted(FULL_LISTS))
def test_full_concept_lists_have_every_class_equally(concept):
    total, per_class = FULL_LISTS[concept]
    spec = get_concept(concept)
    samples = list_samples(concept)
    assert len(samples) == total
    assert Counter(s.class_index for s in samples) == {index: per_class for index in range(len(spec.classes))}
    assert all(s.label == spec.classes[s.class_index] for s in samples)
    assert not spec.is_regression


def test_tempos_are_a_regression_over_50_to_210_bpm():
    spec = get_concept("tempos")
    samples = list_samples("tempos")
    assert spec.is_regression and spec.classes == ("value",)
    assert len(samples) == 161 * 5 * 5
    assert Counter(s.label for s in samples) == {float(bpm): 25 for bpm in range(50, 211)}
    assert {s.class_index for s in samples} == {0}
    assert all(isinstance(s.label, float) and s.label == s.params["bpm"] for s in samples)


def test_class_names():
    assert set(CONCEPTS) == {
        *("notes", "intervals", "scales", "chords", "progressions", "tempos", "time_signatures", "instruments")
    }
    assert CONCEPTS["notes"].classes[:3] == ("C", "C#", "D") and len(CONCEPTS["notes"].classes) == 12
    assert CONCEPTS["intervals"].classes == ("m2", "M2", "m3", "M3", "P4", "TT", "P5", "m6", "M6", "m7", "M7", "P8")
    assert CONCEPTS["chords"].classes == ("major", "minor", "augmented", "diminished")
    assert CONCEPTS["scales"].classes == ("ionian", "dorian", "phrygian", "lydian", "mixolydian", "aeolian", "locrian")
    assert CONCEPTS["time_signatures"].classes == ("2/2", "2/4", "3/4", "3/8", "4/4", "6/8", "9/8", "12/8")
    progressions = CONCEPTS["progressions"].classes
    assert len(set(progressions)) == 19
    assert progressions[0] == "I-IV-V-I" and "i-ii°-v-i" in progressions and "VII-VI-VII-i" in progressions


def test_tonal_program_set_is_synTheorys_92():
    assert len(TONAL_PROGRAMS) == 92
    assert 0 in TONAL_PROGRAMS and 79 in TONAL_PROGRAMS
    assert not {8, 22, 47, 86, 96, 112, 127} & set(TONAL_PROGRAMS)


def test_chords_cover_every_quality_root_and_inversion():
    combos = Counter(
        (s.params["quality"], s.params["root"], s.params["inversion"]) for s in list_samples("chords", instruments=[0])
    )
    assert len(combos) == 4 * 12 * 3 and set(combos.values()) == {1}


def test_list_samples_is_deterministic_and_subsets_are_subsets():
    def as_tuples(samples):
        return [(s.concept, s.label, s.class_index, json.dumps(s.params, sort_keys=True)) for s in samples]

    assert as_tuples(list_samples("tempos", seed=3)) == as_tuples(list_samples("tempos", seed=3))
    assert as_tuples(list_samples("tempos", seed=3)) != as_tuples(list_samples("tempos", seed=4))  # window starts
    capped = list_samples("intervals", instruments=[0, 79], max_per_class=5, seed=1)
    assert as_tuples(capped) == as_tuples(list_samples("intervals", instruments=[0, 79], max_per_class=5, seed=1))
    assert Counter(s.class_index for s in capped) == {index: 5 for index in range(12)}
    full = as_tuples(list_samples("intervals", instruments=[0, 79]))
    assert set(as_tuples(capped)) <= set(full)
    notes = list_samples("notes", instruments=["Ocarina", 0], octaves=[4, 5])
    assert len(notes) == 48 and {s.params["program"] for s in notes} == {0, 79}
    assert {s.params["midi_note"] for s in notes} == set(range(60, 84))


def test_bad_options_name_the_valid_choices():
    with pytest.raises(SynTheoryError, match="notes, intervals, scales, chords, progressions, instruments, tempos"):
        list_samples("melodies")
    with pytest.raises(SynTheoryError, match="notes and instruments concepts only"):
        list_samples("chords", octaves=[4])
    with pytest.raises(SynTheoryError, match="-1..7"):
        list_samples("notes", octaves=[9])
    with pytest.raises(SynTheoryError, match="General MIDI program"):
        list_samples("notes", instruments=["kazoo"])
    with pytest.raises(SynTheoryError, match="drum_kit"):
        list_samples("tempos", instruments=[79])
    with pytest.raises(SynTheoryError, match="at least 1"):
        list_samples("notes", max_per_class=0)


# ------------------------------------------------------------------------------------ the instruments concept (timbre)

ONE_PER_FAMILY = [0, 11, 16, 24, 33, 40, 48, 56, 65, 73, 80, 89]  # a tonal program of each of the twelve families


def test_instruments_are_the_twelve_gm_families_of_the_tonal_programs():
    spec = get_concept("instruments")
    assert spec.classes[:4] == ("Piano", "Chromatic Percussion", "Organ", "Guitar") and spec.classes[-1] == "Synth Pad"
    samples = list_samples("instruments")
    programs = sorted({s.params["program"] for s in samples})
    assert programs == [p for p in TONAL_PROGRAMS if p < 96] and len(programs) == 84
    assert len(samples) == 84 * 12 * 2  # every pitch class in octaves 3 and 4 on every program
    for sample in samples:
        assert sample.class_index == sample.params["program"] // 8 and sample.label == spec.classes[sample.class_index]
    # the MIDI of a clip plays its program, one pitch four times, as the notes concept's clip of that pitch does
    for sample in samples[::97]:
        midi = sample.midi
        changes = [m.program for m in midi if m.type == "program_change"]
        assert changes == [sample.params["program"]]
        notes = list_samples("notes", instruments=[sample.params["program"]], octaves=[sample.params["octave"]])
        twin = next(n for n in notes if n.params["midi_note"] == sample.params["midi_note"])
        assert note_ons(midi) == note_ons(twin.midi) and len(note_ons(midi)) == 4


def test_instruments_refuse_programs_outside_the_families_or_a_missing_family():
    with pytest.raises(SynTheoryError, match=r"programs 100 \(Synth Effects\) belong to none"):
        list_samples("instruments", instruments=[*ONE_PER_FAMILY, 100])
    with pytest.raises(SynTheoryError, match="none given for Organ, Guitar"):
        list_samples("instruments", instruments=[0, 8])
    assert len(list_samples("instruments", instruments=ONE_PER_FAMILY, octaves=[4])) == 12 * 12


def _timbre(audio: np.ndarray, sample_rate: int = SR) -> np.ndarray:
    """A level-free timbre summary: log band energies (40 log-spaced bands, 50 Hz..16 kHz, each frame relative to its
    loudest band), their mean and spread over time, and the histogram of the loudness envelope (attack and decay)."""
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), 2048)[::1024] * np.hanning(2048)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(2048, 1 / sample_rate)
    edges = np.geomspace(50, 16000, 41)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(1) for lo, hi in zip(edges[:-1], edges[1:])], 1)
    bands = np.log(bands + 1e-10)
    bands -= bands.max(axis=1, keepdims=True)
    envelope = np.log(power.sum(axis=1) + 1e-10)
    shape = np.histogram(envelope - envelope.max(), bins=8, range=(-20, 0))[0] / len(envelope)
    return np.concatenate([bands.mean(0), bands.std(0), shape])


def test_instrument_renders_carry_their_programs():
    """Rendered by fluidsynth, each family's clips are told apart by timbre alone: a nearest-centroid classifier on
    spectral shape, fitted on the even pitch classes, names the family of every odd-pitch-class clip. A renderer that
    ignored the program would leave it at chance (1 in 12)."""
    data = load_concept("instruments", instruments=ONE_PER_FAMILY, octaves=[4], progress=False)
    assert data.audio.shape == (144, CLIP) and np.abs(data.audio).max(axis=1).min() > 0.1  # all audible
    features = np.stack([_timbre(clip) for clip in data.audio])
    pitch_class = np.array([s.params["midi_note"] % 12 for s in data.samples])
    fit, held_out = pitch_class % 2 == 0, pitch_class % 2 == 1
    scaled = (features - features[fit].mean(0)) / (features[fit].std(0) + 1e-9)
    centroids = np.stack([scaled[fit & (data.labels == c)].mean(0) for c in range(12)])
    distances = ((scaled[held_out][:, None, :] - centroids[None]) ** 2).sum(-1)
    assert (distances.argmin(axis=1) == data.labels[held_out]).mean() == 1.0


# ---------------------------------------------------------------------------------------------------- music theory


def test_theory_exact_values():
    assert frequency(69) == 440.0 and frequency(57) == 220.0
    assert note_name(60) == "C4" and note_name(69) == "A4" and note_name(0) == "C-1"
    assert [tonic_midi(pc) for pc in (0, 5, 6, 11)] == [60, 65, 54, 59]
    assert triad(60, "major") == (60, 64, 67)
    assert triad(60, "minor", 1) == (63, 67, 72)
    assert triad(60, "diminished", 2) == (66, 72, 75)
    assert triad(60, "augmented") == (60, 64, 68)
    assert scale_notes(60, "dorian") == (60, 62, 63, 65, 67, 69, 70, 72)
    assert scale_notes(60, "ionian", descending=True)[0] == 72
    assert diatonic_triad(60, "ionian", 5) == (67, 71, 74)
    assert diatonic_triad(60, "ionian", 7) == (71, 74, 77)
    assert [roman_numeral("ionian", d) for d in range(1, 8)] == ["I", "ii", "iii", "IV", "V", "vi", "vii°"]
    assert [roman_numeral("aeolian", d) for d in range(1, 8)] == ["i", "ii°", "III", "iv", "v", "VI", "VII"]
    assert progression_name("ionian", (1, 5, 6, 4)) == "I-V-vi-IV"
    with pytest.raises(SynTheoryError):
        triad(126, "major")


# ---------------------------------------------------------------------------------------------------- MIDI clips


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_every_concept_clip_lasts_four_seconds(concept):
    for sample in list_samples(concept, max_per_class=1, seed=5)[:6]:
        # MIDI stores tempo in whole microseconds per beat, so a few microseconds off: well under one sample
        assert sample.midi.length == pytest.approx(4.0, abs=1e-5)


def test_note_interval_and_chord_midi_content():
    ons = note_ons(note_sample(79, 69).midi)
    assert ons == [(0.0, 69, 64), (1.0, 69, 64), (2.0, 69, 64), (3.0, 69, 64)]
    up = next(
        s
        for s in list_samples("intervals", instruments=[0])
        if s.params == {"base_note": 62, "semitones": 7, "style": "up", "program": 0}
    )
    assert [note for _, note, _ in note_ons(up.midi)] == [62, 69] * 4
    together = next(
        s
        for s in list_samples("intervals", instruments=[0])
        if s.params == {"base_note": 62, "semitones": 7, "style": "unison", "program": 0}
    )
    assert Counter(t for t, _, _ in note_ons(together.midi)) == {float(k) * 0.5: 2 for k in range(8)}
    chord = next(
        s
        for s in list_samples("chords", instruments=[0])
        if s.params == {"root": 9, "quality": "minor", "inversion": 1, "program": 0}
    )
    assert sorted(n for t, n, _ in note_ons(chord.midi) if t == 0.0) == [60, 64, 69]  # A minor over C: C E A
    progression = next(
        s for s in list_samples("progressions", instruments=[0]) if s.params["key"] == 0 and s.label == "I-V-vi-IV"
    )
    chords = [sorted(n for t, n, _ in note_ons(progression.midi) if t == start) for start in (0.0, 1.0, 2.0, 3.0)]
    assert chords == [[60, 64, 67], [67, 71, 74], [69, 72, 76], [65, 69, 72]]


def test_click_tracks_follow_tempo_and_metre():
    for sample in list_samples("tempos", instruments=["drum_kit", "taiko"], seed=2)[::97]:
        times = [t for t, _, _ in note_ons(sample.midi)]
        assert np.allclose(np.diff(times), 60 / sample.params["bpm"], atol=1e-3)
        assert times[0] < 60 / sample.params["bpm"] + 1e-3  # the first click falls within one beat
    for sample in list_samples("time_signatures", instruments=["woodblock_light"], max_per_class=2, seed=2):
        ons = note_ons(sample.midi)
        accents = [k for k, (_, _, velocity) in enumerate(ons) if velocity == 100]
        assert np.all(np.diff(accents) == sample.params["numerator"])  # one accent per bar
        unit = 0.25 if sample.params["denominator"] == 8 else 2 / sample.params["denominator"]  # seconds at 120 BPM
        assert np.allclose(np.diff([t for t, _, _ in ons]), unit, atol=1e-3)


# ------------------------------------------------------------------------------------------------ post-processing


def test_postprocess_mixes_trims_pads_normalises_and_silences():
    stereo = np.stack([np.full(10, 0.2), np.full(10, -0.1)], axis=1)
    stereo[3] = [0.5, 0.3]
    out = postprocess(stereo, 8, 8, 6, silence_peak=1e-5)
    assert out.dtype == np.float32 and out.shape == (6,)
    assert np.allclose(out, [0.125, 0.125, 0.125, 1.0, 0.125, 0.125])
    assert np.array_equal(postprocess(np.ones(4) * 1e-7, 8, 8, 6, silence_peak=1e-5), np.zeros(6, np.float32))
    assert np.allclose(postprocess(np.full(4, -0.5), 8, 8, 6, 1e-5), [-1, -1, -1, -1, 0, 0])
    tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)
    resampled = postprocess(tone, 44100, SR, SR, 1e-5)
    assert resampled.shape == (SR,) and abs(spectral_peak_hz(resampled, SR) - 440) < 2


# ----------------------------------------------------------------------------------------- rendering with fluidsynth


@pytest.mark.parametrize("program,midi_note", [(79, 45), (79, 64), (74, 83), (80, 57)])
def test_rendered_note_sounds_at_its_pitch(program, midi_note):
    audio = render_clip(note_sample(program, midi_note))
    assert audio.dtype == np.float32 and audio.shape == (CLIP,)
    assert np.abs(audio).max() == pytest.approx(1.0)
    semitones_off = 12 * np.log2(spectral_peak_hz(audio, SR) / frequency(midi_note))
    assert abs(semitones_off) < 1.0


@pytest.mark.parametrize("program", CLEAN_PROGRAMS)
def test_clean_programs_are_nearly_pure_tones(program):
    for midi_note in (45, 81):  # A2 and A5
        audio = render_clip(note_sample(program, midi_note))
        power = np.abs(np.fft.rfft(audio * np.hanning(len(audio)))) ** 2
        hz = np.fft.rfftfreq(len(audio), 1 / SR)
        near_fundamental = np.abs(hz / frequency(midi_note) - 1) < 0.03
        assert power[near_fundamental].sum() / power.sum() > 0.95


def test_rendered_chord_holds_its_three_pitch_classes():
    chord = next(
        s
        for s in list_samples("chords", instruments=[79])
        if s.params == {"root": 2, "quality": "minor", "inversion": 2, "program": 79}
    )  # D minor: D F A
    audio = render_clip(chord)
    power = np.abs(np.fft.rfft(audio)) ** 2
    hz = np.fft.rfftfreq(len(audio), 1 / SR)
    audible = (hz > 50) & (hz < 4000)
    pitch_classes = np.round(12 * np.log2(hz[audible] / 440.0) + 69).astype(int) % 12
    chroma = np.bincount(pitch_classes, weights=power[audible], minlength=12)
    assert set(np.argsort(chroma)[-3:]) == {2, 5, 9}


def test_rendered_clicks_start_on_their_midi_times():
    sample = list_samples("tempos", instruments=["drum_kit"], seed=0)[400]
    audio = render_clip(sample)
    envelope = np.abs(audio).reshape(-1, 32).max(axis=1)  # 1 ms frames
    rises = np.flatnonzero((envelope[1:] > 0.3) & (envelope[:-1] <= 0.3)) + 1
    heard = rises[np.concatenate([[True], np.diff(rises) > 20])] / 1000  # one onset per click, in seconds
    played = [t for t, _, _ in note_ons(sample.midi)]
    assert len(heard) == len(played) and np.allclose(heard, played, atol=0.005)


def test_resampled_render_keeps_length_and_pitch():
    audio = render_clip(note_sample(79, 69), RenderConfig(synth_rate=44100))
    assert audio.shape == (CLIP,)
    assert abs(12 * np.log2(spectral_peak_hz(audio, SR) / 440.0)) < 1.0


def test_render_caches_and_does_not_render_twice(tmp_path, monkeypatch):
    calls = []
    real_run = render_module.run_fluidsynth
    monkeypatch.setattr(render_module, "run_fluidsynth", lambda *a, **k: (calls.append(a), real_run(*a, **k)))
    samples = list_samples("chords", instruments=[0], max_per_class=1, seed=0)
    paths = render(samples, cache_dir=tmp_path, workers=2, progress=False)
    assert len(calls) == 4 and all(p.is_file() and p.parent == tmp_path / "chords" for p in paths)
    mtimes = [p.stat().st_mtime_ns for p in paths]
    again = render(samples, cache_dir=tmp_path, workers=2, progress=False)
    assert again == paths and len(calls) == 4
    assert [p.stat().st_mtime_ns for p in paths] == mtimes
    for path in paths:
        clip = read_clip(path)
        assert clip.dtype == np.float32 and clip.shape == (CLIP,) and np.abs(clip).max() == pytest.approx(1.0)
        assert sf.info(path).samplerate == SR
    assert sorted(os.listdir(tmp_path / "chords")) == sorted(p.name for p in paths)  # no temporary files left
    # Another soundfont size or sample rate is another cache entry.
    other = render(samples[:1], cache_dir=tmp_path, progress=False, config=RenderConfig(sample_rate=16000))
    assert other[0] != paths[0] and read_clip(other[0], 16000).shape == (4 * 16000,)


def _cache_snapshot(root: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")} if root.exists() else {}


def test_missing_fluidsynth_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    sample = list_samples("notes", instruments=[79], octaves=[4])[:1]
    cache = tmp_path / "cache"
    render(sample, cache_dir=cache, progress=False)
    before = _cache_snapshot(cache)
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    with pytest.raises(SynTheoryError, match="apt-get install fluidsynth timgm6mb-soundfont"):
        render(list_samples("notes", instruments=[79], octaves=[5])[:2], cache_dir=cache, progress=False)
    with pytest.raises(SynTheoryError, match="fluidsynth"):
        render_clip(sample[0])
    assert _cache_snapshot(cache) == before


def test_missing_or_bad_soundfont_is_a_clear_error_and_writes_nothing(tmp_path):
    samples = list_samples("notes", instruments=[79], octaves=[4])[:2]
    cache = tmp_path / "cache"
    with pytest.raises(SynTheoryError, match="does not exist.*apt-get install fluidsynth timgm6mb-soundfont"):
        render(samples, cache_dir=cache, progress=False, config=RenderConfig(soundfont=tmp_path / "none.sf2"))
    garbage = tmp_path / "garbage.sf2"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot a soundfont")
    with pytest.raises(SynTheoryError, match="not a SoundFont"):
        render(samples, cache_dir=cache, progress=False, config=RenderConfig(soundfont=garbage))
    assert not cache.exists()


def test_failing_fluidsynth_leaves_no_partial_clip(tmp_path):
    broken = tmp_path / "bin" / "fluidsynth"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'fluidsynth: panic: out of voices' >&2\nexit 3\n")
    broken.chmod(0o755)
    cache = tmp_path / "cache"
    with pytest.raises(SynTheoryError, match="exit 3.*out of voices"):
        render(
            list_samples("scales", instruments=[0], max_per_class=1),
            cache_dir=cache,
            progress=False,
            config=RenderConfig(fluidsynth=str(broken)),
        )
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_concept_dataset_items_arrays_and_silent_clips(tmp_path):
    # Trumpet (56) has no sample below MIDI 12 in TimGM6mb: octave -1 renders silent and is dropped.
    dataset = ConceptDataset.generate("notes", instruments=[56, 79], octaves=[-1], cache_dir=tmp_path, progress=False)
    assert len(dataset) == 12 and dataset.description["dropped_silent"] == 12
    assert {s.params["program"] for s in dataset.samples} == {79}
    json.dumps(dataset.description)  # JSON-serialisable provenance for ConceptBank.dataset
    item = dataset[3]
    assert item.sample_rate == SR and item.audio.shape == (CLIP,) and item.audio.dtype == np.float32
    assert item.label == "D#" and item.class_index == 3 and dataset.classes[3] == "D#"
    arrays = load_concept("notes", instruments=[56, 79], octaves=[-1], cache_dir=tmp_path, progress=False)
    assert arrays.audio.shape == (12, CLIP) and arrays.labels.dtype == np.int64
    assert arrays.labels.tolist() == list(range(12)) and np.array_equal(arrays.audio[3], item.audio)
    kept = ConceptDataset.generate(
        "notes", instruments=[56], octaves=[-1], cache_dir=tmp_path, progress=False, drop_silent=False
    )
    assert len(kept) == 12 and not np.any(kept[0].audio)


def test_tempo_arrays_carry_bpm_targets(tmp_path):
    arrays = load_concept(
        "tempos", instruments=["woodblock_light"], max_per_class=3, seed=1, cache_dir=tmp_path, progress=False
    )
    assert arrays.is_regression and arrays.classes == ["value"]
    assert arrays.labels.dtype == np.float32 and arrays.audio.shape == (3, CLIP)
    assert arrays.labels.tolist() == [s.params["bpm"] for s in arrays.samples]


# --------------------------------------------------------------------------------------------- published dataset


def test_published_labels_map_to_our_classes():
    assert published_label("notes", {"root_note_pitch_class": 10, "root_note_name": "A#"}) == ("A#", 10)
    assert published_label("intervals", {"interval": 7}) == ("P5", 6)
    assert published_label("scales", {"mode": "lydian"}) == ("lydian", 3)
    assert published_label("chords", {"chord_type": "aug"}) == ("augmented", 2)
    assert published_label("progressions", {"chord_progression": "aeolian-(1, 6, 7, 1)"}) == ("i-VI-VII-i", 14)
    assert published_label("tempos", {"bpm": 87}) == (87.0, 0)
    assert published_label("time_signatures", {"time_signature": "(6, 8)"}) == ("6/8", 5)
    assert published_label("time_signatures", {"time_signature_beats": 12, "time_signature_subdivision": 8}) == (
        "12/8",
        7,
    )
    with pytest.raises(SynTheoryError, match="columns"):
        published_label("intervals", {"mode": "ionian"})


def test_published_rows_convert_like_generated_clips(tmp_path):
    # A clip as SynTheory published it: 44.1 kHz stereo WAV bytes (here rendered by fluidsynth at 44.1 kHz).
    config = RenderConfig(sample_rate=44100)
    audio_441 = render_clip(note_sample(79, 64), config)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([audio_441, audio_441], axis=1), 44100, format="WAV", subtype="FLOAT")
    rows = [
        {"audio": {"bytes": buffer.getvalue(), "path": None}, "root_note_pitch_class": 4},
        {"audio": {"bytes": _silent_wav(), "path": None}, "root_note_pitch_class": 0},
    ]
    arrays = convert_published_rows("notes", rows)
    assert arrays.audio.shape == (1, CLIP) and arrays.labels.tolist() == [4]  # the silent row is dropped
    assert abs(12 * np.log2(spectral_peak_hz(arrays.audio[0], SR) / frequency(64))) < 1.0
    assert arrays.description["source"] == "meganwei/syntheory"


def _silent_wav() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((44100, 2), np.float32), 44100, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_published_loader_without_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the optional package were not installed
    with pytest.raises(SynTheoryError, match="pip install datasets"):
        load_published("notes")


def test_published_loader_when_reachable_or_cached():
    try:
        arrays = load_published("time_signatures", max_per_class=1)
    except SynTheoryError as error:
        pytest.skip(f"published SynTheory not available here: {error}")
    assert arrays.audio.shape == (8, CLIP) and sorted(arrays.labels.tolist()) == list(range(8))
