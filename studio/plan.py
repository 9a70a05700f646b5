"""SteeringPlan: a recipe compiled to one coefficient tensor and one direction tensor.

Every control k of a recipe (concept, class, component) contributes the unit vector ``V[l, k]`` (the bank's direction of
that class and component at decoder layer l) with the coefficient

    c[t, l, k] = strength_k * schedule_k(t) * layer_weight_k[l] * gate[t, l, k]

so that the hook at layer l and step t adds ``sum_k c[t, l, k] * V[l, k]`` to the layer's output. Sliders, curves,
layer weighting, gating and several concepts at once are all just entries of ``c``.

Layer weights (``layer_weights``), over the layers a control may use (default: all but the first) that the bank has
trained probes on (a bank trained on a subset of layers has NaN validation AUCs and zero directions elsewhere):
- uniform: 1 on each chosen trained layer;
- topk: 1 on the k chosen trained layers with the highest validation AUC of the control's class (ties: lower layer
  first);
- exp: ``w0 * s_l ** (1 / kappa)`` with ``s`` the validation AUC min-max normalised over the chosen trained layers (all
  1 when the AUCs are equal);
- manual: the recipe's list, one weight per layer.
An untrained layer always gets weight 0 (``studio.banks.check_for_banks`` refuses recipes that ask for one).
Gates are Bernoulli(gate_p) per (step, layer, control), drawn on the CPU from a torch.Generator seeded with the
recipe's seed, independently of the sampling RNG; control k draws a [T, L] block after controls 0..k-1, so adding a
control never changes the gates of the ones before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from studio.recipe import Control, LayerSpec, Recipe, chosen_layers


@dataclass(frozen=True)
class SteeringPlan:
    """c[T, L, K] and V[L, K, d] on the model's device (float32), plus what the UI plots about them."""

    coefficients: torch.Tensor  # [T, L, K]
    directions: torch.Tensor  # [L, K, d]
    cfg_mode: str  # "both" | "cond_only"
    labels: tuple[str, ...]  # per control: "concept/class/component"
    layer_weights: torch.Tensor  # [L, K] (CPU)
    schedules: torch.Tensor  # [T, K] (CPU) schedule_k(t), before strength and gates
    gates: torch.Tensor  # [T, L, K] bool (CPU)

    @property
    def steps(self) -> int:
        return int(self.coefficients.shape[0])

    @property
    def num_controls(self) -> int:
        return int(self.coefficients.shape[2])

    def rows(self, start: int, steps: int) -> "SteeringPlan":
        """The plan of `steps` decoder steps from step `start` on (a window of a long clip; past the end, zeros)."""
        coefficients = self.coefficients[start : start + steps]
        missing = steps - len(coefficients)
        if missing > 0:
            coefficients = torch.cat([coefficients, coefficients.new_zeros(missing, *coefficients.shape[1:])])
        return replace(self, coefficients=coefficients)

    def from_step(self, step: int) -> "SteeringPlan":
        """The plan with nothing added before `step`: an audio prompt's positions are given, not generated."""
        coefficients = self.coefficients.clone()
        coefficients[:step] = 0
        return replace(self, coefficients=coefficients)

    def delta(self, step: int) -> torch.Tensor:
        """[L, d]: what the hooks add at every layer at `step` (sum over controls of c[step, l, k] * V[l, k])."""
        return torch.einsum("lk,lkd->ld", self.coefficients[step], self.directions)


def minmax(values: torch.Tensor) -> torch.Tensor:
    """Scale to [0, 1]; all ones when every value is equal (no layer is better than another)."""
    low, high = values.min(), values.max()
    if high <= low:
        return torch.ones_like(values)
    return (values - low) / (high - low)


def strongest_push(strength: float, weights: torch.Tensor, residual_norm: torch.Tensor | None):
    """(layer, fraction) or None: where a control pushes hardest against the stream it is added to, and how hard, as a
    fraction of that layer's typical residual norm (strength x weight / norm); None without norms or weight."""
    if residual_norm is None or not bool((weights != 0).any()):
        return None
    fractions = abs(float(strength)) * weights.abs().to(torch.float64) / residual_norm.to(torch.float64)
    layer = int(fractions.argmax())
    return layer, float(fractions[layer])


def layer_weights(spec: LayerSpec, val_score: torch.Tensor, trained=None) -> torch.Tensor:
    """float32 [L]: the weight of each decoder layer for one control, given its class's validation AUC per layer.

    ``trained``: the layers the bank has probes on; default the layers with a finite AUC. Weight goes to them only."""
    num_layers = int(val_score.shape[0])
    if trained is None:
        trained = torch.isfinite(val_score).nonzero().flatten().tolist()
    usable = torch.zeros(num_layers, dtype=torch.bool)
    usable[list(trained)] = True
    if spec.mode == "manual":
        if len(spec.weights) != num_layers:
            raise ValueError(
                f"manual layer weights: got {len(spec.weights)}, need one per decoder layer ({num_layers})"
            )
        return torch.tensor(spec.weights, dtype=torch.float32) * usable
    chosen = torch.tensor([layer for layer in chosen_layers(spec, num_layers) if usable[layer]], dtype=torch.long)
    weights = torch.zeros(num_layers, dtype=torch.float32)
    if len(chosen) == 0:
        return weights
    auc = val_score.to(torch.float64)[chosen]
    if spec.mode == "uniform":
        weights[chosen] = 1.0
    elif spec.mode == "topk":
        order = sorted(range(len(chosen)), key=lambda i: (-float(auc[i]), int(chosen[i])))
        weights[chosen[order[: spec.k]]] = 1.0
    elif spec.mode == "exp":
        weights[chosen] = (spec.w0 * minmax(auc) ** (1.0 / spec.kappa)).to(torch.float32)
    else:
        raise ValueError(f"unknown layer mode {spec.mode!r}")
    return weights


def draw_gates(gate_p: list[float], steps: int, num_layers: int, seed: int) -> torch.Tensor:
    """bool [T, L, K]: gate[t, l, k] ~ Bernoulli(gate_p[k]), reproducible from `seed` alone."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    blocks = [torch.rand(steps, num_layers, generator=generator) < p for p in gate_p]
    if not blocks:
        return torch.zeros(steps, num_layers, 0, dtype=torch.bool)
    return torch.stack(blocks, dim=-1)


def coefficients(
    strength: torch.Tensor, schedules: torch.Tensor, weights: torch.Tensor, gates: torch.Tensor
) -> torch.Tensor:
    """c[t, l, k] = strength[k] * schedules[t, k] * weights[l, k] * gates[t, l, k] (float32 [T, L, K])."""
    return (strength[None, None, :] * schedules[:, None, :] * weights[None, :, :] * gates.to(torch.float32)).to(
        torch.float32
    )


def control_label(control: Control) -> str:
    return f"{control.concept}/{control.class_name}/{control.component}"


def build_plan(
    recipe: Recipe, banks: dict, steps: int, frame_rate: float, device: torch.device | str = "cpu"
) -> SteeringPlan:
    """Compile the recipe's enabled controls into a SteeringPlan of `steps` decoder steps.

    `banks` maps concept -> ConceptBank (checked beforehand with studio.banks.check_for_banks). Disabled controls are
    left out, so K = number of enabled controls (K = 0 gives an all-zero plan of shape [T, L, 0]).
    """
    controls = recipe.active_controls()
    any_bank = next(iter(banks.values()), None)
    if any_bank is None:
        raise ValueError("build_plan needs at least one ConceptBank (for the layer count and width)")
    num_layers, _, _, hidden = any_bank.directions.shape
    directions, weights, schedule_rows = [], [], []
    for control in controls:
        bank = banks[control.concept]
        cls = bank.class_index(control.class_name)
        directions.append(bank.directions[:, cls, control.component].to(torch.float32))
        weights.append(layer_weights(control.layers, bank.val_score[:, cls], trained=bank.layers))
        schedule_rows.append(torch.from_numpy(control.schedule.values(steps, frame_rate)).to(torch.float32))
    count = len(controls)
    V = torch.stack(directions, dim=1) if count else torch.zeros(num_layers, 0, hidden)
    W = torch.stack(weights, dim=1) if count else torch.zeros(num_layers, 0)
    S = torch.stack(schedule_rows, dim=1) if count else torch.zeros(steps, 0)
    gates = draw_gates([c.gate_p for c in controls], steps, num_layers, recipe.seed)
    strength = torch.tensor([c.strength for c in controls], dtype=torch.float32)
    C = coefficients(strength, S, W, gates)
    return SteeringPlan(
        coefficients=C.to(device),
        directions=V.contiguous().to(device),
        cfg_mode=recipe.cfg_mode,
        labels=tuple(control_label(c) for c in controls),
        layer_weights=W,
        schedules=S,
        gates=gates,
    )
