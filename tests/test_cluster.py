"""Operating long runs: --resume=auto continues a run in its own folder, Slurm's environment gives ranks and the
rendezvous, and train.py --slurm submits a job (submitit) that a time-limit signal stops, requeues and resumes to
the tensors of an uninterrupted run. What needs a real cluster (sbatch, several nodes) is not tested here."""
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers_cli import run_tool
from helpers_training import (ROOT, TINY_ARGS, assert_same_training_state, load, make_figures, snapshots,
                              tiny_options)
from sg2_cli import slurm, train, train_run
from torch_utils import distributed
from training import continuation
from training.options import TrainCommand

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return make_figures(tmp_path_factory.mktemp("data") / "figures.zip", num=32)


def run_folders(outdir):
    return sorted(n for n in os.listdir(outdir) if n[:1].isdigit())


# ----------------------------------------------------------------------------
# --resume=auto.


@pytest.mark.slow
def test_resume_auto_continues_the_run_in_its_folder_exactly(tmp_path, figures, capsys):
    opts = tiny_options(figures, aug="fixed", p=0.5, tick=0.008, snap=2)
    assert train_run.run_training(str(tmp_path / "full"), dict(opts, kimg=0.048)) == 0
    outdir = str(tmp_path / "parts")
    assert train_run.run_training(outdir, dict(opts, kimg=0.024, resume="auto")) == 0  # nothing yet: a new run
    assert train_run.run_training(outdir, dict(opts, kimg=0.048, resume="auto")) == 0  # continued
    out = capsys.readouterr().out
    assert "no run in" in out and "continuing" in out and "Resumed at kimg 0.024" in out
    (part,) = run_folders(outdir)
    (full,) = run_folders(tmp_path / "full")
    a, b = load(snapshots(os.path.join(outdir, part))[-1]), load(snapshots(tmp_path / "full" / full)[-1])
    assert a["progress"]["cur_nimg"] == b["progress"]["cur_nimg"] == 48
    assert_same_training_state(a, b, keys=("G", "D", "G_ema", "augment_pipe"))
    log = open(os.path.join(outdir, part, "log.txt")).read()
    assert log.count("Training for") == 2  # both parts wrote into the one log


def test_resume_auto_skips_other_options_and_runs_without_snapshots(tmp_path, figures, capsys):
    outdir = tmp_path / "runs"
    fields = TrainCommand.from_dict(tiny_options(figures, kimg=0.004)).to_dict()
    no_snapshot = outdir / "00001-x"
    no_snapshot.mkdir(parents=True)
    continuation.write_command(str(no_snapshot), fields)
    other = outdir / "00002-x"
    other.mkdir()
    continuation.write_command(str(other), dict(fields, gamma=3.0, kimg=9.0))  # --kimg may change, --gamma not
    (other / "network-snapshot-000000_004.pkl").write_bytes(b"\x80\x04.")
    older = outdir / "00000-x"
    older.mkdir()
    continuation.write_command(str(older), dict(fields, kimg=1.0, metrics="none", resume="SHHQ.pkl"))
    (older / "network-snapshot-000000_004.pkl").write_bytes(b"\x80\x04.")
    found = continuation.find_run(str(outdir), dict(fields, kimg=2.0, resume="auto"))
    assert found == (str(older), str(older / "network-snapshot-000000_004.pkl"))
    out = capsys.readouterr().out
    assert "00002-x has other options (--gamma)" in out and "00001-x has no complete snapshot" in out


# ----------------------------------------------------------------------------
# Slurm's environment.


@pytest.mark.parametrize("nodelist,host", [("node7", "node7"), ("gpu[03-05,09],cpu1", "gpu03"),
                                           ("a1,b[2-3]", "a1"), ("rack[2]-n[07-08]", "rack2-n07"),
                                           ("x[010,2]", "x010")])
def test_first_host_of_a_node_list(nodelist, host):
    assert distributed.first_host(nodelist) == host


def test_slurm_environment_gives_rank_world_size_and_rendezvous(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "5")  # a batch script's own environment: no step, no group
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert distributed.launcher_env() is None
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # a step of one task: may still spawn --gpus=N
    assert distributed.launcher_env() is None
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "gpu[12-13]")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "4(x2)")
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    assert distributed.launcher_env() == (5, 8, 1) and distributed.launcher_name() == "srun"
    assert (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"], os.environ["LOCAL_WORLD_SIZE"]) == \
        ("gpu12", str(distributed.SLURM_PORT_BASE + 123456 % distributed.SLURM_PORT_RANGE), "4")
    monkeypatch.setenv("RANK", "0")  # torchrun inside an allocation wins
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.launcher_env() == (0, 2, 0)
    monkeypatch.delenv("RANK")
    monkeypatch.setenv("SLURM_PROCID", "x")
    with pytest.raises(distributed.UserError, match="SLURM_PROCID='x'"):
        distributed.launcher_env()


# ----------------------------------------------------------------------------
# train.py --slurm.


@pytest.mark.parametrize("text,minutes", [("90", 90), ("24:00", 1440), ("1:30:30", 90), ("2-06:00", 3240),
                                          ("1-0", 1440)])
def test_slurm_time_forms(text, minutes):
    assert slurm.parse_time(text) == minutes


def test_dry_run_prints_the_job_and_bad_settings_are_one_line(tmp_path, figures):
    args = ["--outdir", str(tmp_path), f"--data={figures}", "--cfg=shhq", "--mirror", "--gpus=8", "--slurm",
            "--nodes=4", "--partition=gpu", "--time=24:00", "--slurm-args=account=proj,--qos=high,exclusive",
            "--dry-run"]
    status, out, err = run_tool(train.main, args)
    assert status == 0, err
    for line in ["#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --time=1440", "#SBATCH --partition=gpu", "#SBATCH --signal=USR2@120",
                 "#SBATCH --account=proj", "#SBATCH --qos=high", "#SBATCH --exclusive",
                 "#SBATCH --job-name=sg2-figures"]:
        assert line + "\n" in out, (line, out)
    task_options = out.split("Each task runs train.py with:\n")[1]
    assert "--cfg=shhq" in task_options and "--gpus" not in task_options and os.listdir(tmp_path) == []
    cases = [(["--slurm"], "--time: --slurm needs the job's time limit"),
             (["--nodes=2"], "--nodes: only applies with --slurm"),
             (["--slurm", "--time=soon"], "'soon' is not a Slurm time"),
             (["--slurm", "--time=1:00", "--slurm-args=a b=2 3x=1"], "'3x=1' is not an sbatch setting")]
    for extra, message in cases:
        status, out, err = run_tool(train.main, ["--outdir", str(tmp_path), f"--data={figures}", *extra])
        assert status in (1, 2) and message in err and err.count("\n") == 1, err


def test_submitting_needs_sbatch(tmp_path, figures, monkeypatch):
    pytest.importorskip("submitit", reason="the cluster extra (pip install .[cluster])")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    status, _out, err = run_tool(train.main, ["--outdir", str(tmp_path), f"--data={figures}", "--slurm",
                                              "--time=10"])
    assert status == 1 and "sbatch is not on this machine's PATH" in err


def child_pids(pid):
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the job's task process in /proc")
def test_submitit_job_requeues_on_the_time_limit_signal_and_resumes_exactly(tmp_path, figures, monkeypatch):
    pytest.importorskip("submitit", reason="the cluster extra (pip install .[cluster])")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", ROOT)
    fields = tiny_options(figures, kimg=0.4, tick=0.008, snap=1000)
    job = slurm.submit(str(tmp_path / "runs"), fields, slurm.SlurmSettings(nodes=1, gpus_per_node=1, minutes=10),
                       cluster="local")
    try:
        # The local executor's tasks write where a Slurm job's would; stop the first run after a few ticks with
        # the signal that Slurm sends before the time limit.
        wait_for(lambda: "tick 3 " in (job.stdout() or ""), 300, "the job's third tick")
        (task,) = child_pids(job._process.pid)
        os.kill(task, signal.SIGUSR2)
        wait_for(job.done, 300, "the job to finish")
        assert job.result() == 0, job.stderr()
    finally:
        if not job.done():
            job.cancel()
    out = job.stdout()
    assert "Received SIGUSR2" in out and "Stopped by SIGUSR2" in out and "Continuing in the run folder" in out, out
    (run_name,) = run_folders(tmp_path / "runs")
    parts = snapshots(tmp_path / "runs" / run_name)
    assert len(parts) == 3  # tick 0's, the stop snapshot, then the end of the requeued run
    stopped_nimg = load(parts[1])["progress"]["cur_nimg"]
    assert 12 <= stopped_nimg < 400

    # The same length without interruption, as train.py runs it.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    options = [a for a in TINY_ARGS if not a.startswith("--workers")]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--outdir={tmp_path / 'whole'}",
                           f"--data={figures}", "--kimg=0.4", "--tick=0.008", "--snap=1000", "--workers=0", *options],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (whole,) = run_folders(tmp_path / "whole")
    a, b = load(parts[-1]), load(snapshots(tmp_path / "whole" / whole)[-1])
    assert a["progress"]["cur_nimg"] == b["progress"]["cur_nimg"] == 400
    assert_same_training_state(a, b)
