"""Steering conditions of a sweep and the recipes they compile to.

A condition is (strength, layer mode, gate p). Layer modes are written compactly: ``uniform``, ``top<K>`` (top-K layers
by validation AUC, e.g. ``top12``) or ``exp<kappa>`` (exponential weighting, e.g. ``exp0.95``); they choose among all
decoder layers but the first, as the paper does. A top-K asking for more layers than a model has is clamped to all of
them (the tiny model has 5 to choose from), and the effective K is recorded.

Sweeps: ``product`` runs every combination; ``paper`` varies one factor at a time around the paper's defaults
(strength 0.3, exp0.95, gate 0.3), the way its tables are laid out, which is far cheaper than the full product.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from studio.recipe import LayerSpec, Recipe, chosen_layers, parse_recipe

from .errors import EvaluationError

PAPER_STRENGTHS: tuple[float, ...] = (0.15, 0.3, 0.45, 0.6)
PAPER_LAYER_MODES: tuple[str, ...] = ("uniform", "top8", "top12", "top16", "exp0.92", "exp0.95", "exp0.98")
PAPER_GATES: tuple[float, ...] = (1.0, 0.3)
PAPER_DEFAULT = (0.3, "exp0.95", 0.3)
SWEEPS = ("paper", "product")

_MODE = re.compile(r"^(uniform|top(\d+)|exp(0?\.\d+|1(\.0*)?))$")


def layer_spec(mode: str, num_layers: int) -> dict:
    """The recipe's ``layers`` object for a compact layer mode on a model with `num_layers` decoder layers."""
    match = _MODE.match(mode)
    if not match:
        raise EvaluationError(f"unknown layer mode {mode!r}; use uniform, top<K> (e.g. top12) or exp<kappa> "
                              "(e.g. exp0.95, kappa in (0, 1])")
    if mode == "uniform":
        return {"mode": "uniform"}
    if match.group(2):
        k = int(match.group(2))
        if k < 1:
            raise EvaluationError(f"layer mode {mode!r}: K must be at least 1")
        return {"mode": "topk", "k": min(k, len(chosen_layers(LayerSpec(mode="topk", k=k), num_layers)))}
    kappa = float(match.group(3))
    if not 0 < kappa <= 1:
        raise EvaluationError(f"layer mode {mode!r}: kappa must lie in (0, 1]")
    return {"mode": "exp", "kappa": kappa, "w0": 1.0}


@dataclass(frozen=True)
class Condition:
    """One steering setting of a sweep."""

    strength: float
    layers: str       # compact layer mode, see the module docstring
    gate_p: float

    @property
    def name(self) -> str:
        return f"s{self.strength:g}-{self.layers}-p{self.gate_p:g}"

    def control(self, concept: str, target: str, num_layers: int) -> dict:
        """The recipe's control object steering `concept` towards class `target` (component 0, constant schedule)."""
        return {"concept": concept, "class": target, "strength": self.strength, "component": 0,
                "schedule": {"kind": "constant", "value": 1.0}, "layers": layer_spec(self.layers, num_layers),
                "gate_p": self.gate_p}

    def to_dict(self, num_layers: int) -> dict:
        return {"name": self.name, "strength": self.strength, "layers": self.layers, "gate_p": self.gate_p,
                "layer_spec": layer_spec(self.layers, num_layers)}


def sweep_conditions(strengths, layer_modes, gates, sweep: str = "paper") -> list[Condition]:
    """The conditions of a sweep, without duplicates, in a stable order (see the module docstring).

    ``paper``: the default condition with each factor varied alone over its list; the default takes the paper's value
    of a factor when the list holds it, else the list's first entry."""
    strengths, layer_modes, gates = list(strengths), list(layer_modes), list(gates)
    if not strengths or not layer_modes or not gates:
        raise EvaluationError("a sweep needs at least one strength, one layer mode and one gate p")
    for mode in layer_modes:
        layer_spec(mode, 2)  # validate early
    for p in gates:
        if not 0 < p <= 1:
            raise EvaluationError(f"gate p must lie in (0, 1], got {p}")
    if sweep == "product":
        conditions = [Condition(s, m, p) for s in strengths for m in layer_modes for p in gates]
    elif sweep == "paper":
        base = [value if value in options else options[0]
                for value, options in zip(PAPER_DEFAULT, (strengths, layer_modes, gates))]
        conditions = ([Condition(s, base[1], base[2]) for s in strengths]
                      + [Condition(base[0], m, base[2]) for m in layer_modes]
                      + [Condition(base[0], base[1], p) for p in gates])
    else:
        raise EvaluationError(f"unknown sweep {sweep!r}; use one of {', '.join(SWEEPS)}")
    return list(dict.fromkeys(conditions))


def recipe(model: str, bank: str | None, prompt: str, seconds: float, seed: int, controls: list[dict],
           guidance_scale: float, readout: dict | None = None) -> Recipe:
    """A validated Recipe (through the strict JSON reader, so the recorded JSON is exactly what ran)."""
    obj = {"version": 1, "model": model, "bank": bank, "prompt": prompt, "seconds": seconds, "seed": seed,
           "sampling": {"guidance_scale": guidance_scale}, "controls": controls, "readout": readout}
    return parse_recipe(obj)
