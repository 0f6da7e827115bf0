"""Published training runs as data: ``config/published/<source>.yaml``, one file per source (a
repository's tables, a paper's figure), validated by ``workflow/schemas/published.schema.yaml``.

Each row says where its figures were read, what ran (hardware, model, sequence, batch, the plan as
published) and what was measured, and names the benchbench plan that stands for it with its
fidelity (``exact``, ``approximate`` and how, or ``none`` and why). :func:`load_published` reads
and checks a file — every error names the file and the key — and :func:`row_job` turns a row into
the :class:`~benchbench.spec.job.Job` the cost model predicts (``benchmarks/published.py``,
docs/VALIDATION.md). No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbench.spec.config import check_config, read_study_file
from benchbench.spec.hardware import hardware_names
from benchbench.spec.job import Job, make_job
from benchbench.spec.plan import PRESETS, resolve_plan
from benchbench.spec.schema import ROOT, ConfigError, non_finite, validate

PUBLISHED_DIR = ROOT / "config" / "published"
#: The config schema's part that checks one study-defined strategy (a row's ``strategy_def``).
STRATEGY_DEF_SCHEMA = ("properties", "strategy_defs", "additionalProperties")
GIB, GB = 2.0**30, 1e9


@dataclass(frozen=True)
class PublishedRow:
    """One published run (or accounting example); field meanings in the schema."""

    file: str  # the data file, relative to the repository root
    index: int  # the row's position in the file's ``rows``
    source: dict[str, Any]
    id: str
    table: str
    hardware: str
    hardware_variant: str
    run: bool
    model: dict[str, Any]
    world_size: int
    local_batch: int | None
    global_batch: int | None
    dtype: str
    published_plan: dict[str, Any]
    plan: dict[str, Any]
    published: dict[str, Any]
    subset: str

    @property
    def where(self) -> str:
        """``file: rows.N (id)``: where the row is written."""
        return f"{self.file}: rows.{self.index} ({self.id})"

    @property
    def citation(self) -> str:
        """The source and the table, as text: ``owner/repo path@commit, table`` or ``paper, table``."""
        s = self.source
        if "repository" in s:
            return f"{s['repository']} {s['path']}@{s['commit'][:7]}, {self.table}"
        return f"{s['paper']}, {self.table}"

    @property
    def batch(self) -> int:
        """The global batch the job uses: published, else local × the published data-parallel
        degree, else one sample per data-parallel rank (nothing published; say so where shown)."""
        if self.global_batch is not None:
            return self.global_batch
        return (self.local_batch or 1) * self.published_plan["dp_degree"]

    @property
    def memory_bytes(self) -> float | None:
        """The published memory in bytes (its unit converted), or ``None``."""
        mem = self.published["memory"]
        return None if mem is None else mem["value"] * (GIB if mem["unit"] == "GiB" else GB)


def _strategy(row: PublishedRow, stand_in: bool) -> tuple[str, dict[str, dict[str, Any]]] | None:
    """The strategy name and ``strategy_defs`` of the row's plan (or its stand-in); ``None`` without one."""
    plan = row.plan["stand_in"] if stand_in else row.plan
    if "strategy" in plan:
        return plan["strategy"], {}
    if "strategy_def" in plan:
        name = f"{row.id}-stand-in" if stand_in else row.id
        return name, {name: dict(plan["strategy_def"])}
    return None


def row_job(row: PublishedRow, stand_in: bool = False) -> tuple[Job, str | None] | None:
    """The job of ``row``'s benchbench plan (or of its stand-in) and why the plan rules refuse it
    (``None``: they accept it); ``None`` where the row has no such plan. The job is a one-job study
    (strong scaling at :attr:`PublishedRow.batch`, the row's dtype) checked as any study is."""
    strategy = _strategy(row, stand_in)
    if strategy is None:
        return None
    name, defs = strategy
    study = {
        "study": "published",
        "models": {row.id: {**row.model, "batch_size": row.batch}},
        "hardware": [row.hardware],
        "strategies": [name],
        "strategy_defs": defs,
        "world_sizes": [row.world_size],
        "scaling": "strong",
        "dtype": row.dtype,
    }
    try:
        cfg = check_config(study, "study")
    except ConfigError as e:  # the study's keys named as the row's
        plan_key = f"rows.{row.index}.plan" + (".stand_in" if stand_in else "") + ".strategy_def."
        text = str(e).replace(f"models.{row.id}.", f"rows.{row.index}.model.")
        lines = text.replace(f"strategy_defs.{name}.", plan_key).splitlines()[1:]
        raise ConfigError(
            f"invalid published runs {row.file} (the job of row {row.id}):\n" + "\n".join(lines)
        ) from None
    return make_job(cfg, row.id, row.hardware, name, row.world_size, 0)


def _plan_errors(key: str, plan: dict[str, Any]) -> list[str]:
    """A row's ``plan``: a strategy or a strategy_def unless fidelity is none, ``differs`` unless
    exact, a known preset and strategy_def keys (the config schema's)."""
    fidelity, named = plan["fidelity"], [k for k in ("strategy", "strategy_def") if k in plan]
    errors = []
    if fidelity == "none" and named:
        errors.append(f"{key}.{named[0]}: set with fidelity 'none'; allowed: no strategy (say why in differs)")
    if fidelity != "none" and len(named) != 1:
        errors.append(f"{key}: fidelity {fidelity!r} needs exactly one of strategy, strategy_def; got {named}")
    if fidelity != "exact" and "differs" not in plan:
        errors.append(f"{key}.differs: required with fidelity {fidelity!r} (how the plan differs, or why none)")
    if "strategy" in plan and plan["strategy"] not in PRESETS:
        errors.append(f"{key}.strategy: {plan['strategy']!r} is not a benchbench strategy; allowed: {sorted(PRESETS)}")
    defs = [(f"{key}.strategy_def", plan.get("strategy_def"))]
    defs += [(f"{key}.stand_in.strategy_def", plan["stand_in"]["strategy_def"])] if "stand_in" in plan else []
    for where, d in defs:
        if d is None:
            continue
        try:
            validate(d, "config", where, STRATEGY_DEF_SCHEMA, tuple(where.split(".")))
        except ConfigError as e:
            errors += str(e).splitlines()[1:]
        if d.get("base") not in PRESETS:
            errors.append(f"{where}.base: {d.get('base')!r} is not a benchbench preset; allowed: {sorted(PRESETS)}")
    return [e.strip() for e in errors]


def _row_errors(key: str, raw: dict[str, Any]) -> list[str]:
    """What the schema cannot say about one row: its hardware exists, the published degrees
    multiply to the world size, local × dp = global batch, its plan (:func:`_plan_errors`)."""
    errors = []
    if raw["hardware"] not in hardware_names():
        errors.append(f"{key}.hardware: {raw['hardware']!r} is not allowed; allowed: {hardware_names()}")
    pp_ = raw["published_plan"]
    product = pp_["dp_degree"] * pp_["tp"] * pp_["pp"] * pp_["cp"]
    if product != raw["world_size"]:
        errors.append(
            f"{key}.published_plan: dp_degree × tp × pp × cp = {pp_['dp_degree']} × {pp_['tp']} × {pp_['pp']} × "
            f"{pp_['cp']} = {product} != world_size = {raw['world_size']}"
        )
    local, glob = raw["local_batch"], raw["global_batch"]
    if local is not None and glob is not None and local * pp_["dp_degree"] != glob:
        errors.append(f"{key}.global_batch: {glob} != local_batch × dp_degree = {local} × {pp_['dp_degree']}")
    return errors + _plan_errors(f"{key}.plan", raw["plan"])


def _mesh_error(row: PublishedRow, stand_in: bool) -> str | None:
    """Where the benchbench plan's mesh (dp, tp, pp, cp at the world size) is not the published one."""
    strategy = _strategy(row, stand_in)
    if strategy is None:
        return None
    plan = resolve_plan(strategy[0], row.world_size, strategy[1])
    pub = row.published_plan
    mine, theirs = (plan.dp, plan.tp, plan.pp, plan.cp), (pub["dp_degree"], pub["tp"], pub["pp"], pub["cp"])
    if mine == theirs:
        return None
    key = f"rows.{row.index}.plan" + (".stand_in" if stand_in else "")
    return f"{key}: benchbench's plan has dp, tp, pp, cp = {mine} at world_size {row.world_size}; published {theirs}"


def load_published(path: str | Path) -> list[PublishedRow]:
    """The rows of one published-runs file, checked: the schema, then per row
    (:func:`_row_errors`) the hardware, degrees and batches, the plan's names and keys, that its
    job is a valid study and that the benchbench plan's mesh is the published one.
    :class:`~benchbench.spec.config.ConfigError` names the file and every bad key."""
    path = Path(path)
    name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    raw = read_study_file(path)
    what = f"published runs {name}"
    if errors := non_finite(raw):
        raise ConfigError(f"invalid {what}:\n  " + "\n  ".join(errors))
    validate(raw, "published", what)
    errors = [e for i, r in enumerate(raw["rows"]) for e in _row_errors(f"rows.{i}", r)]
    if errors:
        raise ConfigError(f"invalid {what}:\n  " + "\n  ".join(errors))
    rows = [PublishedRow(file=name, index=i, source=raw["source"], **r) for i, r in enumerate(raw["rows"])]
    for row in rows:
        for stand_in in (False, True) if "stand_in" in row.plan else (False,):
            row_job(row, stand_in)  # the job is a valid study (ConfigError naming the row)
            if error := _mesh_error(row, stand_in):
                raise ConfigError(f"invalid {what}:\n  {error}")
    return rows


def load_all(folder: str | Path = PUBLISHED_DIR) -> list[PublishedRow]:
    """Every row of every ``*.yaml`` in ``folder`` (sorted by file), ids unique over all files."""
    rows = [row for path in sorted(Path(folder).glob("*.yaml")) for row in load_published(path)]
    seen: dict[str, str] = {}
    for row in rows:
        if row.id in seen:
            raise ConfigError(f"invalid published runs {row.where}: id {row.id!r} is also {seen[row.id]}")
        seen[row.id] = row.where
    return rows
