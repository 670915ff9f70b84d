"""Time and memory bounds, measured in a child process with a timeout (the suite's one way to assert speed).

`measure(target, cases)` runs `target(*args)` for each case in one fresh Python process, so that a hang or a
runaway allocation ends that process and fails the test instead of stalling the suite. For each case it returns
the best wall-clock time of a few repeats and how far the call raised the peak resident memory above what the
process held before it (the first case also runs once before any measurement, so that imports and first-call
setup stay out of the figures). Tests assert times only as ratios to a well-formed input of the same size, measured in
the same process, so that a slow or busy machine cannot fail them.

Run as a script (by `measure`) it is that child: TARGET (module:function, a module of tests/) and a JSON file
of [name, args] cases; it prints one JSON line per case.
"""
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
PEAK_NOT_RESETTABLE = 3  # The child's exit status where /proc/self/clear_refs cannot reset the peak.


class Measurement(NamedTuple):
    seconds: float   # Best wall-clock time of the repeats.
    peak_mb: float   # Peak resident memory during the calls, above the resident memory before them (MB).
    outcome: str     # What the target returned (as text), or "ErrorType: message".


def measure(target, cases, repeats=5, timeout=120):
    """{name: Measurement} of `target` ('module:function' in tests/) on each (name, args) of `cases`."""
    with tempfile.TemporaryDirectory() as folder:
        spec = os.path.join(folder, "cases.json")
        with open(spec, "w") as f:
            json.dump([[name, list(args)] for name, args in cases], f)
        lines, status = _run_child(target, spec, repeats, timeout)
        if status == PEAK_NOT_RESETTABLE:  # One process per case: each starts with a fresh peak.
            lines = []
            for name, args in cases:
                with open(spec, "w") as f:
                    json.dump([[name, list(args)]], f)
                lines += _run_child(target, spec, repeats, timeout)[0]
    return {entry["name"]: Measurement(entry["seconds"], entry["peak_mb"], entry["outcome"]) for entry in lines}


def _run_child(target, spec, repeats, timeout):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), target, spec, str(repeats)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        done = (err.stdout or b"").decode("utf-8", "replace").strip().splitlines()
        pytest.fail(f"{target} did not finish within {timeout} s (a hang?); finished cases: {done}", pytrace=False)
    if proc.returncode not in (0, PEAK_NOT_RESETTABLE):
        pytest.fail(f"{target} failed in the child process: {proc.stderr[-2000:]}", pytrace=False)
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.returncode


def assert_time_ratio(results, case, reference, max_ratio):
    """The case took at most max_ratio times the reference (both measured in the same child process)."""
    ratio = results[case].seconds / max(results[reference].seconds, 1e-6)
    assert ratio <= max_ratio, (f"{case} took {results[case].seconds:.4f} s, {ratio:.1f}x the "
                                f"{results[reference].seconds:.4f} s of {reference} (bound {max_ratio}x)")


# ----------------------------------------------------------------------------
# The child process.

def _proc_status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


def _reset_peak():
    """Reset VmHWM to the current resident memory (Linux 4.0+); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _call(fn, args):
    try:
        return str(fn(*args))
    except Exception as err:  # The outcome under test: reported, not raised.
        return f"{type(err).__name__}: {err}"


def _child(target, spec, repeats):
    module_name, function_name = target.split(":")
    fn = getattr(importlib.import_module(module_name), function_name)
    with open(spec) as f:
        cases = json.load(f)
    _call(fn, cases[0][1])  # Imports and first-call setup stay out of the figures.
    for name, args in cases:
        if not _reset_peak() and len(cases) > 1:
            sys.exit(PEAK_NOT_RESETTABLE)
        before = _proc_status_mb("VmRSS")
        best, outcome = float("inf"), None
        for _ in range(repeats):
            start = time.perf_counter()
            outcome = _call(fn, args)
            best = min(best, time.perf_counter() - start)
        print(json.dumps(dict(name=name, seconds=best, peak_mb=_proc_status_mb("VmHWM") - before, outcome=outcome)),
              flush=True)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
