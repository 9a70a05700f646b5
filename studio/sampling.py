"""Sampling: the settings that turn the decoder's logits into tokens, and the three steps that apply them.

Classifier-free guidance (``guide``), then temperature, top-k and top-p (``filter_scores``), then one draw per row
(``sample``), in the order of transformers' MusicGen ``generate``. Pure torch on the device, no host reads, so that the
decode loop can capture them in a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.fields import JsonData, boolean, integer, number, spec


@dataclass(frozen=True)
class Sampling(JsonData):
    """Sampling settings; the defaults are the published MusicGen checkpoints' own.

    ``guidance_scale`` > 1 turns on classifier-free guidance (the decoder batch becomes [conditional; unconditional]);
    ``top_k`` = 0 and ``top_p`` = 0 turn those filters off; ``greedy`` takes the arg-max instead of sampling.
    """

    guidance_scale: float = spec(3.0, read=number(1.0, 20.0))
    top_k: int = spec(250, read=integer(0))
    top_p: float = spec(0.0, read=number(0.0, 1.0))
    temperature: float = spec(1.0, read=number(0.0, 10.0, low_open=True))
    greedy: bool = spec(False, read=boolean)


def guide(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on [2N, V] logits laid out [conditional; unconditional]:
    uncond + (cond - uncond) * scale."""
    conditional, unconditional = logits.split(logits.shape[0] // 2, dim=0)
    return unconditional + (conditional - unconditional) * scale


def filter_scores(scores: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) on [N, V] scores; filtered entries become -inf.

    top_k <= 0 and top_p outside (0, 1) switch those filters off. Ties at the k-th score are all kept; top-p keeps
    the smallest set of highest scores whose probability mass exceeds top_p, and always the best one.
    """
    if temperature != 1.0:
        scores = scores / temperature
    if top_k > 0:
        kth_best = torch.topk(scores, min(top_k, scores.shape[-1])).values[..., -1:]
        scores = scores.masked_fill(scores < kth_best, float("-inf"))
    if 0.0 < top_p < 1.0:
        ascending, order = torch.sort(scores, dim=-1)
        mass_below = ascending.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = mass_below <= 1.0 - top_p
        drop_sorted[..., -1:] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores


def sample(scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of [N, V] scores, drawn from softmax(scores).

    Drawn as argmax(p / E) with E ~ Exp(1), which is how torch.multinomial draws one sample, so the tokens equal
    ``torch.multinomial(p, 1)`` for the same generator state; unlike it, no validity check reads the
    probabilities back to the host, so it can run inside a CUDA graph.
    """
    probs = scores.softmax(dim=-1)
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax(dim=-1)
