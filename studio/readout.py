"""Live probe readout: what the bank's readout probe reads in the model's own hidden states, step by step.

The hooks capture the readout layer's output at every decoder step (conditional batch row), ``states[t]``. Two pooled
views of them are classified with the bank's readout probe, matching the mean pooling the probes were trained on:

- window: the mean of the last ``window_steps`` states up to and including step t (fewer at the start);
- running: the mean of all states 0..t.

``LiveReadout`` answers for one step while generation runs (cheap: a running sum and one window slice on the device);
``compute_readout`` classifies every step at once when generation ends. Classification concepts give class
probabilities (the probe's normalised outputs); a regression concept (tempos, class "value") gives its predicted value.

Outside the probe's range. A kernel probe reads a state through its similarity to the states it was trained on; far
from all of them every output falls towards zero, and the class probabilities towards 1/C each, which looks like "no
concept" but is no reading at all (steered hard enough, the tiny model's readout did exactly that). A window whose
nearest training state has a kernel similarity below IN_RANGE is marked ``outside`` and drawn as such, not as a
reading.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

IN_RANGE = 0.01  # kernel similarity to the nearest training state below which a reading is marked outside the range


def window_means(states: torch.Tensor, window: int) -> torch.Tensor:
    """[T, d] -> [T, d]: row t is the mean of states[max(0, t - window + 1) : t + 1] (float64 prefix sums)."""
    sums = torch.cumsum(states.to(torch.float64), dim=0)
    lagged = torch.zeros_like(sums)
    if window < len(states):
        lagged[window:] = sums[: len(states) - window]
    steps = torch.arange(1, len(states) + 1, dtype=torch.float64, device=states.device)
    counts = torch.clamp(steps, max=window)
    return ((sums - lagged) / counts[:, None]).to(states.dtype)


def running_means(states: torch.Tensor) -> torch.Tensor:
    """[T, d] -> [T, d]: row t is the mean of states[0 : t + 1]."""
    return window_means(states, max(1, len(states)))


def outside_range(probe, pooled: torch.Tensor) -> torch.Tensor:
    """bool [n] on the CPU: the pooled states too far from every state the probe was trained on to be read."""
    return (probe.nearest_similarity(pooled) < IN_RANGE).cpu()


def classify(probe, pooled: torch.Tensor) -> torch.Tensor:
    """float32 [n, C] on the CPU: class probabilities, or [n, 1] predicted values for a regression probe."""
    if getattr(probe, "task", None) == "regression":
        return probe.predict(pooled).reshape(-1, 1).float().cpu()
    return probe.predict_proba(pooled).float().cpu()


def probe_on(probe, device: torch.device):
    """The probe with its tensors on `device`, without moving the bank's own copy (banks are shared)."""
    if getattr(probe, "device", device) == device or not hasattr(probe, "to"):
        return probe
    return replace(probe).to(device)


@dataclass
class Readout:
    """Per-step readout of one generation: window[t] and running[t] are [C] rows for decoder step t."""

    concept: str
    classes: list[str]
    layer: int
    frame_rate: int
    window_steps: int
    window: torch.Tensor  # [T, C] float32
    running: torch.Tensor  # [T, C] float32
    outside: torch.Tensor  # [T] bool: window t lies outside the probe's range (see the module docstring)

    @property
    def steps(self) -> int:
        return int(self.window.shape[0])

    def to_dict(self, digits: int = 6) -> dict:
        """JSON-ready: one entry per step with its time in seconds (step / frame_rate)."""
        window, running = self.window.tolist(), self.running.tolist()
        return {
            "concept": self.concept,
            "classes": list(self.classes),
            "layer": self.layer,
            "frame_rate": self.frame_rate,
            "window_steps": self.window_steps,
            "steps": [
                {
                    "step": t,
                    "time_s": round(t / self.frame_rate, 6),
                    "window": [round(v, digits) for v in window[t]],
                    "running": [round(v, digits) for v in running[t]],
                    "outside": bool(self.outside[t]),
                }
                for t in range(self.steps)
            ],
        }


def compute_readout(
    states: torch.Tensor, probe, concept: str, classes: list[str], layer: int, frame_rate: int, window_steps: int
) -> Readout:
    """Classify the window and running means of every captured step ([T, d] states) in one batch."""
    pooled = torch.cat([window_means(states, window_steps), running_means(states)]).float()
    scores = classify(probe, pooled)
    steps = len(states)
    return Readout(
        concept=concept,
        classes=list(classes),
        layer=layer,
        frame_rate=frame_rate,
        window_steps=window_steps,
        window=scores[:steps],
        running=scores[steps:],
        outside=outside_range(probe, pooled[:steps]),
    )


class LiveReadout:
    """Readout of the latest step during generation, reading a [T, d] capture buffer that the hooks fill in order."""

    def __init__(self, states: torch.Tensor, probe, window_steps: int):
        self.states, self.probe, self.window_steps = states, probe, window_steps
        self._sum = torch.zeros(states.shape[1], dtype=torch.float64, device=states.device)
        self._summed = 0  # steps already in _sum

    def at(self, step: int) -> tuple[list[float], list[float], bool]:
        """(window row, running row, whether the window lies outside the probe's range) for decoder `step`, whose state
        must already be captured."""
        upto = step + 1
        if upto > self._summed:
            self._sum += self.states[self._summed : upto].to(torch.float64).sum(dim=0)
            self._summed = upto
        window = self.states[max(0, upto - self.window_steps) : upto].mean(dim=0)
        running = (self._sum / upto).to(self.states.dtype)
        pooled = torch.stack([window, running])
        scores = classify(self.probe, pooled)
        return scores[0].tolist(), scores[1].tolist(), bool(outside_range(self.probe, pooled[:1])[0])
