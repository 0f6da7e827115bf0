"""Study configuration: load, validate against ``workflow/schemas/``, fill defaults.

Every error names the file and config key it concerns, the bad value and what is allowed there,
and is raised before anything runs. Every name a study defines (study, models, hardware,
strategies, strategy_defs) becomes a path component, a wildcard and a shell word, so each must be
a safe name (:data:`SAFE_NAME`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from benchbench.models.custom import load
from benchbench.models.presets import expand_preset
from benchbench.spec.hardware import hardware_names, load_hardware
from benchbench.spec.plan import PRESETS
from benchbench.spec.schema import (
    ROOT,
    SAFE_NAME,
    SAFE_NAME_RULE,
    ConfigError,
    non_finite,
    validate,
    with_defaults,
)

DEFAULT_CONFIG = ROOT / "config" / "config.yaml"
#: A study's ``strategies`` entry that stands for the cost model's top-K predicted plans of each
#: model x hardware x world size (:func:`benchbench.study.expand`).
PREDICTED_TOP = re.compile(r"predicted-top-([1-9][0-9]*)")


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


def _semantic_errors(cfg: dict[str, Any]) -> list[str]:
    """What the schema cannot say: names that must exist, and models that cannot be built."""

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
