"""SIGTERM to a training run's whole process group (as Slurm and `kill -TERM -PGID` send it).

DataLoader workers and spawned ranks get the signal too. The run must still finish its step, write
the stop snapshot and exit 143, and resuming from that snapshot must continue exactly: after a
few more steps it equals a run that was never interrupted (the reference).
"""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers_training import (ROOT, TINY_ARGS, assert_same_training_state, load, make_figures, snapshots,
                              state_tensors)

pytestmark = pytest.mark.slow

MORE_KIMG = 0.012  # Steps after the stop: 3 steps of 4 images (crossing lazy regularisation intervals is not needed).


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return make_figures(tmp_path_factory.mktemp("data") / "figures.zip", num=32)


def train_cmd(outdir, data, *args):
    options = [a for a in TINY_ARGS if not a.startswith("--workers")]
    return [sys.executable, os.path.join(ROOT, "train.py"), f"--outdir={outdir}", f"--data={data}", "--tick=0.008",
            "--snap=1000", *options, *args]


def run(cmd, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def sigterm_process_group(cmd, ticks=3, timeout=300):
    """Start cmd in its own process group, wait for `ticks` progress lines, SIGTERM the group; (status, output)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    try:
        deadline = time.time() + timeout
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(f"tick {ticks}"):
                break
            assert time.time() < deadline, "training did not reach the tick"
        os.killpg(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, "".join(lines) + rest


def only_run_dir(outdir):
    (name,) = os.listdir(outdir)
    return os.path.join(outdir, name)


@pytest.mark.parametrize("procs", [["--workers=2"], ["--gpus=2", "--workers=1"]], ids=["workers2", "gpus2"])
def test_sigterm_to_the_process_group_keeps_the_run(tmp_path, figures, procs):
    status, output = sigterm_process_group(train_cmd(tmp_path / "stopped", figures, "--kimg=1000", *procs))
    assert status == 128 + signal.SIGTERM, output
    assert "Stopped by SIGTERM" in output and "Traceback" not in output, output
    stop_snapshot = output.split("resume with --resume=")[1].split()[0]
    assert snapshots(only_run_dir(tmp_path / "stopped"))[-1] == stop_snapshot
    stopped = load(stop_snapshot)
    stopped_nimg = stopped["progress"]["cur_nimg"]
    assert stopped_nimg == round(float(output.split("Stopped by SIGTERM at kimg ")[1].split(";")[0]) * 1000)

    # Resume a few steps on, and run the same length without interruption: the two must be identical.
    kimg = f"--kimg={(stopped_nimg + MORE_KIMG * 1000) / 1000:g}"
    status, output = run(train_cmd(tmp_path / "resumed", figures, kimg, f"--resume={stop_snapshot}", *procs))
    assert status == 0, output
    # It did resume from the stop (a run that ignored --resume would also end equal to the straight one).
    progress = stopped["progress"]
    assert (f"Resumed at kimg {stopped_nimg / 1000:.3f} (tick {progress['cur_tick']}, step {progress['batch_idx']})"
            in output), output
    status, output = run(train_cmd(tmp_path / "straight", figures, kimg, *procs))
    assert status == 0, output
    resumed = load(snapshots(only_run_dir(tmp_path / "resumed"))[-1])
    straight = load(snapshots(only_run_dir(tmp_path / "straight"))[-1])
    assert resumed["progress"]["cur_nimg"] == straight["progress"]["cur_nimg"] > stopped_nimg
    assert_same_training_state(resumed, straight)
    ts, tr = state_tensors(stopped), state_tensors(resumed)  # the steps after the stop changed the weights
    assert any(not torch.equal(ts[name], tr[name]) for name in ts)
