"""Standard MIDI files from timed note events, written with mido: one track, one channel, exact clip length."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import mido

from studio.errors import SynTheoryError

from .theory import check_midi_note

TICKS_PER_BEAT = 480
# General MIDI controller 91 is the reverb send level.
REVERB_CONTROLLER = 91


@dataclass(frozen=True)
class NoteEvent:
    """Notes sounding together from `start` for `duration`, both in beats (quarter notes); pitches are MIDI notes."""

    start: float
    duration: float
    pitches: tuple[int, ...]
    velocity: int = 64


def beats_to_ticks(beats: float) -> int:
    """Beats to MIDI ticks at TICKS_PER_BEAT, rounded to the nearest tick."""
    return int(round(beats * TICKS_PER_BEAT))


def build_midi(
    events: Sequence[NoteEvent],
    *,
    bpm: float,
    length_beats: float,
    program: int,
    channel: int,
    time_signature: tuple[int, int] = (4, 4),
    reverb_send: int | None = None,
    track_name: str = "",
) -> mido.MidiFile:
    """A type-0 MIDI file playing `events` with one program on one channel, lasting exactly `length_beats`.

    Notes are clipped to [0, length_beats); the end-of-track marker sits at `length_beats`, so `MidiFile.length`
    is the clip length in seconds. At equal times note-offs come before note-ons, so a repeated pitch re-sounds.
    """
    if not 0 <= program <= 127 or not 0 <= channel <= 15:
        raise SynTheoryError(f"program {program} / channel {channel} out of range (0..127 / 0..15)")
    end_tick = beats_to_ticks(length_beats)
    timed: list[tuple[int, int, mido.Message]] = []  # (tick, order, message): order 0 = off, 1 = on
    for event in events:
        start = max(beats_to_ticks(event.start), 0)
        stop = min(beats_to_ticks(event.start + event.duration), end_tick)
        if stop <= start:
            continue
        for pitch in event.pitches:
            check_midi_note(pitch)
            timed.append((start, 1, mido.Message("note_on", note=pitch, velocity=event.velocity, channel=channel)))
            timed.append((stop, 0, mido.Message("note_off", note=pitch, velocity=0, channel=channel)))
    timed.sort(key=lambda item: (item[0], item[1]))

    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=track_name, time=0))
    numerator, denominator = time_signature
    track.append(mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.Message("program_change", program=program, channel=channel, time=0))
    if reverb_send is not None:
        track.append(mido.Message("control_change", control=REVERB_CONTROLLER, value=reverb_send, channel=channel))
    now = 0
    for tick, _, message in timed:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=end_tick - now))

    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    return midi


def midi_bytes(midi: mido.MidiFile) -> bytes:
    """The Standard MIDI File bytes of `midi` (what would be saved to disk)."""
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()
