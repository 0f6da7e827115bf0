"""The measurement probes measure what their names say, on cases whose answer is known:
communication rows (kind, dimension, nccl-tests bus factors; unknown ops refused), the pipeline
bubble (the replay reproduces the closed form on equal stages; measured bubbles fall as
micro-batches grow), exposed communication (a known delay is exposed by dp-naive and partly
hidden by DDP), and the MFU peak's precision."""

import os
import warnings
from types import SimpleNamespace

import pytest
import torch

from benchbench.rank.measure.bubble import simulate, step_bubbles
from benchbench.rank.measure.comm_stats import BUS_FACTOR, CommCounter, merge_ranks
from benchbench.spec.config import ROOT, check_config
from benchbench.spec.hardware import load_hardware
from tests.helpers.jobs import make_test_job, run


def one_f_one_b(p: int, m: int, f: float, b: float) -> list[list[tuple]]:
    """Every rank's 1F1B order (PipeDream-Flush): p − 1 − s warm-up forwards, then one forward
    one backward, then the remaining backwards; forward time ``f``, backward ``b``."""
    ranks = []
    for s in range(p):
        warm = min(p - 1 - s, m)
        order = [("F", s, i) for i in range(warm)]
        nxt = warm
        for i in range(m):
            if nxt < m:
                order.append(("F", s, nxt))
                nxt += 1
            order.append(("B", s, i))
        ranks.append([(k, st, i, f if k == "F" else b) for k, st, i in order])
    return ranks


def gpipe(p: int, m: int, f: float, b: float) -> list[list[tuple]]:
    return [[("F", s, i, f) for i in range(m)] + [("B", s, i, b) for i in range(m)] for s in range(p)]


@pytest.mark.parametrize("order", [one_f_one_b, gpipe])
@pytest.mark.parametrize(("p", "m"), [(2, 4), (2, 8), (4, 4), (4, 16)])
def test_replayed_schedule_with_equal_stages_is_the_closed_form(order, p, m):
    actions = order(p, m, 1.0, 2.0)
    makespan = simulate(actions, p)
    assert makespan == pytest.approx((m + p - 1) * 3.0)
    measured, simulated = step_bubbles(actions, [makespan] * p, p)
    assert simulated == pytest.approx((p - 1) / (m + p - 1)) == pytest.approx(measured)


def torch_order(schedule: str, p: int, m: int) -> list[list[tuple]]:
    """Every rank's actions in torch's own order for ``schedule`` (2 stages per rank; overlapped
    F&B pairs run one after the other, as torch runs them), with F = I = W = 1 and a full backward
    B = 2."""
    from types import SimpleNamespace

    from benchbench.strategies.pipeline_parallel import schedule_class

    kinds = {
        "FORWARD": ("F", 1.0),
        "FULL_BACKWARD": ("B", 2.0),
        "BACKWARD_INPUT": ("I", 1.0),
        "BACKWARD_WEIGHT": ("W", 1.0),
    }
    ranks = []
    for r in range(p):  # what the orders are computed from
        fake = SimpleNamespace(
            pp_group_size=p,
            _n_microbatches=m,
            n_local_stages=2,
            _num_stages=2 * p,
            num_stages=2 * p,
            rank=r,
            microbatches_per_round=p,
        )
        order = schedule_class(schedule)._calculate_single_rank_operations(fake, r)
        subs = [s for a in order if a is not None for s in (a.sub_actions or (a,))]
        ranks.append(
            [
                (
                    *kinds[s.computation_type.name][:1],
                    s.stage_index,
                    s.microbatch_index,
                    kinds[s.computation_type.name][1],
                )
                for s in subs
            ]
        )
    return ranks


REPLAYED = [
    (s, p, m)
    for s in ("dualpipev", "zbv", "interleaved-zb", "interleaved-1f1b")
    for p, m in [(2, 4), (2, 5), (2, 16), (3, 6), (3, 9), (4, 8), (4, 12), (4, 32)]
    if s.startswith(("dualpipev", "zbv")) or m % p == 0
]  # looped: m a multiple of p (plan rules)


@pytest.mark.parametrize(("schedule", "p", "m"), REPLAYED)
def test_multi_stage_replay_is_its_closed_form(schedule, p, m):
    """The table's bubble (schedules.py) of each 2-stage-per-rank schedule is what torch's own
    action order idles with equal F, I, W and free transfers (DualPipeV, ZB-V: makespan 6m + p − 1
    chunk-times on every rank's busy 6m; ZB-V's is not its paper's 0)."""
    from benchbench.spec.schedules import SCHEDULES

    actions = torch_order(schedule, p, m)
    busy = {sum(a[3] for a in acts) for acts in actions}
    assert busy == {6 * m}
    makespan = simulate(actions, 2 * p)
    _, simulated = step_bubbles(actions, [makespan] * p, 2 * p)
    assert simulated == pytest.approx(SCHEDULES[schedule].bubble(p, m, 2))
    if SCHEDULES[schedule].layout == "v":
        assert makespan == pytest.approx(6 * m + p - 1)
        assert SCHEDULES[schedule].bubble(p, 2 * p - 1, 2) is None  # torch refuses m < 2p


@pytest.mark.parametrize("shapes", [(4, 4, 4, 4), (4, 4, 4, 5)])
def test_compile_marks_count_a_recompile_in_the_timed_steps(shapes):
    """The timed loop's compile marks (train.py) see compilation where it happens: in warm-up for
    a steady shape, in the timed steps when a timed batch changes shape (a recompile)."""
    import torch

    from benchbench.rank.loop import timed_loop

    torch._dynamo.reset()  # no cached code from another case
    fn = torch.compile(lambda x: (x.sin() * 2).sum(), backend="eager")

    class Trainer:
        def train_step(self, x, y):
            return fn(x)

    log = timed_loop(Trainer(), [(torch.ones(n), None) for n in shapes], torch.device("cpu"), False, warmup=1)
    (n0, s0), (n1, s1), (n2, _) = log.compile_marks
    assert n1 - n0 >= 1 and s1 > s0  # the first (warm-up) step compiled
    assert n2 - n1 == (shapes[-1] != shapes[0])  # one recompile exactly where a timed shape changed


def test_replay_counts_a_slow_stage_and_the_measured_wall():
    actions = one_f_one_b(2, 4, 1.0, 2.0)
    actions[1] = [(k, s, i, d * 2) for k, s, i, d in actions[1]]  # the last stage twice as slow
    _, simulated = step_bubbles(actions, [40.0, 40.0], 2)
    assert simulated > (2 - 1) / (4 + 2 - 1) + 0.1  # imbalance idles the fast stage
    measured, _ = step_bubbles(actions, [40.0, 36.0], 2)  # the slowest rank's wall counts
    assert measured == pytest.approx(1 - (12 + 24) / 2 / 40)


def test_replay_of_an_impossible_order_is_refused():
    actions = one_f_one_b(2, 2, 1.0, 2.0)
    actions[0] = list(reversed(actions[0]))  # stage 0 waits for a backward that needs its forward
    assert simulate(actions, 2) is None


def test_bus_factors_are_nccl_tests():
    assert BUS_FACTOR["all_reduce"](8) == pytest.approx(2 * 7 / 8)
    assert BUS_FACTOR["all_gather"](4) == BUS_FACTOR["reduce_scatter"](4) == pytest.approx(3 / 4)
    assert BUS_FACTOR["broadcast"](8) == BUS_FACTOR["send"](2) == 1.0


def test_unknown_collective_is_an_error_in_tests_and_a_warning_in_runs():
    assert os.environ["BENCHBENCH_STRICT_COMM"] == "1"  # set by conftest for every rank
    with pytest.raises(RuntimeError, match="unknown collective 'gather_'"):
        CommCounter()._count("gather_", (), None)
    lenient = CommCounter(strict=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lenient._count("gather_", (), None)
    assert "unknown collective 'gather_'" in str(seen[0].message)
    assert lenient.table() == [
        {"kind": "unknown", "dim": "world", "group_size": 1, "calls": 1, "payload_bytes": 0.0, "bus_bytes": 0.0}
    ]


def test_rows_merge_to_the_largest_rank_per_operation():
    row = {"kind": "send", "dim": "pp", "group_size": 2, "calls": 4, "payload_bytes": 10.0, "bus_bytes": 10.0}
    merged = merge_ranks([[row], [dict(row, calls=8, payload_bytes=5.0, bus_bytes=5.0)]])
    assert merged == [row]  # the rank that moved the most, its calls with its bytes


@pytest.mark.parametrize(
    ("dtype", "device", "fp32_matmuls", "want"),
    [
        ("fp32", "cuda", "tf32", "tf32"),
        ("fp32", "cuda", "fp32", "fp32"),
        ("fp32", "cuda", "bf16", "bf16"),
        ("bf16", "cuda", "tf32", "bf16"),
        ("fp32", "cpu", "tf32", "fp32"),
    ],
)
def test_mfu_peak_follows_the_matmul_precision(dtype, device, fp32_matmuls, want):
    h100 = load_hardware("h100-sxm")
    hw = h100 if device == "cuda" else load_hardware("cpu-local")
    assert hw.mfu_precision(dtype, fp32_matmuls) == want
    if device == "cuda":
        assert h100.peak("tf32") == 494.5e12 and h100.peak("fp32") == 67e12 and h100.peak("bf16") == 989e12


# --- real runs (torchrun, gloo) -------------------------------------------------------------------

GPT = {"arch": "gpt", "layers": 4, "hidden": 32, "heads": 4, "seq_len": 16, "vocab": 64, "batch_size": 16}
# Compute-heavy enough on 2 cores that a backward pass outlasts the injected delay.
MLP = {"arch": "mlp", "width": 1024, "depth": 6, "out_dim": 16, "batch_size": 1024}


@pytest.fixture(scope="module")
def cfg():
    return check_config(
        {
            "study": "t",
            "models": {"gpt": GPT, "mlp": MLP},
            "strategies": ["single"],
            "world_sizes": [1],
            "steps": 5,
            "warmup_steps": 2,
            "timeout_s": 300,
            "strategy_defs": {"ddp-1mb": {"base": "ddp", "bucket_cap_mb": 1}},
        }
    )


@pytest.fixture(scope="module")
def single_gpt(cfg, tmp_path_factory):
    rec = run(cfg, tmp_path_factory.mktemp("single"), "gpt", "single", 1)
    assert rec["status"] == "ok", rec["error"]
    s = rec["summary"]  # attention counted in full (torch's convention), the model's FLOPs count it causal
    assert s["hardware_flops_per_step"] > s["train_flops_per_sample"] * GPT["batch_size"]
    return rec


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "ws", "rows"),
    [
        ("fsdp", 2, {("all_gather", "dp"), ("reduce_scatter", "dp")}),
        ("tp", 2, {("all_reduce", "tp"), ("all_gather", "tp")}),
        ("pp-1f1b", 2, {("send", "pp")}),
        ("fsdp-tp", 4, {("all_gather", "dp"), ("reduce_scatter", "dp"), ("all_reduce", "tp"), ("all_gather", "tp")}),
    ],
)
def test_comm_rows_name_the_operation_and_the_mesh_dimension(cfg, single_gpt, tmp_path, strategy, ws, rows):
    rec = run(cfg, tmp_path, "gpt", strategy, ws)
    assert rec["status"] == "ok", rec["error"]
    assert {(c["kind"], c["dim"]) for c in rec["comm"]} == rows
    for c in rec["comm"]:
        assert c["calls"] > 0 and c["payload_bytes"] > 0
        assert c["bus_bytes"] == pytest.approx(c["payload_bytes"] * BUS_FACTOR[c["kind"]](c["group_size"]))
    s = rec["summary"]
    assert 0 < s["comm_bytes_per_step"] <= sum(c["payload_bytes"] for c in rec["comm"])  # max over ranks
    # every rank counts its own shard of the work: summed over ranks, the single-process step
    assert s["hardware_flops_per_step"] == pytest.approx(single_gpt["summary"]["hardware_flops_per_step"], rel=1e-9)


def delayed(monkeypatch, delay: float) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests" / "mutants"), str(ROOT)]))
    monkeypatch.setenv("BENCHBENCH_MUTANT", "comm-delay")
    monkeypatch.setenv("BENCHBENCH_DELAY_S", str(delay))


@pytest.mark.slow
def test_known_delay_is_exposed_by_dp_naive_and_partly_hidden_by_ddp(cfg, tmp_path, monkeypatch):
    delay = 0.2  # well above this machine's run-to-run drift of the paired difference
    plain = {s: run(cfg, tmp_path, "mlp", s, 2)["summary"] for s in ("dp-naive", "ddp-1mb")}
    delayed(monkeypatch, delay)
    slow = {s: run(cfg, tmp_path / "d", "mlp", s, 2)["summary"] for s in ("dp-naive", "ddp-1mb")}
    for s in plain:
        assert plain[s]["exposed_comm_s"] is not None and 0 <= plain[s]["exposed_comm_fraction"] < 1
    naive_rise = slow["dp-naive"]["exposed_comm_s"] - plain["dp-naive"]["exposed_comm_s"]
    ddp_rise = slow["ddp-1mb"]["exposed_comm_s"] - plain["ddp-1mb"]["exposed_comm_s"]
    assert 0.6 * delay <= naive_rise <= 1.5 * delay  # nothing overlaps dp-naive's all-reduce
    assert ddp_rise < 0.7 * naive_rise  # DDP's first bucket overlaps the rest of backward


@pytest.mark.parametrize("strategy", ["dp-naive", "ddp", "zero1"])
def test_exposed_probe_runs_only_with_a_data_parallel_peer(monkeypatch, strategy):
    """At dp = 1 the gradient all-reduce runs over a group of one: no paired steps at all (the
    figures are empty, as for plans without a switch); at dp = 2 the same switch is paired."""
    from benchbench.rank.measure import probes

    paired = []
    monkeypatch.setattr(probes, "paired_steps", lambda *a: paired.append(a[3]) or ([2.0], [1.0]))
    trainer = SimpleNamespace(modules=[], grad_syncs=[SimpleNamespace(enabled=True)])  # a switchable sync
    cpu = torch.device("cpu")
    assert probes.exposed_rounds(make_test_job(strategy, 1), trainer, (), cpu) is None
    assert paired == []
    assert probes.exposed_rounds(make_test_job(strategy, 2), trainer, (), cpu) == ([2.0], [1.0])
    assert paired == [3]


@pytest.mark.slow
def test_exposed_comm_is_empty_where_communication_cannot_be_removed(cfg, tmp_path):
    s = run(cfg, tmp_path, "gpt", "fsdp", 2)["summary"]
    assert s["exposed_comm_s"] is None and s["exposed_comm_fraction"] is None
    assert s["blocked_fraction_proxy"] is not None  # the proxy, named as one, is still there


@pytest.mark.slow
def test_pipeline_bubble_falls_as_micro_batches_grow(tmp_path):
    mb = 16  # samples per micro-batch, fixed: more micro-batches, larger global batch
    heavy = {"arch": "gpt", "layers": 4, "hidden": 256, "heads": 4, "seq_len": 64, "vocab": 64}
    bubbles = {}
    for m in (2, 8):
        cfg = check_config(
            {
                "study": "t",
                "models": {"g": dict(heavy, batch_size=mb * m)},
                "strategies": ["single"],
                "world_sizes": [1],
                "steps": 3,
                "warmup_steps": 1,
                "timeout_s": 300,
                "strategy_defs": {"pp": {"base": "pp-1f1b", "micro_batches": m}},
            }
        )
        rec = run(cfg, tmp_path / str(m), "g", "pp", 2)
        assert rec["status"] == "ok", rec["error"]
        s = rec["summary"]
        bubbles[m] = s
        assert s["bubble_fraction_theoretical"] == pytest.approx(1 / (m + 1))
        assert 0 <= s["bubble_fraction_simulated"] <= s["bubble_fraction_measured"] + 0.02 < 1
    assert bubbles[8]["bubble_fraction_measured"] < bubbles[2]["bubble_fraction_measured"] - 0.1
    assert bubbles[8]["bubble_fraction_simulated"] < bubbles[2]["bubble_fraction_simulated"] - 0.1
    for s in bubbles.values():  # the replay of this near-balanced pipeline lies near the closed form
        theory = s["bubble_fraction_theoretical"]  # measured here: m = 2 0.336 vs 0.333, m = 8 0.117 vs 0.111
        assert abs(s["bubble_fraction_simulated"] - theory) <= 0.15 * theory + 0.01
