"""The reference engine: transformers' own MusicGen ``generate``, steered by the same hooks as our decode loop.

Not in the product path: the studio and the CLI decode with ``studio.generate.run_decode``. This engine is what the
tests compare ours with (same tokens on the CPU) and what ``--engine hf`` runs, to check a result against
transformers.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from studio.decode import StepCallback
from studio.melody import read_melody
from studio.model import FREE, LoadedModel
from studio.recipe import Recipe
from studio.sampling import Sampling


class _StepWatcher(StoppingCriteria):
    """transformers' per-step callback (a stopping criterion that never stops): keeps the tokens, reports the step
    with the grid so far. generate leaves its own samples in the delay pattern's fixed slots (its codec input skips
    them, and a given token lands in its slot only a step later), so the grid reported holds `pattern` there, as our
    loop's does: tokens do not depend on the engine."""

    def __init__(self, on_step: StepCallback, total: int, pattern: torch.Tensor):
        self.on_step, self.total, self.pattern = on_step, total, pattern
        self.tokens: torch.Tensor | None = None
        self._running = None

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        pattern = self.pattern[:, : input_ids.shape[-1]].to(input_ids.device)
        self.tokens = torch.where(pattern == FREE, input_ids, pattern)
        self.on_step(input_ids.shape[-1] - 1, self.total, self.tokens)
        if self._running is None or self._running.shape[0] != input_ids.shape[0]:
            self._running = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return self._running


def sampling_kwargs(sampling: Sampling) -> dict:
    """Our Sampling as generate() arguments; 0 must switch a filter off, not fall back to the generation config."""
    kwargs = dict(guidance_scale=sampling.guidance_scale)
    if sampling.greedy:
        kwargs.update(do_sample=False)
    else:
        kwargs.update(
            do_sample=True,
            top_k=sampling.top_k,
            top_p=sampling.top_p if 0 < sampling.top_p < 1 else 1.0,
            temperature=sampling.temperature,
        )
    return kwargs


def run_reference(
    loaded: LoadedModel, recipe: Recipe, on_step: StepCallback, given: torch.Tensor | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """transformers' generate for the recipe's prompt, seed and sampling, continuing `given` codes [K, P] when given
    (as ``decoder_input_ids``; generate prepends the start column): (audio [samples] or [samples, 2] stereo, tokens
    [K, steps + 1])."""
    frames = loaded.frames_for(recipe.seconds)
    steps = loaded.steps_for(frames)
    inputs = loaded.tokenizer([recipe.prompt], return_tensors="pt", padding=True).to(loaded.device)
    prefilled = 0
    if given is not None:
        inputs["decoder_input_ids"] = given.to(loaded.device)
        prefilled = given.shape[-1]
    melody = read_melody(recipe.melody)
    if melody is not None:
        inputs["input_features"] = melody[None].to(loaded.device, loaded.dtype)
    pattern = loaded.delay_pattern(frames, given)
    watcher = _StepWatcher(on_step, steps, pattern)
    torch.manual_seed(recipe.seed)
    with torch.inference_mode():
        audio = loaded.model.generate(
            **inputs,
            max_new_tokens=steps - prefilled,
            **sampling_kwargs(recipe.sampling),
            stopping_criteria=StoppingCriteriaList([watcher]),
        )
    audio = audio[0].float().cpu().numpy()  # [channels, samples]
    return (audio[0] if len(audio) == 1 else audio.T), watcher.tokens[:, : steps + 1].cpu()
