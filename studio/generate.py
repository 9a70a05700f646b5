"""Steered generation with per-step events: a Recipe in, audio and the per-step probe readout out.

Step semantics: step t = 0 is the first decoder forward of generation; decoder step t computes sequence position t.
With MusicGen's codebook delay pattern, a clip of F audio frames needs F + num_codebooks - 1 decoder steps
(50 * seconds + 3 for the published models). The steering plan has one row per step (studio/plan.py) and the hooks
apply it (studio/hooks.py).

Engines: "fast" (the default) is our decode loop, studio/decode.py (a preallocated KV cache, the whole step in a CUDA
graph on a GPU); "hf" is transformers' generate, kept as the reference. The hooks and step events are the same for
both, and on the CPU both give the same tokens for the same recipe.

Concurrency: a generation holds ``LoadedModel.lock`` from seeding the RNG to removing its hooks, so two requests on
one model never see each other's hooks or seed; they run one after the other and give the same results as if run alone.
Cancellation: set the ``cancel`` event; the generation stops at the next step with ``Cancelled``, its hooks removed
and the lock released.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from studio.decode import FREE, DecodeError, decode, delay_pattern
from studio.hooks import HookManager
from studio.model import LoadedModel
from studio.plan import SteeringPlan, build_plan
from studio.readout import LiveReadout, Readout, compute_readout, probe_on
from studio.recipe import Recipe, RecipeError, Sampling, check_for_banks, check_for_model, load_banks

StepCallback = Callable[[int, int], None]  # (steps done, total steps): generate_audio's callback


class GenerateError(ValueError):
    """Bad generation input; the message names the parameter and the allowed range."""


class Cancelled(Exception):
    """The generation was cancelled through its ``cancel`` event; nothing was produced."""


@dataclass(frozen=True)
class StepEvent:
    """One decoder step done. ``step`` counts steps done (1..total); the readout rows, when present, are for decoder
    step ``step - 1``: ``probs`` over the sliding window, ``running`` over all steps so far (one value per readout
    class; the predicted value for a regression concept). They are None on steps without a readout update."""

    step: int
    total: int
    probs: list[float] | None = None
    running: list[float] | None = None


@dataclass
class Result:
    audio: np.ndarray            # float32 [samples] mono
    sample_rate: int
    readout: Readout | None      # per-step readout, when the recipe asks for one
    recipe: Recipe               # the recipe as run (model = the model actually used)
    tokens: torch.Tensor         # [num_codebooks, steps + 1] decoder tokens in the delay pattern, BOS column first
    plan: SteeringPlan | None    # the compiled plan (None without enabled controls)

    def record(self, audio_file: str | None = None) -> dict:
        """The JSON saved next to a render: the recipe as run (loadable with recipe.load_recipe), the audio's facts
        and the per-step readout (None when the recipe has no readout)."""
        return {"recipe": self.recipe.to_dict(),
                "audio": {"file": audio_file, "sample_rate": self.sample_rate,
                          "seconds": len(self.audio) / self.sample_rate, "steps": int(self.tokens.shape[1]) - 1},
                "readout": self.readout.to_dict() if self.readout else None}


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


ENGINES = ("fast", "hf")
DEFAULT_ENGINE = "fast"  # studio/decode.py; "hf" is transformers' generate, kept as the reference


class _StepEvents:
    """Called after every decoder step by either engine: raises Cancelled when asked, and emits StepEvents with the
    live readout every `every` steps and at the last step."""

    def __init__(self, total: int, on_step: Callable[[StepEvent], None] | None, cancel: threading.Event | None,
                 live: LiveReadout | None, every: int):
        self.total, self.on_step, self.cancel, self.live, self.every = total, on_step, cancel, live, every

    def __call__(self, done: int, total: int | None = None) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"generation cancelled after {done} of {self.total} steps")
        if self.on_step is not None and done <= self.total:
            probs = running = None
            if self.live is not None and (done % self.every == 0 or done == self.total):
                probs, running = self.live.at(done - 1)
            self.on_step(StepEvent(done, self.total, probs, running))


class _HFStepWatcher(StoppingCriteria):
    """transformers' per-step callback (a stopping criterion that never stops): keeps the tokens, forwards the step."""

    def __init__(self, events: _StepEvents):
        self.events = events
        self.tokens: torch.Tensor | None = None
        self._running = None

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        self.tokens = input_ids
        self.events(input_ids.shape[-1] - 1)
        if self._running is None or self._running.shape[0] != input_ids.shape[0]:
            self._running = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return self._running


def _hf_sampling_kwargs(sampling: Sampling) -> dict:
    """Our Sampling as generate() arguments; 0 must switch a filter off, not fall back to the generation config."""
    kwargs = dict(guidance_scale=sampling.guidance_scale)
    if sampling.greedy:
        kwargs.update(do_sample=False)
    else:
        kwargs.update(do_sample=True, top_k=sampling.top_k,
                      top_p=sampling.top_p if 0 < sampling.top_p < 1 else 1.0, temperature=sampling.temperature)
    return kwargs


def _run_hf(loaded: LoadedModel, recipe: Recipe, steps: int, events: _StepEvents) -> tuple[np.ndarray, torch.Tensor]:
    """transformers' generate (the reference engine): (audio [samples], tokens [K, steps + 1])."""
    inputs = loaded.tokenizer([recipe.prompt], return_tensors="pt", padding=True).to(loaded.device)
    watcher = _HFStepWatcher(events)
    torch.manual_seed(recipe.seed)
    with torch.inference_mode():
        audio = loaded.model.generate(**inputs, max_new_tokens=steps, **_hf_sampling_kwargs(recipe.sampling),
                                      stopping_criteria=StoppingCriteriaList([watcher]))
    # generate leaves its own samples in the delay pattern's padded slots (its codec input skips them); show the pad
    # token there, as our loop does, so that tokens do not depend on the engine.
    tokens = watcher.tokens[:, : steps + 1].cpu()
    pattern = delay_pattern(loaded.num_codebooks, loaded.frames_for(recipe.seconds), int(tokens[0, 0]))
    return audio[0, 0].float().cpu().numpy(), torch.where(pattern == FREE, tokens, pattern)


def _run_fast(loaded: LoadedModel, recipe: Recipe, events: _StepEvents) -> tuple[np.ndarray, torch.Tensor]:
    """Our decode loop (studio/decode.py; a CUDA graph on a GPU): (audio [samples], tokens [K, steps + 1])."""
    try:
        out = decode(loaded, [recipe.prompt], loaded.frames_for(recipe.seconds), seed=recipe.seed,
                     sampling=recipe.sampling, on_step=events)
    except DecodeError as err:
        raise GenerateError(str(err)) from None
    return out.audio[0], out.sequence[0]


def _check_bank_models(banks: dict, loaded: LoadedModel) -> None:
    for concept, bank in banks.items():
        if bank.signature != loaded.signature:
            raise RecipeError(f"bank: the '{concept}' bank was trained for {bank.signature.describe()} but the "
                              f"loaded model is {loaded.signature.describe()}; use a bank trained for this model")


def prepare(loaded: LoadedModel, recipe: Recipe, banks: dict | None = None) -> tuple[dict, SteeringPlan | None]:
    """Validate the recipe against the model and its banks (loading them unless given) and compile its plan.

    Raises RecipeError for anything the recipe asks that this model or these banks cannot do.
    """
    check_for_model(recipe, loaded)
    if banks is None:
        banks = load_banks(recipe, expect=loaded.signature) if recipe.concepts() else {}
    _check_bank_models(banks, loaded)
    check_for_banks(recipe, banks)
    steps = total_steps(loaded, recipe.seconds)
    plan = build_plan(recipe, banks, steps, loaded.frame_rate, loaded.device) if recipe.active_controls() else None
    return banks, plan


def generate(loaded: LoadedModel, recipe: Recipe, on_step: Callable[[StepEvent], None] | None = None, *,
             banks: dict | None = None, cancel: threading.Event | None = None,
             readout_every: int | None = None, engine: str = DEFAULT_ENGINE) -> Result:
    """Render `recipe` on `loaded`: steered audio, the per-step readout and the tokens.

    `banks` (concept -> ConceptBank) skips loading them from the recipe's bank folder. `on_step` gets a StepEvent
    after every decoder step, with live readout rows every `readout_every` steps (default: 5 per second of audio)
    and at the last step. The same recipe on the same device gives identical audio, gates included. `engine`
    "fast" (studio/decode.py) and "hf" (transformers' generate) give the same tokens on the CPU.
    Raises RecipeError (invalid for this model or bank), GenerateError or Cancelled; hooks are removed whatever
    happens.
    """
    if engine not in ENGINES:
        raise GenerateError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    banks, plan = prepare(loaded, recipe, banks)
    steps = total_steps(loaded, recipe.seconds)
    spec = recipe.readout
    bank = banks[spec.concept] if spec else None
    window_steps = max(1, round(spec.window_s * loaded.frame_rate)) if spec else 0
    probe = probe_on(bank.readout, loaded.device) if bank else None
    every = readout_every or max(1, loaded.frame_rate // 5)
    cfg = recipe.sampling.guidance_scale > 1
    with loaded.lock:
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation cancelled before it started")
        with HookManager(loaded, plan, capture_layer=bank.readout_layer if bank else None, steps=steps,
                         cfg=cfg) as hooks:
            live = LiveReadout(hooks.states, probe, window_steps) if bank else None
            events = _StepEvents(steps, on_step, cancel, live, every)
            if engine == "fast":
                audio, tokens = _run_fast(loaded, recipe, events)
            else:
                audio, tokens = _run_hf(loaded, recipe, steps, events)
    readout = None
    if bank:
        readout = compute_readout(hooks.states, probe, spec.concept, bank.classes, bank.readout_layer,
                                  loaded.frame_rate, window_steps)
    return Result(audio=audio, sample_rate=loaded.sample_rate, readout=readout,
                  recipe=replace(recipe, model=loaded.model_id), tokens=tokens, plan=plan)


def generate_audio(loaded: LoadedModel, prompt: str, seconds: float, seed: int, sampling: Sampling = Sampling(),
                   on_step: StepCallback | None = None, cancel: threading.Event | None = None,
                   engine: str = DEFAULT_ENGINE) -> np.ndarray:
    """Generate `seconds` of unsteered mono audio for `prompt`; float32 [frames * hop] at loaded.sample_rate.

    `on_step(done, total)` is called after every decoder step. The same seed, prompt and settings give identical
    audio on the same device.
    """
    seconds = check_seconds(loaded, seconds)
    recipe = Recipe(seconds=seconds, model=loaded.model_id, prompt=prompt, seed=seed, sampling=sampling)
    callback = (lambda event: on_step(event.step, event.total)) if on_step else None
    return generate(loaded, recipe, callback, banks={}, cancel=cancel, engine=engine).audio


__all__ = ["GenerateError", "Cancelled", "StepEvent", "Result", "Sampling", "ENGINES", "DEFAULT_ENGINE", "check_seconds",
           "total_steps", "prepare", "generate", "generate_audio"]
