"""Train the tiny model's audio codec from scratch: an EnCodec-architecture autoencoder (transformers' EncodecModel)
with a residual vector quantizer of 4 codebooks, on SynTheory renders.

WORK IN PROGRESS (not landed): on 2 threads, 0.4 s per step (batch 8 x 0.5 s); after 500 steps even the plain
autoencoder (no quantizer) gives every held-out note the same spectrum (basic-pitch: 2 of 24 right), so it needs a
faster-learning set-up before the quantizer matters. auraloss's MultiResolutionSTFTLoss was tried first and replaced
by spectral_loss below because it computes the phase (16% of a step) that it does not use.

Losses: a multi-resolution STFT loss (log and linear magnitudes at three resolutions), an L1 waveform term, and the
quantizer's commitment loss. The codebooks are EncodecModel's own buffers, so its encode and
decode use them as trained; they are learnt as EnCodec learns them: initialised from encoder outputs (k-means),
moved by exponential moving averages of the vectors assigned to each code, dead codes reseeded from the batch.
Gradients pass the quantizer straight through.

Deterministic: the crops of step t come from a generator seeded with (seed, t), so a run resumed from its checkpoint
gives the same weights, to the byte, as one that was never interrupted (one thread, the same machine).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import EncodecModel

from studio.files import atomic_path
from studio.model import codec_config

log = logging.getLogger(__name__)

# 4 codebooks of 512 codes at 50 frames per second: 4 x 9 bits x 50 = 1.8 kbit/s.
SIZES = dict(num_filters=8, hidden_size=64, codebook_size=512, target_bandwidths=[1.8], num_lstm_layers=1)
CHECKPOINT = "codec-checkpoint.pt"


@dataclass(frozen=True)
class CodecSettings:
    steps: int = 3000
    batch: int = 16
    crop_seconds: float = 0.5
    lr: float = 3e-3
    seed: int = 0
    ema_decay: float = 0.95
    commitment: float = 0.25
    warmup_steps: int = 400  # a plain autoencoder first, so that the codebooks start from latents that mean something
    init_vectors: int = 8192  # latents the k-means of the codebooks' start is fitted on
    waveform: float = 0.1  # weight of the L1 waveform term beside the spectral loss
    dead_below: float = 0.05  # a code used less than this share of an even split of a batch (EMA) is reseeded
    checkpoint_every: int = 100


def new_codec(seed: int) -> EncodecModel:
    torch.manual_seed(seed)
    return EncodecModel(codec_config(**SIZES))


def _books(codec: EncodecModel) -> list:
    n_q = codec.quantizer.get_num_quantizers_for_bandwidth(codec.config.target_bandwidths[0])
    return [layer.codebook for layer in codec.quantizer.layers[:n_q]]


@torch.no_grad()
def _kmeans(vectors: torch.Tensor, k: int, generator: torch.Generator, rounds: int = 10) -> torch.Tensor:
    if len(vectors) >= k:
        centers = vectors[torch.randperm(len(vectors), generator=generator)[:k]].clone()
    else:  # fewer vectors than codes: repeat some, apart by a little noise, and let the EMA spread them
        picks = torch.randint(len(vectors), (k,), generator=generator)
        centers = vectors[picks] + 1e-3 * vectors.std() * torch.randn(k, vectors.shape[1], generator=generator)
    for _ in range(rounds):
        assign = torch.cdist(vectors, centers).argmin(dim=1)
        sums = torch.zeros_like(centers).index_add_(0, assign, vectors)
        counts = torch.bincount(assign, minlength=k).to(vectors.dtype)
        centers = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centers)
    return centers


def quantize(
    codec: EncodecModel,
    latents: torch.Tensor,
    settings: CodecSettings | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents [B, D, T] -> (quantized latents with a straight-through gradient, commitment loss). With `settings`
    (training), the codebooks are initialised and updated as the module docstring says."""
    residual = latents.transpose(1, 2).reshape(-1, latents.shape[1])  # [B*T, D]
    total = torch.zeros_like(residual)
    commit = latents.new_zeros(())
    for book in _books(codec):
        codes = torch.cdist(residual.detach(), book.embed).argmin(dim=1)
        chosen = book.embed[codes]
        commit = commit + F.mse_loss(residual, chosen.detach())
        if settings is not None:
            _ema_update(book, residual.detach(), codes, settings, generator)
        total = total + chosen
        residual = residual - chosen.detach()
    flat = latents.transpose(1, 2).reshape(-1, latents.shape[1])
    straight = flat + (total - flat).detach()
    return straight.reshape(latents.shape[0], latents.shape[2], -1).transpose(1, 2), commit


@torch.no_grad()
def _ema_update(book, vectors: torch.Tensor, codes: torch.Tensor, settings: CodecSettings, generator) -> None:
    decay, size = settings.ema_decay, book.codebook_size
    counts = torch.bincount(codes, minlength=size).to(vectors.dtype)
    sums = torch.zeros_like(book.embed).index_add_(0, codes, vectors)
    book.cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
    book.embed_avg.mul_(decay).add_(sums, alpha=1 - decay)
    total = book.cluster_size.sum()
    smoothed = (book.cluster_size + 1e-5) / (total + size * 1e-5) * total  # Laplace smoothing, as EnCodec
    book.embed.copy_(book.embed_avg / smoothed[:, None])
    dead = book.cluster_size < settings.dead_below * len(vectors) / size
    if dead.any():
        fresh = vectors[torch.randint(len(vectors), (int(dead.sum()),), generator=generator)]
        book.embed[dead] = fresh
        book.embed_avg[dead] = fresh
        book.cluster_size[dead] = len(vectors) / size


@torch.no_grad()
def _init_codebooks(codec: EncodecModel, clips: np.ndarray, settings: CodecSettings, crop: int, generator) -> None:
    """k-means of the warmed-up encoder's latents for each codebook in turn, on what the ones before leave."""
    batches, vectors = [], 0
    while vectors < settings.init_vectors:
        latents = codec.encoder(_crops(clips, (1, len(batches)), settings, crop)[:, None, :])
        batches.append(latents.transpose(1, 2).reshape(-1, latents.shape[1]))
        vectors += len(batches[-1])
    residual = torch.cat(batches)
    for book in _books(codec):
        book.embed.copy_(_kmeans(residual, book.codebook_size, generator))
        book.embed_avg.copy_(book.embed)
        book.cluster_size.fill_(settings.batch * crop / 640 / book.codebook_size)
        book.inited.fill_(True)
        residual = residual - book.embed[torch.cdist(residual, book.embed).argmin(dim=1)]


def spectral_loss(rebuilt: torch.Tensor, audio: torch.Tensor, sizes=(2048, 512, 128)) -> torch.Tensor:
    """Multi-resolution STFT loss: L1 of log magnitudes (floored at 1e-3) plus L1 of magnitudes relative to the
    target's mean, averaged over window sizes (hop a quarter of the window)."""
    total = audio.new_zeros(())
    for size in sizes:
        window = torch.hann_window(size)
        target = torch.stft(audio, size, size // 4, window=window, return_complex=True).abs()
        made = torch.stft(rebuilt, size, size // 4, window=window, return_complex=True).abs()
        total = total + F.l1_loss(torch.log(made + 1e-3), torch.log(target + 1e-3))
        total = total + F.l1_loss(made, target) / target.mean().clamp(min=1e-5)
    return total / len(sizes)


def reconstruct(codec: EncodecModel, audio: torch.Tensor) -> torch.Tensor:
    """[B, S] -> [B, S]: through encoder, quantizer and decoder, as EncodecModel's own encode and decode do."""
    with torch.no_grad():
        encoded = codec.encode(audio[:, None, :], bandwidth=codec.config.target_bandwidths[0])
        return codec.decode(encoded.audio_codes, encoded.audio_scales).audio_values[:, 0, : audio.shape[1]]


def _crops(clips: np.ndarray, key: tuple[int, ...], settings: CodecSettings, crop: int) -> torch.Tensor:
    """A batch of random crops, drawn from a generator seeded with (seed, *key): the same key, the same batch."""
    generator = np.random.default_rng([settings.seed, *key])
    rows = generator.integers(0, len(clips), settings.batch)
    starts = generator.integers(0, clips.shape[1] - crop, settings.batch)
    return torch.from_numpy(np.stack([clips[r, s : s + crop] for r, s in zip(rows, starts)]))


def train_codec(
    clips: np.ndarray, sample_rate: int, out: Path, settings: CodecSettings = CodecSettings(), progress=None
) -> EncodecModel:
    """Train (or resume training) a codec on [N, S] clips; checkpoints go to `out`. Returns the trained codec."""
    out.mkdir(parents=True, exist_ok=True)
    codec = new_codec(settings.seed)
    for book in _books(codec):
        book.inited.fill_(False)
    optimizer = torch.optim.Adam(codec.parameters(), lr=settings.lr, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(settings.seed)
    start = 0
    checkpoint = out / CHECKPOINT
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        if state["settings"] != asdict(settings):
            raise ValueError(f"{checkpoint} was made with other settings; delete it to start again")
        codec.load_state_dict(state["codec"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start = state["step"]
        log.info("resuming the codec from step %d", start)
    crop = int(settings.crop_seconds * sample_rate) // 640 * 640
    codec.train()
    began = time.perf_counter()
    for step in range(start, settings.steps):
        if step == settings.warmup_steps:
            _init_codebooks(codec, clips, settings, crop, generator)
        audio = _crops(clips, (0, step), settings, crop)
        latents = codec.encoder(audio[:, None, :])
        if step < settings.warmup_steps:
            quantized, commit = latents, latents.new_zeros(())
        else:
            quantized, commit = quantize(codec, latents, settings, generator)
        rebuilt = codec.decoder(quantized)[:, :, :crop]
        spec = spectral_loss(rebuilt[:, 0], audio)
        loss = spec + settings.waveform * F.l1_loss(rebuilt[:, 0], audio) + settings.commitment * commit
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        if progress is not None:
            elapsed = time.perf_counter() - began
            progress(
                done,
                settings.steps,
                {"loss": float(loss), "stft": float(spec), "commit": float(commit)},
                elapsed / (done - start) * (settings.steps - done),
            )
        if done % settings.checkpoint_every == 0 or done == settings.steps:
            with atomic_path(checkpoint) as tmp:
                torch.save(
                    {
                        "codec": codec.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(),
                        "step": done,
                        "settings": asdict(settings),
                    },
                    tmp,
                )
    return codec.eval()
