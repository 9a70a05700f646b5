"""studio/model.py: the built-in tiny model, save/load through the folder path, hub-id failures, devices."""

import numpy as np
import pytest
import torch

from studio.errors import ModelLoadError
from studio.generate import generate
from studio.model import build_tiny_random_model, load_model, save_model
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


def test_a_checkpoint_that_is_not_a_musicgen_is_refused_before_its_weights_load(tmp_path):
    from transformers import T5Config

    T5Config(d_model=32, num_layers=1).save_pretrained(tmp_path / "t5")  # a config and no weights
    with pytest.raises(ModelLoadError, match="is a t5 checkpoint; the studio runs MusicGen checkpoints"):
        load_model(str(tmp_path / "t5"), device="cpu")


def test_a_saved_melody_folder_loads_as_a_melody_checkpoint(tmp_path):
    melody = load_model("tiny-melody", device="cpu")
    save_model(melody, tmp_path / "melody")
    again = load_model(str(tmp_path / "melody"), device="cpu")
    assert type(again.model).__name__ == "MusicgenMelodyForConditionalGeneration"
    assert (again.chroma_length, again.signature) == (235, melody.signature)
    assert again.prefix_length("a piano") == 235 + len("a piano") + 1  # chroma frames, the text's bytes and EOS


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
