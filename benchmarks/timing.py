"""Timing helpers of the CPU benchmarks: wall time of a call, interleaved medians, matmul peaks, child processes.

Every efficiency the benchmarks print is read against a matmul peak measured in the same process and the same
rounds as the work itself, since other work on a shared machine moves both by up to 2x.
"""
import json
import os
import statistics
import subprocess
import sys
import time

import click
import torch

from torch_utils.precision import PRECISIONS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_average():
    return "n/a" if not hasattr(os, "getloadavg") else " ".join(f"{v:.1f}" for v in os.getloadavg())


# What seconds() reads: wall time, or with use_cpu_clock() the process's CPU time, which other work on a busy
# machine moves far less (with one torch thread it is the work itself; with more it also counts spinning).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def use_clock(name):
    """Make seconds() read the 'wall' or 'cpu' clock."""
    global _clock
    _clock = CLOCKS[name]


def seconds(fn, min_time=0.0):
    """Time of fn() on the chosen clock; with min_time, fn runs repeatedly for at least that long and the mean
    is returned."""
    calls, start = 0, _clock()
    while True:
        fn()
        calls += 1
        elapsed = _clock() - start
        if elapsed >= min_time:
            return elapsed / calls


def peak_size(dtype_name):
    """Matrix size of the peak measurement: 2048, or 1024 for bf16 where it is emulated (2048 takes minutes)."""
    from torch_utils import cpu_tuning
    return 1024 if dtype_name == "bf16" and not cpu_tuning.bf16_is_fast() else 2048


def finished(fn, device):
    """fn, followed by waiting for the device's queued work (CUDA runs asynchronously), so a timing covers it."""
    if torch.device(device).type != "cuda":
        return fn

    def run():
        result = fn()
        torch.cuda.synchronize(device)
        return result
    return run


def matmul_case(dtype_name, device="cpu"):
    """The matmul peak of a dtype: FLOPs and a timed run of a square product (mean over at least 0.3 s)."""
    n = peak_size(dtype_name)
    a, b = (torch.randn(n, n).to(device=device, dtype=PRECISIONS[dtype_name]) for _ in range(2))
    return dict(flops=2 * n ** 3, run=lambda: seconds(finished(lambda: a @ b, device), min_time=0.3))


def measure(cases, repeats, budget_s):
    """Median seconds per case over `repeats` interleaved rounds, after a warm-up round; with the spread.

    Returns {name: (median, min, max)}. A case slower than budget_s keeps its warm-up time as its only
    measurement (one-time setup is then small beside the work). A case with `scale_of` = (other case, factor)
    is skipped when the other case's time times the factor exceeds three budgets (bf16 at batch 16 where
    bf16 is emulated would take many minutes).
    """
    times = {name: [] for name in cases}
    warmup = {}
    for round_idx in range(repeats + 1):
        for name, case in cases.items():
            ref, factor = case.get("scale_of", (None, 1))
            if ref in warmup and warmup[ref] * factor > 3 * budget_s:
                continue  # too slow to run at all
            if round_idx > 0 and warmup[name] > budget_s:
                continue  # measured once, in the warm-up round
            elapsed = case["run"]()
            if round_idx == 0:
                warmup[name] = elapsed
            if round_idx > 0 or elapsed > budget_s:
                times[name].append(elapsed)
    return {name: (statistics.median(v), min(v), max(v)) for name, v in times.items() if v}


def peaks_of(median, dtypes):
    """{dtype name: FLOP/s} from the measured 'peak fp32' / 'peak bf16' cases."""
    return {name: 2 * peak_size(name) ** 3 / median[f"peak {name}"][0] for name in dtypes if f"peak {name}" in median}


def run_child(module, args, env=None, timeout=3600):
    """Run `python -m benchmarks.MODULE ARGS` in a fresh process from the repository root; its last stdout
    line is JSON, returned parsed. The child's stderr passes through (progress, warnings)."""
    child_env = dict(os.environ, PYTHONPATH=ROOT)
    child_env.update(env or {})
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT, env=child_env,
                            stdout=subprocess.PIPE, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"benchmarks.{module} {' '.join(args)} failed with exit status {result.returncode}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def int_list(ctx, param, value):
    """click callback: '1,4,16' -> [1, 4, 16]."""
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of integers") from None


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def spread(stats, scale=1.0, fmt="{:.3f}"):
    """'median (min-max)' of a (median, min, max) triple, each value times `scale`."""
    median, low, high = (v * scale for v in stats)
    return f"{fmt.format(median)} ({fmt.format(low)}-{fmt.format(high)})"
