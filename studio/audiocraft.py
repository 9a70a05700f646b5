"""A MusicGen fine-tuned with audiocraft, turned into a transformers ``save_pretrained`` folder, once.

audiocraft's trainer exports a folder holding ``state_dict.bin`` (the language model) and
``compression_state_dict.bin`` (the EnCodec codec, or only the name of a published one). Each file is a torch pickle of
``{'best_state': tensors, 'xp.cfg': the training config as a YAML string, 'version': str, 'exported': True}``, so it
loads with ``weights_only=True``: nothing in it is unpickled beyond tensors and plain containers, and a file that needs
more is refused. The sizes come from the config; the tensor names are mapped as transformers' own conversion scripts
map them (``convert_musicgen_transformers.py`` for the LM, ``convert_encodec_checkpoint_to_pytorch.py`` for the codec).

The T5 text encoder is not in the export (audiocraft names it, ``t5-base`` say, and fetches it from the hub). It is
taken from a ``text_encoder/`` folder next to the two files when there is one (a T5 written with ``save_pretrained``,
model and tokenizer: the way to run offline or with a T5 of one's own), else from the local Hugging Face cache by the
name in the config. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Callable

import torch
import yaml
from transformers import (
    AutoTokenizer,
    EncodecConfig,
    EncodecModel,
    GenerationConfig,
    MusicgenConfig,
    MusicgenForConditionalGeneration,
    T5EncoderModel,
)

from studio.errors import ModelLoadError
from studio.files import atomic_path

LM_FILE = "state_dict.bin"
CODEC_FILE = "compression_state_dict.bin"
TEXT_ENCODER_DIR = "text_encoder"
# Part of every cache key: bump it when the conversion changes, so that folders converted the old way are remade.
CONVERSION_VERSION = 1
# audiocraft's T5 names that moved on the hub: their local cache may be under either name.
_HUB_T5 = {"t5-small", "t5-base", "t5-large", "t5-3b", "t5-11b"}

# LM tensor names, audiocraft -> transformers' MusicgenForConditionalGeneration: the conversion script's renames, each
# anchored on whole name parts, and with the composite model's prefixes (decoder., enc_to_dec_proj., text_encoder.).
_LM_RENAMES = [
    (r"\.mha\.", "."),  # audiocraft's non-custom attention wraps torch's MultiheadAttention as .mha
    (r"^emb\.", "decoder.model.decoder.embed_tokens."),
    (r"^transformer\.", "decoder.model.decoder."),
    (r"\.cross_attention\.", ".encoder_attn."),
    (r"\.linear1\.", ".fc1."),
    (r"\.linear2\.", ".fc2."),
    (r"\.norm1\.", ".self_attn_layer_norm."),
    (r"\.norm_cross\.", ".encoder_attn_layer_norm."),
    (r"\.norm2\.", ".final_layer_norm."),
    (r"^out_norm\.", "decoder.model.decoder.layer_norm."),
    (r"^linears\.", "decoder.lm_heads."),
    (r"^condition_provider\.conditioners\.description\.output_proj\.", "enc_to_dec_proj."),
    # Only a T5 fine-tuned along with the LM (t5.finetune: true) has its weights in the export; they win.
    (r"^condition_provider\.conditioners\.description\.t5\.", "text_encoder."),
]


def is_export(folder: Path) -> bool:
    """Whether `folder` looks like audiocraft's export (either file is enough: a missing twin is then reported). A
    folder that also has transformers' config.json (the hub's facebook/musicgen-* hold both) is loaded as that."""
    has_either = (folder / LM_FILE).is_file() or (folder / CODEC_FILE).is_file()
    return folder.is_dir() and has_either and not (folder / "config.json").is_file()


def converted(folder: str | Path, cache_root: Path, check: Callable) -> Path:
    """The ``save_pretrained`` folder for the audiocraft export in `folder`: converted under `cache_root` the first
    time, found there afterwards. `check(config, source)` refuses what the caller cannot run, before any conversion."""
    folder = Path(folder).expanduser().resolve()
    out = cache_root / f"{folder.name}-{_cache_key(folder)}"
    if not (out / "config.json").is_file():
        cache_root.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            tmp.unlink()  # save_pretrained writes a folder where atomic_path made a file
            convert(folder, tmp, check)
    return out


def _require_both(folder: Path) -> None:
    missing = [name for name in (LM_FILE, CODEC_FILE) if not (folder / name).is_file()]
    if missing:
        raise ModelLoadError(
            f"'{folder}' looks like an audiocraft checkpoint but has no {' or '.join(missing)}: it needs both "
            f"{LM_FILE} (the language model) and {CODEC_FILE} (the codec), as audiocraft's export writes them"
        )


def _cache_key(folder: Path) -> str:
    """Names, sizes and modification times of the inputs, hashed, not their bytes: hashing musicgen-large's 6.5 GB on
    every start would cost what the cache is there to save, and a checkpoint written again (a new fine-tune, a
    re-export) gets a new mtime. A copy made with its times kept reuses the conversion, as it should."""
    _require_both(folder)
    inputs = [folder / LM_FILE, folder / CODEC_FILE]
    if (folder / TEXT_ENCODER_DIR).is_dir():
        inputs += sorted(p for p in (folder / TEXT_ENCODER_DIR).rglob("*") if p.is_file())
    digest = hashlib.sha256(f"v{CONVERSION_VERSION}".encode())
    for path in inputs:
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def convert(folder: str | Path, out: str | Path, check: Callable) -> None:
    """Write the audiocraft export in `folder` as a MusicgenForConditionalGeneration ``save_pretrained`` folder (model
    and tokenizer) at `out`; ModelLoadError, one line, for anything that does not fit."""
    folder = Path(folder)
    _require_both(folder)
    lm, codec = _read(folder / LM_FILE), _read(folder / CODEC_FILE)
    cfg = _config(lm, folder / LM_FILE)
    config, generation = _musicgen_config(cfg, codec, folder)
    check(config, str(folder))
    text_encoder, tokenizer = _text_encoder(folder, cfg)
    config.text_encoder = text_encoder.config  # output_proj's shape must then agree with its width
    if text_encoder.config.d_model == config.decoder.hidden_size:
        raise ModelLoadError(
            f"'{folder}' has a text encoder as wide as its language model ({config.decoder.hidden_size}): "
            f"transformers' MusicGen then has no place for audiocraft's projection between them"
        )
    state = {f"text_encoder.{k}": v for k, v in text_encoder.state_dict().items()}
    state |= _lm_state(lm["best_state"], config.decoder.hidden_size)
    state |= _codec_state(codec, config.decoder.num_codebooks // config.decoder.audio_channels, folder)

    with torch.device("meta"):  # no random init of weights about to be replaced (GBs for the large checkpoints)
        model = MusicgenForConditionalGeneration(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        problem = " ".join(str(err).split())
        raise ModelLoadError(f"'{folder}' does not fit its own config ({problem[:400]})") from None
    model.generation_config = generation
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _read(path: Path) -> dict:
    """One export file as plain data; never unpickles anything but tensors and containers."""
    try:
        package = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise ModelLoadError(
            f"{path} holds Python objects besides tensors; it is not loaded, as unpickling them could run code "
            f"(audiocraft's export writes only tensors and a YAML config: re-export it with audiocraft.utils.export)"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        problem = " ".join(str(err).split())
        raise ModelLoadError(f"{path} cannot be read as a torch checkpoint (truncated, corrupt?): {problem}") from None
    if not isinstance(package, dict) or not (
        isinstance(package.get("best_state"), dict) or isinstance(package.get("pretrained"), str)
    ):
        raise ModelLoadError(f"{path} is not an audiocraft export (no 'best_state' tensors and no 'pretrained' name)")
    return package


def _config(package: dict, path: Path) -> dict:
    """The training config (xp.cfg, OmegaConf's YAML) as plain data, its ``${a.b}`` references filled in."""
    try:
        cfg = yaml.safe_load(package["xp.cfg"])
    except (KeyError, TypeError, yaml.YAMLError) as err:
        raise ModelLoadError(f"{path} has no readable 'xp.cfg' training config ({err})") from None
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{path} has no readable 'xp.cfg' training config")

    def lookup(reference: str):
        value = cfg
        for part in reference.split("."):
            value = value[part]
        return resolve(value)

    def resolve(value):
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, str) and (match := re.fullmatch(r"\$\{([\w.]+)\}", value)):
            return lookup(match.group(1))
        return value

    try:
        return resolve(cfg)
    except (KeyError, TypeError) as err:
        raise ModelLoadError(f"{path} has a training config referring to a value it lacks ({err})") from None


def _musicgen_config(cfg: dict, codec: dict, folder: Path) -> tuple[MusicgenConfig, GenerationConfig]:
    """The transformers config the LM's training config describes, and its sampling defaults."""
    lm = cfg.get("transformer_lm", {})
    conditioners = cfg.get("conditioners") or {}
    description = conditioners.get("description", {})
    if description.get("model") != "t5":
        raise ModelLoadError(f"'{folder}' is not conditioned on text through T5; transformers' MusicGen needs that")
    others = {name: c.get("model") for name, c in conditioners.items() if name not in ("description", "args")}
    melody = any(model == "chroma_stem" for model in others.values())
    if others and not melody:
        raise ModelLoadError(f"'{folder}' has conditioners transformers' MusicGen lacks: {others}")
    if melody:  # its chroma conditioner's tensors would need a mapping of their own (transformers' melody script)
        raise ModelLoadError(
            f"'{folder}' is a melody checkpoint (a chroma conditioner): audiocraft's melody exports are not converted; "
            f"melody checkpoints in transformers' format load (facebook/musicgen-melody, a save_pretrained folder)"
        )
    # What transformers' MusicGen decoder is: pre-norm layers, sinusoidal positions, no biases, one head per codebook,
    # the delay pattern; a checkpoint trained otherwise would load and play wrong.
    wanted = {
        "lm_model": (cfg.get("lm_model"), "transformer_lm"),
        "norm_first": (lm.get("norm_first"), True),
        "norm": (lm.get("norm", "layer_norm"), "layer_norm"),
        "positional_embedding": (lm.get("positional_embedding", "sin"), "sin"),
        "max_period": (lm.get("max_period", 10000), 10000),
        "activation": (lm.get("activation", "gelu"), "gelu"),
        "layer_scale": (lm.get("layer_scale"), None),
        "codebooks_pattern": (cfg.get("codebooks_pattern", {}).get("modeling"), "delay"),
    }
    differ = {key: got for key, (got, want) in wanted.items() if got != want}
    if differ:
        raise ModelLoadError(f"'{folder}' was trained with settings transformers' MusicGen does not have: {differ}")
    try:
        card, dim, n_q = int(lm["card"]), int(lm["dim"]), int(lm["n_q"])
        stereo = bool(cfg.get("interleave_stereo_codebooks", {}).get("use", False))
        decoder = dict(
            vocab_size=card,
            hidden_size=dim,
            num_hidden_layers=int(lm["num_layers"]),
            num_attention_heads=int(lm["num_heads"]),
            ffn_dim=int(lm.get("hidden_scale", 4) * dim),
            num_codebooks=n_q,
            audio_channels=2 if stereo else 1,
            pad_token_id=card,
            bos_token_id=card,
            tie_word_embeddings=False,
        )
        codec_config = _codec_config(codec, n_q // (2 if stereo else 1), folder)
        segment = float(cfg.get("dataset", {}).get("segment_duration", 30))
        sampling = cfg.get("generate", {}).get("lm", {})
        guidance = float(cfg.get("classifier_free_guidance", {}).get("inference_coef", 3.0))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(f"'{folder}' has an incomplete training config (missing or bad {err})") from None
    # The text encoder's config is the T5's own, set once it is loaded (after `check`, which may refuse first).
    config = MusicgenConfig(text_encoder=dict(model_type="t5"), audio_encoder=codec_config, decoder=decoder)
    frames = int(round(segment * codec_config.frame_rate))
    generation = GenerationConfig(
        do_sample=bool(sampling.get("use_sampling", True)),
        temperature=float(sampling.get("temp", 1.0)),
        top_k=int(sampling.get("top_k", 250)),
        top_p=float(sampling.get("top_p", 0.0)) or 1.0,  # audiocraft's 0 means off
        guidance_scale=guidance,
        max_length=frames,
        decoder_start_token_id=card,
        pad_token_id=card,
        bos_token_id=card,
    )
    return config, generation


def _codec_config(codec: dict, n_q: int, folder: Path) -> EncodecConfig:
    """EnCodec's transformers config from audiocraft's SEANet/RVQ config (or the published codec it names)."""
    if "pretrained" in codec:
        return _pretrained_codec(codec["pretrained"], folder, EncodecConfig)
    cfg = _config(codec, folder / CODEC_FILE)
    seanet, rvq, encodec = cfg.get("seanet", {}), cfg.get("rvq", {}), cfg.get("encodec", {})
    overrides = set(seanet.get("encoder") or {}) | set(seanet.get("decoder") or {})
    wanted = {
        "compression_model": (cfg.get("compression_model"), "encodec"),
        "autoencoder": (encodec.get("autoencoder"), "seanet"),
        "quantizer": (encodec.get("quantizer"), "rvq"),
        "activation": (seanet.get("activation"), "ELU"),
        "activation_params": (seanet.get("activation_params"), {"alpha": 1.0}),
        "disable_norm_outer_blocks": (seanet.get("disable_norm_outer_blocks", 0), 0),
        "encoder/decoder overrides": (
            overrides - {"trim_right_ratio", "final_activation", "final_activation_params"},
            set(),
        ),
        "final_activation": ((seanet.get("decoder") or {}).get("final_activation"), None),
    }
    differ = {key: got for key, (got, want) in wanted.items() if got != want}
    if differ:
        raise ModelLoadError(f"'{folder}' has a codec transformers' EnCodec cannot express: {differ}")
    bins, ratios, rate = int(rvq["bins"]), list(seanet["ratios"]), int(encodec.get("sample_rate", cfg["sample_rate"]))
    if int(rvq["n_q"]) < n_q:
        raise ModelLoadError(f"'{folder}' has a codec of {rvq['n_q']} codebooks for a language model of {n_q}")
    config = EncodecConfig(
        sampling_rate=rate,
        audio_channels=int(seanet["channels"]),
        normalize=bool(encodec.get("renormalize", False)),
        hidden_size=int(seanet["dimension"]),
        num_filters=int(seanet["n_filters"]),
        num_residual_layers=int(seanet["n_residual_layers"]),
        upsampling_ratios=ratios,
        norm_type=seanet["norm"],
        kernel_size=int(seanet["kernel_size"]),
        residual_kernel_size=int(seanet["residual_kernel_size"]),
        last_kernel_size=int(seanet["last_kernel_size"]),
        dilation_growth_rate=int(seanet["dilation_base"]),
        use_causal_conv=bool(seanet["causal"]),
        pad_mode=seanet["pad_mode"],
        compress=int(seanet["compress"]),
        num_lstm_layers=int(seanet["lstm"]),
        trim_right_ratio=float((seanet.get("decoder") or {}).get("trim_right_ratio", 1.0)),
        use_conv_shortcut=not seanet["true_skip"],
        codebook_size=bins,
    )
    # The one bandwidth at which transformers' codec has the LM's n_q codebooks (as for facebook/encodec_32khz: 2.2).
    config.target_bandwidths = [n_q * config.frame_rate * config.codebook_nbits / 1000]
    if config.num_quantizers != n_q:  # the division came out a hair low
        config.target_bandwidths = [(n_q + 0.5) * config.frame_rate * config.codebook_nbits / 1000]
    return config


def _pretrained_codec(name: str, folder: Path, kind=EncodecModel):
    """The published codec an export names instead of including (``facebook/encodec_32khz``), from the local cache:
    its model, or its config with ``kind=EncodecConfig``."""
    try:
        return kind.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        raise ModelLoadError(
            f"'{folder}/{CODEC_FILE}' names the codec '{name}' instead of including it, and '{name}' is not in the "
            f"local Hugging Face cache: download it once (huggingface-cli download {name})"
        ) from None


def _text_encoder(folder: Path, cfg: dict):
    """(T5EncoderModel, tokenizer): the folder's own text_encoder/, else the named T5 from the local cache."""
    local = folder / TEXT_ENCODER_DIR
    name = cfg["conditioners"]["description"].get("t5", {}).get("name", "t5-base")
    candidates = [str(local)] if local.is_dir() else [name] + ([f"google-t5/{name}"] if name in _HUB_T5 else [])
    for source in candidates:
        try:
            model = T5EncoderModel.from_pretrained(source, local_files_only=True)
            return model, AutoTokenizer.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError):
            continue
    if local.is_dir():
        raise ModelLoadError(f"'{local}' is not a T5 written with save_pretrained (model and tokenizer)")
    raise ModelLoadError(
        f"'{folder}' needs the text encoder '{name}' (audiocraft checkpoints do not include it) and it is not in the "
        f"local Hugging Face cache: download it once (huggingface-cli download {candidates[-1]}), or put a T5 written "
        f"with save_pretrained (model and tokenizer) in {local}"
    )


def _lm_state(best_state: dict, hidden_size: int) -> dict:
    """audiocraft LM tensors under transformers' names; fused q/k/v projections split in three."""
    state = {}
    for name, tensor in best_state.items():
        for pattern, new in _LM_RENAMES:
            name = re.sub(pattern, new, name)
        if name.endswith(".in_proj_weight"):
            stem = name.removesuffix("in_proj_weight")
            for part, rows in zip("qkv", tensor.split(hidden_size)):
                state[f"{stem}{part}_proj.weight"] = rows
        else:
            state[name] = tensor
    return state


def _codec_state(codec: dict, n_q: int, folder: Path) -> dict:
    """audiocraft EnCodec tensors under transformers' names (or the named published codec's own tensors)."""
    if "pretrained" in codec:
        return {f"audio_encoder.{k}": v for k, v in _pretrained_codec(codec["pretrained"], folder).state_dict().items()}
    state = {}
    for name, tensor in codec["best_state"].items():
        if (book := re.match(r"quantizer\.vq\.layers\.(\d+)\.", name)) and int(book.group(1)) >= n_q:
            continue  # MusicGen uses the codec's first n_q codebooks only (audiocraft's set_num_codebooks)
        name = re.sub(r"^(encoder|decoder)\.model\.", r"\1.layers.", name)  # the SEANet stack: same layer order
        name = re.sub(r"\.(conv\.conv|convtr\.convtr)\.", ".conv.", name)  # audiocraft wraps each conv twice
        name = re.sub(r"\.(conv|convtr)\.norm\.", ".norm.", name)  # time_group_norm codecs
        name = re.sub(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.codebook.", name)
        # torch's old weight_norm (weight_g, weight_v) is transformers' parametrization (original0, original1)
        name = name.replace("weight_g", "parametrizations.weight.original0")
        name = name.replace("weight_v", "parametrizations.weight.original1")
        state[f"audio_encoder.{name}"] = tensor
    return state
