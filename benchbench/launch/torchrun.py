"""torch's elastic launcher, ``torchrun`` (:func:`torch.distributed.run.main`: the same agent,
rendezvous, worker monitoring and error reporting), started as ``python -m benchbench.launch.torchrun ARGS``
with torchrun's own arguments, minus one cost: once the agent has returned, the process ends with
``os._exit`` (:func:`benchbench.protocol.lifeline.exit_now`) instead of tearing down an interpreter
that holds torch (0.3–1 s per job here, measured in benchmarks/study_overhead.py). Output is flushed
first; an exception prints its traceback as an uncaught one would (the launcher output
:mod:`benchbench.protocol.failure` reads) and exits 1.
"""

from __future__ import annotations

import traceback

from benchbench.protocol.lifeline import exit_now


def main(argv: list[str] | None = None) -> int:
    """Run torchrun with ``argv`` (default: this process's arguments); its exit status."""
    from torch.distributed.run import main as torchrun

    try:
        torchrun(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:  # ChildFailedError, SignalException, ...: what torchrun would print
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    exit_now(main())
