"""What a test marked neither ``slow`` nor ``slurm`` must not start: ranks (torchrun, the elastic
launcher, a ``benchbench.rank`` module, a child that forms a process group), Snakemake, or a
browser. Standard library only: child_guard/sitecustomize.py loads this file in every child
Python of a guarded test, so that ranks started by a CLI the test runs are caught too."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GUARD_ENV = "BENCHBENCH_TEST_LAUNCH_LOG"  # set while a guarded test runs: the file launches go to
CHILD_GUARD = str(Path(__file__).parent / "child_guard")  # on PYTHONPATH while a guarded test runs
LAUNCHERS = {"torchrun", "snakemake"}  # programs, by file name
MODULES = {"torch.distributed.run", "benchbench.launch.torchrun", "snakemake"}  # run with -m, or torchrun's script
RANK_MODULE = re.compile(r"benchbench\.rank\.[a-z_.]+")  # a rank entry point, run with -m
RANK_CODE = ("init_process_group(", "init_distributed(", "benchbench.rank.main import")  # in `python -c` code


def command_words(args: Any) -> list[str]:
    """A Popen ``args`` (a string, a path, or a list of them) as words."""
    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
        try:
            return shlex.split(text)
        except ValueError:
            return text.split()
    return [os.fsdecode(a) for a in args]


def forbidden_launch(args: Any) -> str | None:
    """Why the command ``args`` starts ranks, Snakemake or a browser; None when it does not."""
    words: Sequence[str] = command_words(args)
    for i, word in enumerate(words):
        if os.path.basename(word) in LAUNCHERS or word in MODULES:
            return f"{os.path.basename(word)}: {shlex.join(words)[:300]}"
        if RANK_MODULE.fullmatch(word):
            return f"a rank ({word}): {shlex.join(words)[:300]}"
        if "playwright" in word.split(os.sep) or os.path.basename(word) in {"chromium", "chrome"}:
            return f"a browser: {shlex.join(words)[:300]}"
        if i > 0 and words[i - 1] == "-c" and any(code in word for code in RANK_CODE):
            return f"a process group in `python -c`: {word[:300]!r}"
    return None


def guard_child_env(env: dict | None, log: str) -> None:
    """A child started with an ``env`` of its own keeps the guard: the launch log named and the
    child guard first on its PYTHONPATH (the audit event hands over the very dict the child gets)."""
    if isinstance(env, dict):
        env.setdefault(GUARD_ENV, log)  # a test of the guard itself may name its own log
        path = env.get("PYTHONPATH", "")
        if CHILD_GUARD not in path.split(os.pathsep):
            env["PYTHONPATH"] = os.pathsep.join(p for p in (CHILD_GUARD, path) if p)


def record_launch(event: str, args: tuple) -> None:
    """An audit hook: a forbidden ``subprocess.Popen`` while :data:`GUARD_ENV` names a file is
    appended to that file (one line each); a child given its own environment is guarded too."""
    if event != "subprocess.Popen":
        return
    log = os.environ.get(GUARD_ENV)
    if log:
        guard_child_env(args[3], log)
    reason = forbidden_launch(args[1]) if log else None
    if reason:
        with open(log, "a") as f:
            f.write(reason.replace("\n", " ") + "\n")
