"""probes/tinymusic/decoder.py: the text encoder + decoder train deterministically, a resumed run gives the same
bytes, the codec stays frozen, and captions can leave the class out."""

import numpy as np
import torch

from probes.tinymusic.codec import new_codec
from probes.tinymusic.decoder import Captioned, DecoderSettings, caption, train_decoder

FEW = DecoderSettings(
    steps=4, batch=2, crop_seconds=0.2, text_width=16, width=32, layers=1, heads=2, checkpoint_every=2, lr_warmup=2
)


def fake_clips(count: int = 6) -> tuple[Captioned, torch.Tensor]:
    concepts = ["notes", "chords", "intervals", "scales", "tempos", "notes"][:count]
    labels = ["C", "minor", "P5", "dorian", "120", "E"][:count]
    programs = [0, 48, 24, 73, None, 4][:count]
    clips = Captioned(np.zeros((count, 1), np.float32), concepts, labels, programs, 32000)
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


def test_captions_name_the_class_and_sometimes_leave_it_out():
    rng = np.random.default_rng(0)
    settings = DecoderSettings(drop_caption=0.0, drop_concept=0.5, drop_instrument=0.0)
    texts = {caption("notes", "E", 24, rng, settings) for _ in range(200)}
    assert {"an E note on a nylon guitar", "a note on a nylon guitar"} <= texts
    assert all("nylon guitar" in t for t in texts)
    assert caption("chords", "minor", 48, rng, DecoderSettings(drop_caption=0, drop_concept=0, drop_instrument=0)) == (
        "a minor chord on strings"
    )
