"""Generation with per-step events.

Step semantics: step t = 0 is the first decoder forward of generation. With MusicGen's codebook delay pattern, a clip of
F audio frames needs F + num_codebooks - 1 decoder steps (50 * seconds + 3 for the published models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from studio.model import LoadedModel

StepCallback = Callable[[int, int], None]  # (steps done, total steps)


class GenerateError(ValueError):
    """Bad generation input; the message names the parameter and the allowed range."""


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; the defaults are the published MusicGen checkpoints' own."""

    guidance_scale: float = 3.0
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    greedy: bool = False


def check_seconds(loaded: LoadedModel, seconds: float) -> float:
    """Validate a clip length against the model's limit; returns it as a float."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise GenerateError(f"seconds must be a number, got {seconds!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise GenerateError(f"seconds must be > 0, got {seconds}")
    if value > loaded.max_seconds:
        raise GenerateError(f"seconds must be at most {loaded.max_seconds:g} for {loaded.model_id}, got {seconds}")
    if loaded.frames_for(value) < 1:
        raise GenerateError(f"seconds must be at least one frame ({1 / loaded.frame_rate:g} s), got {seconds}")
    return value


def total_steps(loaded: LoadedModel, seconds: float) -> int:
    """Decoder steps for a clip: one per frame plus the codebook delay."""
    return loaded.frames_for(seconds) + loaded.num_codebooks - 1


class _StepEvents(LogitsProcessor):
    """Calls back once per decoder step; it only observes, the scores pass through unchanged."""

    def __init__(self, on_step: StepCallback, total: int):
        self.on_step, self.total, self.done = on_step, total, 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.done += 1
        self.on_step(self.done, self.total)
        return scores


def generate_audio(loaded: LoadedModel, prompt: str, seconds: float, seed: int, sampling: Sampling = Sampling(),
                   on_step: StepCallback | None = None) -> np.ndarray:
    """Generate `seconds` of mono audio for `prompt`; float32 [frames * hop] at loaded.sample_rate.

    The same seed, prompt and settings give identical audio on the same device.
    """
    seconds = check_seconds(loaded, seconds)
    steps = total_steps(loaded, seconds)
    inputs = loaded.tokenizer([prompt], return_tensors="pt", padding=True).to(loaded.device)
    processors = LogitsProcessorList([_StepEvents(on_step, steps)] if on_step else [])
    kwargs = dict(max_new_tokens=steps, guidance_scale=sampling.guidance_scale, logits_processor=processors)
    if sampling.greedy:
        kwargs.update(do_sample=False)
    else:
        kwargs.update(do_sample=True, top_k=sampling.top_k or None, top_p=sampling.top_p or None,
                      temperature=sampling.temperature)
    torch.manual_seed(seed)
    with torch.inference_mode():
        audio = loaded.model.generate(**inputs, **kwargs)
    return audio[0, 0].float().cpu().numpy()
