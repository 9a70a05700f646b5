"""Load a frozen MusicGen (a hub id, a local ``save_pretrained`` folder, or one of the offline tiny models) and
keep the facts about it that the rest of the studio needs: frame rate, steps for a clip, the codebook delay pattern,
the decoder stack, the codec's way in and out.

The offline models: ``tiny`` is the small MusicGen trained here on SynTheory renders (``python -m probes tiny-model``;
weights in assets/models/tiny/musicgen), which plays the pitch a caption names, and steering it changes what is heard;
``tiny-random`` has the same kind of architecture with random weights, built in code from a seed, for unit tests that
need speed and exactness only; ``tiny-stereo`` is ``tiny`` made a stereo MusicGen in code (``stereo_from_mono``);
``tiny-melody`` is a melody MusicGen of tiny-random's sizes with random weights, built in code from a seed.

Melody checkpoints (facebook/musicgen-melody; transformers' MusicgenMelodyForConditionalGeneration) have no
cross-attention: the conditioning is a prefix of decoder positions, ``chroma_length`` chroma frames then the prompt's
text tokens (``prefix_length``), and the clip's positions come after it (studio/decode.py builds the prefix from
studio/melody.py's chroma).

Stereo checkpoints (facebook/musicgen-stereo-*) decode two channels with one mono codec: the decoder's codebooks are
interleaved, left channel's codebook k at row 2k and the right's at 2k + 1, both delayed by k. Audio arrays are
[samples] for mono and [samples, channels] for stereo, time first, as soundfile and Gradio take them.

The model is moved to its device once and put in eval mode with gradients off. Warming it up (the first generation on
a GPU is several times slower than the next ones) is the decode loop's job: ``studio.decode.warm_up``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import socket
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoTokenizer,
    ByT5Tokenizer,
    EncodecConfig,
    GenerationConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenMelodyConfig,
    MusicgenMelodyDecoderConfig,
    MusicgenMelodyForConditionalGeneration,
    T5Config,
)
from transformers.utils import logging as hf_logging

from studio import audiocraft
from studio.errors import InputError, ModelLoadError
from studio.files import ASSETS, user_home

log = logging.getLogger(__name__)


class _MusicgenSpecialTokenNoise(logging.Filter):
    """MusicGen's pad/BOS id is vocab_size on purpose (its embeddings have vocab_size + 1 rows); transformers warns
    about that on every config it builds, which would tell users something is wrong when nothing is."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "must be `None` or an integer within the vocabulary" not in record.getMessage()


logging.getLogger("transformers.configuration_utils").addFilter(_MusicgenSpecialTokenNoise())

TINY = "tiny"
TINY_FOLDER = ASSETS / "models" / "tiny" / "musicgen"
TINY_RANDOM = "tiny-random"
TINY_STEREO = "tiny-stereo"
TINY_MELODY = "tiny-melody"
TINY_SEED = 0
TINY_DECODER = dict(hidden_size=64, num_hidden_layers=6, num_attention_heads=4, ffn_dim=128)
# MusicGen was trained on 30 s excerpts; longer clips need windowed generation, which we do not do.
TRAINED_SECONDS = 30.0
# Recorded in the config we save so that a folder remembers which model it is (ConceptBanks check it).
MODEL_ID_KEY = "musicrfm_model_id"
# Config keys that vary with the machine or library version, not with the model.
_VOLATILE_CONFIG_KEYS = {"transformers_version", "_name_or_path", "dtype", "torch_dtype", "architectures"}


@dataclass(frozen=True)
class ModelSignature:
    """What a ConceptBank records about the model it was trained on, and checks at load time."""

    model_id: str
    config_hash: str
    hidden_size: int
    num_layers: int

    def describe(self) -> str:
        return f"{self.model_id} (config {self.config_hash}, {self.num_layers} layers, d={self.hidden_size})"


@dataclass
class LoadedModel:
    """A MusicGen resident on its device, with the facts the rest of the studio needs about it."""

    model: MusicgenForConditionalGeneration | MusicgenMelodyForConditionalGeneration
    tokenizer: object
    model_id: str
    device: torch.device
    dtype: torch.dtype
    sample_rate: int
    frame_rate: int
    num_codebooks: int  # the decoder's: K = codec codebooks x audio_channels
    audio_channels: int  # 1 (mono) or 2 (stereo: the channels' codebooks interleaved)
    num_layers: int
    hidden_size: int
    max_seconds: float
    is_tiny: bool
    chroma_length: int  # chroma frames that open a melody model's conditioning prefix; 0: no melody conditioning
    signature: ModelSignature
    precision: str  # a key of PRECISIONS: how the decoder's weights are held (dtype: its activations')
    precision_note: str = ""  # why this precision, when studio.precision.load chose it
    source: str = ""  # the name load_model was given: another process loads the same model by it (probes/cluster.py)
    # Held for a whole generation: hooks and the global RNG seed belong to one request at a time.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def takes_melody(self) -> bool:
        """A melody checkpoint: its conditioning is a prefix of chroma and text positions, not cross-attention."""
        return self.chroma_length > 0

    def prefix_length(self, prompt: str) -> int:
        """Decoder positions before the clip's first (its BOS column): a melody model's chroma frames and the prompt's
        text tokens; 0 for the others, whose conditioning is cross-attended."""
        if not self.takes_melody:
            return 0
        return self.chroma_length + len(self.tokenizer(prompt)["input_ids"])

    def decoder_stack(self) -> nn.Module:
        """The decoder's transformer stack (embeddings, layers, final norm): where steering hooks attach."""
        return self.model.decoder.model.decoder

    def decoder_layers(self) -> nn.ModuleList:
        """The decoder's transformer layers; each returns a plain hidden-state tensor [B, T, d]."""
        return self.decoder_stack().layers

    @functools.cached_property
    def weights_fingerprint(self) -> str:
        """A short hash of the weights (the first elements of every tensor): tells two checkpoints of one config apart,
        for caches of things computed with the model."""
        digest = hashlib.sha256()
        for name, tensor in self.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().reshape(-1)[:1024].float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    def frames_for(self, seconds: float) -> int:
        """Number of 20 ms audio frames (decoder steps that yield audio) for a clip of `seconds`."""
        return int(round(seconds * self.frame_rate))

    @property
    def lag(self) -> int:
        """The delay pattern's depth: codebooks per channel (codebook k lags by k // audio_channels positions + 1)."""
        return self.num_codebooks // self.audio_channels

    def steps_for(self, frames: int) -> int:
        """Decoder steps for `frames` audio frames: one per frame plus the codebook delay (the last codebook of a
        channel lags by lag - 1)."""
        return frames + self.lag - 1

    def check_seconds(self, seconds: float) -> int:
        """The one check of a clip length against this model: its frames, or InputError naming ``seconds``."""
        if seconds > self.max_seconds + 1e-9:
            raise InputError.at("seconds", f"must be at most {self.max_seconds:g} for {self.model_id}, got {seconds:g}")
        frames = self.frames_for(seconds)
        if frames < 1:
            raise InputError.at("seconds", f"must be at least one frame ({1 / self.frame_rate:g} s), got {seconds:g}")
        return frames

    @functools.cached_property
    def start_token(self) -> int:
        """The decoder's start (and pad) token: the BOS column and the delay pattern's padded slots hold it."""
        config = self.model.generation_config
        for value in (config.decoder_start_token_id, config.bos_token_id, self.model.config.decoder.bos_token_id):
            if value is not None:
                return int(value)
        raise ModelLoadError(f"{self.model_id} defines no decoder_start_token_id or bos_token_id")

    def delay_pattern(self, frames: int, given: torch.Tensor | None = None) -> torch.Tensor:
        """[K, frames + lag] int64: the codebook delay pattern over sequence positions 0 .. frames + lag - 1.

        Codebook k (of channel k % audio_channels) is delayed by k // audio_channels + 1 positions (BOS at position
        0): its frames hold FREE (-1); every other slot holds the start token. `given` codes [K, P] (an audio prompt)
        fill the first P frames of every codebook, so that only the later ones are FREE. Same grid as transformers'
        ``build_delay_pattern_mask`` for ``max_length = frames + lag`` and a prompt of BOS plus `given`.
        """
        grid = delay_pattern(self.num_codebooks, frames, self.start_token, self.audio_channels)
        for k, codes in enumerate([] if given is None else given):
            first = k // self.audio_channels + 1
            grid[k, first : first + len(codes)] = codes
        return grid

    def apply_delay(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, K, F] codes -> [B, K, F + lag] delay-pattern grid (``apply_delay`` for this model)."""
        return apply_delay(codes, self.start_token, self.audio_channels)

    def strip_delay(self, grid: torch.Tensor, frames: int) -> torch.Tensor:
        """[B, K, S] delay-pattern grid -> [B, K, frames] codes (``strip_delay`` for this model)."""
        return strip_delay(grid, frames, self.audio_channels)

    def encode_audio(self, audio: np.ndarray) -> torch.Tensor:
        """Audio at the model's rate ([samples], or [samples, channels] for a stereo model) -> its codes [K, P],
        P = whole frames (a partial last frame is dropped), encoded as transformers' generate encodes an audio prompt
        (``input_values``): a stereo model's channels one by one, their codebooks interleaved; mono audio given to a
        stereo model goes to both channels."""
        hop = self.sample_rate // self.frame_rate
        audio = np.asarray(audio, dtype=np.float32)[: len(audio) // hop * hop]
        channels = audio.reshape(len(audio), -1).T  # [C, samples]
        if len(channels) not in {1, self.audio_channels}:
            raise InputError(f"{self.model_id} takes {self.audio_channels}-channel audio, got {len(channels)} channels")
        codec = self.model.audio_encoder
        with torch.inference_mode():
            codes = codec.encode(torch.as_tensor(channels)[:, None].to(self.device, codec.dtype)).audio_codes[0]
        codes = codes[:, : self.lag]  # [C, lag, P]
        if len(codes) < self.audio_channels:
            codes = codes.expand(self.audio_channels, -1, -1)
        return codes.transpose(0, 1).reshape(self.num_codebooks, -1).to("cpu", copy=True)  # row 2k + c: channel c

    def decode_codes(self, codes: torch.Tensor) -> np.ndarray:
        """Codes [K, F] (or a batch [B, K, F]) -> audio [F * hop] float32 ([F * hop, 2] stereo; batched, a leading
        B), through the codec as transformers' generate decodes: a stereo model's channels from their own codebooks."""
        batch = codes if codes.dim() == 3 else codes[None]
        with torch.inference_mode():
            channels = [
                self.model.audio_encoder.decode(
                    batch[None, :, c :: self.audio_channels].to(self.device), audio_scales=[None] * len(batch)
                ).audio_values[:, 0]
                for c in range(self.audio_channels)
            ]
        audio = (channels[0] if self.audio_channels == 1 else torch.stack(channels, dim=-1)).float().cpu().numpy()
        return audio if codes.dim() == 3 else audio[0]


FREE = -1  # delay-pattern entry: the model's token goes here (any other value is a fixed pad token)


def delay_pattern(num_codebooks: int, frames: int, pad_token_id: int, channels: int = 1) -> torch.Tensor:
    """[K, frames + K / channels] int64 delay pattern (see ``LoadedModel.delay_pattern``) for any codebook count, pad
    token and channel count (codebook k lags by k // channels)."""
    lag = torch.arange(num_codebooks)[:, None] // channels
    position = torch.arange(frames + num_codebooks // channels)
    free = (position > lag) & (position <= lag + frames)
    return torch.where(free, FREE, pad_token_id)


def apply_delay(codes: torch.Tensor, pad_token_id: int, channels: int = 1) -> torch.Tensor:
    """[B, K, F] codes -> [B, K, F + K / channels] delay-pattern grid: codebook k's frames at positions from
    k // channels + 1 on, pad elsewhere (the inverse of ``strip_delay``)."""
    batch, books, frames = codes.shape
    grid = delay_pattern(books, frames, pad_token_id, channels).to(codes.device).repeat(batch, 1, 1)
    grid[grid == FREE] = codes.reshape(-1)  # row-major: every (b, k) row has exactly F free slots, in frame order
    return grid


def strip_delay(grid: torch.Tensor, frames: int, channels: int = 1) -> torch.Tensor:
    """[B, K, S] delay-pattern grid -> [B, K, frames] codes (codebook k's frames sit at positions from k // channels
    + 1 on); the inverse of ``apply_delay``."""
    return torch.stack(
        [grid[:, k, k // channels + 1 : k // channels + 1 + frames] for k in range(grid.shape[1])], dim=1
    )


TINY_TEXT = dict(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
TINY_CODEC = dict(num_filters=4, hidden_size=32, codebook_size=256, target_bandwidths=[1.6], num_lstm_layers=1)
CHROMA_LENGTH = 235  # the melody checkpoints': 30 s of chroma frames (hop 4096 at 32 kHz)


def build_tiny_random_model(melody: bool = False) -> MusicgenForConditionalGeneration:
    """The tiny-random model: a MusicGen with the real architecture at toy sizes, random weights from a fixed seed
    (`melody`: tiny-melody, the melody architecture, its 235 chroma frames and a position table for them).

    T5 text encoder, EnCodec-shaped 32 kHz audio codec (hop 640 = 50 Hz frames, 4 codebooks) and a 6-layer,
    64-wide decoder. Built offline; identical bytes on every machine with the same torch version.
    """
    # codebook_dim defaults to the codec's hidden_size, 32
    if melody:  # the position table holds the 235 chroma frames and the text too, as the real checkpoint's 2048
        tokens = dict(vocab_size=256, num_codebooks=4, pad_token_id=256, bos_token_id=256)
        decoder = MusicgenMelodyDecoderConfig(max_position_embeddings=2048, **tokens, **TINY_DECODER)
        config = MusicgenMelodyConfig(
            text_encoder=T5Config(**TINY_TEXT).to_dict(),
            audio_encoder=codec_config(**TINY_CODEC).to_dict(),
            decoder=decoder.to_dict(),
            chroma_length=CHROMA_LENGTH,
        )
    else:
        config = musicgen_config(
            TINY_TEXT, TINY_CODEC, dict(vocab_size=256, max_position_embeddings=1504, **TINY_DECODER)
        )
    setattr(config, MODEL_ID_KEY, TINY_MELODY if melody else TINY_RANDOM)
    fork_devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(TINY_SEED)
        model = (MusicgenMelodyForConditionalGeneration if melody else MusicgenForConditionalGeneration)(config)
        _init_codebooks_from_tones(model.audio_encoder, seconds=8)
    model.generation_config = sampling_defaults(config.decoder.vocab_size)
    return model.eval()


CODEC_32KHZ = dict(
    sampling_rate=32000,
    audio_channels=1,
    upsampling_ratios=[8, 5, 4, 4],
    norm_type="weight_norm",
    use_causal_conv=False,
)


def codec_config(**sizes) -> EncodecConfig:
    """An EnCodec config like MusicGen's: 32 kHz mono, hop 640 (50 frames per second), no input normalisation; `sizes`
    set the widths, codebooks and bandwidth."""
    return EncodecConfig(**(CODEC_32KHZ | {"normalize": False} | sizes))


def musicgen_config(text: dict, codec: dict, decoder: dict) -> MusicgenConfig:
    """A MusicGen config from the sizes that vary; the rest is what every published mono checkpoint shares: the codec
    of ``codec_config``, 4 codebooks, pad and start token = the codebook size."""
    token = decoder["vocab_size"]
    decoder = dict(num_codebooks=4, pad_token_id=token, bos_token_id=token) | decoder
    return MusicgenConfig(
        text_encoder=T5Config(**text), audio_encoder=codec_config(**codec), decoder=MusicgenDecoderConfig(**decoder)
    )


def sampling_defaults(start_token: int) -> GenerationConfig:
    """The published checkpoints' own sampling defaults."""
    return GenerationConfig(
        do_sample=True,
        guidance_scale=3.0,
        top_k=250,
        max_length=1500,
        decoder_start_token_id=start_token,
        pad_token_id=start_token,
        bos_token_id=start_token,
    )


@torch.no_grad()
def _init_codebooks_from_tones(codec, seconds: int) -> None:
    """Seed each residual codebook with encoder outputs of synthetic tones (EnCodec's own data-driven init).

    transformers initialises codebooks to zeros, which would map every clip to the same codes: the tiny model's
    codes would carry no information about pitch and probes trained on it could learn nothing.
    """
    rate = codec.config.sampling_rate
    t = torch.arange(rate) / rate
    pitches = 36 + 60 * torch.rand(seconds, 3)  # MIDI notes, three partial sources per one-second clip
    freqs = 440.0 * 2 ** ((pitches - 69) / 12)
    tones = (torch.sin(2 * torch.pi * freqs[:, :, None] * t) * torch.exp(-3 * t)).sum(1)
    tones = tones + 0.05 * torch.randn_like(tones)
    residual = codec.encoder(tones[:, None, :]).transpose(1, 2).reshape(-1, codec.config.codebook_dim)
    # Rescale the encoder's last conv so that latents have unit RMS: at the init's scale (~0.06) the codec decoder's
    # biases drown its input and every token sequence decodes to nearly the same waveform.
    scale = residual.pow(2).mean().sqrt()
    last = codec.encoder.layers[-1].conv
    last.parametrizations.weight.original0.div_(scale)
    last.bias.div_(scale)
    residual = residual / scale
    for layer in codec.quantizer.layers:
        book = layer.codebook
        book.embed.copy_(residual[torch.randperm(len(residual))[: book.codebook_size]])
        book.embed_avg.copy_(book.embed)
        residual = residual - book.decode(book.encode(residual))
    # Without biases the decoder's output is driven by its input alone (ELU(0) = 0), so different codes give audibly
    # different waveforms; then scale the last conv for an output RMS of about 0.1.
    for name, param in codec.decoder.named_parameters():
        if name.endswith("bias"):
            param.zero_()
    codes = codec.quantizer.encode(codec.encoder(tones[:, None, :]))
    out_rms = codec.decoder(codec.quantizer.decode(codes)).pow(2).mean().sqrt()
    codec.decoder.layers[-1].conv.parametrizations.weight.original0.mul_(0.1 / out_rms)


def tiny_tokenizer() -> ByT5Tokenizer:
    """Bytes -> ids; needs no vocabulary file, so it works offline."""
    return ByT5Tokenizer()


def config_hash(model: MusicgenForConditionalGeneration) -> str:
    """A short, machine-independent hash of the decoder config (what steering directions depend on)."""
    cfg = {k: v for k, v in model.config.decoder.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def save_model(loaded: LoadedModel, folder: str | Path) -> None:
    """Write the model and tokenizer with save_pretrained; `load_model(folder)` loads it back."""
    folder = Path(folder)
    setattr(loaded.model.config, MODEL_ID_KEY, loaded.model_id)
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ModelLoadError(f"unknown device '{device}': use cpu, cuda or cuda:N") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device '{device}' asked for, but no CUDA GPU is available: use --device cpu")
    return resolved


# Precisions: the decoder's weights in fp32, fp16 or bf16, or (on the CPU) its layers' linear layers in int8 with
# fp32 arithmetic around them; the value is the dtype of the model's activations.
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """fp16 on CUDA and fp32 on the CPU unless asked otherwise (fp16 matmuls on the CPU are slow or missing)."""
    if precision is None:
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision '{precision}': use one of {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise ModelLoadError("precision int8 is the CPU path (torch's int8 kernels run on the CPU); on a GPU use fp16")
    return precision


def quantize_decoder(loaded: LoadedModel) -> Callable[[], None]:
    """Swap the linear layers of the decoder's layers, in place, for int8 ones: weights int8 per output channel, each
    forward's input quantized to uint8 on the fly with one scale (torch's dynamic quantization, fbgemm kernels; torchao
    0.18's int8 configs ran 2-3x slower than fp32 on this CPU). The lm heads stay fp32: they are 2% of a step's weights
    but turn the hidden state straight into the scores (on the tiny model's sampled tokens, int8 heads agreed with
    fp32's arg-max at 0.933-0.963, fp32 heads at 0.975-0.982; they cost musicgen-small's shape about 10% of a step).
    Embeddings, norms, attention and the steering and readout stay fp32, and so do the text encoder and the codec,
    which run once per clip.
    Returns a function that puts the fp32 layers back."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    loaded.weights_fingerprint  # noqa: B018 -- taken from the checkpoint's weights: packed int8 ones are not tensors
    layers = loaded.decoder_layers()
    originals = [
        (parent, name, child)
        for parent in layers.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Linear
    ]
    with warnings.catch_warnings():  # torch 2.13 warns that torch.ao moves to torchao, whose CPU kernels are slower
        warnings.simplefilter("ignore")
        quantize_dynamic(layers, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    loaded.precision = "int8"

    def restore() -> None:
        for parent, name, child in originals:
            setattr(parent, name, child)
        loaded.precision = "fp32"

    return restore


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so that an offline machine fails in seconds instead of a minute of HTTP retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


MODEL_CLASSES = {
    "musicgen": MusicgenForConditionalGeneration,
    "musicgen_melody": MusicgenMelodyForConditionalGeneration,
}


def check_supported(config, source: str) -> None:
    """Refuse, before any weights load, a checkpoint that is not a MusicGen (text, melody; mono or stereo)."""
    if config.model_type not in MODEL_CLASSES:
        raise ModelLoadError(
            f"'{source}' is a {config.model_type} checkpoint; the studio runs MusicGen checkpoints "
            f"(facebook/musicgen-small, -medium, -large, -melody, -stereo-*)"
        )


def _from_pretrained(source: str, local_only: bool):
    config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    check_supported(config, source)
    model = MODEL_CLASSES[config.model_type].from_pretrained(source, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    return model, tokenizer


def _load_weights(name: str):
    """(model, tokenizer, model_id) for a folder or a hub id; the HF cache is tried before the network. A folder
    exported by audiocraft's trainer is converted once, into <home>/models/, and loaded from there; it keeps its own
    path as model id."""
    path = source = Path(name).expanduser()
    if audiocraft.is_export(path):
        path = audiocraft.converted(path, user_home() / "models", check=check_supported)
    if path.is_dir():
        try:
            model, tokenizer = _from_pretrained(str(path), local_only=True)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"'{name}' is not a MusicGen folder written by save_pretrained ({err})") from err
        return model, tokenizer, getattr(model.config, MODEL_ID_KEY, None) or str(source.resolve())
    try:
        model, tokenizer = _from_pretrained(name, local_only=True)
    except (OSError, ValueError):
        fix = (
            f"cannot load model '{name}': it is not in the local Hugging Face cache and the hub is not reachable. "
            f"Fix: run once with internet access to cache it, or pass a local folder written by save_pretrained "
            f"(--model /path/to/folder); --model tiny runs the tiny model trained here, offline"
        )
        if not _hub_reachable():
            raise ModelLoadError(fix) from None
        try:
            model, tokenizer = _from_pretrained(name, local_only=False)
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"cannot load model '{name}' from the hub ({str(err).splitlines()[0]}). " + fix
            ) from err
    return model, tokenizer, name


def as_loaded(
    model: MusicgenForConditionalGeneration, tokenizer, model_id: str, device: torch.device, precision: str = "fp32"
) -> LoadedModel:
    """`model` moved to `device` once at `precision` (see PRECISIONS), frozen, with its facts read off its config."""
    dtype = PRECISIONS[precision]
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    dec = model.config.decoder
    frame_rate = int(model.config.audio_encoder.frame_rate)
    channels = int(getattr(dec, "audio_channels", 1))
    chroma = int(getattr(model.config, "chroma_length", 0))  # a melody model's; the text tokens come on top
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        model_id=model_id,
        device=device,
        dtype=dtype,
        sample_rate=int(model.config.audio_encoder.sampling_rate),
        frame_rate=frame_rate,
        num_codebooks=int(dec.num_codebooks),
        audio_channels=channels,
        num_layers=int(dec.num_hidden_layers),
        hidden_size=int(dec.hidden_size),
        max_seconds=min(
            TRAINED_SECONDS, (dec.max_position_embeddings - dec.num_codebooks // channels - chroma) / frame_rate
        ),
        is_tiny=model_id in (TINY, TINY_RANDOM, TINY_STEREO, TINY_MELODY),
        chroma_length=chroma,
        signature=ModelSignature(model_id, config_hash(model), int(dec.hidden_size), int(dec.num_hidden_layers)),
        precision="fp32" if precision == "int8" else precision,
    )
    if precision == "int8":
        quantize_decoder(loaded)
    return loaded


def load_tiny_model() -> MusicgenForConditionalGeneration:
    """The tiny MusicGen trained here, from its committed save_pretrained folder."""
    if not (TINY_FOLDER / "model.safetensors").is_file():
        raise ModelLoadError(
            f"the tiny model's weights are missing from {TINY_FOLDER}: restore them from git, or rebuild them with "
            f"`python -m probes tiny-model`; --model tiny-random runs a random-weight model without them"
        )
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # it loads in an instant: a "Loading weights" bar would only be noise
    try:
        return MusicgenForConditionalGeneration.from_pretrained(TINY_FOLDER)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def stereo_from_mono(mono: MusicgenForConditionalGeneration, model_id: str) -> MusicgenForConditionalGeneration:
    """A stereo MusicGen that plays what `mono` plays, each channel sampled on its own: the decoder's codebooks doubled
    and interleaved (left codebook k at row 2k, right at 2k + 1), codebook k's embedding halved into both rows (so equal
    channels give the layers exactly mono's input) and its head copied to both. The text encoder, codec and layers
    are mono's. Built in code, so `tiny-stereo` needs no files beyond `tiny`'s."""
    config = copy.deepcopy(mono.config)
    config.decoder.audio_channels = 2
    config.decoder.num_codebooks = 2 * mono.config.decoder.num_codebooks
    setattr(config, MODEL_ID_KEY, model_id)
    state = {}
    for name, tensor in mono.state_dict().items():
        for prefix, scale in (("decoder.model.decoder.embed_tokens.", 0.5), ("decoder.lm_heads.", 1.0)):
            if name.startswith(prefix):
                k, rest = name[len(prefix) :].split(".", 1)
                for row in (2 * int(k), 2 * int(k) + 1):
                    state[f"{prefix}{row}.{rest}"] = tensor * scale
                break
        else:
            state[name] = tensor
    with torch.random.fork_rng(devices=[]):  # every weight is then overwritten: keep the caller's RNG untouched
        stereo = type(mono)(config)
    stereo.load_state_dict(state, strict=True)
    stereo.generation_config = copy.deepcopy(mono.generation_config)
    return stereo.eval()


def load_model(name: str = TINY, device: str | None = None, precision: str | None = None) -> LoadedModel:
    """Load MusicGen by hub id, folder, "tiny", "tiny-random", "tiny-stereo" or "tiny-melody", move it to `device`
    once at `precision` (None: fp16 on CUDA, fp32 on the CPU; studio.precision.load picks int8 on the CPU when it is
    faster and faithful) and freeze it."""
    torch_device = resolve_device(device)
    precision = resolve_precision(precision, torch_device)
    if name == TINY:
        model, tokenizer, model_id = load_tiny_model(), tiny_tokenizer(), TINY
    elif name == TINY_RANDOM:
        model, tokenizer, model_id = build_tiny_random_model(), tiny_tokenizer(), TINY_RANDOM
    elif name == TINY_MELODY:
        model, tokenizer, model_id = build_tiny_random_model(melody=True), tiny_tokenizer(), TINY_MELODY
    elif name == TINY_STEREO:
        model, tokenizer, model_id = stereo_from_mono(load_tiny_model(), TINY_STEREO), tiny_tokenizer(), TINY_STEREO
    else:
        model, tokenizer, model_id = _load_weights(name)
    loaded = as_loaded(model, tokenizer, model_id, torch_device, precision)
    loaded.source = name
    log.info("loaded %s on %s (%s)", loaded.signature.describe(), torch_device, precision)
    return loaded
