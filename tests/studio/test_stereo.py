"""Stereo MusicGen checkpoints (facebook/musicgen-stereo-*) on `tiny-stereo`: the interleaved delay pattern, our
decode loop against transformers' generate (tokens per channel, audio, continuation), and steered renders saved as
stereo WAV, streamed and read out like mono ones."""

import json
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import torch

from bench.workloads import random_bank
from probes.activations import layer_states
from studio.decode import decode
from studio.generate import generate, run_decode
from studio.model import apply_delay, delay_pattern, load_model, save_model, strip_delay
from studio.recipe import Extension
from studio.reference import run_reference
from studio.sampling import Sampling
from tests.studio.test_generate import run_cli, steered, write_recipe

COMMITTED_BANKS = Path(__file__).resolve().parents[2] / "assets" / "banks" / "tiny-stereo"
TOLERANCE = 2e-6  # the streaming tests' float32 rounding


@pytest.fixture(scope="module")
def stereo():
    return load_model("tiny-stereo", device="cpu")


@pytest.fixture(scope="module")
def banks(stereo):
    return {"notes": random_bank(stereo.signature, probe_points=200, readout_layer=3, seed=0)}


def tones(seconds: float, left_hz: float, right_hz: float, rate: int = 32000) -> np.ndarray:
    """[samples, 2]: a different tone on each channel."""
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * hz * t) for hz in (left_hz, right_hz)], axis=1).astype(np.float32)


def hf_generate(loaded, prompt: str, frames: int, **kwargs):
    """transformers' generate: (its codes per channel [2, K / 2, frames] as it hands them to the codec, its audio
    [samples, 2])."""
    codec = loaded.model.audio_encoder
    inputs = loaded.tokenizer([prompt], return_tensors="pt")
    given = kwargs.pop("given_frames", 0)
    with mock.patch.object(codec, "decode", wraps=codec.decode) as spy, torch.inference_mode():
        audio = loaded.model.generate(**inputs, max_new_tokens=loaded.steps_for(frames) - given, **kwargs)
    left, right = (call.args[0][0, 0] for call in spy.call_args_list)
    return torch.stack([left, right]), audio[0].numpy().T


# ------------------------------------------------------------------------------------------------ the pattern


@pytest.mark.parametrize("frames", [3, 7, 50])
def test_the_interleaved_delay_pattern_is_transformers_pattern(stereo, frames):
    """Left and right codebook k sit at rows 2k and 2k + 1, both delayed by k."""
    K, pad = stereo.num_codebooks, stereo.start_token
    bos = torch.full((K, 1), pad, dtype=torch.long)
    _, theirs = stereo.model.decoder.build_delay_pattern_mask(bos, pad_token_id=pad, max_length=frames + K // 2)
    assert torch.equal(delay_pattern(K, frames, pad, channels=2), theirs)
    assert torch.equal(stereo.delay_pattern(frames), theirs) and stereo.steps_for(frames) == frames + 3
    codes = torch.randint(0, 100, (2, K, frames))
    assert torch.equal(strip_delay(apply_delay(codes, pad, 2), frames, 2), codes)


def test_tiny_stereo_is_tiny_on_equal_channels(tiny, stereo):
    """stereo_from_mono: the same codes on both channels give the layers tiny's input exactly, and each channel's
    heads tiny's logits; so tiny's music plays on both channels, each sampled on its own."""
    codes = tiny.encode_audio(tones(0.5, 261.6, 261.6)[:, 0])  # [4, 25]
    grid = tiny.apply_delay(codes[None])[0, :, :-1]
    with torch.inference_mode():
        mono = tiny.model.decoder(input_ids=grid).logits  # [4, T, V]
        both = stereo.model.decoder(input_ids=grid.repeat_interleave(2, dim=0)).logits  # [8, T, V]
    torch.testing.assert_close(both[0::2], mono, rtol=1e-5, atol=1e-5)  # float rounding: logits ~ 10
    torch.testing.assert_close(both[1::2], mono, rtol=1e-5, atol=1e-5)
    assert torch.equal(stereo.encode_audio(tones(0.5, 261.6, 261.6)), codes.repeat_interleave(2, dim=0))


# ------------------------------------------------------------------------------------------------ against generate


@pytest.mark.parametrize("sampling", [Sampling(greedy=True), Sampling(), Sampling(guidance_scale=1.0, top_k=20)])
def test_tokens_and_audio_equal_transformers_generate(stereo, sampling):
    frames, seed = 40, 321
    kwargs = dict(do_sample=not sampling.greedy, guidance_scale=sampling.guidance_scale)
    if not sampling.greedy:
        kwargs.update(top_k=sampling.top_k, temperature=sampling.temperature)
    torch.manual_seed(seed)
    theirs, audio = hf_generate(stereo, "a C note on a piano", frames, **kwargs)
    ours = decode(stereo, ["a C note on a piano"], frames, seed=seed, sampling=sampling)
    assert ours.codes.shape == (1, 8, frames) and ours.audio.shape == (1, frames * 640, 2)
    assert torch.equal(ours.codes[0, 0::2], theirs[0]) and torch.equal(ours.codes[0, 1::2], theirs[1])
    assert np.array_equal(ours.audio[0], audio)
    if not sampling.greedy:  # the channels are sampled on their own: a stereo image, not one signal twice
        assert not torch.equal(theirs[0], theirs[1])


@pytest.mark.parametrize("sampling", [Sampling(greedy=True), Sampling()])
def test_a_stereo_prompt_continues_as_transformers_continues_it(stereo, sampling):
    """Each channel encoded on its own, the codes interleaved, prefilled: generate's tokens with `input_values`."""
    clip, frames, seed = tones(0.6, 261.6, 392.0), 60, 9
    given = stereo.encode_audio(clip)
    assert given.shape == (8, 30) and not torch.equal(given[0::2], given[1::2])
    kwargs = dict(do_sample=not sampling.greedy, guidance_scale=3.0)
    torch.manual_seed(seed)
    values = torch.from_numpy(clip.T.copy())[None]  # [1, 2, samples]
    theirs, _ = hf_generate(stereo, "calm piano", frames, input_values=values, given_frames=30, **kwargs)
    ours = decode(stereo, ["calm piano"], frames, seed=seed, sampling=sampling, given=given[None])
    assert torch.equal(ours.codes[0, 0::2], theirs[0]) and torch.equal(ours.codes[0, 1::2], theirs[1])
    assert torch.equal(ours.codes[0, :, :30], given)


# ------------------------------------------------------------------------------------------------ the studio's paths


@pytest.mark.parametrize("sampling", [Sampling(greedy=True), Sampling()])
def test_steered_renders_agree_across_engines_and_the_prompt_file_may_be_mono(stereo, banks, tmp_path, sampling):
    left_right = tmp_path / "stereo.wav"
    sf.write(left_right, tones(0.3, 261.6, 392.0), 44100)  # resampled to 32 kHz, channels kept
    recipe = replace(steered(seconds=0.6), model="tiny-stereo", sampling=sampling, audio_prompt=str(left_right))
    fast, hf = (generate(stereo, recipe, banks=banks, engine=e) for e in (run_decode, run_reference))
    assert torch.equal(fast.tokens, hf.tokens) and np.array_equal(fast.audio, hf.audio)
    assert fast.audio.shape == (0.6 * 32000, 2) and fast.readout.steps == stereo.steps_for(30)
    plain = generate(stereo, replace(recipe, controls=()), banks=banks)
    assert not torch.equal(plain.tokens, fast.tokens)  # steered
    mono = tmp_path / "mono.wav"
    sf.write(mono, tones(0.3, 261.6, 261.6)[:, 0], 32000)
    opening = generate(stereo, replace(recipe, audio_prompt=str(mono)), banks=banks).tokens
    assert torch.equal(opening[0::2, 1:16], opening[1::2, 1:16])  # a mono prompt opens both channels alike


def test_streamed_stereo_chunks_join_to_the_final_audio_across_windows(stereo, banks):
    recipe = replace(steered(seconds=1.2), model="tiny-stereo", extend=Extension(window_s=0.5, stride_s=0.3))
    events = []
    result = generate(stereo, recipe, events.append, banks=banks, stream_audio=True)
    joined = np.concatenate([e.audio for e in events if e.audio is not None])
    assert joined.shape == result.audio.shape == (1.2 * 32000, 2)
    assert np.abs(joined - result.audio).max() < TOLERANCE


def test_the_cli_writes_a_stereo_wav_steered_by_the_committed_bank(tmp_path, capsys):
    recipe = replace(steered(seconds=0.5), model="tiny-stereo", bank=str(COMMITTED_BANKS))
    recipe = replace(recipe, controls=recipe.controls[:1], readout=replace(recipe.readout, window_s=0.2))
    out = tmp_path / "out.wav"
    assert run_cli(capsys, "--recipe", write_recipe(tmp_path, recipe), "--out", out) == (0, [])
    audio, rate = sf.read(out)
    assert rate == 32000 and audio.shape == (16000, 2) and not np.array_equal(audio[:, 0], audio[:, 1])
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["audio"]["seconds"] == 0.5 and len(record["readout"]["steps"]) == 28


def test_a_saved_stereo_folder_loads_as_stereo_and_probes_read_it(stereo, tiny, tmp_path):
    save_model(stereo, tmp_path / "stereo")
    again = load_model(str(tmp_path / "stereo"), device="cpu")
    assert (again.audio_channels, again.num_codebooks, again.signature) == (2, 8, stereo.signature)
    clip = torch.from_numpy(tones(0.5, 261.6, 261.6)[:, 0])[None]
    ours, theirs = (layer_states(m, clip)["mean"] for m in (again, tiny))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)  # a mono clip on both channels: tiny's states


def test_the_studio_finds_the_committed_banks_and_renders_stereo(stereo):
    from studio.ui.handlers import Handlers
    from studio.ui.session import Studio

    studio = Studio(stereo)
    assert sorted(studio.concepts) == ["chords", "notes"]
    recipe = replace(steered(seconds=0.4), model="tiny-stereo", bank=None, controls=steered().controls[:1])
    wav, record = Handlers(studio).render(json.dumps(recipe.to_dict()))
    audio, rate = sf.read(wav)
    assert audio.shape == (0.4 * 32000, 2)
    assert json.loads(Path(record).read_text())["readout"]["steps"][0]["step"] == 0
