"""Closed-loop steering: a proportional-integral controller that sets each step's strength from the live readout.

A control with a ``target`` (studio/recipe.py: ``{"p": 0.8, "kp": 1, "ki": 2}``) asks the readout to hold its class
at probability p; its ``strength`` becomes the ceiling. Per decoder step t the control's realised strength is

    u[t] = strength * g[t],   g[t] = clamp(kp * e[t-1] + J[t-1], 0, 1),   e[t] = p - r[t],
    J[t] = clamp(J[t-1] + ki * e[t] / frame_rate, 0, 1)                    (J[-1] = 0; e[-1] = p: nothing read yet)

where r[t] is the readout probe's probability of the control's class for the running mean of the captured readout
states 0..t (the readout's "running" row). J is the integral term in units of the ceiling, clamped so that it cannot
wind up past what the clamp of g lets through. A reading the probe cannot make (the running mean outside its range,
studio/readout.py) changes nothing: g and J hold, since pushing harder on a reading of "no concept" would only push
further out. Controls without a target keep g = 1. The hooks (studio/hooks.py) multiply the plan's coefficient
column of each control by its g, so schedules, layer weights and gates act on the realised strength as on a fixed one.

Everything lives on the model's device and is updated in place with tensor ops only (no value read back to the host),
so the controller runs inside a CUDA-graph step (``cuda_graph_safe``). The gain of every step is recorded
(``gains``); a forward that recomputes steps already made (transformers' doubled prefill, a long clip's later window
re-reading its opening) steers them with their recorded gains and does not read them again, so a clip's gains
are one sequence on its timeline, and the same recipe and seed give the same gains and audio.
"""

from __future__ import annotations

import torch

from studio.plan import SteeringPlan
from studio.readout import IN_RANGE, probe_on


class Controller:
    """The PI controllers of a plan's controls, reading `probe` (the readout bank's, on the model's device).

    ``targets``: per control the target probability, or None for a fixed-strength control; ``classes``: per control
    the readout class index it reads (ignored without a target); ``kp``, ``ki``: per control gains; ``frame_rate``:
    decoder steps per second; ``steps``: the clip's decoder steps.
    """

    cuda_graph_safe = True

    def __init__(
        self,
        probe,
        targets: list[float | None],
        classes: list[int],
        kp: list[float],
        ki: list[float],
        frame_rate: float,
        steps: int,
        device: torch.device | str = "cpu",
    ):
        def on_device(values, dtype=torch.float32) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device)

        self.probe = probe
        self.closed = on_device([t is not None for t in targets], torch.bool)
        self.targets = on_device([t if t is not None else 0.0 for t in targets])
        self.classes = on_device(classes, torch.long)
        self.kp, self.ki = on_device(kp), on_device(ki)
        self.dt = 1.0 / float(frame_rate)
        self.steps = steps
        self.offset = 0  # the clip step of the current pass's position 0
        count = len(targets)
        self.gain = torch.where(self.closed, (self.kp * self.targets).clamp(0.0, 1.0), 1.0)  # g for the next step
        self.integral = torch.zeros(count, dtype=torch.float32, device=device)  # J
        # gains[t] = g[t] for every step made so far; one scratch row past the end for positions beyond the clip
        self.gains = torch.ones(steps + 1, count, dtype=torch.float32, device=device)
        self.recorded = torch.zeros((), dtype=torch.long, device=device)  # steps whose gain is fixed
        self.read = torch.zeros((), dtype=torch.long, device=device)  # steps summed into `total`
        self.total = torch.zeros(probe.centers.shape[1], dtype=torch.float64, device=device)  # sum of their states

    @classmethod
    def for_plan(cls, plan: SteeringPlan, controls, bank, frame_rate: float, device) -> "Controller | None":
        """The controller of `controls` (the plan's, in order) read through `bank`'s readout probe; None when no
        control has a target."""
        if not any(c.target is not None for c in controls):
            return None
        targets = [c.target.p if c.target is not None else None for c in controls]
        classes = [bank.class_index(c.class_name) if c.target is not None else 0 for c in controls]
        kp = [c.target.kp if c.target is not None else 0.0 for c in controls]
        ki = [c.target.ki if c.target is not None else 0.0 for c in controls]
        return cls(probe_on(bank.readout, device), targets, classes, kp, ki, frame_rate, plan.steps, device)

    def next_pass(self, offset: int) -> None:
        """The next pass (a window of a long clip) starts at clip step `offset`."""
        self.offset = offset

    def _steps(self, positions: torch.Tensor) -> torch.Tensor:
        """Clip steps of a forward's positions, with positions outside the clip sent to the scratch row."""
        steps = positions + self.offset
        return steps.masked_fill((positions < 0) | (steps >= self.steps), self.steps)

    def gains_for(self, positions: torch.Tensor) -> torch.Tensor:
        """[n, K]: the gains of the steps a forward computes (device positions of this pass). Steps not made before
        take the current gain, which is recorded as theirs; steps made before keep their recorded gains."""
        steps = self._steps(positions)
        new = (steps >= self.recorded)[:, None]
        rows = torch.where(new, self.gain.expand(len(steps), -1), self.gains.index_select(0, steps))
        self.gains.index_copy_(0, steps, rows)
        # a melody prefix's positions and those past the clip (the scratch row) record no step
        made = torch.where(steps < self.steps, steps + 1, 0).max()
        torch.maximum(self.recorded, made, out=self.recorded)
        return rows

    def observe(self, states: torch.Tensor, positions: torch.Tensor) -> None:
        """After the readout layer of a forward: add the states [n, d] of the steps not read before to the running
        mean, read it, and set the gains of the next step."""
        steps = self._steps(positions)
        fresh = (steps >= self.read) & (steps < self.steps)
        self.total += (states.to(torch.float64) * fresh[:, None]).sum(dim=0)
        self.read.copy_(torch.maximum(self.read, torch.where(fresh, steps + 1, 0).max()))
        mean = (self.total / self.read.clamp(min=1)).to(torch.float32)[None]
        probs, nearest = self.probe.proba_and_similarity(mean)
        error = self.targets - probs[0].index_select(0, self.classes)
        integral = (self.integral + self.ki * error * self.dt).clamp(0.0, 1.0)
        gain = (self.kp * error + integral).clamp(0.0, 1.0)
        act = self.closed & fresh.any() & (nearest[0] >= IN_RANGE)
        self.integral.copy_(torch.where(act, integral, self.integral))
        self.gain.copy_(torch.where(act, gain, self.gain))

    def realised(self, strengths: torch.Tensor) -> torch.Tensor:
        """float32 [T, K] on the CPU: each step's strength, the gain times the control's strength (its ceiling)."""
        return (self.gains[: self.steps].cpu() * strengths.cpu()[None, :]).float()
