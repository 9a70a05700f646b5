"""Steering conditions of a sweep and the recipes they compile to.

A condition is (strength, layer mode, gate p). Layer modes are written compactly: ``uniform``, ``top<K>`` (top-K layers
by validation AUC, e.g. ``top12``) or ``exp<kappa>`` (exponential weighting, e.g. ``exp0.95``); they choose among all
decoder layers but the first, as the paper does. A top-K asking for more layers than a model steers is clamped to all
of them (the tiny model has 5 to choose from). `resolve_conditions` does that for a whole sweep, out loud: it warns
about each clamp, names every clamped condition by the K it uses (``top16`` becomes ``top5``), and runs conditions
that compile to the same steering once (a top-K over every steerable layer weighs them all 1, exactly as ``uniform``
does), recording which requested conditions each one stands for.

Sweeps: ``product`` runs every combination; ``paper`` varies one factor at a time around the paper's defaults
(strength 0.3, exp0.95, gate 0.3), the way its tables are laid out, which is far cheaper than the full product.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from studio.errors import EvaluationError
from studio.recipe import LayerSpec, Recipe, chosen_layers, parse_recipe

log = logging.getLogger(__name__)

PAPER_STRENGTHS: tuple[float, ...] = (0.15, 0.3, 0.45, 0.6)
PAPER_LAYER_MODES: tuple[str, ...] = ("uniform", "top8", "top12", "top16", "exp0.92", "exp0.95", "exp0.98")
PAPER_GATES: tuple[float, ...] = (1.0, 0.3)
PAPER_DEFAULT = (0.3, "exp0.95", 0.3)
SWEEPS = ("paper", "product")

_MODE = re.compile(r"^(uniform|top(\d+)|exp(0?\.\d+|1(\.0*)?))$")


def steerable_layers(num_layers: int) -> int:
    """How many layers a top-K may choose from on a model with `num_layers` decoder layers (all but the first)."""
    return len(chosen_layers(LayerSpec(mode="topk", k=1), num_layers))


def layer_spec(mode: str, num_layers: int) -> dict:
    """The recipe's ``layers`` object for a compact layer mode on a model with `num_layers` decoder layers."""
    match = _MODE.match(mode)
    if not match:
        raise EvaluationError(
            f"unknown layer mode {mode!r}; use uniform, top<K> (e.g. top12) or exp<kappa> "
            "(e.g. exp0.95, kappa in (0, 1])"
        )
    if mode == "uniform":
        return {"mode": "uniform"}
    if match.group(2):
        k = int(match.group(2))
        if k < 1:
            raise EvaluationError(f"layer mode {mode!r}: K must be at least 1")
        return {"mode": "topk", "k": min(k, steerable_layers(num_layers))}
    kappa = float(match.group(3))
    if not 0 < kappa <= 1:
        raise EvaluationError(f"layer mode {mode!r}: kappa must lie in (0, 1]")
    return {"mode": "exp", "kappa": kappa, "w0": 1.0}


@dataclass(frozen=True)
class Condition:
    """One steering setting of a sweep; with `target_p`, closed loop (studio/control.py): the readout held at that
    probability of the target class, `strength` the ceiling."""

    strength: float
    layers: str  # compact layer mode, see the module docstring
    gate_p: float
    target_p: float | None = None

    @property
    def name(self) -> str:
        closed = "" if self.target_p is None else f"-t{self.target_p:g}"
        return f"s{self.strength:g}-{self.layers}-p{self.gate_p:g}{closed}"

    def control(self, concept: str, target: str, num_layers: int, component: int = 0) -> dict:
        """The recipe's control object steering `concept` towards class `target` along the class's direction
        `component` (0: the first), with a constant schedule."""
        control = {
            "concept": concept,
            "class": target,
            "strength": self.strength,
            "component": component,
            "schedule": {"kind": "constant", "value": 1.0},
            "layers": layer_spec(self.layers, num_layers),
            "gate_p": self.gate_p,
        }
        return control if self.target_p is None else {**control, "target": {"p": self.target_p}}

    def to_dict(self, num_layers: int) -> dict:
        return {
            "name": self.name,
            "strength": self.strength,
            "layers": self.layers,
            "gate_p": self.gate_p,
            "layer_spec": layer_spec(self.layers, num_layers),
            **({} if self.target_p is None else {"target_p": self.target_p}),
        }


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
        base = paper_base(strengths, layer_modes, gates)
        conditions = (
            [Condition(s, base[1], base[2]) for s in strengths]
            + [Condition(base[0], m, base[2]) for m in layer_modes]
            + [Condition(base[0], base[1], p) for p in gates]
        )
    else:
        raise EvaluationError(f"unknown sweep {sweep!r}; use one of {', '.join(SWEEPS)}")
    return list(dict.fromkeys(conditions))


def paper_base(strengths, layer_modes, gates) -> tuple[float, str, float]:
    """(strength, layer mode, gate p) around which a paper sweep varies: each the paper's default when its list holds
    it, else the list's first entry."""
    return tuple(
        value if value in options else options[0]
        for value, options in zip(PAPER_DEFAULT, (list(strengths), list(layer_modes), list(gates)))
    )


@dataclass(frozen=True)
class Resolved:
    """A condition as it runs on one model, and the requested conditions it stands for (`requested[0]` is the one
    kept; the others compiled to the same steering and are not rendered again)."""

    condition: Condition
    requested: tuple[str, ...]

    @property
    def merged(self) -> tuple[str, ...]:
        return self.requested[1:]

    def to_dict(self, num_layers: int) -> dict:
        return {**self.condition.to_dict(num_layers), "requested": list(self.requested)}


def effective_mode(mode: str, num_layers: int) -> str:
    """The layer mode as the model runs it: a clamped top-K is named by the K it uses; other modes are unchanged."""
    spec = layer_spec(mode, num_layers)
    return f"top{spec['k']}" if spec["mode"] == "topk" and spec["k"] < int(mode[3:]) else mode


def clamped_modes(modes, num_layers: int) -> dict[str, int]:
    """{top-K mode: the K it uses} for each mode in `modes` that asks for more layers than the model steers."""
    return {
        mode: layer_spec(mode, num_layers)["k"]
        for mode in dict.fromkeys(modes)
        if effective_mode(mode, num_layers) != mode
    }


def _steering_key(condition: Condition, num_layers: int) -> tuple:
    """Equal for conditions whose steering is the same on this model. A top-K over every steerable layer gives each
    weight 1, which is what uniform does (studio.plan.layer_weights), so both share the key of uniform."""
    spec = layer_spec(condition.layers, num_layers)
    if spec["mode"] == "topk" and spec["k"] >= steerable_layers(num_layers):
        spec = {"mode": "uniform"}
    return condition.strength, condition.gate_p, tuple(sorted(spec.items()))


def resolve_conditions(conditions, num_layers: int) -> list[Resolved]:
    """The sweep's conditions on a model with `num_layers` decoder layers: clamped top-Ks renamed to the K they use
    (with a warning each), and conditions with the same steering merged into the first of them (logged)."""
    steerable = steerable_layers(num_layers)
    groups: dict[tuple, list[Condition]] = {}
    for condition in conditions:
        groups.setdefault(_steering_key(condition, num_layers), []).append(condition)
    for mode, k in clamped_modes([c.layers for c in conditions], num_layers).items():
        log.warning("%s needs %s layers, the model steers %d: using k=%d", mode, mode[3:], steerable, k)
    resolved = []
    for group in groups.values():
        first = group[0]
        kept = Condition(first.strength, effective_mode(first.layers, num_layers), first.gate_p)
        resolved.append(Resolved(kept, tuple(c.name for c in group)))
        if len(group) > 1:
            log.warning(
                "%s give the same steering on this model: running them once, as %s",
                ", ".join(c.name for c in group),
                kept.name,
            )
    return resolved


def recipe(
    model: str,
    bank: str | None,
    prompt: str,
    seconds: float,
    seed: int,
    controls: list[dict],
    guidance_scale: float,
    readout: dict | None = None,
) -> Recipe:
    """A validated Recipe (through the strict JSON reader, so the recorded JSON is exactly what ran)."""
    obj = {
        "version": 1,
        "model": model,
        "bank": bank,
        "prompt": prompt,
        "seconds": seconds,
        "seed": seed,
        "sampling": {"guidance_scale": guidance_scale},
        "controls": controls,
        "readout": readout,
    }
    return parse_recipe(obj)
