"""Steered generation with per-step events: a Recipe in, audio and the per-step probe readout out.

Step semantics: step t = 0 is the first decoder forward of generation; decoder step t computes sequence position t.
With MusicGen's codebook delay pattern, a clip of F audio frames needs F + lag - 1 decoder steps, lag the codebooks
per channel (50 * seconds + 3 for the published models, mono and stereo). The steering plan has one row per step
(studio/plan.py) and the hooks apply it (studio/hooks.py).

Read ``generate`` top to bottom: check the recipe against the model and its banks, compile the plan and encode the
audio prompt (``prepare``), then, holding the model's lock, for each pass over the clip put the hooks on
(studio/hooks.py), run the engine's decoder steps with a step event after each (live readout, cancellation) and take
the hooks off; finally classify the captured states (studio/readout.py).

Passes (``windows``): a clip that fits the model's window is one pass. A longer one is made window by window, as
audiocraft extends: each later window opens with the end of the clip so far, given (prefilled, not generated), and
adds up to a stride of new frames. Steps, plan rows and captured states are on the whole clip's timeline: window w's
position t is the clip's step ``start_w + t``, so each window runs the rows of the one plan that fall in it.

The engine is a function ``(loaded, recipe, on_step, given) -> (audio, tokens)`` (given: codes [K, P] that open the
pass, or None): ``run_decode``, our decode loop
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
from studio.control import Controller
from studio.decode import ATTENTION_BUCKET, StepCallback, decode
from studio.errors import Cancelled, InputError
from studio.files import read_audio
from studio.hooks import HookManager
from studio.melody import read_melody
from studio.model import LoadedModel
from studio.plan import SteeringPlan, build_plan
from studio.readout import LiveReadout, Readout, compute_readout, probe_on
from studio.recipe import Recipe, check_for_model
from studio.streaming import AudioStream

# (loaded, recipe, on_step, given codes [K, P] of an audio prompt or None) -> audio, tokens [K, steps + 1]
Engine = Callable[[LoadedModel, Recipe, StepCallback, torch.Tensor | None], tuple[np.ndarray, torch.Tensor]]


@dataclass(frozen=True)
class StepEvent:
    """One decoder step done. ``step`` counts steps done (1..total); the readout rows, when present, are for decoder
    step ``step - 1``: ``probs`` over the sliding window, ``running`` over all steps so far (one value per readout
    class; the predicted value for a regression concept), and whether the window lies ``outside`` the probe's range
    (studio/readout.py). They are None on steps without a readout update."""

    step: int
    total: int
    probs: list[float] | None = None
    running: list[float] | None = None
    audio: np.ndarray | None = None  # with ``stream_audio``: the clip's next samples (float32), once each, in order
    outside: bool | None = None
    strengths: list[float] | None = None  # with closed-loop controls: each control's strength at the readout's step


@dataclass
class Result:
    audio: np.ndarray  # float32 [samples] mono, [samples, 2] stereo
    sample_rate: int
    readout: Readout | None  # per-step readout, when the recipe asks for one
    recipe: Recipe  # the recipe as run (model = the model actually used)
    tokens: torch.Tensor  # [num_codebooks, steps + 1] decoder tokens in the delay pattern, BOS column first
    plan: SteeringPlan | None  # the compiled plan (None without enabled controls)
    precision: dict  # the decoder's precision and why it was chosen (studio/precision.py)
    strengths: torch.Tensor | None = None  # [T, K] each control's realised strength per step, with closed-loop controls

    def record(self, audio_file: str | None = None) -> dict:
        """The JSON saved next to a render: the recipe as run (loadable with recipe.load_recipe), the decoder's
        precision, the audio's facts and the per-step readout (None when the recipe has no readout)."""
        return {
            "recipe": self.recipe.to_dict(),
            "precision": self.precision,
            "audio": {
                "file": audio_file,
                "sample_rate": self.sample_rate,
                "seconds": len(self.audio) / self.sample_rate,
                "steps": int(self.tokens.shape[1]) - 1,
            },
            "readout": self.readout.to_dict() if self.readout else None,
            **({"strengths": self.strengths_dict()} if self.strengths is not None else {}),
        }

    def strengths_dict(self, digits: int = 6) -> dict:
        """Each enabled control's realised strength per step (closed-loop controls: what their controllers set)."""
        return {
            "controls": list(self.plan.labels),
            "steps": [[round(v, digits) for v in row] for row in self.strengths.tolist()],
        }


class _StepEvents:
    """Called after every decoder step by either engine: raises Cancelled when asked, copies the pass's captured
    states into the clip's, and emits StepEvents with the live readout every `every` steps and at the last step, and
    with the audio of the frames finished so far when `stream` decodes it. Steps, states and frames are counted on the
    whole clip's timeline: a window's pass starts at its first frame."""

    def __init__(
        self,
        total: int,
        on_step: Callable[[StepEvent], None] | None,
        cancel: threading.Event | None,
        live: LiveReadout | None,
        every: int,
        stream: AudioStream | None = None,
        control: tuple[Controller, torch.Tensor] | None = None,
    ):
        self.total, self.on_step, self.cancel, self.live, self.every = total, on_step, cancel, live, every
        self.control = control  # the controller and the controls' strengths (ceilings)
        self.stream, self.part, self.before = stream, None, None
        self.offset, self.captured, self.copied = 0, None, 0
        self.emitted = 0  # a window's last K - 1 steps come again in the next window: each step is reported once

    def next_pass(self, part: Window, own: int, captured: torch.Tensor | None, before: torch.Tensor | None) -> None:
        """The next pass: its steps count from the clip's step ``part.start``; its captured states from its step `own`
        on (the ones before are the window's given opening, already in the clip's states) belong to the clip; `before`
        holds the clip's codes [K, part.start] made before it (None for the first)."""
        self.offset, self.captured, self.copied = part.start, captured, part.start + own
        self.part, self.before = part, before

    def _audio(self, done: int, tokens: torch.Tensor) -> np.ndarray | None:
        """The stream's next samples, once the pass's token grid has finished enough frames (all of them at the end)."""
        loaded = self.stream.loaded
        books, lag = loaded.num_codebooks, loaded.lag
        # frame f is finished when the grid holds position f + lag: given frames at once in our loop's full-length
        # grid, as transformers' growing one reaches them in its
        finished = min(self.part.frames, max(self.part.given, done - self.offset - lag + 1), tokens.shape[-1] - lag)
        last = done == self.total
        if not self.stream.due(self.part.start + finished, last):
            return None
        codes = loaded.strip_delay(tokens[None, :books, : finished + lag].cpu(), finished)[0]  # the columns it needs
        if self.before is not None:
            codes = torch.cat([self.before, codes], dim=1)
        return self.stream.push(codes, last)

    def __call__(self, done: int, total: int | None = None, tokens: torch.Tensor | None = None) -> None:
        done += self.offset
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"generation cancelled after {done} of {self.total} steps")
        if self.captured is not None and done > self.copied:
            self.live.states[self.copied : done] = self.captured[self.copied - self.offset : done - self.offset]
            self.copied = done
        if self.on_step is not None and self.emitted < done <= self.total:
            self.emitted = done
            probs = running = outside = strengths = None
            if self.live is not None and (done % self.every == 0 or done == self.total):
                probs, running, outside = self.live.at(done - 1)
                if self.control is not None:
                    controller, ceilings = self.control
                    strengths = (controller.gains[done - 1].cpu() * ceilings).tolist()
            audio = self._audio(done, tokens) if self.stream is not None else None
            self.on_step(StepEvent(done, self.total, probs, running, audio, outside, strengths))


@dataclass(frozen=True)
class Window:
    """One decoder pass over frames ``start .. start + frames - 1`` of the clip, the first ``given`` of them given (the
    audio prompt, or the end of the clip so far), prefilled rather than generated."""

    start: int
    frames: int
    given: int


def windows(frames: int, window: int, stride: int, prompt: int = 0) -> list[Window]:
    """The passes that make a clip of `frames`: one when it fits a `window`, else windows that each open with the last
    ``window - stride`` frames made so far and add up to `stride` more (the last one ends with the clip)."""
    passes = [Window(0, min(frames, window), prompt)]
    while (end := passes[-1].start + passes[-1].frames) < frames:
        start = end - (window - stride)
        passes.append(Window(start, min(window, frames - start), window - stride))
    return passes


def decoder_steps(loaded: LoadedModel, recipe: Recipe) -> int:
    """The decoder steps a generation of `recipe` runs, over all its passes (an audio prompt's frames, given, would
    make it fewer): what a GPU call must last for."""
    window, stride = recipe.extend.sizes(loaded.max_seconds)
    frames = loaded.frames_for(recipe.seconds)
    parts = windows(frames, loaded.frames_for(window), loaded.frames_for(stride))
    return sum(loaded.steps_for(part.frames) - part.given for part in parts)


def run_decode(
    loaded: LoadedModel,
    recipe: Recipe,
    on_step: StepCallback,
    given: torch.Tensor | None = None,
    attention_bucket: int | None = ATTENTION_BUCKET,
) -> tuple[np.ndarray, torch.Tensor]:
    """The product's engine, our decode loop (studio/decode.py; a CUDA graph on a GPU): (audio [samples], tokens
    [K, steps + 1]). `attention_bucket`: see ``decode``."""
    out = decode(
        loaded,
        [recipe.prompt],
        loaded.frames_for(recipe.seconds),
        seed=recipe.seed,
        sampling=recipe.sampling,
        on_step=on_step,
        given=None if given is None else given[None],
        attention_bucket=attention_bucket,
        melody=read_melody(recipe.melody),
    )
    return out.audio[0], out.sequence[0]


def audio_prompt_codes(loaded: LoadedModel, recipe: Recipe) -> torch.Tensor | None:
    """The recipe's audio prompt as the model's codes [K, P] (None without one); it must leave the clip room to grow."""
    if recipe.audio_prompt is None:
        return None
    audio = read_audio(recipe.audio_prompt, loaded.sample_rate, "audio_prompt", loaded.audio_channels)
    frames = len(audio) * loaded.frame_rate // loaded.sample_rate  # whole frames: encode_audio drops the rest
    window, _ = recipe.extend.sizes(loaded.max_seconds)
    if not 0 < frames < loaded.frames_for(min(recipe.seconds, window)):
        longest = f"the clip (seconds = {recipe.seconds:g}), which it opens"
        if window < recipe.seconds:
            longest = f"the first window ({window:g} s), which it opens"
        raise InputError.at(
            "audio_prompt",
            f"is {len(audio) / loaded.sample_rate:.2f} s long; it must be at least one frame and shorter than "
            + longest,
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
    read_melody(recipe.melody)  # a melody that cannot be heard is refused now, not once the model is busy
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
    stream_audio: bool = False,
) -> Result:
    """Render `recipe` on `loaded`: steered audio, the per-step readout and the tokens.

    `banks` (concept -> ConceptBank) skips loading them from the recipe's bank folder. `on_step` gets a StepEvent
    after every decoder step, with live readout rows every `readout_every` steps (default: 5 per second of audio)
    and at the last step. The same recipe on the same device gives identical audio, gates included. `engine` runs
    the decoder steps: ``run_decode`` (our loop, the default) or ``studio.reference.run_reference`` (transformers'
    generate); on the CPU both give the same tokens. With `stream_audio`, step events carry the clip's audio as its
    frames are finished (studio/streaming.py: chunks that join to the final audio within float tolerance).
    Raises StudioError (InputError or BankError: invalid for this model or bank; Cancelled); hooks are removed
    whatever happens.
    """
    banks, plan, given = prepare(loaded, recipe, banks)
    frames = loaded.frames_for(recipe.seconds)
    steps = loaded.steps_for(frames)
    window, stride = recipe.extend.sizes(loaded.max_seconds)
    passes = windows(
        frames, loaded.frames_for(window), loaded.frames_for(stride), 0 if given is None else int(given.shape[-1])
    )
    spec = recipe.readout
    bank = banks[spec.concept] if spec else None
    window_steps = max(1, round(spec.window_s * loaded.frame_rate)) if spec else 0
    probe = probe_on(bank.readout, loaded.device) if bank else None
    states = torch.zeros(steps, loaded.hidden_size, device=loaded.device) if bank else None
    live = LiveReadout(states, probe, window_steps) if bank else None
    every = readout_every or max(1, loaded.frame_rate // 5)
    controller = Controller.for_plan(plan, recipe.active_controls(), bank, loaded.frame_rate, loaded.device)
    ceilings = torch.tensor([c.strength for c in recipe.active_controls()], dtype=torch.float32)
    control = (controller, ceilings) if controller is not None else None
    stream = AudioStream(loaded) if stream_audio else None
    events = _StepEvents(steps, on_step, cancel, live, every, stream, control)
    cfg = recipe.sampling.guidance_scale > 1
    codes = given  # [K, frames made so far]
    with loaded.lock:
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation cancelled before it started")
        for index, part in enumerate(passes):
            part_steps = loaded.steps_for(part.frames)
            part_plan = plan.rows(part.start, part_steps) if plan is not None else None
            with HookManager(
                loaded,
                part_plan,
                capture_layer=bank.readout_layer if bank else None,
                steps=part_steps,
                cfg=cfg,
                prefix=loaded.prefix_length(recipe.prompt),
                controller=controller,
            ) as hooks:
                if controller is not None:
                    controller.next_pass(part.start)
                before = codes[:, : part.start] if index else None
                events.next_pass(part, part.given if index else 0, hooks.states, before)
                # What the engine reads: the text, the melody, the sampling, this pass's length and seed (each later
                # window samples with its own, so that windows do not repeat each other's draws). The hooks steer.
                part_recipe = replace(
                    recipe, seconds=part.frames / loaded.frame_rate, seed=recipe.seed + index, controls=()
                )
                opening = codes[:, part.start : part.start + part.given] if part.given else None
                audio, tokens = (engine or run_decode)(loaded, part_recipe, events, opening)
            made = loaded.strip_delay(tokens[None], part.frames)[0]
            codes = made if codes is None else torch.cat([codes[:, : part.start], made], dim=1)
        if len(passes) > 1:  # the whole clip through the codec at once: no joins to hear
            audio = loaded.decode_codes(codes)
            tokens = loaded.apply_delay(codes[None])[0]
    readout = None
    if bank:
        readout = compute_readout(
            states, probe, spec.concept, bank.classes, bank.readout_layer, loaded.frame_rate, window_steps
        )
    return Result(
        audio=audio,
        sample_rate=loaded.sample_rate,
        readout=readout,
        recipe=replace(recipe, model=loaded.model_id),
        tokens=tokens,
        plan=plan,
        precision={"decoder": loaded.precision, "why": loaded.precision_note},
        strengths=controller.realised(ceilings) if controller is not None else None,
    )


__all__ = [
    "StepEvent",
    "Result",
    "Engine",
    "Window",
    "windows",
    "decoder_steps",
    "run_decode",
    "audio_prompt_codes",
    "prepare",
    "generate",
]
