"""Classic parallel-training bugs, injected into every process of a job for the gate's mutation
tests (tests/test_gate.py). Python imports ``sitecustomize`` at start-up from ``sys.path``: the
tests put this folder on PYTHONPATH and name one mutant in BENCHBENCH_MUTANT, so the ranks that
torchrun starts run benchbench with that one bug. Nothing here is part of the package."""

import os
import runpy

MUTANT = os.environ.get("BENCHBENCH_MUTANT", "")
_GUARD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers", "child_guard")
if os.environ.get("BENCHBENCH_TEST_LAUNCH_LOG"):  # this sitecustomize shadows the marker guard's: load it
    runpy.run_path(os.path.join(_GUARD, "sitecustomize.py"))


def dp_no_divide() -> None:
    """Data parallel that sums gradients and forgets the 1/N."""
    import torch.distributed as dist

    from benchbench.strategies import data_parallel

    def call(self) -> None:
        for p in self.params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM, group=self.group)

    data_parallel.NaiveGradSync.__call__ = call


def dp_skip_param() -> None:
    """Data parallel that leaves one parameter out of the all-reduce (a dropped bucket)."""
    from benchbench.strategies import data_parallel

    original = data_parallel.NaiveGradSync.__init__

    def init(self, model, group=None) -> None:
        original(self, model, group)
        self.params = self.params[1:]

    data_parallel.NaiveGradSync.__init__ = init


def dp_stale_grads() -> None:
    """Data parallel that collects the gradient tensors to all-reduce on its first call and reuses
    them (a cached bucket list): ``zero_grad(set_to_none=True)`` gives every later step new
    gradient tensors, so from the second step on the all-reduce averages the first step's stale
    tensors and each rank steps on its local gradient. Right on the first step only."""
    import torch.distributed as dist

    from benchbench.strategies import data_parallel

    def call(self) -> None:
        if not self.enabled:
            return
        if not hasattr(self, "_cached"):
            self._cached = [p.grad for p in self.params if p.grad is not None]
        for g in self._cached:
            dist.all_reduce(g, op=dist.ReduceOp.SUM, group=self.group)
            g.div_(self.world)

    data_parallel.NaiveGradSync.__call__ = call


def ddp_skip_bucket() -> None:
    """DDP that never all-reduces one gradient bucket in the middle (index 1): its parameters keep
    each rank's local gradient. Writes the bucket indices it saw to BENCHBENCH_MUTANT_LOG."""
    import torch
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from benchbench.strategies import parallelize

    def hook(group, bucket):
        with open(os.environ["BENCHBENCH_MUTANT_LOG"], "a") as log:
            log.write(f"{bucket.index()}\n")
        if bucket.index() == 1:
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut
        return default_hooks.allreduce_hook(group, bucket)

    def register(ddp, compression, group, rank=1, warmup=2) -> None:
        ddp.register_comm_hook(group, hook)

    parallelize.register_compression = register


def fsdp_no_average() -> None:
    """FSDP whose gradient reduce-scatter sums instead of averaging (no 1/N anywhere)."""
    from torch.distributed import ReduceOp
    from torch.distributed.fsdp._fully_shard import _fsdp_collectives

    def factors(*args, **kwargs):
        return None, None, ReduceOp.SUM, ReduceOp.SUM  # (pre-divide, post-divide, reduce-scatter, all-reduce)

    _fsdp_collectives._get_gradient_divide_factors = factors


def hsdp_no_replicate() -> None:
    """HSDP whose reduced gradient shards are never all-reduced across the replicas: each replica
    steps on its own share of the batch (FSDP2's ``foreach_reduce`` without its all-reduce group)."""
    from torch.distributed.fsdp._fully_shard import _fsdp_param_group

    original = _fsdp_param_group.foreach_reduce

    def reduce(*args, **kwargs):
        args = list(args)
        args[9] = None  # all_reduce_group: "not None iff HSDP"
        return original(*args, **kwargs)

    _fsdp_param_group.foreach_reduce = reduce


def tp_no_reduce() -> None:
    """Row-parallel layers whose partial outputs are never all-reduced."""
    from torch.distributed.tensor.parallel import RowwiseParallel

    from benchbench.strategies import tensor_parallel

    class Unreduced(RowwiseParallel):
        @staticmethod
        def _prepare_output_fn(output_layouts, use_local_output, mod, outputs, device_mesh):
            return outputs.to_local()  # the rank's partial sum, as if it were the whole

    tensor_parallel.RowwiseParallel = Unreduced


def pp_sum_microbatches() -> None:
    """A pipeline that sums micro-batch gradients instead of averaging them (no 1/m)."""
    from benchbench.strategies import pipeline_parallel
    from benchbench.strategies.pipeline_parallel import is_multi_stage, schedule_class

    def make(schedule, stages, micro_batches, loss_fn):
        cls = schedule_class(schedule)
        first = stages if is_multi_stage(schedule) else stages[0]
        return cls(first, n_microbatches=micro_batches, loss_fn=loss_fn, scale_grads=False)

    pipeline_parallel.make_schedule = make
    from benchbench.strategies import parallelize

    parallelize.make_schedule = make


def pp_wrong_microbatch() -> None:
    """A first pipeline stage fed the micro-batches in the wrong order (targets unchanged)."""
    from benchbench.rank import train_step

    original = train_step.PipelineTrainer.forward_backward_step

    def step(self, inputs, targets):
        if self.has_first:
            inputs = inputs.roll(shifts=inputs.shape[0] // self.schedule._n_microbatches, dims=0)
        return original(self, inputs, targets)

    train_step.PipelineTrainer.forward_backward_step = step


def comm_delay() -> None:
    """Not a bug: a known delay for the exposed-communication probe's known-answer tests
    (tests/test_measurement.py). The hand-written all-reduce waits BENCHBENCH_DELAY_S seconds on
    the main thread; DDP's all-reduce of its first-ready bucket (index 0) completes that much later
    on a timer thread, while the backward pass goes on."""
    import threading
    import time

    import torch
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from benchbench.strategies import data_parallel

    delay = float(os.environ["BENCHBENCH_DELAY_S"])
    sync = data_parallel.NaiveGradSync.__call__

    def call(self) -> None:
        if self.enabled:
            time.sleep(delay)
        sync(self)

    data_parallel.NaiveGradSync.__call__ = call
    allreduce = default_hooks.allreduce_hook

    def hook(group, bucket):
        fut = allreduce(group, bucket)
        if bucket.index() != 0:
            return fut
        late = torch.futures.Future()
        fut.add_done_callback(lambda f: threading.Timer(delay, lambda: late.set_result(f.value())).start())
        return late

    default_hooks.allreduce_hook = hook


def slow_step() -> None:
    """Not a bug: every optimizer step BENCHBENCH_DELAY_S seconds slower (a regression made on
    purpose, for `benchbench compare`'s demonstration and tests)."""
    import time

    from benchbench.rank import train_step

    delay = float(os.environ["BENCHBENCH_DELAY_S"])
    for cls in (train_step.Trainer, train_step.PipelineTrainer):
        step = cls.train_step

        def slowed(self, inputs, targets, _step=step):
            time.sleep(delay)
            return _step(self, inputs, targets)

        cls.train_step = slowed


def _oom() -> None:
    """Cap this process's address space at its current size + 512 MiB, then allocate until the cap."""
    import resource

    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (size + (512 << 20), resource.RLIM_INFINITY))
    held = []
    try:
        while True:
            held.append(bytearray(32 << 20))
    except MemoryError:
        n = len(held)
        held.clear()
        raise MemoryError(f"fault: allocated {n * 32} MiB under RLIMIT_AS") from None


def _dead_port() -> int:
    """A port nobody listens on (bound, read, released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_faulty_job() -> bool:
    """Whether this rank now runs the job BENCHBENCH_FAULT_JOB names (any job when unset)."""
    k = os.environ.get("BENCHBENCH_FAULT_JOB")
    if not k:
        return True
    from benchbench.protocol import heartbeat

    return f"/job{k}/hb/" in os.readlink(f"/proc/self/fd/{heartbeat._state['fd']}")


def fault() -> None:
    """Not a bug: a failure on purpose, for tests/test_faults.py. BENCHBENCH_FAULT=<what>:<rank>[:<step>]:
    ``raise`` (RuntimeError), ``kill`` (SIGKILL itself), ``hang`` (sleep forever just before the
    step's collectives, so the other ranks block in them), ``oom`` (MemoryError under RLIMIT_AS) at
    step <step> (0-based, warm-up included) of rank <rank>; ``rendezvous`` points rank <rank>'s
    MASTER_PORT at a port nobody listens on. Only in rank processes (RANK, or SLURM_PROCID under
    srun); with BENCHBENCH_FAULT_JOB=<k>, only in job k of a batched launch (whose heartbeat is in
    ``job<k>/``)."""
    what, rank, *step = os.environ["BENCHBENCH_FAULT"].split(":")
    if os.environ.get("RANK", os.environ.get("SLURM_PROCID")) != rank:  # torchrun's, or srun's
        return
    if what == "rendezvous":
        os.environ["MASTER_PORT"] = str(_dead_port())
        return
    import signal
    import time

    from benchbench.rank import train_step

    def act() -> None:
        if what == "raise":
            raise RuntimeError("boom")
        if what == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if what == "hang":
            time.sleep(3600)
        if what == "oom":
            _oom()

    for cls in (train_step.Trainer, train_step.PipelineTrainer):
        train_step = cls.train_step

        def faulty(self, inputs, targets, _step=train_step):
            self._fault_calls = getattr(self, "_fault_calls", -1) + 1
            if self._fault_calls == int(step[0]) and _in_faulty_job():
                act()
            return _step(self, inputs, targets)

        cls.train_step = faulty


MUTANTS = {
    f.__name__.replace("_", "-"): f
    for f in (
        dp_no_divide,
        dp_skip_param,
        dp_stale_grads,
        ddp_skip_bucket,
        fsdp_no_average,
        tp_no_reduce,
        pp_sum_microbatches,
        pp_wrong_microbatch,
        comm_delay,
        slow_step,
        fault,
        hsdp_no_replicate,
    )
}

if MUTANT:
    MUTANTS[MUTANT]()
