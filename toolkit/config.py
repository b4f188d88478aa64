"""Typed dataclass configs: build from plain dicts with validation, dump back to dicts.

Precedence is defaults < file < command line; this module does the checking part: an unknown key
or a value of the wrong type is an error naming the dotted key and what would be valid.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A config value or key that is not valid; the message names the dotted key."""


class DataError(ValueError):
    """A file a user gave (data, a checkpoint) that cannot be used; the message names the file."""


def _check_value(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, value_tp = typing.get_args(tp) or (Any, Any)
        return {k: _check_value(value_tp, v, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        items = [_check_value(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build dataclass `cls` from `data`, recursively; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key '{dotted}'; valid keys: {', '.join(fields)}")
        kwargs[key] = _check_value(hints[key], value, dotted)
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in kwargs
    ]
    if required:
        where = f"{prefix}: " if prefix else ""
        raise ConfigError(f"{where}missing required key{'s' * (len(required) > 1)} {', '.join(required)}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from err


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-ready dict of a dataclass config."""
    return dataclasses.asdict(cfg)


def merge(cfg: C, updates: dict[str, Any], prefix: str = "") -> C:
    """A copy of `cfg` with nested `updates` applied (same validation as from_dict)."""

    return from_dict(type(cfg), deep_update(to_dict(cfg), updates), prefix=prefix)


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """['a.b=1', 'c=[1, 2]'] -> {'a': {'b': 1}, 'c': [1, 2]}; values are parsed as YAML scalars/lists."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' is not of the form key.sub=value")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with an earlier override of '{part}'")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"override '{item}': its value is not valid YAML") from None
    return out


def differences(a: Any, b: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted keys (list items by index) whose values differ between two nested values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = {}
        for key in sorted(set(a) | set(b), key=str):
            out.update(differences(a.get(key), b.get(key), f"{prefix}{key}."))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = {}
        for i, (x, y) in enumerate(zip(a, b)):
            out.update(differences(x, y, f"{prefix}{i}."))
        return out
    return {} if a == b else {prefix.rstrip("."): (a, b)}


def deep_update(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """A copy of `base` with nested `updates` merged in (dicts merge, everything else replaces).

    A list in `base` takes updates keyed by index, so `stages.1.lr=2e-5` changes the second stage.
    """
    out = dict(base)
    for k, v in updates.items():
        current = out.get(k)
        if isinstance(v, dict) and isinstance(current, dict):
            out[k] = deep_update(current, v)
        elif isinstance(v, dict) and isinstance(current, list) and all(str(i).isdigit() for i in v):
            items = list(current)
            for i, item in v.items():
                if int(i) >= len(items):
                    raise ConfigError(f"'{k}.{i}': index out of range (the list has {len(items)} items)")
                items[int(i)] = (
                    deep_update(items[int(i)], item)
                    if isinstance(item, dict) and isinstance(items[int(i)], dict)
                    else item
                )
            out[k] = items
        else:
            out[k] = v
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML mapping from `path`; a missing file or bad YAML is a ConfigError naming the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(err, 'problem', err)}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(cls: type[C], path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> C:
    """defaults < YAML file < `key.sub=value` overrides, validated into dataclass `cls`."""
    data = read_yaml(path) if path is not None else {}
    return from_dict(cls, deep_update(data, parse_overrides(overrides)))
