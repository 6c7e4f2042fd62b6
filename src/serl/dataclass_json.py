"""Frozen dataclasses from JSON: the one decoder for every config serl reads (agent and training
configs, run files, robot task files).

JSON turns tuples into lists and nested configs into objects; this puts both back, guided by the
fields' type hints, so a decoded config is equal (and hashes equal) to the one that was written.
Unknown keys are refused at any depth; values are not converted otherwise (fields typed Any keep
their JSON form): each config's `__post_init__` checks its own. (dacite and pydantic were tried:
the first does not rebuild tuples nested in tuples, the second cannot refuse unknown keys of
plain dataclasses.)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, TypeVar

import tyro

from serl.errors import ConfigError, PathNotFound

T = TypeVar("T")


def json_object(text: str) -> dict[str, Any]:
    """A JSON object given as text (a command-line flag's value)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"not valid JSON ({e}): {text!r}") from e
    if not isinstance(value, dict):
        raise ConfigError(f"must be a JSON object, got {text!r}")
    return value


# A dict field that the command line takes as one JSON object (e.g. --env-kwargs '{"a": 1}').
JsonObject = Annotated[
    dict[str, Any],
    tyro.constructors.PrimitiveConstructorSpec(
        nargs=1,
        metavar="JSON",
        instance_from_str=lambda args: json_object(args[0]),
        is_instance=lambda value: isinstance(value, dict),
        str_from_instance=lambda value: [json.dumps(value)],
    ),
]


def decode(cls: type[T], data: Any, where: str = "") -> T:
    """An instance of dataclass `cls` from its JSON form (fields left out take defaults)."""
    return cls(**decode_fields(cls, data, where))


def decode_fields(cls: type, data: Any, where: str = "") -> dict[str, Any]:
    """Some fields of dataclass `cls` from JSON, decoded (e.g. to `dataclasses.replace` with)."""
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    hints = _field_types(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{where}: unknown fields {unknown}; known: {sorted(hints)}")
    return {k: _value(hints[k], v, f"{where}.{k}") for k, v in data.items()}


class JsonFile:
    """Mixin for a frozen dataclass kept as one JSON file, DIR/`FILE` (a run's config files)."""

    FILE: ClassVar[str]
    MISSING: ClassVar[str | None] = None  # what a DIR without FILE means; None: the defaults

    def save(self, directory: Path) -> Path:
        """Write DIR/FILE."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / self.FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """DIR/FILE (refusing unknown keys), or the defaults when there is none."""
        path = Path(directory) / cls.FILE
        if not path.exists():
            if cls.MISSING is not None:
                raise PathNotFound(f"{path}: {cls.MISSING}")
            return cls()
        try:
            return decode(cls, json.loads(path.read_text()), str(path))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ConfigError(f"{path}: not a valid {cls.__name__}: {e}") from e


def merge(config: T, overrides: Mapping[str, Any], where: str = "") -> T:
    """`config` with `overrides` applied; an object changes some fields of a nested config."""
    where = where or type(config).__name__
    hints = _field_types(type(config))
    nested = {
        k: v
        for k, v in overrides.items()
        if k in hints and isinstance(v, Mapping) and dataclasses.is_dataclass(getattr(config, k))
    }
    flat = {k: v for k, v in overrides.items() if k not in nested}
    values = decode_fields(type(config), flat, where)
    values |= {k: merge(getattr(config, k), v, f"{where}.{k}") for k, v in nested.items()}
    return dataclasses.replace(config, **values)  # type: ignore[type-var]


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """Init fields of a dataclass and their resolved types."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _value(tp: Any, value: Any, where: str) -> Any:
    """`value` (JSON) as type `tp` expects it: tuples for lists, dataclasses for objects."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        for arm in arms:  # an object is a config of the first dataclass arm
            if isinstance(value, Mapping) and dataclasses.is_dataclass(arm):
                return decode(arm, value, where)
        return _value(arms[0], value, where) if len(arms) == 1 else _tuples(value)
    if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        return decode(tp, value, where)
    if (origin is tuple or tp is tuple) and isinstance(value, list | tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) == len(value):
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(_value(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
        return _tuples(value)
    if origin is dict and len(args) == 2 and isinstance(value, Mapping):
        return {k: _value(args[1], v, f"{where}[{k!r}]") for k, v in value.items()}
    return value  # Any (e.g. env kwargs: passed on as JSON gave them), str, numbers


def _tuples(value: Any) -> Any:
    """Lists as tuples, all the way down (what a frozen, hashable config holds)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
