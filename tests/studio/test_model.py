"""studio/model.py: the built-in tiny model, save/load through the folder path, hub-id failures, devices."""

import numpy as np
import pytest
import torch

from studio.errors import ModelLoadError
from studio.generate import generate
from studio.model import build_tiny_random_model, codec_config, load_model, save_model
from studio.recipe import Recipe
from studio.sampling import Sampling


def generate_audio(loaded, prompt, seconds, seed, sampling=Sampling()):
    """Unsteered audio: a recipe without controls."""
    return generate(
        loaded, Recipe(seconds=seconds, model=loaded.model_id, prompt=prompt, seed=seed, sampling=sampling)
    ).audio


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_tiny_is_bit_identical_when_built_twice():
    torch.manual_seed(123)  # the build must not depend on (or disturb) the caller's RNG state
    first = _state(build_tiny_random_model())
    after = torch.rand(1)
    torch.manual_seed(123)
    second = _state(build_tiny_random_model())
    assert torch.equal(after, torch.rand(1))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_tiny_has_the_real_architecture(tiny):
    assert tiny.sample_rate == 32000 and tiny.frame_rate == 50 and tiny.num_codebooks == 4
    assert tiny.num_layers == len(tiny.decoder_layers()) == 4 and tiny.hidden_size == 128
    assert type(tiny.model.text_encoder).__name__ == "T5EncoderModel"
    assert type(tiny.model.audio_encoder).__name__ == "EncodecModel"
    assert tiny.max_seconds == 30.0 and tiny.is_tiny
    assert tiny.device.type == "cpu" and tiny.dtype == torch.float32
    assert not any(p.requires_grad for p in tiny.model.parameters())


def test_saved_folder_loads_through_the_pretrained_path_and_generates_identically(tiny, tmp_path):
    save_model(tiny, tmp_path / "tiny-copy")
    reloaded = load_model(str(tmp_path / "tiny-copy"), device="cpu")
    assert reloaded.signature == tiny.signature  # the folder remembers it is the tiny model
    a = generate_audio(tiny, "calm piano", 0.4, seed=7)
    b = generate_audio(reloaded, "calm piano", 0.4, seed=7)
    assert np.array_equal(a, b)


def test_generation_length_and_determinism_per_seed(tiny):
    hop = tiny.sample_rate // tiny.frame_rate
    a = generate_audio(tiny, "calm piano", 0.5, seed=1)
    assert a.dtype == np.float32 and a.shape == (25 * hop,)
    assert np.array_equal(a, generate_audio(tiny, "calm piano", 0.5, seed=1))
    assert not np.array_equal(a, generate_audio(tiny, "calm piano", 0.5, seed=2))
    greedy = Sampling(greedy=True)
    assert np.array_equal(generate_audio(tiny, "x", 0.3, 1, greedy), generate_audio(tiny, "x", 0.3, 2, greedy))


def test_unreachable_uncached_hub_id_names_the_id_and_both_fixes():
    with pytest.raises(ModelLoadError) as err:
        load_model("facebook/musicgen-small", device="cpu")
    message = str(err.value)
    assert "facebook/musicgen-small" in message and "cache" in message and "save_pretrained" in message
    assert "\n" not in message


def test_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="not a MusicGen folder"):
        load_model(str(tmp_path), device="cpu")


def test_melody_checkpoints_are_refused_before_their_weights_load(tiny, tmp_path):
    from transformers import MusicgenMelodyConfig

    text = dict(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    decoder = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128)
    sizes = dict(num_filters=4, hidden_size=32, codebook_size=256, target_bandwidths=[1.6], num_lstm_layers=1)
    melody = MusicgenMelodyConfig(
        text_encoder=text, audio_encoder=codec_config(**sizes).to_dict(), decoder=dict(decoder, num_codebooks=4)
    )
    melody.save_pretrained(tmp_path / "melody")  # a config and no weights: refused before weights are looked for
    with pytest.raises(
        ModelLoadError, match="is a musicgen_melody checkpoint; .* melody conditioning is not supported"
    ):
        load_model(str(tmp_path / "melody"), device="cpu")


def test_cuda_asked_for_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the refusal is for machines without one")
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        load_model("tiny", device="cuda")


@pytest.mark.gpu
def test_cuda_loads_in_half_precision_and_stays_resident():
    loaded = load_model("tiny")
    assert loaded.device.type == "cuda" and loaded.dtype == torch.float16
    assert all(p.device.type == "cuda" for p in loaded.model.parameters())
    assert generate_audio(loaded, "calm piano", 0.2, seed=0).shape == (10 * 640,)
