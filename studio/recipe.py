"""The Recipe: the one versioned, user-facing description of a steered generation.

A recipe is JSON (see DESIGN.md), built by the UI, run by the CLI, saved next to every rendered file. Reading one is
strict: an unknown field, a wrong type or an out-of-range value raises ``RecipeError`` whose message starts with the
field's path, e.g. ``controls[0].gate_p must be in (0, 1], got 1.5``. Each field is declared once, with its JSON key,
default and limits (studio/fields.py), and reading and writing JSON follow from it. Checking a recipe against a model
(``check_for_model``, here) and against its concept banks (``studio.banks.check_for_banks``) are later steps, because
parsing needs neither.

Example (every field but ``version`` and ``seconds`` has a default)::

    {"version": 1, "model": "tiny", "bank": "assets/banks/tiny", "prompt": "warm lofi piano",
     "seconds": 10, "seed": 1234, "sampling": {"guidance_scale": 3.0, "top_k": 250, "temperature": 1.0},
     "cfg_mode": "both",
     "controls": [{"concept": "notes", "class": "C", "strength": 0.3, "component": 0,
                   "schedule": {"kind": "points", "points": [[0, 1.0], [5, 1.0], [10, 0.0]]},
                   "layers": {"mode": "exp", "kappa": 0.95, "w0": 1.0}, "gate_p": 0.3}],
     "readout": {"concept": "notes", "layer": "best", "window_s": 1.0}}

Field semantics:
- ``bank``: where the banks are (see studio/banks.py): a folder, a name under assets/banks/, or a Hugging Face Hub
  repo (``hf://owner/repo`` or ``hf://owner/repo/sub/folder``, fetched and cached by studio/hub.py); null means the
  model's own banks.
- ``audio_prompt``: an audio file to continue (any rate and channel count: resampled, and mixed to mono, or kept as
  two channels for a stereo checkpoint). It opens the clip: ``seconds`` is the whole clip's length, the prompt's
  included, and schedules are timed on that whole timeline. Steering adds nothing over the prompt; the readout reads
  it too.
- ``melody``: an audio file whose tune a melody checkpoint follows (its chromagram, studio/melody.py; the first 30 s,
  repeated to fill them when shorter). Only melody checkpoints take one.
- ``controls[i].layers``: ``{"mode": "uniform"}``, ``{"mode": "topk", "k": 8}``, ``{"mode": "exp", "kappa": 0.95,
  "w0": 1.0}`` (each with an optional ``"layers": [...]``, the decoder layers it may use; default all but the first,
  as the paper), or ``{"mode": "manual", "weights": [w_0, ..., w_{L-1}]}``.
- ``controls[i].schedule``: see studio/schedules.py (``constant`` / ``linear`` / ``exponential`` / ``points``, in
  seconds).
- ``controls[i].target``: ``{"p": 0.8}`` (optionally ``"kp"``, ``"ki"``) steers in closed loop (studio/control.py):
  each step's strength is set so that the readout's running probability of the control's class holds at p, up to the
  control's ``strength`` as a ceiling (it must be positive). The readout must read the control's concept.
- ``readout``: the concept whose probe reads the hidden states during generation; ``layer`` is ``"best"`` (the
  bank's readout layer) or that layer's index; ``window_s`` the sliding window; null turns the readout off.
- ``extend``: ``{"window_s": null, "stride_s": null}``. A clip longer than the window (null: the model's longest, 30 s
  for MusicGen) is made window by window: each later window opens with the last ``window_s - stride_s`` seconds made
  so far (prefilled, as an audio prompt) and adds ``stride_s`` seconds (null: 3/5 of the window, 18 s of 30).
  Schedules, layer weights, gates and the readout are over the whole clip's timeline: each window runs the rows of the
  one plan that fall in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from studio.errors import InputError
from studio.fields import (
    JsonData,
    boolean,
    choice,
    fail,
    fields_to_json,
    integer,
    items,
    join,
    nested,
    number,
    optional,
    read,
    spec,
    string,
    tag,
)
from studio.sampling import Sampling
from studio.schedules import Constant, Schedule, crossfade, read_schedule

RECIPE_VERSION = 1
MAX_STRENGTH = 5.0
MAX_LAYER_WEIGHT = 5.0
MAX_CONTROLS = 32
MAX_PROMPT_CHARS = 2000
MAX_SECONDS = 600.0  # a clip; past one window (MusicGen's 30 s) it is made window by window (Extension)
MAX_WINDOW_S = 30.0  # MusicGen's training length; a model may allow less (check_for_model)
STRIDE_SHARE = 0.6  # by default a later window adds 3/5 of itself: 18 s after 12 s of context for MusicGen's 30 s
CFG_MODES = ("both", "cond_only")
# The JSON keys each layer mode takes besides "mode".
LAYER_MODE_KEYS = {
    "uniform": ("layers",),
    "topk": ("layers", "k"),
    "exp": ("layers", "kappa", "w0"),
    "manual": ("weights",),
}
LAYER_MODES = tuple(LAYER_MODE_KEYS)
DEFAULT_MODEL = "tiny"


def _layer_list(value: Any, path: str) -> tuple[int, ...]:
    layers = items(integer(0))(value, path)
    if not layers:
        fail(path, "must name at least one decoder layer")
    if len(set(layers)) != len(layers):
        fail(path, f"names a layer twice: {list(layers)}")
    return layers


def _weights(value: Any, path: str) -> tuple[float, ...]:
    weights = items(number(0.0, MAX_LAYER_WEIGHT))(value, path)
    if not weights:
        fail(path, "must hold one weight per decoder layer")
    return weights


@dataclass(frozen=True)
class LayerSpec(JsonData):
    """How a control's strength is spread over decoder layers (see studio/plan.py for the weights)."""

    mode: str = spec("exp", read=choice(LAYER_MODES))
    layers: tuple[int, ...] | None = spec(None, read=_layer_list, omit_none=True)  # None: all but the first
    k: int | None = spec(None, read=integer(1), omit_none=True)  # topk: how many layers
    kappa: float = spec(0.95, read=number(0.0, 1.0, low_open=True))  # exp: w0 * s_l ** (1 / kappa)
    w0: float = spec(1.0, read=number(0.0, MAX_LAYER_WEIGHT, low_open=True))
    weights: tuple[float, ...] | None = spec(None, read=_weights, omit_none=True)  # manual: one per layer

    def to_dict(self) -> dict:
        return {"mode": self.mode, **fields_to_json(self, LAYER_MODE_KEYS[self.mode])}


def read_layer_spec(obj: Any, path: str) -> LayerSpec:
    mode = tag(obj, path, "mode", LAYER_MODES)
    layers = read(LayerSpec, obj, path, keys=("mode", *LAYER_MODE_KEYS[mode]))
    required = {"topk": "k", "manual": "weights"}.get(mode)
    if required and getattr(layers, required) is None:
        fail(join(path, required), "is required")
    return layers


def _strength(value: Any, path: str) -> float:
    return number(-MAX_STRENGTH, MAX_STRENGTH)(value, path)


@dataclass(frozen=True)
class Target(JsonData):
    """Closed-loop steering (studio/control.py): hold the readout's running probability of the control's class at
    ``p``, the control's strength its ceiling, by a proportional-integral controller with gains ``kp`` (per unit of
    probability error) and ``ki`` (per unit of error and second), both in units of the ceiling."""

    p: float = spec(read=number(0.0, 1.0, low_open=True))
    kp: float = spec(1.0, read=number(0.0, 100.0))
    ki: float = spec(2.0, read=number(0.0, 100.0))


@dataclass(frozen=True)
class Control(JsonData):
    """One concept direction: ``strength * schedule(t) * layer_weight[l] * gate[t, l]`` times its unit vector."""

    concept: str = spec(read=string)
    class_name: str = spec(read=string, key="class")
    strength: float = spec(read=_strength)
    component: int = spec(0, read=integer(0))  # which direction of the class (0: first; RFM's largest AGOP eigenvector)
    schedule: Schedule = spec(Constant(1.0), read=read_schedule)
    layers: LayerSpec = spec(LayerSpec(), read=read_layer_spec)
    gate_p: float = spec(0.3, read=number(0.0, 1.0, low_open=True))  # chance that it acts at a (step, layer)
    enabled: bool = spec(True, read=boolean)
    target: Target | None = spec(None, read=optional(nested(Target)), omit_none=True)  # closed loop; strength: ceiling


def _readout_layer(value: Any, path: str) -> int | str:
    if value == "best":
        return value
    if isinstance(value, str):
        fail(path, f'must be "best" or a decoder layer index, got {value!r}')
    return integer(0)(value, path)


@dataclass(frozen=True)
class ReadoutSpec(JsonData):
    concept: str = spec(read=string)
    layer: int | str = spec("best", read=_readout_layer)
    window_s: float = spec(1.0, read=number(0.0, MAX_WINDOW_S, low_open=True))


def _version(value: Any, path: str) -> int:
    version = integer()(value, path)
    if version != RECIPE_VERSION:
        fail(path, f"must be {RECIPE_VERSION} (the recipe format this studio reads), got {version}")
    return version


def _prompt(value: Any, path: str) -> str:
    prompt = string(value, path)
    if len(prompt) > MAX_PROMPT_CHARS:
        fail(path, f"may be at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}")
    return prompt


def _model(value: Any, path: str) -> str:
    if not string(value, path).strip():
        fail(path, 'must name a model (a hub id, a folder or "tiny")')
    return value


@dataclass(frozen=True)
class Extension(JsonData):
    """How a clip longer than one window is made: windows of ``window_s`` seconds (None: the model's longest), each
    after the first opening with the last ``window_s - stride_s`` seconds made so far and adding ``stride_s`` more
    (None: 3/5 of the window, 18 s of MusicGen's 30 as audiocraft's demo)."""

    window_s: float | None = spec(None, read=optional(number(0.0, MAX_WINDOW_S, low_open=True)))
    stride_s: float | None = spec(None, read=optional(number(0.0, MAX_WINDOW_S, low_open=True)))

    def sizes(self, max_seconds: float) -> tuple[float, float]:
        """(window, stride) in seconds for a model whose longest clip is `max_seconds`."""
        window = self.window_s or max_seconds
        return window, self.stride_s or STRIDE_SHARE * window


@dataclass(frozen=True, kw_only=True)
class Recipe(JsonData):
    version: int = spec(RECIPE_VERSION, read=_version, required=True)
    model: str = spec(DEFAULT_MODEL, read=_model)
    bank: str | None = spec(None, read=optional(string))
    prompt: str = spec("", read=_prompt)
    audio_prompt: str | None = spec(None, read=optional(string))  # a clip to continue: it opens the `seconds`
    melody: str | None = spec(None, read=optional(string))  # a clip whose tune a melody checkpoint follows
    seconds: float = spec(read=number(0.0, MAX_SECONDS, low_open=True))
    seed: int = spec(0, read=integer(0, below=2**63))
    sampling: Sampling = spec(Sampling(), read=nested(Sampling))
    cfg_mode: str = spec("both", read=choice(CFG_MODES))
    controls: tuple[Control, ...] = spec((), read=items(nested(Control), MAX_CONTROLS))
    readout: ReadoutSpec | None = spec(None, read=optional(nested(ReadoutSpec)))
    extend: Extension = spec(Extension(), read=nested(Extension))

    def __post_init__(self):
        for i, control in enumerate(self.controls):
            latest = control.schedule.latest_time()
            if latest > self.seconds:
                fail(f"controls[{i}].schedule", f"names time {latest:g} s, outside the clip (0 to {self.seconds:g} s)")
            if control.target is None or not control.enabled:
                continue
            if control.strength <= 0:
                fail(
                    f"controls[{i}].strength",
                    f"is the ceiling of a control with a target and must be positive, got {control.strength:g}",
                )
            if self.readout is None or self.readout.concept != control.concept:
                read = "nothing" if self.readout is None else f"'{self.readout.concept}'"
                fail(
                    f"controls[{i}].target",
                    f"needs the readout to read '{control.concept}', which it steers towards; the readout reads {read}",
                )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        return parse_recipe(_decode_json(text, "recipe"))

    def active_controls(self) -> tuple[Control, ...]:
        return tuple(c for c in self.controls if c.enabled)

    def concepts(self) -> list[str]:
        """Concepts whose banks this recipe needs: the enabled controls' and the readout's, in first-use order."""
        names = [c.concept for c in self.active_controls()] + ([self.readout.concept] if self.readout else [])
        return list(dict.fromkeys(names))


def parse_recipe(obj: Any) -> Recipe:
    """A Recipe from decoded JSON, refusing anything unknown, mistyped or out of range (``InputError``)."""
    return read(Recipe, obj, "")


def _decode_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{where} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe file: a bare recipe, or a render record (``out.json``) whose ``recipe`` field is one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read recipe {path}: {err.strerror if isinstance(err, OSError) else err}") from None
    obj = _decode_json(text, str(path))
    if isinstance(obj, dict) and "recipe" in obj and "version" not in obj:
        obj = obj["recipe"]
    return parse_recipe(obj)


def with_overrides(recipe: Recipe, **changes: Any) -> Recipe:
    """The recipe with top-level fields replaced (None values ignored), re-validated as JSON would be."""
    obj = recipe.to_dict()
    for key, value in changes.items():
        if value is not None:
            if key == "guidance_scale":
                obj["sampling"]["guidance_scale"] = value
            else:
                obj[key] = value
    return parse_recipe(obj)


def crossfade_controls(first: Control, second: Control, start_s: float, end_s: float) -> tuple[Control, Control]:
    """Two controls handing over from `first` to `second` between start_s and end_s (complementary ramps)."""
    fade_out, fade_in = crossfade(start_s, end_s)
    return replace(first, schedule=fade_out), replace(second, schedule=fade_in)


# ------------------------------------------------------------------------------------------------- against a model


def chosen_layers(spec: LayerSpec, num_layers: int) -> tuple[int, ...]:
    """The layers a non-manual layer mode may use: the listed ones, or all but the first (the paper's default)."""
    if spec.layers is not None:
        return tuple(sorted(spec.layers))
    return tuple(range(1, num_layers)) if num_layers > 1 else (0,)


def check_for_model(recipe: Recipe, loaded) -> None:
    """Refuse what the LoadedModel cannot do: too long a clip or window, layers it does not have, top-K above its
    layers, a melody without melody conditioning."""
    if recipe.melody is not None and not loaded.takes_melody:
        fail(
            "melody",
            f"is given, but {loaded.model_id} has no melody conditioning: use a melody checkpoint "
            f"(facebook/musicgen-melody, or tiny-melody offline), or leave the melody out",
        )
    window, stride = recipe.extend.sizes(loaded.max_seconds)
    if recipe.seconds <= window:  # one pass
        loaded.check_seconds(recipe.seconds)
    elif window > loaded.max_seconds + 1e-9:
        fail("extend.window_s", f"must be at most {loaded.max_seconds:g} for {loaded.model_id}, got {window:g}")
    elif stride >= window:
        fail("extend.stride_s", f"must be shorter than the window ({window:g} s), got {stride:g}")
    num_layers = loaded.num_layers
    for i, control in enumerate(recipe.controls):
        path, spec_ = f"controls[{i}].layers", control.layers
        if spec_.mode == "manual":
            if len(spec_.weights) != num_layers:
                fail(
                    f"{path}.weights",
                    f"must hold one weight per decoder layer ({num_layers}), got {len(spec_.weights)}",
                )
            continue
        for j, layer in enumerate(spec_.layers or ()):
            if layer >= num_layers:
                fail(f"{path}.layers[{j}]", f"must be a decoder layer 0..{num_layers - 1}, got {layer}")
        if spec_.mode == "topk" and spec_.k > len(chosen_layers(spec_, num_layers)):
            fail(
                f"{path}.k",
                f"must be at most the number of layers it chooses from "
                f"({len(chosen_layers(spec_, num_layers))} of {num_layers}), got {spec_.k}",
            )
    if recipe.readout and isinstance(recipe.readout.layer, int) and recipe.readout.layer >= num_layers:
        fail("readout.layer", f"must be a decoder layer 0..{num_layers - 1}, got {recipe.readout.layer}")


__all__ = [
    "RECIPE_VERSION",
    "Sampling",
    "LayerSpec",
    "Control",
    "Target",
    "ReadoutSpec",
    "Extension",
    "Recipe",
    "parse_recipe",
    "load_recipe",
    "check_for_model",
    "chosen_layers",
    "crossfade_controls",
    "with_overrides",
]
