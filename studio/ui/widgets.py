"""What the studio's widgets hold <-> a Recipe. Pure functions, so the page and its tests share one translation.

The page has a fixed number of control rows (concept, class, strength, on/off, and a target: the probability at which
the readout should hold the class, 0 for a fixed strength); the layer weighting, gate p and cfg mode are set once and
apply to every control; each control's schedule comes from the drawable editor, keyed by the control's name
("notes: C"). `FIELDS` names every widget that goes into a recipe, in the order the page passes their
values to its handlers (and to the /generate API).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import soundfile as sf

from studio.errors import InputError
from studio.recipe import LayerSpec, Recipe, parse_recipe, read_layer_spec
from studio.ui.schedule_editor import EditorValue, round_time

MAX_ROWS = 4
LONGEST_SECONDS = 180.0  # the Seconds slider's end: three minutes, made window by window past the model's 30 s
DEFAULT_STRENGTH = 0.3
DEFAULT_GATE_P = 0.3
ROW_FIELDS = ("on", "concept", "class", "strength", "target")
FIELDS = (
    "prompt",
    "audio_prompt",
    "melody",
    "seconds",
    "seed",
    "guidance",
    "cfg_mode",
    "gate_p",
    "layer_mode",
    "k",
    "kappa",
    "w0",
    "manual",
    "schedule",
    "readout",
    *(f"{field}{i}" for i in range(MAX_ROWS) for field in ROW_FIELDS),
)


@dataclass(frozen=True)
class Row:
    """One control row of the page."""

    enabled: bool
    concept: str | None
    class_name: str | None
    strength: float
    target: float | None = 0.0  # the probability to hold the class at (studio/control.py); 0 or None: fixed strength

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
    k: int | None = 4  # None: a recipe that names no k (the page keeps its own, within this model's layers)
    kappa: float = 0.95
    w0: float = 1.0
    manual: str = ""  # comma-separated weights, one per decoder layer

    def to_dict(self) -> dict:
        if self.mode == "manual":
            try:
                weights = [float(w) for w in self.manual.replace(";", ",").split(",") if w.strip()]
            except ValueError:
                raise InputError(f"layers.weights must be numbers separated by commas, got '{self.manual}'") from None
            return {"mode": "manual", "weights": weights}
        if self.mode == "topk":
            return {"mode": "topk", "k": int(self.k)}
        if self.mode == "exp":
            return {"mode": "exp", "kappa": float(self.kappa), "w0": float(self.w0)}
        return {"mode": "uniform"}

    def to_spec(self) -> LayerSpec:
        """The LayerSpec these widgets describe, validated as a recipe's would be (InputError names the field)."""
        return read_layer_spec(self.to_dict(), "layers")


def control_name(concept: str | None, class_name: str | None) -> str:
    return f"{concept}: {class_name}"


# ------------------------------------------------------------------------------------------- the page's values


def rows_of(values: dict[str, Any]) -> list[Row]:
    """The control rows in `values` (keyed by FIELDS)."""
    return [
        Row(values[f"on{i}"], values[f"concept{i}"], values[f"class{i}"], values[f"strength{i}"], values[f"target{i}"])
        for i in range(MAX_ROWS)
    ]


def layering_of(values: dict[str, Any]) -> Layering:
    return Layering(values["layer_mode"], values["k"], values["kappa"], values["w0"], values["manual"])


def active_names(values: dict[str, Any]) -> list[str]:
    """The names of the rows that steer, once each, in row order: the curves the schedule editor shows."""
    return list(dict.fromkeys(row.name for row in rows_of(values) if row.active))


def recipe_from_values(values: dict[str, Any], *, model_id: str, bank: str | None) -> Recipe:
    """The Recipe the page's values (keyed by FIELDS) describe."""
    return build_recipe(
        model_id=model_id,
        prompt=values["prompt"],
        audio_prompt=values["audio_prompt"] or None,
        melody=values["melody"] or None,
        seconds=values["seconds"],
        seed=values["seed"],
        guidance=values["guidance"],
        cfg_mode=values["cfg_mode"],
        gate_p=values["gate_p"],
        layering=layering_of(values),
        rows=rows_of(values),
        schedules=values["schedule"],
        readout_concept=values["readout"] or None,
        bank=bank,
    )


def values_from_recipe(recipe: Recipe) -> dict[str, Any]:
    """Every FIELDS value for a recipe (InputError when the page cannot show it). Empty rows have no concept and a
    recipe without manual weights has manual = ""; the page decides what those widgets then show."""
    layering = layering_from_recipe(recipe)
    # a recipe made elsewhere may name a clip this machine does not have: the page then shows none
    audio_prompt = recipe.audio_prompt if recipe.audio_prompt and Path(recipe.audio_prompt).is_file() else None
    values = dict(
        prompt=recipe.prompt,
        audio_prompt=audio_prompt,
        melody=recipe.melody if recipe.melody and Path(recipe.melody).is_file() else None,
        seconds=recipe.seconds,
        seed=recipe.seed,
        guidance=recipe.sampling.guidance_scale,
        cfg_mode=recipe.cfg_mode,
        gate_p=recipe.controls[0].gate_p if recipe.controls else DEFAULT_GATE_P,
        layer_mode=layering.mode,
        k=layering.k,
        kappa=layering.kappa,
        w0=layering.w0,
        manual=layering.manual,
        schedule=replace(schedules_from_recipe(recipe), given=round_time(prompt_seconds(audio_prompt))),
        readout=recipe.readout.concept if recipe.readout else None,
    )
    for i, row in enumerate(rows_from_recipe(recipe)):
        values.update(
            {
                f"on{i}": row.enabled,
                f"concept{i}": row.concept,
                f"class{i}": row.class_name,
                f"strength{i}": row.strength,
                f"target{i}": row.target,
            }
        )
    return values


# ------------------------------------------------------------------------------------------- widgets <-> recipe


def build_recipe(
    *,
    model_id: str,
    prompt: str,
    seconds: float,
    audio_prompt: str | None = None,
    melody: str | None = None,
    seed: int,
    guidance: float,
    cfg_mode: str,
    gate_p: float,
    layering: Layering,
    rows: list[Row],
    schedules: EditorValue | None,
    readout_concept: str | None,
    bank: str | None = None,
) -> Recipe:
    """The Recipe the page describes, validated as any recipe file would be (InputError names the field)."""
    curves = schedules.to_recipe_schedules() if schedules is not None else {}
    controls = []
    for row in rows:
        if not row.active:
            continue
        control = {
            "concept": row.concept,
            "class": row.class_name,
            "strength": float(row.strength),
            "layers": layering.to_dict(),
            "gate_p": float(gate_p),
        }
        if row.target:  # an emptied box (None) is 0 too: a fixed strength
            control["target"] = {"p": float(row.target)}
        if row.name in curves:
            control["schedule"] = _fit_schedule(curves[row.name], float(seconds))
        controls.append(control)
    return parse_recipe(
        {
            "version": 1,
            "model": model_id,
            "bank": bank,
            "prompt": prompt,
            "audio_prompt": audio_prompt,
            "melody": melody,
            "seconds": float(seconds),
            "seed": int(seed),
            "sampling": {"guidance_scale": float(guidance)},
            "cfg_mode": cfg_mode,
            "controls": controls,
            "readout": {"concept": readout_concept, "layer": "best", "window_s": 1.0} if readout_concept else None,
        }
    )


def _fit_schedule(schedule: dict, seconds: float) -> dict:
    """The editor's curve, clipped to the clip (the editor may lag one event behind a change of length)."""
    points = [[min(float(t), seconds), float(v)] for t, v in schedule["points"]]
    kept = [p for i, p in enumerate(points) if i == 0 or p[0] > points[i - 1][0]]
    return {"kind": "points", "points": kept}


def rows_from_recipe(recipe: Recipe) -> list[Row]:
    """The page's rows for a recipe: its controls in order (at most MAX_ROWS), then empty rows. A target shows its p
    only: the page runs the controller at its default gains."""
    if len(recipe.controls) > MAX_ROWS:
        raise InputError(f"controls holds {len(recipe.controls)} controls; the studio shows at most {MAX_ROWS}")
    rows = [
        Row(c.enabled, c.concept, c.class_name, c.strength, c.target.p if c.target else 0.0) for c in recipe.controls
    ]
    return rows + [Row(False, None, None, DEFAULT_STRENGTH)] * (MAX_ROWS - len(rows))


def layering_from_recipe(recipe: Recipe) -> Layering:
    """The page applies one layer weighting to every control: the first control's."""
    if not recipe.controls:
        return Layering()
    spec = recipe.controls[0].layers
    manual = ", ".join(f"{w:g}" for w in spec.weights) if spec.weights else ""
    return Layering(mode=spec.mode, k=spec.k, kappa=spec.kappa, w0=spec.w0, manual=manual)


def prompt_seconds(path: str | None) -> float:
    """The length of an audio prompt (0 without one, or when it cannot be read: generating will say why), which the
    schedule editor shades."""
    try:
        return float(sf.info(path).duration) if path else 0.0
    except (sf.LibsndfileError, RuntimeError, OSError):
        return 0.0


def schedules_from_recipe(recipe: Recipe) -> EditorValue:
    """The editor's curves for a recipe's controls (every schedule kind evaluated into points at 0.1 s)."""
    schedules = {}
    for control in recipe.controls:
        name = control_name(control.concept, control.class_name)
        if control.schedule.kind == "points":
            schedules[name] = control.schedule.to_dict()
        else:
            steps = int(recipe.seconds * 10) + 1
            values = [min(1.0, max(0.0, float(v))) for v in control.schedule.values(steps, frame_rate=10)]
            points = [[round(i * 0.1, 6), v] for i, v in enumerate(values)]
            if points[-1][0] < recipe.seconds:
                points.append([recipe.seconds, values[-1]])
            schedules[name] = {"kind": "points", "points": points}
    return EditorValue.from_recipe_schedules(recipe.seconds, schedules)
