"""studio/audiocraft.py: a checkpoint exported by audiocraft's trainer loads through ``load_model(folder)``, converted
once, and computes what audiocraft computed; bad folders are refused in one line.

The fixture (tests/fixtures/audiocraft_tiny, see its README) was written by audiocraft 1.3.0's own builders and export
functions, with audiocraft's logits, codes and audio for known inputs beside it.
"""

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from studio import audiocraft
from studio.errors import ModelLoadError
from studio.model import load_model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "audiocraft_tiny"
FILES = ("state_dict.bin", "compression_state_dict.bin", "text_encoder")


@pytest.fixture
def export(tmp_path, monkeypatch):
    """A copy of the fixture (tests change it), with the converted models going to a home of this test's own."""
    monkeypatch.setenv("MUSICRFM_HOME", str(tmp_path / "home"))
    folder = tmp_path / "my-finetune"
    folder.mkdir()
    for name in FILES:
        (shutil.copytree if (FIXTURE / name).is_dir() else shutil.copy2)(FIXTURE / name, folder / name)
    return folder


@pytest.fixture
def conversions(monkeypatch):
    """How many times the conversion ran."""
    calls = []
    real = audiocraft.convert
    monkeypatch.setattr(audiocraft, "convert", lambda *args: calls.append(args) or real(*args))
    return calls


def rewrite(path: Path, change) -> None:
    """Load an export file, let `change(package, cfg)` edit it, save it back."""
    package = torch.load(path, weights_only=True)
    cfg = yaml.safe_load(package["xp.cfg"])
    change(package, cfg)
    package["xp.cfg"] = yaml.safe_dump(cfg)
    torch.save(package, path)


def test_the_converted_model_computes_what_audiocraft_computed(export, conversions):
    loaded = load_model(str(export), device="cpu")
    assert len(conversions) == 1
    assert loaded.model_id == str(export.resolve())  # the folder the user named, not the cache's
    assert (loaded.num_codebooks, loaded.frame_rate, loaded.sample_rate, loaded.hidden_size) == (4, 50, 32000, 32)

    reference = load_file(FIXTURE / "reference.safetensors")
    with safe_open(FIXTURE / "reference.safetensors", "pt") as f:
        prompt = f.metadata()["prompt"]
    codes = reference["codes"]  # [1, K, S], the start token among them
    with torch.no_grad():
        logits = loaded.model(
            **loaded.tokenizer([prompt], return_tensors="pt"), decoder_input_ids=codes.reshape(-1, codes.shape[-1])
        ).logits
        codec = loaded.model.audio_encoder
        audio_codes = codec.encode(reference["audio"]).audio_codes[0]
        decoded = codec.decode(reference["audio_codes"][None], audio_scales=[None]).audio_values
    # Same weights, other attention code: equal up to float rounding.
    torch.testing.assert_close(logits.reshape(reference["logits"].shape), reference["logits"], rtol=0, atol=1e-5)
    assert torch.equal(audio_codes, reference["audio_codes"])
    torch.testing.assert_close(decoded, reference["decoded"], rtol=0, atol=1e-6)


def test_tensors_land_under_transformers_names_unchanged(export):
    """Spot checks of each kind of mapping, and that no value is dropped or invented: the T5's, the LM's and the
    codec's numbers, all of them, are the converted model's."""
    lm = torch.load(export / "state_dict.bin", weights_only=True)["best_state"]
    codec = torch.load(export / "compression_state_dict.bin", weights_only=True)["best_state"]
    t5 = load_file(export / "text_encoder" / "model.safetensors")
    state = load_model(str(export), device="cpu").model.state_dict()

    layer = "decoder.model.decoder.layers.1."
    fused = lm["transformer.layers.1.self_attn.in_proj_weight"]
    split = [state[f"{layer}self_attn.{p}_proj.weight"] for p in "qkv"]
    assert torch.equal(torch.cat(split), fused)
    cross = [state[f"{layer}encoder_attn.{p}_proj.weight"] for p in "qkv"]
    assert torch.equal(torch.cat(cross), lm["transformer.layers.1.cross_attention.in_proj_weight"])
    pairs = {
        "emb.2.weight": "decoder.model.decoder.embed_tokens.2.weight",
        "transformer.layers.1.linear2.weight": f"{layer}fc2.weight",
        "transformer.layers.1.norm_cross.bias": f"{layer}encoder_attn_layer_norm.bias",
        "out_norm.weight": "decoder.model.decoder.layer_norm.weight",
        "linears.3.weight": "decoder.lm_heads.3.weight",
        "condition_provider.conditioners.description.output_proj.weight": "enc_to_dec_proj.weight",
    }
    codec_pairs = {
        "decoder.model.3.convtr.convtr.weight_g": "audio_encoder.decoder.layers.3.conv.parametrizations.weight."
        "original0",
        "encoder.model.13.lstm.weight_hh_l0": "audio_encoder.encoder.layers.13.lstm.weight_hh_l0",
        "quantizer.vq.layers.2._codebook.embed": "audio_encoder.quantizer.layers.2.codebook.embed",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(lm[ours], state[theirs]), ours
    for ours, theirs in codec_pairs.items():
        assert torch.equal(codec[ours], state[theirs]), ours
    shared = {"text_encoder.encoder.embed_tokens.weight"}  # T5's tied copy of shared.weight
    converted = sum(t.numel() for k, t in state.items() if k not in shared)
    assert converted == sum(t.numel() for source in (lm, codec, t5) for t in source.values())


def test_the_conversion_runs_once_and_again_when_the_checkpoint_changes(export, conversions, tmp_path):
    load_model(str(export), device="cpu")
    [cached] = (tmp_path / "home" / "models").iterdir()
    assert cached.name.startswith("my-finetune-")
    written = (cached / "model.safetensors").stat().st_mtime_ns
    load_model(str(export), device="cpu")
    assert len(conversions) == 1 and (cached / "model.safetensors").stat().st_mtime_ns == written

    stat = (export / "state_dict.bin").stat()  # a new fine-tune written over the old one
    os.utime(export / "state_dict.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_model(str(export), device="cpu")
    assert len(conversions) == 2 and len(list((tmp_path / "home" / "models").iterdir())) == 2


@pytest.mark.parametrize("missing", ["state_dict.bin", "compression_state_dict.bin"])
def test_a_folder_with_one_of_the_two_files_is_refused(export, missing):
    (export / missing).unlink()
    with pytest.raises(ModelLoadError, match=f"has no {missing}: it needs both"):
        load_model(str(export), device="cpu")


def test_a_corrupt_file_is_refused(export):
    data = (export / "compression_state_dict.bin").read_bytes()
    (export / "compression_state_dict.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cannot be read as a torch checkpoint"):
        load_model(str(export), device="cpu")


RAN = []


class Payload:
    """Unpickling this would run code: it must never happen."""

    def __reduce__(self):
        return RAN.append, ("unpickled",)


def test_a_file_holding_python_objects_is_refused_unpickled(export):
    package = torch.load(export / "state_dict.bin", weights_only=True)
    torch.save(package | {"extra": Payload()}, export / "state_dict.bin")
    with pytest.raises(ModelLoadError, match="holds Python objects besides tensors; it is not loaded"):
        load_model(str(export), device="cpu")
    assert RAN == []


def test_tensors_that_do_not_fit_the_config_are_refused(export):
    def widen(package, cfg):
        package["best_state"]["linears.0.weight"] = torch.zeros(65, 32)

    rewrite(export / "state_dict.bin", widen)
    with pytest.raises(ModelLoadError, match=r"does not fit its own config .*lm_heads\.0\.weight"):
        load_model(str(export), device="cpu")


def test_melody_exports_are_refused_in_one_line(export, conversions):
    def melody(package, cfg):
        cfg["conditioners"]["self_wav"] = {"model": "chroma_stem", "chroma_stem": {"n_chroma": 12}}

    shutil.rmtree(export / "text_encoder")  # refused before the text encoder is looked for
    rewrite(export / "state_dict.bin", melody)
    with pytest.raises(
        ModelLoadError, match="is a melody checkpoint .*: audiocraft's melody exports are not converted"
    ):
        load_model(str(export), device="cpu")


def test_a_stereo_export_loads_with_its_channels_codebooks_interleaved(export):
    """audiocraft's stereo LM: 2 x n_q embeddings and heads over one mono codec, left codebook k at 2k, right at 2k + 1
    (its `interleave_stereo_codebooks`); here each right-channel tensor is its left one's plus one, to tell them
    apart."""

    def stereo(package, cfg):
        state = package["best_state"]
        for kind in ("emb", "linears"):
            mono = [state.pop(f"{kind}.{k}.weight") for k in range(4)]
            for k, weight in enumerate(mono):
                state[f"{kind}.{2 * k}.weight"], state[f"{kind}.{2 * k + 1}.weight"] = weight, weight + 1
        cfg["transformer_lm"]["n_q"] = 8
        cfg["interleave_stereo_codebooks"] = {"use": True, "per_timestep": False}

    rewrite(export / "state_dict.bin", stereo)
    loaded = load_model(str(export), device="cpu")
    assert (loaded.audio_channels, loaded.num_codebooks, loaded.lag) == (2, 8, 4)
    heads = loaded.model.decoder.lm_heads
    assert torch.equal(heads[3].weight, heads[2].weight + 1)
    assert loaded.decode_codes(torch.zeros(8, 5, dtype=torch.long)).shape == (5 * 640, 2)


def test_a_text_encoder_that_is_neither_beside_nor_cached_is_named(export):
    def name_t5(package, cfg):
        cfg["conditioners"]["description"]["t5"]["name"] = "google/flan-t5-xxl"

    shutil.rmtree(export / "text_encoder")
    rewrite(export / "state_dict.bin", name_t5)
    with pytest.raises(ModelLoadError, match=r"needs the text encoder 'google/flan-t5-xxl' .* or put a T5"):
        load_model(str(export), device="cpu")
