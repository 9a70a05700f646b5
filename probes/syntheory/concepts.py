"""The seven SynTheory concepts and our eighth, instruments: their classes, the clips that make them up, and each
clip's MIDI.

Every clip lasts CLIP_SECONDS (4 s). Tonal concepts play at 120 BPM in 4/4 on one General MIDI program each;
rhythmic concepts (tempos, time signatures) play a click track that starts at a seeded random point of the bar,
as SynTheory cuts its 4 s windows at random offsets from longer click tracks. `instruments` (timbre, the paper's open
question 3) is not in SynTheory: the notes concept's clips labelled by the General MIDI family of their program
instead of their pitch, so that only timbre tells the classes apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import mido
import numpy as np

from studio.errors import SynTheoryError

from .instruments import (
    CLICK_SOUNDS,
    GM_FAMILIES,
    TONAL_CHANNEL,
    TONAL_PROGRAMS,
    ClickSound,
    family,
    resolve_clicks,
    resolve_programs,
)
from .midi import TICKS_PER_BEAT, NoteEvent, build_midi
from .theory import (
    INTERVAL_NAMES,
    MODES,
    PITCH_CLASS_NAMES,
    TRIAD_QUALITIES,
    diatonic_triad,
    progression_name,
    scale_notes,
    tonic_midi,
    triad,
)

CLIP_SECONDS = 4.0
TONAL_BPM = 120
CLIP_BEATS_AT_TONAL_BPM = CLIP_SECONDS * TONAL_BPM / 60  # 8 beats

# Scientific octaves of the notes concept: MIDI 0..107 (C-1..B7), SynTheory's range below the soundfont's top.
NOTE_OCTAVES: tuple[int, ...] = tuple(range(-1, 8))
INTERVAL_BASE_NOTES: tuple[int, ...] = tuple(range(60, 72))  # C4..B4
# The instruments concept: the first twelve GM families (piano .. synth pad; the others are effects, ethnic,
# percussive and sound effects), every pitch class in octaves 3 and 4, where every family's programs sound.
INSTRUMENT_FAMILIES: tuple[str, ...] = GM_FAMILIES[:12]
INSTRUMENT_OCTAVES: tuple[int, ...] = (3, 4)
INTERVAL_STYLES: tuple[str, ...] = ("up", "down", "unison")
SCALE_DIRECTIONS: tuple[str, ...] = ("up", "down")

# SynTheory's 19 diatonic four-chord progressions: 10 in major (ionian), 9 in natural minor (aeolian).
PROGRESSIONS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("ionian", (1, 4, 5, 1)),
    ("ionian", (1, 4, 6, 5)),
    ("ionian", (1, 5, 6, 4)),
    ("ionian", (1, 6, 4, 5)),
    ("ionian", (2, 5, 1, 6)),
    ("ionian", (4, 1, 5, 6)),
    ("ionian", (4, 5, 3, 6)),
    ("ionian", (5, 4, 1, 5)),
    ("ionian", (5, 6, 4, 1)),
    ("ionian", (6, 4, 1, 5)),
    ("aeolian", (1, 2, 5, 1)),
    ("aeolian", (1, 3, 4, 1)),
    ("aeolian", (1, 4, 5, 1)),
    ("aeolian", (1, 6, 3, 7)),
    ("aeolian", (1, 6, 7, 1)),
    ("aeolian", (1, 6, 7, 3)),
    ("aeolian", (1, 7, 6, 4)),
    ("aeolian", (4, 7, 1, 1)),
    ("aeolian", (7, 6, 7, 1)),
)

TEMPO_RANGE: tuple[int, int] = (50, 210)  # inclusive, integer BPM
TEMPO_OFFSETS = 5  # random 4 s windows per (tempo, click sound)
TIME_SIGNATURES: tuple[tuple[int, int], ...] = ((2, 2), (2, 4), (3, 4), (3, 8), (4, 4), (6, 8), (9, 8), (12, 8))
TIME_SIGNATURE_BPM = 120
REVERB_SENDS: tuple[int, ...] = (0, 63, 127)  # SynTheory's three reverb levels for time signatures
TIME_SIGNATURE_OFFSETS = 10


@dataclass(frozen=True)
class ConceptSpec:
    """What a concept is: its class names (a single "value" for regression) and where the published set keeps it."""

    name: str
    classes: tuple[str, ...]
    is_regression: bool
    summary: str
    published_config: str | None  # None: not in the published set (instruments is ours)
    rhythmic: bool  # played by click sounds (instruments = click names) rather than GM programs


CONCEPTS: dict[str, ConceptSpec] = {
    spec.name: spec
    for spec in (
        ConceptSpec(
            "notes",
            PITCH_CLASS_NAMES,
            False,
            "one pitch played four times (12 pitch classes x octaves x instruments)",
            "notes",
            False,
        ),
        ConceptSpec(
            "intervals",
            INTERVAL_NAMES,
            False,
            "two notes 1..12 semitones apart, played up, down or together",
            "intervals",
            False,
        ),
        ConceptSpec(
            "scales", tuple(MODES), False, "the seven diatonic modes played up or down over one octave", "scales", False
        ),
        ConceptSpec(
            "chords",
            tuple(TRIAD_QUALITIES),
            False,
            "major, minor, augmented and diminished triads in three inversions",
            "chords",
            False,
        ),
        ConceptSpec(
            "progressions",
            tuple(progression_name(mode, degrees) for mode, degrees in PROGRESSIONS),
            False,
            "19 four-chord diatonic progressions in every key",
            "simple_progressions",
            False,
        ),
        ConceptSpec(
            "instruments",
            INSTRUMENT_FAMILIES,
            False,
            "one pitch played four times, labelled by the General MIDI family of its program (12 families)",
            None,
            False,
        ),
        ConceptSpec(
            "tempos", ("value",), True, "click tracks at 50..210 BPM; the label is the tempo in BPM", "tempos", True
        ),
        ConceptSpec(
            "time_signatures",
            tuple(f"{n}/{d}" for n, d in TIME_SIGNATURES),
            False,
            "accented click tracks in eight time signatures",
            "time_signatures",
            True,
        ),
    )
}


def get_concept(name: str) -> ConceptSpec:
    """The spec of concept `name`; SynTheoryError naming the valid concepts otherwise."""
    if name not in CONCEPTS:
        raise SynTheoryError(f"unknown concept {name!r}; choose one of {', '.join(CONCEPTS)}")
    return CONCEPTS[name]


@dataclass(frozen=True)
class Sample:
    """One clip of a concept: its label (class name, or BPM for tempos), class index and construction parameters.

    `params` holds plain JSON values only and fully determines the clip's MIDI (see `midi`).
    For regression concepts `class_index` is 0 (the single "value" class).
    """

    concept: str
    label: str | float
    class_index: int
    params: dict[str, Any] = field(hash=False)

    @property
    def midi(self) -> mido.MidiFile:
        """The clip's MIDI file, rebuilt from `params` on each access."""
        return _CONSTRUCTIONS[self.concept].midi(self.params)


# ---------------------------------------------------------------------------------------------------- tonal concepts


def _tonal_midi(events: Sequence[NoteEvent], program: int) -> mido.MidiFile:
    return build_midi(
        events, bpm=TONAL_BPM, length_beats=CLIP_BEATS_AT_TONAL_BPM, program=program, channel=TONAL_CHANNEL
    )


def _repeated(pitches: tuple[int, ...], times: int, beats_each: float) -> list[NoteEvent]:
    return [NoteEvent(k * beats_each, beats_each, pitches) for k in range(times)]


def _notes(programs: Sequence[int], octaves: Sequence[int], seed: int) -> Iterable[tuple[str, int, dict]]:
    for octave in octaves:
        for pitch_class, name in enumerate(PITCH_CLASS_NAMES):
            for program in programs:
                yield (
                    name,
                    pitch_class,
                    {"midi_note": 12 * (octave + 1) + pitch_class, "octave": octave, "program": program},
                )


def _notes_midi(params: dict) -> mido.MidiFile:
    return _tonal_midi(_repeated((params["midi_note"],), 4, 2.0), params["program"])


def _instruments(programs: Sequence[int], octaves: Sequence[int], seed: int) -> Iterable[tuple[str, int, dict]]:
    for octave in octaves:
        for pitch_class in range(12):
            for program in programs:
                params = {"midi_note": 12 * (octave + 1) + pitch_class, "octave": octave, "program": program}
                yield family(program), program // 8, params


def _intervals(programs: Sequence[int], octaves: Sequence[int], seed: int) -> Iterable[tuple[str, int, dict]]:
    for base in INTERVAL_BASE_NOTES:
        for semitones in range(1, 13):
            for style in INTERVAL_STYLES:
                for program in programs:
                    yield (
                        INTERVAL_NAMES[semitones - 1],
                        semitones - 1,
                        {"base_note": base, "semitones": semitones, "style": style, "program": program},
                    )


def _intervals_midi(params: dict) -> mido.MidiFile:
    low, high = params["base_note"], params["base_note"] + params["semitones"]
    if params["style"] == "unison":
        events = _repeated((low, high), 8, 1.0)
    else:
        first, second = (low, high) if params["style"] == "up" else (high, low)
        events = [NoteEvent(2 * k + j, 1.0, (pitch,)) for k in range(4) for j, pitch in enumerate((first, second))]
    return _tonal_midi(events, params["program"])


def _scales(programs: Sequence[int], octaves: Sequence[int], seed: int) -> Iterable[tuple[str, int, dict]]:
    for root in range(12):
        for index, mode in enumerate(MODES):
            for direction in SCALE_DIRECTIONS:
                for program in programs:
                    yield mode, index, {"root": root, "mode": mode, "direction": direction, "program": program}


def _scales_midi(params: dict) -> mido.MidiFile:
    notes = scale_notes(tonic_midi(params["root"]), params["mode"], descending=params["direction"] == "down")
    return _tonal_midi([NoteEvent(k, 1.0, (note,)) for k, note in enumerate(notes)], params["program"])


def _chords(programs: Sequence[int], octaves: Sequence[int], seed: int) -> Iterable[tuple[str, int, dict]]:
    for root in range(12):
        for index, quality in enumerate(TRIAD_QUALITIES):
            for inversion in range(3):
                for program in programs:
                    yield quality, index, {"root": root, "quality": quality, "inversion": inversion, "program": program}


def _chords_midi(params: dict) -> mido.MidiFile:
    notes = triad(tonic_midi(params["root"]), params["quality"], params["inversion"])
    return _tonal_midi(_repeated(notes, 4, 2.0), params["program"])


def _progressions(programs: Sequence[int], octaves: Sequence[int], seed: int) -> Iterable[tuple[str, int, dict]]:
    names = CONCEPTS["progressions"].classes
    for key in range(12):
        for index, (mode, degrees) in enumerate(PROGRESSIONS):
            for program in programs:
                yield names[index], index, {"key": key, "mode": mode, "degrees": list(degrees), "program": program}


def _progressions_midi(params: dict) -> mido.MidiFile:
    tonic = tonic_midi(params["key"])
    events = [
        NoteEvent(2 * k, 2.0, diatonic_triad(tonic, params["mode"], degree))
        for k, degree in enumerate(params["degrees"])
    ]
    return _tonal_midi(events, params["program"])


# ------------------------------------------------------------------------------------------------- rhythmic concepts


def _phase_ticks(seed: int, bar_ticks: int, *identity: int) -> int:
    """A seeded random start point within the bar, in ticks, fixed by the clip's identity."""
    return int(np.random.default_rng([seed, *identity]).integers(0, bar_ticks))


def _click_midi(
    bpm: int,
    unit_beats: float,
    per_bar: int,
    phase_ticks: int,
    click: ClickSound,
    time_signature: tuple[int, int],
    reverb_send: int | None,
) -> mido.MidiFile:
    """A click every `unit_beats`, accented every `per_bar` clicks, heard from `phase_ticks` into the first bar."""
    length_beats = CLIP_SECONDS * bpm / 60
    phase = phase_ticks / TICKS_PER_BEAT
    events = []
    k = int(np.ceil(phase / unit_beats - 1e-9))
    while k * unit_beats - phase < length_beats:
        downbeat = k % per_bar == 0
        events.append(
            NoteEvent(
                k * unit_beats - phase,
                unit_beats,
                (click.downbeat_note if downbeat else click.offbeat_note,),
                click.downbeat_velocity if downbeat else click.offbeat_velocity,
            )
        )
        k += 1
    return build_midi(
        events,
        bpm=bpm,
        length_beats=length_beats,
        program=click.program,
        channel=click.channel,
        time_signature=time_signature,
        reverb_send=reverb_send,
        track_name=click.name,
    )


def _click(name: str) -> ClickSound:
    return next(click for click in CLICK_SOUNDS if click.name == name)


def _tempos(clicks: Sequence[ClickSound], octaves: Sequence[int], seed: int) -> Iterable[tuple[float, int, dict]]:
    low, high = TEMPO_RANGE
    for bpm in range(low, high + 1):
        for click in clicks:
            for offset in range(TEMPO_OFFSETS):
                phase = _phase_ticks(seed, 4 * TICKS_PER_BEAT, bpm, CLICK_SOUNDS.index(click), offset)
                yield float(bpm), 0, {"bpm": bpm, "click": click.name, "offset": offset, "phase_ticks": phase}


def _tempos_midi(params: dict) -> mido.MidiFile:
    return _click_midi(params["bpm"], 1.0, 4, params["phase_ticks"], _click(params["click"]), (4, 4), None)


def _click_unit_beats(numerator: int, denominator: int) -> float:
    """Beats (quarter notes) between clicks: eighths in compound and x/8 metres, else one click per denominator note."""
    compound = numerator % 3 == 0 and denominator != 4
    return 0.5 if compound else 4 / denominator


def _time_signatures(
    clicks: Sequence[ClickSound], octaves: Sequence[int], seed: int
) -> Iterable[tuple[str, int, dict]]:
    for index, (numerator, denominator) in enumerate(TIME_SIGNATURES):
        bar_ticks = round(numerator * _click_unit_beats(numerator, denominator) * TICKS_PER_BEAT)
        for reverb in range(len(REVERB_SENDS)):
            for click in clicks:
                for offset in range(TIME_SIGNATURE_OFFSETS):
                    phase = _phase_ticks(seed, bar_ticks, index, reverb, CLICK_SOUNDS.index(click), offset)
                    yield (
                        f"{numerator}/{denominator}",
                        index,
                        {
                            "numerator": numerator,
                            "denominator": denominator,
                            "click": click.name,
                            "reverb": reverb,
                            "offset": offset,
                            "phase_ticks": phase,
                        },
                    )


def _time_signatures_midi(params: dict) -> mido.MidiFile:
    numerator, denominator = params["numerator"], params["denominator"]
    return _click_midi(
        TIME_SIGNATURE_BPM,
        _click_unit_beats(numerator, denominator),
        numerator,
        params["phase_ticks"],
        _click(params["click"]),
        (numerator, denominator),
        REVERB_SENDS[params["reverb"]],
    )


@dataclass(frozen=True)
class _Construction:
    clips: Callable[[Sequence[Any], Sequence[int], int], Iterable[tuple[str | float, int, dict]]]
    midi: Callable[[dict], mido.MidiFile]


_CONSTRUCTIONS: dict[str, _Construction] = {
    "notes": _Construction(_notes, _notes_midi),
    "instruments": _Construction(_instruments, _notes_midi),  # the notes' clips, labelled by family
    "intervals": _Construction(_intervals, _intervals_midi),
    "scales": _Construction(_scales, _scales_midi),
    "chords": _Construction(_chords, _chords_midi),
    "progressions": _Construction(_progressions, _progressions_midi),
    "tempos": _Construction(_tempos, _tempos_midi),
    "time_signatures": _Construction(_time_signatures, _time_signatures_midi),
}


def cap_per_class(class_indices: Sequence[int], max_per_class: int, seed: int) -> list[int]:
    """Ascending positions keeping at most `max_per_class` items of each class, drawn uniformly with `seed`."""
    if max_per_class < 1:
        raise SynTheoryError(f"max_per_class must be at least 1, got {max_per_class}")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for position, class_index in enumerate(class_indices):
        by_class.setdefault(class_index, []).append(position)
    keep: list[int] = []
    for class_index in sorted(by_class):
        positions = by_class[class_index]
        if len(positions) > max_per_class:
            positions = rng.choice(positions, size=max_per_class, replace=False).tolist()
        keep.extend(positions)
    return sorted(keep)


def list_samples(
    concept: str,
    instruments: Iterable[int | str] | None = None,
    octaves: Iterable[int] | None = None,
    max_per_class: int | None = None,
    seed: int = 0,
) -> list[Sample]:
    """Every clip of `concept`, or a subset; the same arguments always give the same list in the same order.

    instruments: tonal concepts take General MIDI program numbers or names (default: SynTheory's 92 tonal
        programs); tempos and time_signatures take click-sound names (default: all five).
    octaves: notes and instruments; scientific octaves -1..7 (4 holds middle C = MIDI 60). Default: all nine for
        notes, 3 and 4 for instruments.
    max_per_class: keep at most this many clips per class, drawn with `seed` (for tempos: in total).
    seed: also places the random 4 s windows of the rhythmic concepts.
    """
    spec = get_concept(concept)
    if octaves is not None and concept not in ("notes", "instruments"):
        raise SynTheoryError(
            f"octaves apply to the notes and instruments concepts only, not to {concept!r}; leave octaves unset"
        )
    octave_list: tuple[int, ...] = INSTRUMENT_OCTAVES if concept == "instruments" else NOTE_OCTAVES
    if octaves is not None:
        octave_list = tuple(dict.fromkeys(int(octave) for octave in octaves))
        unknown = [octave for octave in octave_list if octave not in NOTE_OCTAVES]
        if unknown or not octave_list:
            raise SynTheoryError(
                f"octaves must be among {NOTE_OCTAVES[0]}..{NOTE_OCTAVES[-1]} (4 holds middle C), got {list(octaves)}"
            )
    players = resolve_clicks(instruments) if spec.rhythmic else resolve_programs(instruments)
    if concept == "instruments":
        players = _family_programs(instruments, players)
    samples = [
        Sample(concept, label, class_index, params)
        for label, class_index, params in _CONSTRUCTIONS[concept].clips(players, octave_list, seed)
    ]
    if max_per_class is not None:
        samples = [samples[i] for i in cap_per_class([s.class_index for s in samples], max_per_class, seed)]
    return samples


def _family_programs(instruments, programs: tuple[int, ...]) -> tuple[int, ...]:
    """The instruments concept's programs: by default the tonal programs of its twelve families; programs asked for
    must all belong to those families and cover every one of them (a class without clips cannot be probed)."""
    classes = len(INSTRUMENT_FAMILIES)
    if instruments is None:
        return tuple(p for p in TONAL_PROGRAMS if p // 8 < classes)
    outside = [f"{p} ({family(p)})" for p in programs if p // 8 >= classes]
    if outside:
        raise SynTheoryError(
            f"the instruments concept's classes are the GM families {', '.join(INSTRUMENT_FAMILIES)}; "
            f"programs {', '.join(outside)} belong to none of them"
        )
    missing = [name for index, name in enumerate(INSTRUMENT_FAMILIES) if index not in {p // 8 for p in programs}]
    if missing:
        raise SynTheoryError(
            f"the instruments concept needs a program of every family; none given for {', '.join(missing)} "
            "(programs 8k..8k+7 make family k)"
        )
    return programs
