"""Study configuration: load, validate against ``workflow/schemas/``, fill defaults.

Every error names the file and config key it concerns, the bad value and what is allowed there,
and is raised before anything runs. Every name a study defines (study, models, hardware,
strategies, strategy_defs) becomes a path component, a wildcard and a shell word, so each must be
a safe name (:data:`SAFE_NAME`).
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
DEFAULT_CONFIG = ROOT / "config" / "config.yaml"
#: A name a study may define: ASCII letters, digits, '_', '-', '.', starting with a letter, digit
#: or '_' (no '.', '..', hidden files or option-like words), at most 80 characters. The schema's
#: ``$defs/name`` and the workflow's wildcard constraints say the same.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
#: A study's ``strategies`` entry that stands for the cost model's top-K predicted plans of each
#: model x hardware x world size (:func:`benchbench.study.expand`).
PREDICTED_TOP = re.compile(r"predicted-top-([1-9][0-9]*)")
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


def _describe(err: jsonschema.ValidationError) -> str:
    """One line: the key, the bad value, what is allowed."""
    key = _key(err.absolute_path)
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


def _names(cfg: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every name a study defines, with its key path."""
    out: list[tuple[str, Any]] = [("study", cfg.get("study"))]
    for section in ("models", "strategy_defs"):
        out += [(f"{section}: key", k) for k in cfg.get(section) or {}]
    for section in ("hardware", "strategies"):
        out += [(f"{section}.{i}", v) for i, v in enumerate(cfg.get(section) or [])]
    return out


def check_names(cfg: dict[str, Any], what: str) -> None:
    """Refuse a name that is not a whole-string match of :data:`SAFE_NAME` (the schema's pattern
    is a search: this one also refuses a trailing newline, whatever the regex dialect)."""
    for key, name in _names(cfg):
        if isinstance(name, str) and not SAFE_NAME.fullmatch(name):
            raise ConfigError(
                f"invalid {what}:\n  {key} {name!r} is not a safe name (does not match {SAFE_NAME.pattern!r}); "
                f"allowed: {SAFE_NAME_RULE}"
            )


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


def _semantic_errors(cfg: dict[str, Any]) -> list[str]:
    """What the schema cannot say: names that must exist, and models that cannot be built."""
    from benchbench.spec.hardware import hardware_names  # local: hardware validates with this module
    from benchbench.spec.plan import PRESETS

    errors = []
    for name, fields in cfg["strategy_defs"].items():
        if fields["base"] not in PRESETS:
            errors.append(f"strategy_defs.{name}.base: {fields['base']!r} is not allowed; allowed: {sorted(PRESETS)}")
        if name in PRESETS:
            errors.append(f"strategy_defs.{name}: {name!r} is a preset's name; allowed: a name that is not a preset")
        mode = fields.get("activation_checkpoint", PRESETS.get(fields["base"], {}).get("activation_checkpoint", "none"))
        if "ac_every" in fields and mode != "selective":  # full / none: every / no block, ac_every unused
            errors.append(
                f"strategy_defs.{name}.ac_every: {fields['ac_every']} set with activation_checkpoint {mode!r}; "
                "allowed: only with 'selective' (checkpoint every ac_every-th block)"
            )
    known = sorted(PRESETS) + sorted(cfg["strategy_defs"])
    errors += [
        f"strategies.{i}: {name!r} is not allowed; allowed: {known}, or predicted-top-K (K >= 1)"
        for i, name in enumerate(cfg["strategies"])
        if name not in known and not PREDICTED_TOP.fullmatch(name)
    ]
    errors += [
        f"hardware.{i}: {name!r} is not allowed; allowed: {hardware_names()} (config/hardware/<name>.yaml)"
        for i, name in enumerate(cfg["hardware"])
        if name not in hardware_names()
    ]
    for section in ("models", "strategy_defs"):  # one folder per name: on macOS 'M' and 'm' are one
        by_case: dict[str, list[str]] = {}
        for name in cfg[section]:
            by_case.setdefault(name.lower(), []).append(name)
        errors += [
            f"{section}: names {same} differ only in case; allowed: names that differ in more than case"
            for same in by_case.values()
            if len(same) > 1
        ]
    return errors + [e for name, m in cfg["models"].items() for e in _shape_errors(name, m)]


def _shape_errors(name: str, m: dict[str, Any]) -> list[str]:
    """Sizes a model cannot be built with (heads not dividing hidden, ...), naming the key."""
    errors = []
    if m["arch"] in ("gpt", "llama", "vit") and m["hidden"] % m["heads"]:
        errors.append(
            f"models.{name}.hidden: {m['hidden']} is not divisible by heads = {m['heads']}; "
            "allowed: a multiple of heads"
        )
    elif m["arch"] == "llama" and (m["heads"] % m["kv_heads"] or m["hidden"] // m["heads"] % 2):
        errors.append(
            f"models.{name}.kv_heads: heads = {m['heads']} must be a multiple of kv_heads = {m['kv_heads']} "
            f"and the head size hidden / heads = {m['hidden'] // m['heads']} even (rotary pairs); "
            "allowed: such sizes"
        )
    if m["arch"] == "vit" and m["image_size"] % m["patch"]:
        errors.append(
            f"models.{name}.patch: {m['patch']} does not divide image_size = {m['image_size']}; "
            "allowed: a divisor of image_size"
        )
    return errors


def _entry_errors(name: str, model_cfg: dict[str, Any]) -> list[str]:
    """Why a custom model's entry point cannot be loaded (its module is imported from its path
    only: :func:`benchbench.models.custom.load`), or nothing."""
    from benchbench.models.custom import load

    try:
        load(model_cfg["entry"], model_cfg["path"])
    except ValueError as e:
        return [f"models.{name}.entry: {e}"]
    return []


def complete_models(cfg: dict[str, Any], base: Path | None) -> tuple[dict[str, Any], list[str]]:
    """``cfg`` with each model's ``preset`` expanded into its size keys
    (:func:`benchbench.models.presets.expand_preset`) and each custom model's ``path`` made absolute
    (relative to ``base``, the study file's folder; the working directory without a file), and
    the errors: unknown presets, keys clashing with a preset, a ``path`` that is not a folder."""
    from benchbench.models.presets import expand_preset

    models, errors = {}, []
    for name, m in cfg["models"].items():
        m, errs = expand_preset(name, m)
        errors += errs
        if m["arch"] == "custom":
            folder = (base or Path.cwd()) / m["path"]
            if not folder.is_dir():
                errors.append(
                    f"models.{name}.path: {str(folder)!r} is not a folder; allowed: a folder (relative to "
                    "the study file) holding the entry point's module"
                )
            m = {**m, "path": str(folder.resolve())}
            errors += _entry_errors(name, m) if folder.is_dir() else []
        models[name] = m
    return {**cfg, "models": models}, errors


def check_config(cfg: dict[str, Any], what: str = "study config", base: Path | None = None) -> dict[str, Any]:
    """Validate a study config (already parsed) and return it with defaults filled in, presets
    expanded and custom models' paths resolved against ``base`` (:func:`complete_models`)."""
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"invalid {what}: expected a mapping of keys (study, models, strategies, world_sizes, ...) "
            f"at the top level, got {'nothing (empty file)' if cfg is None else type(cfg).__name__}"
        )
    if errors := non_finite(cfg):
        raise ConfigError(f"invalid {what}:\n  " + "\n  ".join(errors))
    validate(cfg, "config", what)
    check_names(cfg, what)
    cfg, errors = complete_models(with_defaults(cfg), base)
    errors = errors or _semantic_errors(cfg)
    if errors:
        raise ConfigError(f"invalid {what}:\n  " + "\n  ".join(errors))
    from benchbench.spec.hardware import load_hardware

    for i, name in enumerate(cfg["hardware"]):
        load_hardware(name, f"hardware.{i}")  # the profile itself validates against its schema
    return cfg


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise ConfigError(
                    f"duplicate key {key!r} at line {key_node.start_mark.line + 1}; allowed: each key once per mapping"
                )
            if isinstance(key, str | int | float | bool):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_study_file(path: str | Path) -> Any:
    """The parsed YAML of a study file; :class:`ConfigError` naming the file if it cannot be read,
    is not YAML, or gives a key twice."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:  # named stream: YAML errors name the file
            return yaml.load(f, Loader=_StrictLoader)  # a SafeLoader
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"invalid study config {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read, validate and complete the study config at ``path`` (default: config/config.yaml)."""
    path = Path(path) if path else DEFAULT_CONFIG
    return check_config(read_study_file(path), f"study config {path}", path.parent)
