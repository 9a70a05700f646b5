"""Steered generation with per-step events: a Recipe in, audio and the per-step probe readout out.

Step semantics: step t = 0 is the first decoder forward of generation; decoder step t computes sequence position t.
With MusicGen's codebook delay pattern, a clip of F audio frames needs F + num_codebooks - 1 decoder steps
(50 * seconds + 3 for the published models). The steering plan has one row per step (studio/plan.py) and the hooks
apply it (studio/hooks.py).

Read ``generate`` top to bottom: check the recipe against the model and its banks and compile the plan (``prepare``),
then, holding the model's lock, put the hooks on (studio/hooks.py), run the engine's decoder steps with a step event
after each (live readout, cancellation), take the hooks off and classify the captured states (studio/readout.py).

The engine is a function ``(loaded, recipe, on_step) -> (audio, tokens)``: ``run_decode``, our decode loop
(studio/decode.py: a preallocated KV cache, the whole step in a CUDA graph on a GPU), in the product; transformers'
generate (studio/reference.py) as the reference for tests and ``--engine hf``. The hooks and step events are the same
for both, and on the CPU both give the same tokens for the same recipe.

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

from studio.banks import check_for_banks, load_banks
from studio.decode import StepCallback, decode
from studio.errors import Cancelled, InputError
from studio.files import read_audio
from studio.hooks import HookManager
from studio.model import LoadedModel
from studio.plan import SteeringPlan, build_plan
from studio.readout import LiveReadout, Readout, compute_readout, probe_on
from studio.recipe import Recipe, check_for_model

# (loaded, recipe, on_step, given codes [K, P] of an audio prompt or None) -> audio, tokens [K, steps + 1]
Engine = Callable[[LoadedModel, Recipe, StepCallback, torch.Tensor | None], tuple[np.ndarray, torch.Tensor]]


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
    audio: np.ndarray  # float32 [samples] mono
    sample_rate: int
    readout: Readout | None  # per-step readout, when the recipe asks for one
    recipe: Recipe  # the recipe as run (model = the model actually used)
    tokens: torch.Tensor  # [num_codebooks, steps + 1] decoder tokens in the delay pattern, BOS column first
    plan: SteeringPlan | None  # the compiled plan (None without enabled controls)

    def record(self, audio_file: str | None = None) -> dict:
        """The JSON saved next to a render: the recipe as run (loadable with recipe.load_recipe), the audio's facts
        and the per-step readout (None when the recipe has no readout)."""
        return {
            "recipe": self.recipe.to_dict(),
            "audio": {
                "file": audio_file,
                "sample_rate": self.sample_rate,
                "seconds": len(self.audio) / self.sample_rate,
                "steps": int(self.tokens.shape[1]) - 1,
            },
            "readout": self.readout.to_dict() if self.readout else None,
        }


class _StepEvents:
    """Called after every decoder step by either engine: raises Cancelled when asked, and emits StepEvents with the
    live readout every `every` steps and at the last step."""

    def __init__(
        self,
        total: int,
        on_step: Callable[[StepEvent], None] | None,
        cancel: threading.Event | None,
        live: LiveReadout | None,
        every: int,
    ):
        self.total, self.on_step, self.cancel, self.live, self.every = total, on_step, cancel, live, every

    def __call__(self, done: int, total: int | None = None) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"generation cancelled after {done} of {self.total} steps")
        if self.on_step is not None and done <= self.total:
            probs = running = None
            if self.live is not None and (done % self.every == 0 or done == self.total):
                probs, running = self.live.at(done - 1)
            self.on_step(StepEvent(done, self.total, probs, running))


def run_decode(
    loaded: LoadedModel, recipe: Recipe, on_step: StepCallback, given: torch.Tensor | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """The product's engine, our decode loop (studio/decode.py; a CUDA graph on a GPU): (audio [samples], tokens
    [K, steps + 1])."""
    out = decode(
        loaded,
        [recipe.prompt],
        loaded.frames_for(recipe.seconds),
        seed=recipe.seed,
        sampling=recipe.sampling,
        on_step=on_step,
        given=None if given is None else given[None],
    )
    return out.audio[0], out.sequence[0]


def audio_prompt_codes(loaded: LoadedModel, recipe: Recipe) -> torch.Tensor | None:
    """The recipe's audio prompt as the model's codes [K, P] (None without one); it must leave the clip room to grow."""
    if recipe.audio_prompt is None:
        return None
    audio = read_audio(recipe.audio_prompt, loaded.sample_rate, "audio_prompt")
    frames = len(audio) * loaded.frame_rate // loaded.sample_rate  # whole frames: encode_audio drops the rest
    if not 0 < frames < loaded.frames_for(recipe.seconds):
        raise InputError.at(
            "audio_prompt",
            f"is {len(audio) / loaded.sample_rate:.2f} s long; it must be at least one frame and shorter than the "
            f"clip (seconds = {recipe.seconds:g}), which it opens",
        )
    return loaded.encode_audio(audio)


def prepare(
    loaded: LoadedModel, recipe: Recipe, banks: dict | None = None
) -> tuple[dict, SteeringPlan | None, torch.Tensor | None]:
    """Check the recipe against the model and its banks (loading them unless given), compile its plan and encode its
    audio prompt: (banks, plan or None, the prompt's codes [K, P] or None). The plan adds nothing over the prompt.

    Raises InputError or BankError for anything the recipe asks that this model or these banks cannot do.
    """
    check_for_model(recipe, loaded)
    if banks is None:
        banks = load_banks(recipe.bank, recipe.model, recipe.concepts())
    check_for_banks(recipe, banks, loaded.signature)
    given = audio_prompt_codes(loaded, recipe)
    steps = loaded.steps_for(loaded.frames_for(recipe.seconds))
    plan = build_plan(recipe, banks, steps, loaded.frame_rate, loaded.device) if recipe.active_controls() else None
    if plan is not None and given is not None:
        plan = plan.from_step(given.shape[-1])  # position P is the first whose tokens are not all given
    return banks, plan, given


def generate(
    loaded: LoadedModel,
    recipe: Recipe,
    on_step: Callable[[StepEvent], None] | None = None,
    *,
    banks: dict | None = None,
    cancel: threading.Event | None = None,
    readout_every: int | None = None,
    engine: Engine | None = None,
) -> Result:
    """Render `recipe` on `loaded`: steered audio, the per-step readout and the tokens.

    `banks` (concept -> ConceptBank) skips loading them from the recipe's bank folder. `on_step` gets a StepEvent
    after every decoder step, with live readout rows every `readout_every` steps (default: 5 per second of audio)
    and at the last step. The same recipe on the same device gives identical audio, gates included. `engine` runs
    the decoder steps: ``run_decode`` (our loop, the default) or ``studio.reference.run_reference`` (transformers'
    generate); on the CPU both give the same tokens.
    Raises StudioError (InputError or BankError: invalid for this model or bank; Cancelled); hooks are removed
    whatever happens.
    """
    banks, plan, given = prepare(loaded, recipe, banks)
    steps = loaded.steps_for(loaded.frames_for(recipe.seconds))
    spec = recipe.readout
    bank = banks[spec.concept] if spec else None
    window_steps = max(1, round(spec.window_s * loaded.frame_rate)) if spec else 0
    probe = probe_on(bank.readout, loaded.device) if bank else None
    every = readout_every or max(1, loaded.frame_rate // 5)
    cfg = recipe.sampling.guidance_scale > 1
    with loaded.lock:
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation cancelled before it started")
        with HookManager(
            loaded, plan, capture_layer=bank.readout_layer if bank else None, steps=steps, cfg=cfg
        ) as hooks:
            live = LiveReadout(hooks.states, probe, window_steps) if bank else None
            events = _StepEvents(steps, on_step, cancel, live, every)
            audio, tokens = (engine or run_decode)(loaded, recipe, events, given)
    readout = None
    if bank:
        readout = compute_readout(
            hooks.states, probe, spec.concept, bank.classes, bank.readout_layer, loaded.frame_rate, window_steps
        )
    return Result(
        audio=audio,
        sample_rate=loaded.sample_rate,
        readout=readout,
        recipe=replace(recipe, model=loaded.model_id),
        tokens=tokens,
        plan=plan,
    )


__all__ = ["StepEvent", "Result", "Engine", "run_decode", "audio_prompt_codes", "prepare", "generate"]
