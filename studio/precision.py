"""Which precision the decoder runs at, and how faithful a cheaper one is to fp32.

``load(name, device, "auto")`` is how the studio and ``launch.py generate`` load a model. On a GPU it is fp16. On the
CPU it is fp32, or int8 (``studio.model.quantize_decoder``) when int8 is both faster and faithful:

- faster: a decoder step on the CPU reads every weight once, so its time follows the weights' bytes, which int8
  quarters; that only pays when the decoder is large (musicgen-small's shape: about 3x faster per step on a 2-core
  CPU). The tiny model's steps are bound by per-operation overhead instead (int8 runs it about 0.8x), so below
  INT8_MIN_BYTES of linear weights it stays fp32 without a check.
- faithful: the same tokens go through the model before and after quantizing (teacher forcing; int8 one position
  per forward, as it decodes, since it scales each forward's activations as one), and int8 is kept when the arg-max
  of its guided scores agrees with fp32's at MIN_TOP1 of the positions; otherwise the fp32 layers go back. The tokens
  are a short synthesized arpeggio encoded with the model's own codec: real audio codes, no download.

``Fidelity`` is also what bench/generate.py --precision reports, on the tokens fp32 itself sampled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from studio.decode import teacher_forced_scores
from studio.model import FREE, LoadedModel, load_model, quantize_decoder
from studio.sampling import Sampling

log = logging.getLogger(__name__)

AUTO = "auto"
MIN_TOP1 = 0.97  # the bar: teacher-forced top-1 agreement with fp32
INT8_MIN_BYTES = 64 * 2**20  # fp32 bytes of the decoder layers' linear weights from which int8 is worth checking
CHECK_PROMPT = "a piano playing a C major arpeggio"
CHECK_NOTES = (60, 64, 67, 72, 67, 64)  # MIDI: the arpeggio the check's tokens encode, a third of a second each


@dataclass(frozen=True)
class Fidelity:
    """How close a model's guided scores are to fp32's on the same tokens, over the slots the model predicts."""

    top1: float  # share of slots where the arg-max agrees
    kl: float  # mean KL(fp32 || other) of the softmaxed scores, in nats
    slots: int

    def describe(self) -> str:
        return f"teacher-forced top-1 agreement with fp32 {self.top1:.3f}, KL {self.kl:.4f} nats, {self.slots} tokens"


def compare(reference: torch.Tensor, scores: torch.Tensor, free: torch.Tensor) -> Fidelity:
    """Fidelity of `scores` to `reference` ([K, T, V] each, teacher_forced_scores) at the `free` [K, T] slots."""
    ref, other = reference[free].log_softmax(-1), scores[free].log_softmax(-1)
    top1 = (ref.argmax(-1) == other.argmax(-1)).float().mean().item()
    kl = (ref.exp() * (ref - other)).sum(-1).mean().item()
    return Fidelity(top1=top1, kl=kl, slots=int(free.sum()))


def predicted_slots(loaded: LoadedModel, frames: int) -> torch.Tensor:
    """[K, frames + K - 1] bool: the slots of a token grid the model predicts (the delay pattern's pads are fixed),
    aligned with teacher_forced_scores' rows."""
    return (loaded.delay_pattern(frames) == FREE)[:, 1:]


def check_tokens(loaded: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(token grid [K, S], predicted slots) of a synthesized piano-like arpeggio encoded with the model's codec."""
    rate, note_seconds = loaded.sample_rate, 1 / 3
    t = np.arange(int(rate * note_seconds)) / rate
    envelope = np.exp(-4 * t)
    notes = []
    for midi in CHECK_NOTES:
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        notes.append(envelope * sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)))
    audio = (0.3 * np.concatenate(notes) / np.abs(np.concatenate(notes)).max()).astype(np.float32)
    codes = loaded.encode_audio(audio)
    frames = codes.shape[-1]
    return loaded.delay_pattern(frames, codes), predicted_slots(loaded, frames)


def int8_fidelity(loaded: LoadedModel, tokens: torch.Tensor, free: torch.Tensor, prompt: str = CHECK_PROMPT):
    """Quantize `loaded` (fp32, on the CPU) to int8 in place and measure it against its fp32 self on `tokens`:
    (Fidelity, restore), ``restore()`` putting the fp32 layers back."""
    guidance = Sampling().guidance_scale
    reference = teacher_forced_scores(loaded, prompt, tokens, guidance)
    restore = quantize_decoder(loaded)
    return compare(reference, int8_scores(loaded, prompt, tokens, guidance), free), restore


def int8_scores(loaded: LoadedModel, prompt: str, tokens: torch.Tensor, guidance: float) -> torch.Tensor:
    """An int8 decoder's teacher-forced scores as its decode would give them: a position per forward."""
    return teacher_forced_scores(loaded, prompt, tokens, guidance, stepwise=True)


def linear_bytes(loaded: LoadedModel) -> int:
    """Bytes of the decoder layers' linear weights at their current dtype: what each CPU step reads."""
    return sum(
        m.weight.numel() * m.weight.element_size() for m in loaded.decoder_layers().modules() if type(m) is nn.Linear
    )


def load(name: str, device: str | None = None, precision: str = AUTO) -> LoadedModel:
    """load_model at `precision` (fp32, fp16, bf16, int8), or, with "auto", at the fastest that is faithful (see the
    module docstring); ``precision_note`` says why."""
    if precision != AUTO:
        loaded = load_model(name, device=device, precision=precision)
        loaded.precision_note = "as asked"
        return loaded
    loaded = load_model(name, device=device)
    if loaded.device.type != "cpu":
        loaded.precision_note = f"the default on {loaded.device.type}"
        return loaded
    size = linear_bytes(loaded)
    if size < INT8_MIN_BYTES:
        loaded.precision_note = f"int8 is not faster on a decoder with {size / 2**20:.0f} MB of linear weights"
        return loaded
    tokens, free = check_tokens(loaded)
    fidelity, restore = int8_fidelity(loaded, tokens, free)
    if fidelity.top1 >= MIN_TOP1:
        loaded.precision_note = f"{fidelity.describe()} (at least {MIN_TOP1} needed)"
    else:
        restore()
        loaded.precision_note = f"int8 fell short: {fidelity.describe()}, {MIN_TOP1} needed"
    log.info("%s runs at %s: %s", loaded.model_id, loaded.precision, loaded.precision_note)
    return loaded
