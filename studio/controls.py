"""What the studio's widgets hold <-> a Recipe. Pure functions, so the page and its tests share one translation.

The page has a fixed number of control rows (concept, class, strength, on/off); the layer weighting, gate p and cfg
mode are set once and apply to every control; each control's schedule comes from the drawable editor, keyed by the
control's name ("notes: C").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.recipe import Recipe, RecipeError, parse_recipe
from studio.schedule_editor import EditorValue

MAX_ROWS = 4
DEFAULT_STRENGTH = 0.3


@dataclass(frozen=True)
class Row:
    """One control row of the page."""

    enabled: bool
    concept: str | None
    class_name: str | None
    strength: float

    @property
    def name(self) -> str:
        return control_name(self.concept, self.class_name)

    @property
    def active(self) -> bool:
        return bool(self.enabled and self.concept and self.class_name)


@dataclass(frozen=True)
class Layering:
    """The layer-weighting widgets."""

    mode: str = "exp"
    k: int = 4
    kappa: float = 0.95
    w0: float = 1.0
    manual: str = ""            # comma-separated weights, one per decoder layer

    def to_dict(self) -> dict:
        if self.mode == "manual":
            try:
                weights = [float(w) for w in self.manual.replace(";", ",").split(",") if w.strip()]
            except ValueError:
                raise RecipeError(f"layers.weights must be numbers separated by commas, got '{self.manual}'") from None
            return {"mode": "manual", "weights": weights}
        if self.mode == "topk":
            return {"mode": "topk", "k": int(self.k)}
        if self.mode == "exp":
            return {"mode": "exp", "kappa": float(self.kappa), "w0": float(self.w0)}
        return {"mode": "uniform"}


def control_name(concept: str | None, class_name: str | None) -> str:
    return f"{concept}: {class_name}"


def list_banks(root: Path) -> list[str]:
    """Concepts with a bank under `root` (its folders holding a bank.json)."""
    return sorted(p.name for p in root.iterdir() if (p / "bank.json").is_file()) if root.is_dir() else []


def build_recipe(*, model_id: str, prompt: str, seconds: float, seed: int, guidance: float, cfg_mode: str,
                 gate_p: float, layering: Layering, rows: list[Row], schedules: EditorValue | None,
                 readout_concept: str | None, bank: str | None = None) -> Recipe:
    """The Recipe the page describes, validated as any recipe file would be (RecipeError names the field)."""
    curves = schedules.to_recipe_schedules() if schedules is not None else {}
    controls = []
    for row in rows:
        if not row.active:
            continue
        control = {"concept": row.concept, "class": row.class_name, "strength": float(row.strength),
                   "layers": layering.to_dict(), "gate_p": float(gate_p)}
        if row.name in curves:
            control["schedule"] = _fit_schedule(curves[row.name], float(seconds))
        controls.append(control)
    return parse_recipe({
        "version": 1, "model": model_id, "bank": bank, "prompt": prompt, "seconds": float(seconds),
        "seed": int(seed), "sampling": {"guidance_scale": float(guidance)}, "cfg_mode": cfg_mode,
        "controls": controls,
        "readout": {"concept": readout_concept, "layer": "best", "window_s": 1.0} if readout_concept else None,
    })


def _fit_schedule(schedule: dict, seconds: float) -> dict:
    """The editor's curve, clipped to the clip (the editor may lag one event behind a change of length)."""
    points = [[min(float(t), seconds), float(v)] for t, v in schedule["points"]]
    kept = [p for i, p in enumerate(points) if i == 0 or p[0] > points[i - 1][0]]
    return {"kind": "points", "points": kept}


def rows_from_recipe(recipe: Recipe) -> list[Row]:
    """The page's rows for a recipe: its controls in order (at most MAX_ROWS), then empty rows."""
    if len(recipe.controls) > MAX_ROWS:
        raise RecipeError(f"controls holds {len(recipe.controls)} controls; the studio shows at most {MAX_ROWS}")
    rows = [Row(c.enabled, c.concept, c.class_name, c.strength) for c in recipe.controls]
    return rows + [Row(False, None, None, DEFAULT_STRENGTH)] * (MAX_ROWS - len(rows))


def layering_from_recipe(recipe: Recipe) -> Layering:
    """The page applies one layer weighting to every control: the first control's."""
    if not recipe.controls:
        return Layering()
    spec = recipe.controls[0].layers
    manual = ", ".join(f"{w:g}" for w in spec.weights) if spec.weights else ""
    return Layering(mode=spec.mode, k=spec.k or 4, kappa=spec.kappa, w0=spec.w0, manual=manual)


def schedules_from_recipe(recipe: Recipe) -> EditorValue:
    """The editor's curves for a recipe's controls (every schedule kind evaluated into points at 0.1 s)."""
    schedules = {}
    for control in recipe.controls:
        name = control_name(control.concept, control.class_name)
        if control.schedule.to_dict()["kind"] == "points":
            schedules[name] = control.schedule.to_dict()
        else:
            steps = int(recipe.seconds * 10) + 1
            values = [min(1.0, max(0.0, float(v))) for v in control.schedule.values(steps, frame_rate=10)]
            points = [[round(i * 0.1, 6), v] for i, v in enumerate(values)]
            if points[-1][0] < recipe.seconds:
                points.append([recipe.seconds, values[-1]])
            schedules[name] = {"kind": "points", "points": points}
    return EditorValue.from_recipe_schedules(recipe.seconds, schedules)
