"""Schema validation of the configuration files: the JSON schemas in ``workflow/schemas/``, and
errors that name the key, the bad value and what is allowed there (:class:`ConfigError`).

Both the study config (:mod:`benchbench.spec.config`) and the hardware profiles
(:mod:`benchbench.spec.hardware`) validate with this module.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "workflow" / "schemas"
#: A name a study may define: ASCII letters, digits, '_', '-', '.', starting with a letter, digit
#: or '_' (no '.', '..', hidden files or option-like words), at most 80 characters. The schema's
#: ``$defs/name`` and the workflow's wildcard constraints say the same.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
SAFE_NAME_RULE = "ASCII letters, digits, '_', '-' and '.', starting with a letter, digit or '_'; at most 80 characters"


class ConfigError(ValueError):
    """A study or hardware configuration that does not fit its schema."""


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema from ``workflow/schemas/<name>.schema.(yaml|json)``."""
    for suffix in ("yaml", "json"):
        path = SCHEMA_DIR / f"{name}.schema.{suffix}"
        if path.exists():
            return yaml.safe_load(path.read_text())
    raise FileNotFoundError(f"no schema {name!r} in {SCHEMA_DIR}")


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _unknown_keys(key: str, extra: list[str], allowed: list[str]) -> str:
    """``key: unknown key(s) [...]``, with the nearest allowed key for a likely typo."""
    hints = [f"{e!r} -> {m[0]!r}?" for e in extra for m in [difflib.get_close_matches(str(e), allowed, 1)] if m]
    hint = f" (did you mean {', '.join(hints)})" if hints else ""
    return f"{key}: unknown key(s) {extra}{hint}; allowed: {allowed}"


def _describe_names(key: str, err: jsonschema.ValidationError) -> str | None:
    """A name (a value, or a mapping's key under ``propertyNames``) that is not allowed."""
    in_names = "propertyNames" in err.relative_schema_path
    where = f"{key}: key {err.instance!r}" if in_names else f"{key}: {err.instance!r}"
    if err.validator == "pattern" and err.validator_value == load_schema("config")["$defs"]["name"]["pattern"]:
        return f"{where} is not a safe name (does not match {SAFE_NAME.pattern!r}); allowed: {SAFE_NAME_RULE}"
    if err.validator == "maxLength" or (err.validator == "type" and in_names):
        return f"{where} is not a safe name ({err.message}); allowed: {SAFE_NAME_RULE}"
    return None


def _required_alternatives(err: jsonschema.ValidationError) -> str | None:
    """An ``anyOf`` of ``required`` lists (a preset, or every size key): what the closest
    alternative misses, and the alternatives; ``None`` for any other error."""
    branches = err.validator_value if err.validator == "anyOf" else None
    if not branches or not all(set(b) == {"required"} for b in branches) or not isinstance(err.instance, dict):
        return None
    closest = max(branches, key=lambda b: sum(k in err.instance for k in b["required"]))  # the one begun
    missing = [k for k in closest["required"] if k not in err.instance]
    return f"missing {missing}; allowed: {' or '.join(str(b['required']) for b in branches)}"


def _describe(err: jsonschema.ValidationError, prefix: tuple[str, ...] = ()) -> str:
    """One line: the key (below ``prefix``), the bad value, what is allowed."""
    key = _key((*prefix, *err.absolute_path))
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and "properties" in schema:
        return _unknown_keys(key, sorted(set(err.instance) - set(schema["properties"])), sorted(schema["properties"]))
    if (named := _describe_names(key, err)) is not None:
        return named
    if err.validator == "enum":
        return f"{key}: {err.instance!r} is not allowed; allowed: {err.validator_value}"
    if err.validator == "uniqueItems":
        dups = sorted({repr(v) for i, v in enumerate(err.instance) if v in err.instance[:i]})
        return f"{key}: {err.instance!r} lists {', '.join(dups)} more than once; allowed: each value once"
    if err.validator == "minItems" and not err.instance:
        return f"{key}: the list is empty; allowed: a list of at least {err.validator_value} item(s)"
    if err.validator == "required":
        return f"{key}: {err.message}; required here: {err.validator_value}"
    if (alternatives := _required_alternatives(err)) is not None:
        return f"{key}: {alternatives}"
    if err.validator == "minProperties":
        return f"{key}: {err.message}" + (f" (allowed: {schema['description']})" if "description" in schema else "")
    return f"{key}: {err.message}" + (f" (allowed: {schema['description']})" if "description" in schema else "")


def validate(instance: Any, schema_name: str, what: str, part: tuple[str, ...] = (), key: tuple[str, ...] = ()) -> None:
    """Raise :class:`ConfigError` listing every violation of ``schema_name`` in ``instance``: of
    the whole schema, or of its sub-schema at the path ``part`` (e.g. ``("properties",
    "strategy_defs", "additionalProperties")``: one study-defined strategy), each error's key path
    below ``key`` (where ``instance`` sits in its file)."""
    schema = load_schema(schema_name)
    if part:
        sub = schema
        for name in part:
            sub = sub[name]
        schema = {"$defs": schema.get("$defs", {}), **sub}  # the root's definitions stay reachable
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  ".join(dict.fromkeys(_describe(e, key) for e in errors))
        raise ConfigError(f"invalid {what}:\n  {lines}")


def with_defaults(cfg: dict[str, Any], schema_name: str = "config") -> dict[str, Any]:
    """A copy of ``cfg`` with the schema's top-level defaults filled in."""
    out = copy.deepcopy(cfg)
    for key, prop in load_schema(schema_name)["properties"].items():
        if "default" in prop and key not in out:
            out[key] = copy.deepcopy(prop["default"])
    return out


def non_finite(value: Any, key: str = "") -> list[str]:
    """Every number in ``value`` that is not finite (YAML's ``.inf``, ``.nan``), as an error naming
    its key path: JSON Schema's ``number`` lets them through, and no timeout, size or rate may be one."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{key or '<top level>'}: {value!r} is not a finite number; allowed: a finite number"]
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in non_finite(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in non_finite(v, f"{key}.{i}")]
    return []
