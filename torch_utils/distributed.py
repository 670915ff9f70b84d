"""Processes and devices, for training, metrics and generate.py alike.

A run has `world_size` processes with ranks 0 .. world_size - 1, started in one of two ways:
  - spawned here (`spawn`, for `--gpus=N` on one machine): they meet through a file in a temporary folder;
  - started by torchrun (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
    MASTER_PORT): `torchrun_env` finds the rank in the environment and they meet through it ("env://").
Each process uses cuda:<local rank> when it runs on CUDA, else the CPU; processes talk over NCCL on
CUDA devices and gloo on the CPU. Errors name the option to change (--device, --gpus) in one line.
"""
import os
import signal
import sys
import tempfile

import torch
import torch.multiprocessing as mp

from dnnlib.errors import describe_error
from dnnlib.util import UserError


# ----------------------------------------------------------------------------
# Where this process stands.


def torchrun_env():
    """(rank, world_size, local_rank) when a launcher such as torchrun started this process, else None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise UserError(f"RANK={os.environ['RANK']!r}, WORLD_SIZE={os.environ['WORLD_SIZE']!r}, LOCAL_RANK="
                        f"{os.environ.get('LOCAL_RANK')!r}: the launcher must set whole numbers") from None
    if not 0 <= rank < world_size:
        raise UserError(f"RANK={rank} is not below WORLD_SIZE={world_size}; check the launcher's options")
    return rank, world_size, local_rank


def uses_cuda(device_name=None):
    """Whether a --device value means CUDA here (no value: CUDA when PyTorch sees a GPU)."""
    if device_name is None:
        return torch.cuda.is_available()
    return str(device_name).startswith("cuda")


def resolve_device(device_name=None, local_rank=0, world_size=1):
    """The torch.device for a --device value in the process of `local_rank`.

    None means cuda:<local_rank> when PyTorch sees a GPU, else the CPU; 'cuda' means cuda:<local_rank>;
    'cuda:N' is used as written by a single process. Other device types (e.g. 'mps') pass unchecked.
    """
    if device_name is None:
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device_name)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"--device: '{device_name}' is not a device; use cpu, cuda or cuda:N") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise UserError(f"--device: {device_name} was asked for, but PyTorch sees no CUDA device; use --device=cpu")
    if device.index is not None and world_size > 1:
        raise UserError(f"--device: {device_name} names one GPU, but each of the {world_size} processes takes its own "
                        "(cuda:<local rank>); write --device=cuda")
    index = local_rank if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise UserError(f"--gpus: process {local_rank} would use cuda:{index}, but this machine has "
                        f"{torch.cuda.device_count()} GPU(s); lower --gpus or --nproc-per-node")
    return torch.device("cuda", index)


def check_process_count(num_processes, device_name=None):
    """Before spawning: CUDA processes need one GPU each."""
    if uses_cuda(device_name) and torch.cuda.is_available() and num_processes > torch.cuda.device_count():
        raise UserError(f"--gpus: {num_processes} processes, but this machine has {torch.cuda.device_count()} "
                        "GPU(s); lower --gpus (or use --device=cpu)")


# ----------------------------------------------------------------------------
# The process group.


def init_process(rank, world_size, device, init_method=None):
    """Make `device` this process's own and, with several processes, join the group (NCCL on CUDA, else gloo)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size <= 1:
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend=backend, init_method=init_method or "env://", rank=rank,
                                         world_size=world_size)
    if device.type == "cpu":
        # CPU processes share the machine's cores; without this each would start one thread per core.
        local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(local_procs, 1)))


def close_process_group():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


# ----------------------------------------------------------------------------
# Spawning processes on this machine.


def _spawned_entry(rank, worker, world_size, temp_dir, args):
    """Run worker(rank, world_size, init_method, *args) in a spawned process; a UserError or OSError prints one line.

    Every process exits 0 unless it fails (the parent stops the others at the first nonzero exit);
    rank 0 leaves its worker's exit status in temp_dir for the parent to return.
    """
    try:
        status = worker(rank, world_size, "file://" + os.path.join(temp_dir, "init"), *args)
    except (UserError, OSError, MemoryError) as err:  # as sg2_cli.runner shows them: one line
        where = "" if rank == 0 else f" (process {rank})"
        print(f"Error{where}: {describe_error(err)}", file=sys.stderr, flush=True)
        sys.exit(1)
    if rank == 0 and status:
        with open(os.path.join(temp_dir, "status"), "w") as f:
            f.write(str(int(status)))


def _join(context):
    """Wait for the spawned processes; the first nonzero exit status (stopping the others), else 0."""
    while True:
        try:
            if context.join():
                return 0
        except mp.ProcessExitedException as err:
            return err.exit_code if err.exit_code and err.exit_code > 0 else 1
        except mp.ProcessRaisedException as err:
            print(err, file=sys.stderr)
            return 1


def spawn(worker, world_size, args=(), device_name=None):
    """Run worker(rank, world_size, init_method, *args) in `world_size` new processes; returns the exit status.

    The status is rank 0's worker's return value (an int; None = 0) when all succeed, else the first
    failing process's exit status. SIGINT and SIGTERM are passed on to the processes, which decide
    how to stop.
    """
    backend = "NCCL" if uses_cuda(device_name) and torch.cuda.is_available() else "gloo"
    print(f"Running {world_size} {'CUDA' if backend == 'NCCL' else 'CPU'} processes ({backend}).", file=sys.stderr,
          flush=True)
    with tempfile.TemporaryDirectory() as temp_dir:
        temp_dir = os.path.abspath(temp_dir)
        context = mp.start_processes(_spawned_entry, args=(worker, world_size, temp_dir, tuple(args)),
                                     nprocs=world_size, join=False, start_method="spawn")

        def forward(signum, _frame):
            for process in context.processes:
                if process.is_alive():
                    os.kill(process.pid, signum)
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            status = _join(context)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        status_file = os.path.join(temp_dir, "status")
        if status == 0 and os.path.exists(status_file):
            with open(status_file) as f:
                status = int(f.read().strip())
    return status
