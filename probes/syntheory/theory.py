"""Music theory as pure functions: pitch classes, modes, intervals, triads, voicings and Roman numerals.

MIDI note numbers throughout: 60 is middle C (C4), 69 is A4 = 440 Hz. Pitch classes are 0..11 with C = 0.
"""

from __future__ import annotations

from studio.errors import SynTheoryError

PITCH_CLASS_NAMES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Semitone offsets of the seven diatonic modes above their tonic, in the order of their starting degree.
MODES: dict[str, tuple[int, ...]] = {
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
}

# Interval names indexed by size in semitones minus one: "m2" is 1 semitone, "P8" is 12.
INTERVAL_NAMES: tuple[str, ...] = ("m2", "M2", "m3", "M3", "P4", "TT", "P5", "m6", "M6", "m7", "M7", "P8")

# Triad qualities as semitones of third and fifth above the root.
TRIAD_QUALITIES: dict[str, tuple[int, int, int]] = {
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "augmented": (0, 4, 8),
    "diminished": (0, 3, 6),
}

INVERSIONS: tuple[str, ...] = ("root", "first", "second")

MIDDLE_C = 60


def check_midi_note(note: int) -> int:
    """Return `note` if it is a valid MIDI note number (0..127), else raise SynTheoryError."""
    if not 0 <= note <= 127:
        raise SynTheoryError(f"MIDI note {note} is outside 0..127; choose a lower octave or root")
    return note


def frequency(midi_note: float) -> float:
    """Equal-tempered frequency in Hz of a (possibly fractional) MIDI note, A4 = 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((midi_note - 69) / 12.0)


def note_name(midi_note: int) -> str:
    """Scientific pitch name with sharps: 60 -> "C4", 69 -> "A4", 0 -> "C-1"."""
    return f"{PITCH_CLASS_NAMES[midi_note % 12]}{midi_note // 12 - 1}"


def tonic_midi(pitch_class: int) -> int:
    """The MIDI note of a key centre nearest middle C: C..F sit at or above it (60..65), F#..B below it (54..59)."""
    pitch_class %= 12
    return MIDDLE_C + pitch_class if pitch_class <= 5 else MIDDLE_C - 12 + pitch_class


def triad(root_midi: int, quality: str, inversion: int = 0) -> tuple[int, int, int]:
    """Close-position triad on `root_midi`, lowest note first.

    inversion 0 is root position; inversion k raises the k lowest chord tones by an octave
    (1: third in the bass, 2: fifth in the bass).
    """
    if quality not in TRIAD_QUALITIES:
        raise SynTheoryError(f"unknown triad quality {quality!r}; choose one of {', '.join(TRIAD_QUALITIES)}")
    if inversion not in (0, 1, 2):
        raise SynTheoryError(f"inversion must be 0, 1 or 2, got {inversion!r}")
    notes = [root_midi + step for step in TRIAD_QUALITIES[quality]]
    notes = notes[inversion:] + [note + 12 for note in notes[:inversion]]
    return tuple(check_midi_note(note) for note in notes)  # type: ignore[return-value]


def _mode_offsets(mode: str) -> tuple[int, ...]:
    if mode not in MODES:
        raise SynTheoryError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return MODES[mode]


def scale_notes(tonic: int, mode: str, descending: bool = False) -> tuple[int, ...]:
    """The mode's seven notes from `tonic` plus the octave above (8 notes), reversed when descending."""
    notes = [tonic + step for step in _mode_offsets(mode)] + [tonic + 12]
    if descending:
        notes.reverse()
    return tuple(check_midi_note(note) for note in notes)


def diatonic_step(mode: str, index: int) -> int:
    """Semitones above the tonic of the mode's `index`-th scale step (0-based, may exceed 6 into higher octaves)."""
    offsets = _mode_offsets(mode)
    return offsets[index % 7] + 12 * (index // 7)


def diatonic_triad(tonic: int, mode: str, degree: int) -> tuple[int, int, int]:
    """Close-position triad built in thirds on scale degree `degree` (1..7) of the mode, root in the tonic's octave."""
    if not 1 <= degree <= 7:
        raise SynTheoryError(f"scale degree must be 1..7, got {degree!r}")
    index = degree - 1
    return tuple(check_midi_note(tonic + diatonic_step(mode, index + 2 * k)) for k in range(3))  # type: ignore[return-value]


def triad_quality(notes: tuple[int, ...]) -> str:
    """Quality name of a root-position triad (lowest note is the root)."""
    steps = tuple(note - notes[0] for note in notes)
    for name, pattern in TRIAD_QUALITIES.items():
        if steps == pattern:
            return name
    raise SynTheoryError(f"notes {notes} are not a root-position triad")


_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")


def roman_numeral(mode: str, degree: int) -> str:
    """Roman numeral of the triad on `degree`: upper case major, lower case minor, "°" diminished, "+" augmented."""
    quality = triad_quality(diatonic_triad(MIDDLE_C, mode, degree))
    numeral = _ROMAN[degree - 1]
    if quality in ("minor", "diminished"):
        numeral = numeral.lower()
    return numeral + {"diminished": "°", "augmented": "+"}.get(quality, "")


def progression_name(mode: str, degrees: tuple[int, ...]) -> str:
    """Roman-numeral name of a diatonic progression, e.g. ("ionian", (1, 4, 5, 1)) -> "I-IV-V-I"."""
    return "-".join(roman_numeral(mode, degree) for degree in degrees)
