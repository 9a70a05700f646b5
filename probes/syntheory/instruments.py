"""General MIDI programs and click sounds: which instruments play SynTheory's tonal and rhythmic concepts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from studio.errors import SynTheoryError

# The 128 General MIDI level-1 program names, program number = index.
GM_PROGRAM_NAMES: tuple[str, ...] = (
    "Acoustic Grand Piano",
    "Bright Acoustic Piano",
    "Electric Grand Piano",
    "Honky-tonk Piano",
    "Electric Piano 1",
    "Electric Piano 2",
    "Harpsichord",
    "Clavinet",
    "Celesta",
    "Glockenspiel",
    "Music Box",
    "Vibraphone",
    "Marimba",
    "Xylophone",
    "Tubular Bells",
    "Dulcimer",
    "Drawbar Organ",
    "Percussive Organ",
    "Rock Organ",
    "Church Organ",
    "Reed Organ",
    "Accordion",
    "Harmonica",
    "Tango Accordion",
    "Nylon Guitar",
    "Steel Guitar",
    "Jazz Guitar",
    "Clean Electric Guitar",
    "Muted Electric Guitar",
    "Overdriven Guitar",
    "Distortion Guitar",
    "Guitar Harmonics",
    "Acoustic Bass",
    "Fingered Bass",
    "Picked Bass",
    "Fretless Bass",
    "Slap Bass 1",
    "Slap Bass 2",
    "Synth Bass 1",
    "Synth Bass 2",
    "Violin",
    "Viola",
    "Cello",
    "Contrabass",
    "Tremolo Strings",
    "Pizzicato Strings",
    "Orchestral Harp",
    "Timpani",
    "String Ensemble 1",
    "String Ensemble 2",
    "Synth Strings 1",
    "Synth Strings 2",
    "Choir Aahs",
    "Voice Oohs",
    "Synth Voice",
    "Orchestra Hit",
    "Trumpet",
    "Trombone",
    "Tuba",
    "Muted Trumpet",
    "French Horn",
    "Brass Section",
    "Synth Brass 1",
    "Synth Brass 2",
    "Soprano Sax",
    "Alto Sax",
    "Tenor Sax",
    "Baritone Sax",
    "Oboe",
    "English Horn",
    "Bassoon",
    "Clarinet",
    "Piccolo",
    "Flute",
    "Recorder",
    "Pan Flute",
    "Blown Bottle",
    "Shakuhachi",
    "Whistle",
    "Ocarina",
    "Square Lead",
    "Sawtooth Lead",
    "Calliope Lead",
    "Chiff Lead",
    "Charang Lead",
    "Voice Lead",
    "Fifths Lead",
    "Bass and Lead",
    "New Age Pad",
    "Warm Pad",
    "Polysynth Pad",
    "Choir Pad",
    "Bowed Pad",
    "Metallic Pad",
    "Halo Pad",
    "Sweep Pad",
    "Rain",
    "Soundtrack",
    "Crystal",
    "Atmosphere",
    "Brightness",
    "Goblins",
    "Echoes",
    "Sci-Fi",
    "Sitar",
    "Banjo",
    "Shamisen",
    "Koto",
    "Kalimba",
    "Bagpipe",
    "Fiddle",
    "Shanai",
    "Tinkle Bell",
    "Agogo",
    "Steel Drums",
    "Woodblock",
    "Taiko Drum",
    "Melodic Tom",
    "Synth Drum",
    "Reverse Cymbal",
    "Guitar Fret Noise",
    "Breath Noise",
    "Seashore",
    "Bird Tweet",
    "Telephone Ring",
    "Helicopter",
    "Applause",
    "Gunshot",
)

# The 16 families of eight programs each.
GM_FAMILIES: tuple[str, ...] = (
    "Piano",
    "Chromatic Percussion",
    "Organ",
    "Guitar",
    "Bass",
    "Strings",
    "Ensemble",
    "Brass",
    "Reed",
    "Pipe",
    "Synth Lead",
    "Synth Pad",
    "Synth Effects",
    "Ethnic",
    "Percussive",
    "Sound Effects",
)

# SynTheory leaves out programs whose pitch is ambiguous: synth effects, percussive and sound-effect programs
# (96-103, 112-127: no stable pitch), programs with strong inharmonic or doubled partials, and very expressive ones
# (pitch bends, breath, harmonics). That leaves 92 programs.
_ATONAL_FAMILIES = frozenset({12, 14, 15})
_AMBIGUOUS_PITCH_PROGRAMS = frozenset({8, 9, 14, 21, 23, 47, 86})
_EXPRESSIVE_PROGRAMS = frozenset({22, 31, 55, 77, 78})

TONAL_PROGRAMS: tuple[int, ...] = tuple(
    program
    for program in range(128)
    if program // 8 not in _ATONAL_FAMILIES
    and program not in _AMBIGUOUS_PITCH_PROGRAMS
    and program not in _EXPRESSIVE_PROGRAMS
)

# Ten programs of distinct families, a quick subset that still varies timbre: piano, electric piano, vibraphone,
# nylon guitar, violin, string ensemble, trumpet, clarinet, flute, square lead. The tiny model learns from these, and
# the starter banks are trained on them.
TEN_FAMILIES: tuple[int, ...] = (0, 4, 11, 24, 40, 48, 56, 71, 73, 80)

# Programs whose TimGM6mb samples are close to a pure tone at every octave (checked by rendering A2..A5: more than
# 97% of the spectral energy lies at the fundamental); use them where a test or a check needs an unambiguous pitch.
CLEAN_PROGRAMS: tuple[int, ...] = (74, 79)

PERCUSSION_CHANNEL = 9
TONAL_CHANNEL = 2


def family(program: int) -> str:
    """General MIDI family name of a program number."""
    return GM_FAMILIES[program // 8]


def resolve_programs(instruments: Iterable[int | str] | None) -> tuple[int, ...]:
    """Program numbers for tonal concepts: None -> TONAL_PROGRAMS; else each entry a number 0..127 or a GM name.

    Order is kept and duplicates are removed. Any GM program may be asked for explicitly.
    """
    if instruments is None:
        return TONAL_PROGRAMS
    lookup = {name.lower(): number for number, name in enumerate(GM_PROGRAM_NAMES)}
    programs: list[int] = []
    for entry in instruments:
        if isinstance(entry, str) and entry.strip().lower() in lookup:
            program = lookup[entry.strip().lower()]
        elif isinstance(entry, str) and entry.strip().isdigit():
            program = int(entry)
        elif isinstance(entry, int) and not isinstance(entry, bool):
            program = entry
        else:
            raise SynTheoryError(
                f"unknown instrument {entry!r}; give a General MIDI program number 0..127 or a name such as "
                f"{GM_PROGRAM_NAMES[0]!r} or {GM_PROGRAM_NAMES[79]!r}"
            )
        if not 0 <= program <= 127:
            raise SynTheoryError(f"instrument program {program} is outside 0..127")
        if program not in programs:
            programs.append(program)
    if not programs:
        raise SynTheoryError("the instrument list is empty; pass None for the default tonal instruments")
    return tuple(programs)


@dataclass(frozen=True)
class ClickSound:
    """A metronome voice for the rhythmic concepts: an accented note on each bar's first click, another on the rest."""

    name: str
    program: int
    channel: int
    downbeat_note: int
    offbeat_note: int
    downbeat_velocity: int = 100
    offbeat_velocity: int = 75


# SynTheory's five click voices: the drum kit's side stick and sticks, two woodblock registers, taiko, synth drum.
CLICK_SOUNDS: tuple[ClickSound, ...] = (
    ClickSound("drum_kit", program=0, channel=PERCUSSION_CHANNEL, downbeat_note=37, offbeat_note=31),
    ClickSound("woodblock_dark", program=115, channel=TONAL_CHANNEL, downbeat_note=37, offbeat_note=31),
    ClickSound("woodblock_light", program=115, channel=TONAL_CHANNEL, downbeat_note=52, offbeat_note=48),
    ClickSound("taiko", program=116, channel=TONAL_CHANNEL, downbeat_note=52, offbeat_note=48),
    ClickSound("synth_drum", program=118, channel=TONAL_CHANNEL, downbeat_note=52, offbeat_note=48),
)


def resolve_clicks(instruments: Iterable[int | str] | None) -> tuple[ClickSound, ...]:
    """Click sounds for rhythmic concepts: None -> all five; else click names or indices into CLICK_SOUNDS."""
    if instruments is None:
        return CLICK_SOUNDS
    by_name = {click.name: click for click in CLICK_SOUNDS}
    clicks: list[ClickSound] = []
    for entry in instruments:
        if isinstance(entry, str) and entry in by_name:
            click = by_name[entry]
        elif isinstance(entry, int) and not isinstance(entry, bool) and 0 <= entry < len(CLICK_SOUNDS):
            click = CLICK_SOUNDS[entry]
        else:
            raise SynTheoryError(
                f"unknown click sound {entry!r} for a rhythmic concept; choose from {', '.join(by_name)}"
            )
        if click not in clicks:
            clicks.append(click)
    if not clicks:
        raise SynTheoryError("the click list is empty; pass None for all click sounds")
    return tuple(clicks)
