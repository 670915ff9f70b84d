"""train.py ends promptly on every error and stop request, with data-loader workers, and leaves no process behind.

Each run is a child process in its own session, so the test can signal its whole process group (as Ctrl-C and
Slurm do) and check afterwards that no process of the group is left.

Stated bound (README, Stopping): after SIGINT/SIGTERM a run finishes its current step, or abandons a running
metric at its next batch, writes its snapshot and exits; its data-loader workers get WORKER_EXIT_SECONDS to
finish their item. With the tiny networks here a step takes well under a second, so STOP_BOUND leaves room for
a busy machine, not for a hang.
"""
import glob
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT
from helpers_http import serve
from helpers_training import TINY_ARGS, make_figures
from metrics.stand_in_detector import save_stand_in_detector

pytestmark = pytest.mark.slow

STOP_BOUND = 30.0      # seconds from the signal to the exit (tiny networks: a step is ~0.1 s, the snapshot ~0.2 s)
ERROR_BOUND = 60.0     # seconds from the start to the exit of a run whose detector cannot be fetched
# With --gpus=2, when one process fails torch's launcher gives the others 30 s after its SIGTERM (they would finish
# their step, but their peer is gone) before it kills them; two processes also take longer to start.
SPAWN_ERROR_BOUND = ERROR_BOUND + 30.0 + 60.0


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return make_figures(tmp_path_factory.mktemp("data") / "figures.zip", num=16)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return save_stand_in_detector(str(tmp_path_factory.mktemp("detector") / "standin.pt"))


def train_cmd(outdir, data, *args):
    options = [a for a in TINY_ARGS if not a.startswith(("--workers", "--metrics"))]
    return [sys.executable, os.path.join(ROOT, "train.py"), f"--outdir={outdir}", f"--data={data}", "--workers=2",
            "--tick=0.008", *options, *args]


def start(cmd, env=None, file_size_limit=None):
    def limit():
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=limit)


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def finish(proc, timeout):
    """(exit status, output, seconds) of a started run; a run still going after `timeout` is killed and fails."""
    begin = time.monotonic()
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"no exit within {timeout} s:\n{output[-3000:]}")
    seconds = time.monotonic() - begin
    for _ in range(50):  # workers exit with their parent or just after it
        if not group_alive(proc.pid):
            break
        time.sleep(0.1)
    alive = group_alive(proc.pid)
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not alive, f"processes of the run were left behind:\n{output[-3000:]}"
    return proc.returncode, output, seconds


def test_a_detector_that_cannot_be_fetched_fails_before_training(tmp_path, figures):
    with serve({}) as server:  # every path: 404
        proc = start(train_cmd(tmp_path / "runs", figures, "--kimg=1000", "--snap=1"),
                     env=dict(SG2_INCEPTION_DETECTOR=server.base_url + "/inception-2015-12-05.pt"))
        status, output, seconds = finish(proc, ERROR_BOUND)
    print(f"exited {status} after {seconds:.1f} s")
    last = output.strip().splitlines()[-1]
    assert status == 1 and "Traceback" not in output, output
    assert last.startswith("Error: $SG2_INCEPTION_DETECTOR: cannot open") and "404" in last, output
    assert not os.path.exists(tmp_path / "runs")  # refused before a run folder was made


@pytest.mark.parametrize("procs", [[], ["--gpus=2", "--workers=1"]], ids=["one-process", "gpus2"])
def test_a_failing_snapshot_write_ends_the_run_with_one_line(tmp_path, figures, procs):
    # A 256 KB file-size limit stands in for a full disk: the grids fit, the first snapshot does not.
    proc = start(train_cmd(tmp_path / "runs", figures, "--kimg=1000", "--snap=1", "--metrics=none", *procs),
                 file_size_limit=256 << 10)
    status, output, seconds = finish(proc, SPAWN_ERROR_BOUND if procs else ERROR_BOUND)
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    assert status == 1 and "Traceback" not in output, output
    # With --gpus=2 the launcher then stops the other process, which may print a line of its own after this one.
    assert f"Error: {os.path.join(run_dir, 'network-snapshot-000000.pkl')}: File too large" in output.splitlines()
    names = {name for name in os.listdir(run_dir) if not name.startswith("events.out.tfevents")}
    assert names == {"fakes_init.png", "fakes000000.png", "log.txt", "reals.png", "stats.jsonl",
                     "training_options.json"}  # no partial snapshot, no temporary file


@pytest.mark.parametrize("sig,wait_for,extra", [
    (signal.SIGINT, "Evaluating metrics", ["--metrics=fid50k_full", "--snap=1"]),
    (signal.SIGTERM, "Evaluating metrics", ["--metrics=fid50k_full", "--snap=1"]),
    (signal.SIGINT, "tick 2", ["--metrics=none", "--snap=1000"]),
], ids=["sigint-during-metrics", "sigterm-during-metrics", "sigint-during-steps"])
def test_a_stop_request_ends_the_run_with_a_snapshot_within_the_bound(tmp_path, figures, detector, sig, wait_for,
                                                                      extra):
    proc = start(train_cmd(tmp_path / "runs", figures, "--kimg=1000", f"--detector={detector}", *extra))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(wait_for):
            break
    else:
        pytest.fail("the run ended early:\n" + "".join(lines[-30:]))
    time.sleep(0.5)  # well inside the metric (50k images) or the steps
    os.killpg(proc.pid, sig)
    status, output, seconds = finish(proc, STOP_BOUND + 30)
    output = "".join(lines) + output
    print(f"exited {status} {seconds:.1f} s after {signal.Signals(sig).name}")
    assert status == 128 + sig and "Traceback" not in output, output
    assert seconds < STOP_BOUND
    snapshot = output.split("resume with --resume=")[1].split()[0]
    assert os.path.isfile(snapshot)
    if "metrics" in wait_for.lower():
        assert "abandoned: the run was asked to stop" in output
