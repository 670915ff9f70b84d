"""Multi-process training (gloo, CPU): two processes (spawned, torchrun's or srun's) compute what one computes with the
same global batch."""
import os
import subprocess
import sys

import pytest
import torch

from helpers_training import ROOT, flat_optimizer_state, load, make_figures, snapshots, state_tensors

pytestmark = pytest.mark.slow  # Each run starts two or three Python processes.

# The stylegan2 preset has no values derived from the process count, so both runs get the same options;
# batch 4 = one chunk of 2 on each of two processes = two chunks of 2 in one process.
ARGS = ["--cfg=stylegan2", "--batch=4", "--cbase=512", "--cmax=32", "--map=2", "--metrics=none", "--workers=0",
        "--grid=4x2", "--aug=fixed", "--aug-p=0.3", "--augpipe=bgc", "--kimg=0.072", "--tick=0.032", "--snap=100",
        "--device=cpu"]


def train(outdir, data, launcher, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [*launcher, os.path.join(ROOT, "train.py"), f"--outdir={outdir}", f"--data={data}", *ARGS, *extra]
    result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-4000:]
    (run_dir,) = [os.path.join(outdir, n) for n in os.listdir(outdir)]
    return run_dir, result.stdout


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = make_figures(root / "figures.zip")
    run_dir, _ = train(root / "single", data, [sys.executable], ["--batch-gpu=2"])
    return data, load(snapshots(run_dir)[-1])


def assert_same_training(a, b):
    assert a["progress"]["cur_nimg"] == b["progress"]["cur_nimg"] == 72
    # w_avg is a per-process running statistic of the mapping output (as in the original code), not trained.
    ta, tb = state_tensors(a, skip=("w_avg",)), state_tensors(b, skip=("w_avg",))
    assert ta.keys() == tb.keys()
    for name in ta:
        torch.testing.assert_close(ta[name], tb[name], rtol=1e-4, atol=2e-5, msg=name)
    for opt in ("G_opt", "D_opt"):
        oa, ob = (flat_optimizer_state(x["progress"]["optimizers"][opt]) for x in (a, b))
        for name in oa:
            # Elements that nearly cancel (|g| ~ 1e-6 in a tensor of scale 1e-2) differ by float summation
            # order between machines; the absolute tolerance follows the tensor's own scale.
            atol = 1e-7 + 1e-5 * float(ob[name].abs().max())
            torch.testing.assert_close(oa[name], ob[name], rtol=1e-3, atol=atol, msg=f"{opt} {name}")
    torch.testing.assert_close(a["progress"]["pl_mean"], b["progress"]["pl_mean"], rtol=1e-4, atol=1e-6)


def test_torchrun_two_processes_match_one(tmp_path, single):
    data, reference = single
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    run_dir, output = train(tmp_path, data, launcher)
    assert "gpus2" in os.path.basename(run_dir)
    assert_same_training(load(snapshots(run_dir)[-1]), reference)


def test_gpus_option_spawns_processes(tmp_path, single):
    data, reference = single
    run_dir, output = train(tmp_path, data, [sys.executable], ["--gpus=2"])
    assert "2 CPU processes (gloo)" in output
    assert_same_training(load(snapshots(run_dir)[-1]), reference)


def free_port_in(low, high):
    """A port in [low, high) that nothing listens on now."""
    import random
    import socket
    rng = random.Random(os.getpid())
    for _ in range(200):
        port = rng.randrange(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port found")


def test_two_srun_tasks_match_one_process(tmp_path, single):
    # What srun sets in each task of a 2-task step on one node; the port comes from the job ID.
    from torch_utils import distributed
    data, reference = single
    port = free_port_in(distributed.SLURM_PORT_BASE, distributed.SLURM_PORT_BASE + distributed.SLURM_PORT_RANGE)
    slurm = dict(SLURM_STEP_NUM_TASKS="2", SLURM_STEP_NODELIST="localhost", SLURM_STEP_TASKS_PER_NODE="2",
                 SLURM_JOB_ID=str(port - distributed.SLURM_PORT_BASE + 3 * distributed.SLURM_PORT_RANGE))
    env = {name: value for name, value in os.environ.items()
           if name not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), f"--outdir={tmp_path}", f"--data={data}", *ARGS]
    tasks = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(env, OMP_NUM_THREADS="1", SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank),
                                       **slurm))
             for rank in range(2)]
    outputs = [task.communicate(timeout=240)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    (run_dir,) = [os.path.join(tmp_path, n) for n in os.listdir(tmp_path)]
    assert "gpus2" in os.path.basename(run_dir)
    assert_same_training(load(snapshots(run_dir)[-1]), reference)
