"""The Recipe: the one versioned, user-facing description of a steered generation.

A recipe is JSON (see DESIGN.md), built by the UI, run by the CLI, saved next to every rendered file. Reading one is
strict: an unknown field, a wrong type or an out-of-range value raises ``RecipeError`` whose message starts with the
field's path, e.g. ``controls[0].gate_p must be in (0, 1], got 1.5``. Checking a recipe against a model
(``check_for_model``) and against concept banks (``check_for_banks``) are separate steps, because parsing needs neither.

Example (every field but ``version`` and ``seconds`` has a default)::

    {"version": 1, "model": "tiny", "bank": "assets/banks/tiny", "prompt": "warm lofi piano",
     "seconds": 10, "seed": 1234, "sampling": {"guidance_scale": 3.0, "top_k": 250, "temperature": 1.0},
     "cfg_mode": "both",
     "controls": [{"concept": "notes", "class": "C", "strength": 0.3, "component": 0,
                   "schedule": {"kind": "points", "points": [[0, 1.0], [5, 1.0], [10, 0.0]]},
                   "layers": {"mode": "exp", "kappa": 0.95, "w0": 1.0}, "gate_p": 0.3}],
     "readout": {"concept": "notes", "layer": "best", "window_s": 1.0}}

Field semantics:
- ``bank``: a folder holding one ConceptBank folder per concept (``<bank>/notes``), or one ConceptBank folder; a name
  that is not a folder is looked up under ``assets/banks/``; null means ``assets/banks/<model name>``.
- ``controls[i].layers``: ``{"mode": "uniform"}``, ``{"mode": "topk", "k": 8}``, ``{"mode": "exp", "kappa": 0.95,
  "w0": 1.0}`` (each with an optional ``"layers": [...]``, the decoder layers it may use; default all but the first,
  as the paper), or ``{"mode": "manual", "weights": [w_0, ..., w_{L-1}]}``.
- ``controls[i].schedule``: see studio/schedules.py (``constant`` / ``linear`` / ``exponential`` / ``points``, in
  seconds).
- ``readout``: the concept whose probe reads the hidden states during generation; ``layer`` is ``"best"`` (the
  bank's readout layer) or that layer's index; ``window_s`` the sliding window; null turns the readout off.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from studio.schedules import Constant, Exponential, Linear, Points, Schedule, ScheduleError, crossfade

RECIPE_VERSION = 1
MAX_STRENGTH = 5.0
MAX_LAYER_WEIGHT = 5.0
MAX_CONTROLS = 32
MAX_POINTS = 2000
MAX_PROMPT_CHARS = 2000
MAX_SECONDS = 30.0  # MusicGen's training length; a model may allow less (check_for_model)
CFG_MODES = ("both", "cond_only")
LAYER_MODES = ("uniform", "topk", "exp", "manual")
BANKS_DIR = Path(__file__).resolve().parent.parent / "assets" / "banks"


class RecipeError(ValueError):
    """An invalid recipe; the message names the field and says what is allowed."""


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; the defaults are the published MusicGen checkpoints' own.

    ``guidance_scale`` > 1 turns on classifier-free guidance (the decoder batch becomes [conditional; unconditional]);
    ``top_k`` = 0 and ``top_p`` = 0 turn those filters off; ``greedy`` takes the arg-max instead of sampling.
    """

    guidance_scale: float = 3.0
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    greedy: bool = False


@dataclass(frozen=True)
class LayerSpec:
    """How a control's strength is spread over decoder layers (see studio/plan.py for the weights)."""

    mode: str = "exp"
    layers: tuple[int, ...] | None = None  # layers the mode may use; None = all but the first
    k: int | None = None                   # topk: how many layers
    kappa: float = 0.95                    # exp: w_l = w0 * s_l ** (1 / kappa)
    w0: float = 1.0
    weights: tuple[float, ...] | None = None  # manual: one weight per decoder layer

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"mode": self.mode}
        if self.mode == "manual":
            out["weights"] = list(self.weights)
            return out
        if self.layers is not None:
            out["layers"] = list(self.layers)
        if self.mode == "topk":
            out["k"] = self.k
        if self.mode == "exp":
            out.update(kappa=self.kappa, w0=self.w0)
        return out


@dataclass(frozen=True)
class Control:
    """One concept direction: ``strength * schedule(t) * layer_weight[l] * gate[t, l]`` times its unit vector."""

    concept: str
    class_name: str                  # JSON "class"
    strength: float
    component: int = 0               # which AGOP eigenvector (0 = largest)
    schedule: Schedule = Constant(1.0)
    layers: LayerSpec = LayerSpec()
    gate_p: float = 0.3              # probability that the control acts at a given (step, layer)
    enabled: bool = True

    def to_dict(self) -> dict:
        return {"concept": self.concept, "class": self.class_name, "strength": self.strength,
                "component": self.component, "schedule": self.schedule.to_dict(), "layers": self.layers.to_dict(),
                "gate_p": self.gate_p, "enabled": self.enabled}


@dataclass(frozen=True)
class ReadoutSpec:
    concept: str
    layer: int | str = "best"
    window_s: float = 1.0

    def to_dict(self) -> dict:
        return {"concept": self.concept, "layer": self.layer, "window_s": self.window_s}


@dataclass(frozen=True)
class Recipe:
    seconds: float
    version: int = RECIPE_VERSION
    model: str = "tiny"
    bank: str | None = None
    prompt: str = ""
    seed: int = 0
    sampling: Sampling = Sampling()
    cfg_mode: str = "both"
    controls: tuple[Control, ...] = ()
    readout: ReadoutSpec | None = None

    def to_dict(self) -> dict:
        return {"version": self.version, "model": self.model, "bank": self.bank, "prompt": self.prompt,
                "seconds": self.seconds, "seed": self.seed, "sampling": asdict(self.sampling),
                "cfg_mode": self.cfg_mode, "controls": [c.to_dict() for c in self.controls],
                "readout": self.readout.to_dict() if self.readout else None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, obj: Any) -> "Recipe":
        return parse_recipe(obj)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        return parse_recipe(_decode_json(text, "recipe"))

    def active_controls(self) -> tuple[Control, ...]:
        return tuple(c for c in self.controls if c.enabled)

    def concepts(self) -> list[str]:
        """Concepts whose banks this recipe needs: the enabled controls' and the readout's, in first-use order."""
        names = [c.concept for c in self.active_controls()] + ([self.readout.concept] if self.readout else [])
        return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------- strict JSON reading

_REQUIRED = object()


def _fail(path: str, problem: str):
    raise RecipeError(f"{path} {problem}")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(path, f"must be a number, got {_type_name(value)}")
    if not math.isfinite(value):
        _fail(path, f"must be a finite number, got {value}")
    return float(value)


def _integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, f"must be an integer, got {_type_name(value)} {value!r}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, f"must be a string, got {_type_name(value)}")
    return value


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        _fail(path, f"must be true or false, got {_type_name(value)}")
    return value


def _list(value: Any, path: str, max_len: int | None = None) -> list:
    if not isinstance(value, list):
        _fail(path, f"must be a list, got {_type_name(value)}")
    if max_len is not None and len(value) > max_len:
        _fail(path, f"may hold at most {max_len} items, got {len(value)}")
    return value


def _in_range(value: float, path: str, low: float, high: float, low_open: bool = False,
              high_open: bool = False) -> float:
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        _fail(path, f"must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}, got {value:g}")
    return value


def _at_least(value: int, path: str, low: int) -> int:
    if value < low:
        _fail(path, f"must be >= {low}, got {value}")
    return value


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        _fail(path, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


class _Fields:
    """Reads one JSON object: refuses unknown fields; each ``take`` reads and type-checks one field."""

    def __init__(self, obj: Any, path: str, allowed: tuple[str, ...]):
        where = path or "recipe"
        if not isinstance(obj, dict):
            _fail(where, f"must be an object, got {_type_name(obj)}")
        unknown = [k for k in obj if k not in allowed]
        if unknown:
            raise RecipeError(f"{self._join(path, unknown[0])} is not a known field here; "
                              f"allowed: {', '.join(allowed)}")
        self.obj, self.path = obj, path

    @staticmethod
    def _join(path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    def take(self, name: str, reader, default: Any = _REQUIRED):
        path = self._join(self.path, name)
        if name not in self.obj:
            if default is _REQUIRED:
                _fail(path, "is required")
            return default
        return reader(self.obj[name], path)


def _optional(reader):
    return lambda value, path: None if value is None else reader(value, path)


def _schedule(obj: Any, path: str, seconds: float) -> Schedule:
    kind = _Fields(obj, path, tuple(obj) if isinstance(obj, dict) else ()).take("kind", _string)
    fields_by_kind = {"constant": ("kind", "value"), "linear": ("kind", "start", "end", "from", "to"),
                      "exponential": ("kind", "rate", "initial", "start"), "points": ("kind", "points")}
    if kind not in fields_by_kind:
        _fail(f"{path}.kind", f"must be one of {', '.join(fields_by_kind)}, got {kind!r}")
    f = _Fields(obj, path, fields_by_kind[kind])
    try:
        if kind == "constant":
            schedule: Schedule = Constant(f.take("value", _number, 1.0))
        elif kind == "linear":
            schedule = Linear(f.take("start", _number), f.take("end", _number), f.take("from", _number, 0.0),
                              f.take("to", _number, 1.0))
        elif kind == "exponential":
            schedule = Exponential(f.take("rate", _number), f.take("initial", _number, 1.0),
                                   f.take("start", _number, 0.0))
        else:
            raw = _list(f.take("points", lambda v, p: v), f"{path}.points", MAX_POINTS)
            points = []
            for i, item in enumerate(raw):
                item_path = f"{path}.points[{i}]"
                if not isinstance(item, list) or len(item) != 2:
                    _fail(item_path, "must be a [seconds, value] pair")
                points.append((_number(item[0], f"{item_path}[0]"), _number(item[1], f"{item_path}[1]")))
            schedule = Points(tuple(points))
    except ScheduleError as err:
        raise RecipeError(f"{path}.{err.field} {err.problem}") from None
    if schedule.latest_time() > seconds:
        _fail(path, f"names time {schedule.latest_time():g} s, outside the clip (0 to {seconds:g} s)")
    return schedule


def _layer_list(value: Any, path: str) -> tuple[int, ...]:
    items = _list(value, path)
    if not items:
        _fail(path, "must name at least one decoder layer")
    layers = tuple(_at_least(_integer(v, f"{path}[{i}]"), f"{path}[{i}]", 0) for i, v in enumerate(items))
    if len(set(layers)) != len(layers):
        _fail(path, f"names a layer twice: {list(layers)}")
    return layers


def _layers(obj: Any, path: str) -> LayerSpec:
    mode = _Fields(obj, path, tuple(obj) if isinstance(obj, dict) else ()).take("mode", lambda v, p: _choice(
        v, p, LAYER_MODES))
    allowed = {"uniform": ("mode", "layers"), "topk": ("mode", "layers", "k"), "exp": ("mode", "layers", "kappa", "w0"),
               "manual": ("mode", "weights")}[mode]
    f = _Fields(obj, path, allowed)
    if mode == "manual":
        raw = _list(f.take("weights", lambda v, p: v), f"{path}.weights")
        if not raw:
            _fail(f"{path}.weights", "must hold one weight per decoder layer")
        weights = tuple(_in_range(_number(w, f"{path}.weights[{i}]"), f"{path}.weights[{i}]", 0.0, MAX_LAYER_WEIGHT)
                        for i, w in enumerate(raw))
        return LayerSpec(mode="manual", weights=weights)
    layers = f.take("layers", _optional(_layer_list), None)
    if mode == "topk":
        k = _at_least(f.take("k", _integer), f"{path}.k", 1)
        return LayerSpec(mode="topk", layers=layers, k=k)
    if mode == "exp":
        kappa = _in_range(f.take("kappa", _number, 0.95), f"{path}.kappa", 0.0, 1.0, low_open=True)
        w0 = _in_range(f.take("w0", _number, 1.0), f"{path}.w0", 0.0, MAX_LAYER_WEIGHT, low_open=True)
        return LayerSpec(mode="exp", layers=layers, kappa=kappa, w0=w0)
    return LayerSpec(mode="uniform", layers=layers)


def _control(obj: Any, path: str, seconds: float) -> Control:
    f = _Fields(obj, path, ("concept", "class", "strength", "component", "schedule", "layers", "gate_p", "enabled"))
    return Control(
        concept=f.take("concept", _string),
        class_name=f.take("class", _string),
        strength=_in_range(f.take("strength", _number), f"{path}.strength", -MAX_STRENGTH, MAX_STRENGTH),
        component=_at_least(f.take("component", _integer, 0), f"{path}.component", 0),
        schedule=f.take("schedule", lambda v, p: _schedule(v, p, seconds), Constant(1.0)),
        layers=f.take("layers", _layers, LayerSpec()),
        gate_p=_in_range(f.take("gate_p", _number, 0.3), f"{path}.gate_p", 0.0, 1.0, low_open=True),
        enabled=f.take("enabled", _boolean, True),
    )


def _sampling(obj: Any, path: str) -> Sampling:
    f = _Fields(obj, path, ("guidance_scale", "top_k", "top_p", "temperature", "greedy"))
    return Sampling(
        guidance_scale=_in_range(f.take("guidance_scale", _number, 3.0), f"{path}.guidance_scale", 1.0, 20.0),
        top_k=_at_least(f.take("top_k", _integer, 250), f"{path}.top_k", 0),
        top_p=_in_range(f.take("top_p", _number, 0.0), f"{path}.top_p", 0.0, 1.0),
        temperature=_in_range(f.take("temperature", _number, 1.0), f"{path}.temperature", 0.0, 10.0, low_open=True),
        greedy=f.take("greedy", _boolean, False),
    )


def _readout_layer(value: Any, path: str) -> int | str:
    if value == "best":
        return value
    if isinstance(value, str):
        _fail(path, f"must be \"best\" or a decoder layer index, got {value!r}")
    return _at_least(_integer(value, path), path, 0)


def _readout(obj: Any, path: str) -> ReadoutSpec:
    f = _Fields(obj, path, ("concept", "layer", "window_s"))
    return ReadoutSpec(concept=f.take("concept", _string), layer=f.take("layer", _readout_layer, "best"),
                       window_s=_in_range(f.take("window_s", _number, 1.0), f"{path}.window_s", 0.0, MAX_SECONDS,
                                          low_open=True))


def _seed(value: int) -> int:
    if not 0 <= value < 2 ** 63:
        _fail("seed", f"must be in [0, 2**63), got {value}")
    return value


def parse_recipe(obj: Any) -> Recipe:
    """A Recipe from decoded JSON, refusing anything unknown, mistyped or out of range (``RecipeError``)."""
    f = _Fields(obj, "", ("version", "model", "bank", "prompt", "seconds", "seed", "sampling", "cfg_mode",
                          "controls", "readout"))
    version = f.take("version", _integer)
    if version != RECIPE_VERSION:
        _fail("version", f"must be {RECIPE_VERSION} (the recipe format this studio reads), got {version}")
    seconds = _in_range(f.take("seconds", _number), "seconds", 0.0, MAX_SECONDS, low_open=True)
    prompt = f.take("prompt", _string, "")
    if len(prompt) > MAX_PROMPT_CHARS:
        _fail("prompt", f"may be at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}")
    model = f.take("model", _string, "tiny")
    if not model.strip():
        _fail("model", "must name a model (a hub id, a folder or \"tiny\")")
    controls = _list(f.take("controls", lambda v, p: v, []), "controls", MAX_CONTROLS)
    return Recipe(
        version=version, model=model, bank=f.take("bank", _optional(_string), None), prompt=prompt,
        seconds=seconds,
        seed=_seed(f.take("seed", _integer, 0)),
        sampling=f.take("sampling", _sampling, Sampling()),
        cfg_mode=f.take("cfg_mode", lambda v, p: _choice(v, p, CFG_MODES), "both"),
        controls=tuple(_control(c, f"controls[{i}]", seconds) for i, c in enumerate(controls)),
        readout=f.take("readout", _optional(_readout), None),
    )


def _decode_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RecipeError(f"{where} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe file: a bare recipe, or a render record (``out.json``) whose ``recipe`` field is one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"cannot read recipe {path}: {err.strerror if isinstance(err, OSError) else err}") from None
    obj = _decode_json(text, str(path))
    if isinstance(obj, dict) and "recipe" in obj and "version" not in obj:
        obj = obj["recipe"]
    return parse_recipe(obj)


# ------------------------------------------------------------------------------------- checks against model and bank


def chosen_layers(spec: LayerSpec, num_layers: int) -> tuple[int, ...]:
    """The layers a non-manual layer mode may use: the listed ones, or all but the first (the paper's default)."""
    if spec.layers is not None:
        return tuple(sorted(spec.layers))
    return tuple(range(1, num_layers)) if num_layers > 1 else (0,)


def check_for_model(recipe: Recipe, loaded) -> None:
    """Refuse what the LoadedModel cannot do: too long a clip, layers it does not have, top-K above its layers."""
    num_layers, max_seconds, frame_rate, model_id = (loaded.num_layers, loaded.max_seconds, loaded.frame_rate,
                                                     loaded.model_id)
    if recipe.seconds > max_seconds + 1e-9:
        _fail("seconds", f"must be at most {max_seconds:g} for {model_id}, got {recipe.seconds:g}")
    if round(recipe.seconds * frame_rate) < 1:
        _fail("seconds", f"must be at least one frame ({1 / frame_rate:g} s), got {recipe.seconds:g}")
    for i, control in enumerate(recipe.controls):
        path, spec = f"controls[{i}].layers", control.layers
        if spec.mode == "manual":
            if len(spec.weights) != num_layers:
                _fail(f"{path}.weights", f"must hold one weight per decoder layer ({num_layers}), "
                                         f"got {len(spec.weights)}")
            continue
        for j, layer in enumerate(spec.layers or ()):
            if layer >= num_layers:
                _fail(f"{path}.layers[{j}]", f"must be a decoder layer 0..{num_layers - 1}, got {layer}")
        if spec.mode == "topk" and spec.k > len(chosen_layers(spec, num_layers)):
            _fail(f"{path}.k", f"must be at most the number of layers it chooses from "
                               f"({len(chosen_layers(spec, num_layers))} of {num_layers}), got {spec.k}")
    if recipe.readout and isinstance(recipe.readout.layer, int) and recipe.readout.layer >= num_layers:
        _fail("readout.layer", f"must be a decoder layer 0..{num_layers - 1}, got {recipe.readout.layer}")


def check_for_banks(recipe: Recipe, banks: dict) -> None:
    """Refuse concepts without a bank, classes the bank lacks, eigenvector components it does not keep and layers it
    has no trained probes on."""
    for i, control in enumerate(recipe.controls):
        bank = banks.get(control.concept)
        if bank is None:
            _fail(f"controls[{i}].concept", f"names concept '{control.concept}' but no bank for it is loaded "
                                           f"(have: {', '.join(sorted(banks)) or 'none'})")
        if control.class_name not in bank.classes:
            _fail(f"controls[{i}].class", f"'{control.class_name}' is not a class of the '{control.concept}' bank; "
                                         f"choose one of: {', '.join(bank.classes)}")
        components = int(bank.directions.shape[2])
        if control.component >= components:
            _fail(f"controls[{i}].component", f"must be below {components} (the bank keeps {components} "
                                             f"eigenvectors per class), got {control.component}")
        _check_trained_layers(control, f"controls[{i}].layers", bank)
    if recipe.readout:
        bank = banks.get(recipe.readout.concept)
        if bank is None:
            _fail("readout.concept", f"names concept '{recipe.readout.concept}' but no bank for it is loaded "
                                     f"(have: {', '.join(sorted(banks)) or 'none'})")
        layer = recipe.readout.layer
        if layer != "best" and layer != bank.readout_layer:
            _fail("readout.layer", f"the '{recipe.readout.concept}' bank has its readout probe at layer "
                                   f"{bank.readout_layer} only; use \"best\" or {bank.readout_layer}, got {layer}")


def _trained_text(bank) -> str:
    only = "" if len(bank.layers) == bank.num_layers else " only"
    return f"the '{bank.concept}' bank is trained on {bank.describe_layers()}{only}"


def _check_trained_layers(control: Control, path: str, bank) -> None:
    """A control may only weight layers its bank has probes on (a bank may be trained on a subset of layers)."""
    spec, trained = control.layers, set(bank.layers)
    if spec.mode == "manual":
        for j, weight in enumerate(spec.weights):
            if weight != 0 and j not in trained:
                _fail(f"{path}.weights[{j}]", f"puts weight {weight:g} on layer {j}, but {_trained_text(bank)}; "
                                              f"set it to 0")
        return
    for j, layer in enumerate(spec.layers or ()):
        if layer not in trained:
            _fail(f"{path}.layers[{j}]", f"names layer {layer}, but {_trained_text(bank)}; choose among those")
    usable = [layer for layer in chosen_layers(spec, bank.num_layers) if layer in trained]
    if not usable:
        _fail(f"{path}.layers", f"defaults to every layer but the first, and {_trained_text(bank)}; list the "
                                f"layers to use")
    if spec.mode == "topk" and spec.k > len(usable):
        _fail(f"{path}.k", f"must be at most the number of trained layers it chooses from ({len(usable)}: "
                           f"{_trained_text(bank)}), got {spec.k}")


def model_banks_root(model_id: str) -> Path:
    """assets/banks/<last part of the model id>: where a model's banks live unless a recipe names another folder."""
    return BANKS_DIR / model_id.rstrip("/").split("/")[-1]


def bank_folder(recipe: Recipe, concept: str) -> Path:
    """Where the bank of `concept` lives for this recipe (see the module docstring for the rules)."""
    name = recipe.bank if recipe.bank is not None else model_banks_root(recipe.model).name
    root = Path(name).expanduser()
    if not root.is_dir():
        root = BANKS_DIR / name
    if not root.is_dir():
        _fail("bank", f"'{name}' is neither a folder nor a bank under {BANKS_DIR}; make one with "
                      f"`python -m probes train --model {recipe.model} --concept {concept} --out <folder>`")
    return root if (root / "bank.json").is_file() else root / concept


def load_banks(recipe: Recipe, expect=None) -> dict:
    """Load the ConceptBank of every concept the recipe uses, checked against the model signature `expect`.

    A missing, corrupted or foreign bank raises RecipeError with the bank's own explanation.
    """
    from probes.bank import BankError, ConceptBank

    banks = {}
    for concept in recipe.concepts():
        folder = bank_folder(recipe, concept)
        if not folder.is_dir():
            _fail("bank", f"has no bank for concept '{concept}' (looked in {folder}); make one with "
                          f"`python -m probes train --model {recipe.model} --concept {concept} --out {folder}`")
        try:
            bank = ConceptBank.load(folder, expect=expect)
        except BankError as err:
            raise RecipeError(f"bank {folder}: {err}") from None
        if bank.concept != concept:
            _fail("bank", f"folder {folder} holds the '{bank.concept}' bank, not '{concept}'")
        banks[concept] = bank
    return banks


def crossfade_controls(first: Control, second: Control, start_s: float, end_s: float) -> tuple[Control, Control]:
    """Two controls handing over from `first` to `second` between start_s and end_s (complementary ramps)."""
    fade_out, fade_in = crossfade(start_s, end_s)
    return replace(first, schedule=fade_out), replace(second, schedule=fade_in)


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


__all__ = [
    "RECIPE_VERSION", "RecipeError", "Sampling", "LayerSpec", "Control", "ReadoutSpec", "Recipe", "parse_recipe",
    "load_recipe", "check_for_model", "check_for_banks", "load_banks", "bank_folder", "chosen_layers",
    "crossfade_controls", "with_overrides"
]
