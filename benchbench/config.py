"""Study configuration: load, validate against ``workflow/schemas/``, fill defaults.

Every error names the config key it concerns and what is allowed there, and is raised before
anything runs.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "workflow" / "schemas"
DEFAULT_CONFIG = ROOT / "config" / "config.yaml"


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


def _describe(err: jsonschema.ValidationError) -> str:
    """One line: the key, what is wrong, what is allowed."""
    key = _key(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and "properties" in schema:
        extra = sorted(set(err.instance) - set(schema["properties"]))
        return f"{key}: unknown key(s) {extra}; allowed: {sorted(schema['properties'])}"
    if err.validator == "propertyNames":
        allowed = schema.get("propertyNames", {}).get("enum")
        if allowed:
            extra = sorted(set(err.instance) - set(allowed))
            return f"{key}: key(s) {extra} not allowed here; allowed: {allowed}"
    if err.validator == "enum":
        return f"{key}: {err.instance!r} is not allowed; allowed: {err.validator_value}"
    if err.validator == "required":
        return f"{key}: {err.message}"
    return f"{key}: {err.message}" + (f" ({schema['description']})" if "description" in schema else "")


def validate(instance: Any, schema_name: str, what: str) -> None:
    """Raise :class:`ConfigError` listing every violation of ``schema_name`` in ``instance``."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  ".join(dict.fromkeys(_describe(e) for e in errors))
        raise ConfigError(f"invalid {what}:\n  {lines}")


def with_defaults(cfg: dict[str, Any], schema_name: str = "config") -> dict[str, Any]:
    """A copy of ``cfg`` with the schema's top-level defaults filled in."""
    out = copy.deepcopy(cfg)
    for key, prop in load_schema(schema_name)["properties"].items():
        if "default" in prop and key not in out:
            out[key] = copy.deepcopy(prop["default"])
    return out


def check_config(cfg: dict[str, Any], what: str = "study config") -> dict[str, Any]:
    """Validate a study config (already parsed) and return it with defaults filled in."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"invalid {what}: expected a mapping at the top level, got {type(cfg).__name__}")
    validate(cfg, "config", what)
    cfg = with_defaults(cfg)
    from benchbench.hardware import load_hardware  # local: hardware validates with this module
    from benchbench.strategies.plan import PRESETS

    for name, fields in cfg["strategy_defs"].items():
        if fields["base"] not in PRESETS:
            raise ConfigError(
                f"invalid {what}:\n  strategy_defs.{name}.base: {fields['base']!r} is not allowed; "
                f"allowed: {sorted(PRESETS)}"
            )
    known = sorted(PRESETS) + sorted(cfg["strategy_defs"])
    for i, name in enumerate(cfg["strategies"]):
        if name not in known:
            raise ConfigError(f"invalid {what}:\n  strategies.{i}: {name!r} is not allowed; allowed: {known}")
    for i, name in enumerate(cfg["hardware"]):
        load_hardware(name, f"hardware.{i}")
    return cfg


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read, validate and complete the study config at ``path`` (default: config/config.yaml)."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    return check_config(raw, f"study config {path}")
