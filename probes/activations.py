"""Clip -> EnCodec codes -> MusicGen decoder forward -> every decoder layer's output pooled over time.

Poolings: a bank's (``mean``, ``last``, ``max``: vectors in the residual stream, so their directions can steer) and
``windows``, which keeps order for probing only (the clip's steps cut into WINDOWS equal spans, each mean-pooled, side
by side: a progression's four chords stay apart). The poolings asked for together come from one forward pass, and
each is cached; with them always ``norm``, each layer's residual norm averaged over the clip's steps ([N, L, 1]): the
scale a steering strength is measured against.

The decoder sees each clip exactly as it would see it while generating: a BOS column, then the codes in the codebook
delay pattern, conditioned on the empty text prompt. We read each layer's *output* (the residual stream after layer l),
which is where the steering hook adds its directions, so that probe directions and steering live in one space.
Positions are the F + K - 1 decoder steps of generation for F frames and K codebooks.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from probes.bank import POOLINGS
from studio.files import atomic_path
from studio.model import LoadedModel, apply_delay

log = logging.getLogger(__name__)

CACHE_VERSION = 1
WINDOWS = 4  # spans of the "windows" pooling
ORDERED_POOLINGS = ("windows",)  # poolings that keep order: for probing, not for banks
ALL_POOLINGS = POOLINGS + ORDERED_POOLINGS
NORM = "norm"  # not a pooling of the states but a statistic of them, cached beside the poolings


def pooled_width(pooling: str, hidden_size: int) -> int:
    """Width of one layer's pooled vector."""
    return 1 if pooling == NORM else hidden_size * (WINDOWS if pooling == "windows" else 1)


def delayed_decoder_input(codes: torch.Tensor, pad_id: int, channels: int = 1) -> torch.Tensor:
    """[B, K, F] codes -> [B, K, F + K / channels - 1] decoder inputs: BOS at step 0, codebook k delayed by
    k // channels steps, pad elsewhere (the delay grid without its last column, which only the step after the clip
    would read)."""
    return apply_delay(codes, pad_id, channels)[..., :-1]


def _pool(states: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, T, d] -> [B, width] (see pooled_width)."""
    if pooling == "mean":
        return states.mean(dim=1)
    if pooling == "last":
        return states[:, -1]
    if pooling == "max":
        return states.amax(dim=1)
    if pooling == "windows":
        return torch.cat([span.mean(dim=1) for span in states.tensor_split(WINDOWS, dim=1)], dim=1)
    if pooling == NORM:
        return states.norm(dim=2).mean(dim=1, keepdim=True)
    raise ValueError(f"unknown pooling '{pooling}': use one of {', '.join(ALL_POOLINGS)}")


@torch.inference_mode()
def encode_clips(loaded: LoadedModel, audio: torch.Tensor) -> torch.Tensor:
    """[B, S] mono audio at the model's sample rate -> [B, K, F] the decoder's codes (a stereo model hears the clip on
    both channels, as transformers' generate feeds it a mono prompt)."""
    values = audio[:, None, :].to(device=loaded.device, dtype=loaded.dtype)
    codes = loaded.model.audio_encoder.encode(values).audio_codes[0, :, : loaded.lag]  # [B, K / channels, F]
    return codes.repeat_interleave(loaded.audio_channels, dim=1)


@torch.inference_mode()
def layer_states(
    loaded: LoadedModel, audio: torch.Tensor, poolings: Sequence[str] = ("mean",)
) -> dict[str, torch.Tensor]:
    """Pooled outputs of every decoder layer for a batch of equal-length clips: {pooling: [B, L, d] float32 on CPU}."""
    model = loaded.model
    codes = encode_clips(loaded, audio)
    batch = codes.shape[0]
    ids = delayed_decoder_input(codes, model.config.decoder.pad_token_id, loaded.audio_channels)
    text = loaded.tokenizer([""] * batch, return_tensors="pt").to(loaded.device)
    captured: list[torch.Tensor] = []
    # a melody checkpoint's layers return (states, weights), over its conditioning prefix and then the clip's steps
    handles = [
        layer.register_forward_hook(lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out))
        for layer in loaded.decoder_layers()
    ]
    try:
        model(**text, decoder_input_ids=ids.reshape(batch * loaded.num_codebooks, -1), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    steps = ids.shape[-1]
    return {p: torch.stack([_pool(s[:, -steps:].float(), p) for s in captured], dim=1).cpu() for p in poolings}


def batch_plan(clips: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    """The clips' indices in forward batches: clips of one length together (so no padding enters the pooled states),
    at most `batch_size` per batch, in order of first appearance."""
    by_length: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        by_length.setdefault(len(clip), []).append(i)
    return [indices[s : s + batch_size] for indices in by_length.values() for s in range(0, len(indices), batch_size)]


def _batch_states(loaded: LoadedModel, audio: np.ndarray, poolings: Sequence[str]) -> dict[str, torch.Tensor]:
    """One batch's pooled states, holding the model's lock: a page may generate between two batches, never during
    one."""
    audio = audio if audio.flags.writeable else audio.copy()  # a cluster task's input is read-only
    with loaded.lock:
        return layer_states(loaded, torch.from_numpy(audio), poolings)


def extract_activations(
    loaded: LoadedModel,
    clips: Sequence[np.ndarray],
    poolings: Sequence[str] = ("mean",),
    batch_size: int = 8,
    progress: bool = True,
    on_done: Callable[[int], None] | None = None,
    cluster=None,
) -> dict[str, torch.Tensor]:
    """Pooled layer outputs for clips (float arrays at the model's rate): {pooling: [N, L, d]} in the clips' order.

    `on_done` is called with the number of clips of each batch as it finishes (a progress bar outside this
    function). `cluster` (probes.cluster.Cluster): the batches run as tasks on its workers, the same batches as here.
    """
    for p in poolings:
        _pool(torch.zeros(1, WINDOWS, 1), p)  # fail on a bad pooling before any work
    batches = batch_plan(clips, batch_size)
    out = {p: torch.empty(len(clips), loaded.num_layers, pooled_width(p, loaded.hidden_size)) for p in poolings}

    def keep(chunk: list[int], pooled: dict[str, torch.Tensor]) -> None:
        for p, states in pooled.items():
            out[p][chunk] = states
        if on_done is not None:
            on_done(len(chunk))

    def stacked(chunk: list[int]) -> np.ndarray:
        return np.stack([np.asarray(clips[i], dtype=np.float32) for i in chunk])

    if cluster is not None:
        from probes.cluster import ModelSpec

        cluster.map(
            _batch_states,
            batches,
            desc="activations",
            describe=lambda chunk: f"the batch of clips {', '.join(map(str, chunk))}",
            payload=stacked,
            model=ModelSpec.of(loaded),
            shared=tuple(poolings),
            on_result=lambda i, pooled: keep(batches[i], pooled),
        )
        return out
    with tqdm(total=len(clips), desc="activations", unit="clip", disable=not progress) as bar:
        for chunk in batches:
            keep(chunk, _batch_states(loaded, stacked(chunk), poolings))
            bar.update(len(chunk))
    return out


def cache_key(loaded: LoadedModel, dataset_key: str, pooling: str) -> str:
    """Activations depend on the model (signature, weights, precision), the clips and the pooling."""
    parts = {
        "v": CACHE_VERSION,
        "model": loaded.signature.__dict__,
        "weights": loaded.weights_fingerprint,
        "dtype": str(loaded.dtype),
        "dataset": dataset_key,
        "pooling": pooling,
    }
    if loaded.precision == "int8":  # int8 keeps fp32 activations; the key of fp32 caches stays as it was
        parts["precision"] = loaded.precision
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def cached_activations(
    loaded: LoadedModel,
    clips: Callable[[], Sequence[np.ndarray]],
    dataset_key: str,
    cache_dir: str | Path,
    pooling: str = "mean",
    batch_size: int = 8,
    progress: bool = True,
    on_done: Callable[[int], None] | None = None,
    cluster=None,
) -> torch.Tensor:
    """[N, L, width] activations, read from `cache_dir` when present; `clips` is called only on a cache miss
    (`on_done`, `cluster`: see `extract_activations`).

    On a miss every bank pooling, ``norm``, and `pooling` when it is another one, is computed in the same pass and
    cached, since the forward pass is the expensive part (``windows``, four times the size, only when asked for: ask
    for it first to have every pooling from one pass). An unreadable cache file (truncated, corrupted, wrong shape)
    is a miss: it is recomputed and replaced.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / f"acts-{cache_key(loaded, dataset_key, pooling)}.safetensors"
    if path.exists():
        cached = _read_cache(path, loaded, pooled_width(pooling, loaded.hidden_size))
        if cached is not None:
            log.info("activations from cache %s", path)
            return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    poolings = tuple(dict.fromkeys(POOLINGS + (pooling, NORM)))
    computed = extract_activations(loaded, clips(), poolings, batch_size, progress, on_done, cluster)
    for p, acts in computed.items():
        target = cache_dir / f"acts-{cache_key(loaded, dataset_key, p)}.safetensors"
        _write_cache(target, acts, {"dataset": dataset_key, "pooling": p, "model": loaded.model_id})
    return computed[pooling]


def _read_cache(path: Path, loaded: LoadedModel, width: int) -> torch.Tensor | None:
    """The cached [N, L, width] activations, or None (with a warning) when the file cannot be used."""
    try:
        acts = load_file(path)["activations"]
    except (SafetensorError, OSError, ValueError, KeyError) as err:
        log.warning("activation cache %s is unreadable (%s); recomputing it", path, str(err).splitlines()[0])
        return None
    if acts.ndim != 3 or tuple(acts.shape[1:]) != (loaded.num_layers, width):
        log.warning(
            "activation cache %s has shape %s, expected [N, %d, %d]; recomputing it",
            path,
            list(acts.shape),
            loaded.num_layers,
            width,
        )
        return None
    return acts


def _write_cache(target: Path, acts: torch.Tensor, metadata: dict[str, str]) -> None:
    """Write a temporary file and rename it over `target`, so a reader never sees a half-written cache file."""
    with atomic_path(target) as tmp:
        save_file({"activations": acts.contiguous()}, tmp, metadata=metadata)
