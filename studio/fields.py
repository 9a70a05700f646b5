"""Frozen dataclasses that read and write strict JSON, each field declared once.

A field says its JSON key and how to read it: ``spec(read=number(0, 1), key="from")``. ``read(cls, obj, path)``
builds the dataclass from a decoded JSON object, refusing unknown keys, missing required ones, wrong types and values
out of range with an ``InputError`` that starts with the field's path (``controls[0].gate_p must be in (0, 1], got
1.5``); ``to_json(value)`` writes it back. Recipes (studio/recipe.py), schedules and sampling settings use it, so a
field's name, JSON key, default and limits live in one line.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from studio.errors import InputError

Reader = Callable[[Any, str], Any]  # (JSON value, its path) -> Python value; raises InputError


class JsonData:
    """A dataclass whose ``to_dict`` is its JSON form (its fields by key)."""

    def to_dict(self) -> dict:
        return fields_to_json(self)


def spec(
    default: Any = dataclasses.MISSING,
    *,
    read: Reader,
    key: str | None = None,
    required: bool = False,
    omit_none: bool = False,
):
    """A dataclass field that JSON reads with `read` under `key` (default: the field's name). `required`: JSON must
    give it even though Python has a default; `omit_none`: left out of the JSON when None."""
    meta = {"read": read, "key": key, "required": required, "omit_none": omit_none}
    return dataclasses.field(default=default, metadata=meta)


def fail(path: str, problem: str):
    raise InputError.at(path, problem)


def join(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def _key(field: dataclasses.Field) -> str:
    return field.metadata["key"] or field.name


def json_fields(cls) -> dict[str, dataclasses.Field]:
    """JSON key -> field, for the fields of `cls` that JSON reads."""
    return {_key(f): f for f in dataclasses.fields(cls) if "read" in f.metadata}


def read(cls, obj: Any, path: str, keys: tuple[str, ...] | None = None, **extra: Any):
    """An instance of dataclass `cls` from JSON object `obj` at `path`. `keys` limits the keys allowed (a variant's
    own); `extra` passes fields read elsewhere (a variant's tag). Errors raised by the class's own checks
    (``__post_init__``) are placed under `path`."""
    by_key = json_fields(cls)
    allowed = keys if keys is not None else tuple(by_key)
    if not isinstance(obj, dict):
        fail(path or "recipe", f"must be an object, got {type_name(obj)}")
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        fail(join(path, unknown[0]), f"is not a known field here; allowed: {', '.join(allowed)}")
    values = dict(extra)
    for key in allowed:
        field = by_key.get(key)
        if field is None or field.name in values:
            continue
        where = join(path, key)
        if key in obj:
            values[field.name] = field.metadata["read"](obj[key], where)
        elif field.metadata["required"] or (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        ):
            fail(where, "is required")
    try:
        return cls(**values)
    except InputError as err:
        raise err.within(path) from None


def to_json(value: Any) -> Any:
    """A dataclass (its JSON fields, by key), list or tuple as plain JSON values; objects with ``to_dict`` use it."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return fields_to_json(value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def fields_to_json(value: Any, keys: tuple[str, ...] | None = None) -> dict:
    """The JSON fields of a dataclass instance (only `keys`, when given), by key."""
    out = {}
    for key, field in json_fields(type(value)).items():
        item = getattr(value, field.name)
        if (keys is None or key in keys) and not (item is None and field.metadata["omit_none"]):
            out[key] = to_json(item)
    return out


# ------------------------------------------------------------------------------------------------------- readers


def type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Reader:
    """A finite JSON number (not a boolean), within [low, high] ((low, high] with `low_open`) when given."""

    def reader(value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(path, f"must be a number, got {type_name(value)}")
        if not math.isfinite(value):
            fail(path, f"must be a finite number, got {value}")
        if low is not None and not (value > low if low_open else value >= low) or high is not None and value > high:
            fail(path, f"must be in {_interval(low, high, low_open, False)}, got {value:g}")
        return float(value)

    return reader


def integer(low: int | None = None, below: int | None = None) -> Reader:
    """A JSON integer, >= low and < below when given."""

    def reader(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(path, f"must be an integer, got {type_name(value)} {value!r}")
        if below is not None and not low <= value < below:
            fail(path, f"must be in [{low}, {below_text(below)}), got {value}")
        if low is not None and value < low:
            fail(path, f"must be >= {low}, got {value}")
        return value

    return reader


def below_text(limit: int) -> str:
    """2**63 reads better than its 19 digits."""
    exponent = limit.bit_length() - 1
    return f"2**{exponent}" if limit == 1 << exponent and exponent > 16 else str(limit)


def string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        fail(path, f"must be a string, got {type_name(value)}")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        fail(path, f"must be true or false, got {type_name(value)}")
    return value


def choice(options: tuple[str, ...]) -> Reader:
    def reader(value: Any, path: str) -> str:
        if not isinstance(value, str) or value not in options:
            fail(path, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    return reader


def optional(inner: Reader) -> Reader:
    """null, or what `inner` reads."""
    return lambda value, path: None if value is None else inner(value, path)


def items(inner: Reader, max_len: int | None = None) -> Reader:
    """A JSON list read item by item into a tuple."""

    def reader(value: Any, path: str) -> tuple:
        if not isinstance(value, list):
            fail(path, f"must be a list, got {type_name(value)}")
        if max_len is not None and len(value) > max_len:
            fail(path, f"may hold at most {max_len} items, got {len(value)}")
        return tuple(inner(item, join(path, i)) for i, item in enumerate(value))

    return reader


def tag(obj: Any, path: str, key: str, options: tuple[str, ...]) -> str:
    """The variant of a tagged JSON object (a schedule's "kind", a layer spec's "mode"), read before its fields."""
    if not isinstance(obj, dict):
        fail(path or "recipe", f"must be an object, got {type_name(obj)}")
    if key not in obj:
        fail(join(path, key), "is required")
    return choice(options)(obj[key], join(path, key))


def nested(cls) -> Reader:
    """A JSON object read as dataclass `cls`."""
    return lambda value, path: read(cls, value, path)
