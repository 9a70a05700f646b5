"""probes/tinymusic/decoder.py: the text encoder + decoder train deterministically, a resumed run gives the same
bytes, the codec stays frozen, captions can leave the class out, and the committed model plays the pitch it is
asked for."""

import json

import numpy as np
import pytest
import torch

from probes import transcribe
from probes.tinymusic.codec import new_codec
from probes.tinymusic.data import Clips
from probes.tinymusic.decoder import (
    DecoderSettings,
    caption,
    judge_prompts,
    note_caption,
    train_decoder,
    training_seconds,
)
from studio.model import TINY_FOLDER

FEW = DecoderSettings(
    steps=4, batch=2, crop_seconds=0.2, text_width=16, width=32, layers=1, heads=2, checkpoint_every=2, lr_warmup=2
)


def fake_clips(count: int = 6) -> tuple[Clips, torch.Tensor]:
    concepts = ["notes", "chords", "intervals", "scales", "tempos", "notes"][:count]
    labels = ["C", "minor", "P5", "dorian", "120", "E"][:count]
    programs = [0, 48, 24, 73, None, 4][:count]
    clips = Clips(np.zeros((count, 1), np.float32), labels, concepts, programs, 32000)
    codes = torch.from_numpy(np.random.default_rng(0).integers(0, 512, (count, 4, 20))).to(torch.int16)
    return clips, codes


def states(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_is_deterministic_resumable_and_leaves_the_codec_alone(tmp_path):
    clips, codes = fake_clips()
    codec = new_codec(0)
    before = states(codec)
    first, history = train_decoder(codec, clips, codes, tmp_path / "a", FEW)
    second, _ = train_decoder(new_codec(0), clips, codes, tmp_path / "b", FEW)
    assert same(states(first), states(second))
    assert same(before, states(first.audio_encoder))
    assert [step for step, _, _ in history] == [1, 2, 3, 4]
    train_decoder(new_codec(0), clips, codes, tmp_path / "c", FEW, stop_after=3)
    resumed, _ = train_decoder(new_codec(0), clips, codes, tmp_path / "c", FEW)
    assert same(states(first), states(resumed))


def test_training_seconds_add_up_the_runs_of_a_resumed_build():
    assert training_seconds([(1, 0.0, 1.0), (2, 0.0, 2.0), (3, 0.0, 0.5), (4, 0.0, 1.5)]) == 3.5  # resumed at 3
    assert training_seconds([]) == 0.0


def test_note_captions_are_worded_as_in_training():
    rng = np.random.default_rng(0)
    settings = DecoderSettings(drop_caption=0.0, drop_concept=0.0, drop_instrument=0.0)
    trained = {caption("notes", "F#", 48, rng, settings) for _ in range(50)}
    assert note_caption("F#", "strings") in trained and note_caption(None, "strings") == "a note on strings"
    assert note_caption("A", "electric piano") == "an A note on an electric piano"


def test_captions_name_the_class_and_sometimes_leave_it_out():
    rng = np.random.default_rng(0)
    settings = DecoderSettings(drop_caption=0.0, drop_concept=0.5, drop_instrument=0.0)
    texts = {caption("notes", "E", 24, rng, settings) for _ in range(200)}
    assert {"an E note on a nylon guitar", "a note on a nylon guitar"} <= texts
    assert all("nylon guitar" in t for t in texts)
    assert caption("chords", "minor", 48, rng, DecoderSettings(drop_caption=0, drop_concept=0, drop_instrument=0)) == (
        "a minor chord on strings"
    )


@pytest.mark.skipif(transcribe.unavailable() is not None, reason=str(transcribe.unavailable()))
def test_the_committed_model_plays_the_named_pitch_and_leaves_an_unnamed_one_open(tiny):
    """Its build report (5 seeds: 53 of 60 right) and a new judgement with one seed: "a C note on a piano" ... heard
    right by basic-pitch for most of the 12 classes (chance: 1 in 12); "a note on a piano" heard as several classes,
    so that steering has work to do."""
    report = json.loads((TINY_FOLDER / "report.json").read_text())
    assert report["prompt_adherence"] >= 0.8
    assert report["caption_effect"]["right_class"] < report["caption_effect"]["class_6_semitones_off"] - 0.1
    judged = judge_prompts(tiny.model, seeds=1)
    assert judged["prompt_adherence"] >= 7 / 12, judged["heard_named"]  # measured: 9 of 12
    assert sum(1 for name, count in judged["unnamed_heard_counts"].items() if name and count) >= 4, judged
