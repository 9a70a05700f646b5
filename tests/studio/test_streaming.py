"""Tests for studio/streaming.py and generate's streamed audio: the chunks, joined, are the one-shot decode."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import EncodecConfig, EncodecModel

from studio.generate import generate, run_decode
from studio.recipe import Extension
from studio.reference import run_reference
from studio.streaming import FIRST_CHUNK, LOOKAHEAD, AudioStream
from tests.studio.test_generate import banks, steered, write_tone  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 2e-6  # float32 rounding: the chunks' convolutions see the same samples in other block sizes


def streamed(loaded, codes: torch.Tensor) -> tuple[np.ndarray, list[int]]:
    """Push the codes one frame at a time, as generation finishes them: (the joined audio, the frame count at which
    each chunk came)."""
    stream, parts, came = AudioStream(loaded), [], []
    for frames in range(1, codes.shape[-1] + 1):
        out = stream.push(codes[:, :frames], last=frames == codes.shape[-1])
        if out is not None:
            parts.append(out)
            came.append(frames)
    return np.concatenate(parts), came


@pytest.fixture
def codec_swapped(tiny):
    """The tiny model with another codec for the duration of a test."""
    original = tiny.model.audio_encoder

    def swap(codec):
        tiny.model.audio_encoder = codec.eval()
        return tiny

    yield swap
    tiny.model.audio_encoder = original


def random_codes(count: int, books: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, count, (books, frames), generator=torch.Generator().manual_seed(seed))


def test_chunks_join_to_the_one_shot_decode_on_the_built_in_codec(tiny):
    codes = random_codes(tiny.model.audio_encoder.config.codebook_size, tiny.num_codebooks, 137)
    audio, came = streamed(tiny, codes)
    full = tiny.decode_codes(codes)
    assert audio.shape == full.shape and np.abs(audio - full).max() < TOLERANCE
    # the first chunk comes as soon as its lookahead is made, the later ones every CHUNK frames, the rest at the end
    assert came[0] == FIRST_CHUNK + LOOKAHEAD and came[-1] == 137 and len(came) == 6


def test_chunks_join_on_the_trained_tiny_codec_with_real_music(tiny, codec_swapped):
    loaded = codec_swapped(EncodecModel.from_pretrained(ROOT / "assets" / "models" / "tiny" / "codec"))
    t = np.arange(3 * 32000) / 32000
    chord = sum(np.sin(2 * np.pi * hz * t) for hz in (261.6, 329.6, 392.0)) * np.exp(-t % 1.0) * 0.2
    codes = loaded.encode_audio(chord.astype(np.float32))
    audio, _ = streamed(loaded, codes)
    full = loaded.decode_codes(codes)
    assert np.abs(full).max() > 0.05 and np.abs(audio - full).max() < TOLERANCE


def test_chunks_join_on_a_codec_of_musicgen_smalls_shape(tiny, codec_swapped):
    """encodec_32khz's architecture (2 LSTM layers, 64 filters, strides 8 5 4 4), random weights."""
    torch.manual_seed(0)
    config = EncodecConfig(
        sampling_rate=32000, num_filters=64, upsampling_ratios=[8, 5, 4, 4], codebook_size=2048, num_lstm_layers=2,
        target_bandwidths=[2.2], normalize=False, use_causal_conv=False, hidden_size=128, compress=2,
    )  # fmt: skip
    loaded = codec_swapped(EncodecModel(config))
    codes = random_codes(2048, 4, 90)
    audio, _ = streamed(loaded, codes)
    assert np.abs(audio - loaded.decode_codes(codes)).max() < TOLERANCE


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"seconds": 1.2, "extend": Extension(window_s=0.5, stride_s=0.3)},  # three windows
        {"audio_prompt": "tone"},  # continuation: the prompt is heard at once
    ],
    ids=["one pass", "windows", "continuation"],
)
@pytest.mark.parametrize("engine", [run_decode, run_reference], ids=["ours", "transformers"])
def test_generate_streams_the_final_audio_as_it_goes(tiny, banks, tmp_path, changes, engine):  # noqa: F811
    if changes.get("audio_prompt"):
        changes = {"audio_prompt": str(write_tone(tmp_path / "prompt.wav", 0.3))}
    recipe = replace(steered(seconds=1.0), **changes)
    events = []
    result = generate(tiny, recipe, events.append, banks=banks, engine=engine, stream_audio=True)
    chunks = [(e.step, e.audio) for e in events if e.audio is not None]
    joined = np.concatenate([a for _, a in chunks])
    assert joined.shape == result.audio.shape and np.abs(joined - result.audio).max() < TOLERANCE
    first_step = chunks[0][0]
    if "audio_prompt" in changes and engine is run_decode:
        assert first_step == 16  # the first step after the 15 given frames: their audio at once
    elif "audio_prompt" not in changes:
        assert first_step == FIRST_CHUNK + LOOKAHEAD + tiny.num_codebooks - 1
    assert chunks[-1][0] == events[-1].step == events[-1].total
    plain = generate(tiny, recipe, banks=banks, engine=engine)
    assert np.array_equal(plain.audio, result.audio)  # streaming changes nothing else
