"""Starting a training run: the numbered run folder, the log file, and one or more processes.

Three ways in, one code path:
  - one process (`--gpus=1`): the loop runs in this process;
  - `--gpus=N` on one machine: N worker processes spawned here, rendezvous through a file;
  - `torchrun --nnodes=... --nproc-per-node=... train.py ...`: each process is already started and
    finds its rank in the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
Processes talk over NCCL on GPUs and gloo on CPUs; rank 0 writes every file.
"""
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time

import torch

import dnnlib

# Exit statuses of a run stopped by a signal: 128 + the signal number, the shell convention.
EXIT_STATUS = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


def torchrun_env():
    """(rank, world_size, local_rank) when started by torchrun, else None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    return None


def make_run_dir(outdir, desc):
    """Create <outdir>/<NNNNN>-<desc>, numbered one past the highest existing run.

    The number is chosen under run_number_lock, so two runs starting at once in one folder never
    share a number, whatever their descriptions.
    """
    dnnlib.util.make_output_dir(outdir, "--outdir")
    with run_number_lock(outdir):
        prev = [re.match(r"^\d+", name) for name in os.listdir(outdir) if os.path.isdir(os.path.join(outdir, name))]
        run_id = max((int(m.group()) for m in prev if m is not None), default=-1) + 1
        run_dir = os.path.join(outdir, f"{run_id:05d}-{desc}")
        os.makedirs(run_dir)
    return run_dir


@contextlib.contextmanager
def run_number_lock(outdir, stale_after=30.0):
    """Held by one process at a time per folder: an atomic mkdir of <outdir>/.run-number-lock (also on NFS).

    The lock lives for the milliseconds of choosing a number; one older than `stale_after` seconds
    was left by a killed process and is taken over.
    """
    lock = os.path.join(outdir, ".run-number-lock")
    while True:
        try:
            os.mkdir(lock)
            break
        except FileExistsError:
            try:
                if time.time() - os.stat(lock).st_mtime > stale_after:
                    os.rmdir(lock)
            except OSError:  # Released (or taken over) meanwhile.
                pass
            time.sleep(0.01)
    try:
        yield
    finally:
        os.rmdir(lock)


def find_latest_snapshot(path):
    """A run folder's newest network-snapshot-*.pkl (by kimg, then time); other paths are returned as they are."""
    if not os.path.isdir(path):
        return path
    names = [n for n in os.listdir(path) if re.fullmatch(r"network-snapshot-\d+\.pkl", n)]
    if not names:
        raise dnnlib.util.UserError(f"--resume: {path} holds no network-snapshot-*.pkl; point it at a snapshot")
    names.sort(key=lambda n: (int(re.search(r"\d+", n).group()), os.path.getmtime(os.path.join(path, n))))
    return os.path.join(path, names[-1])


class Tee:
    """Copies everything written to stdout and stderr into a log file as well."""

    def __init__(self, file_name):
        self.file = open(file_name, "a")
        self.stdout, self.stderr = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _TeeStream(self.stdout, self.file), _TeeStream(self.stderr, self.file)

    def close(self):
        sys.stdout, sys.stderr = self.stdout, self.stderr
        self.file.close()


class _TeeStream:
    def __init__(self, stream, file):
        self.stream, self.file = stream, file

    def write(self, text):
        self.stream.write(text)
        self.file.write(text)
        self.file.flush()
        return len(text)

    def flush(self):
        self.stream.flush()
        self.file.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def select_device(local_rank, device_type=None):
    """cuda:<local_rank> when CUDA is available (or asked for), else the CPU."""
    if device_type == "cuda" and not torch.cuda.is_available():
        raise dnnlib.util.UserError("--device: cuda was asked for, but PyTorch sees no CUDA device; use --device=cpu")
    if device_type != "cpu" and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise dnnlib.util.UserError(f"--gpus: process {local_rank} has no GPU (this machine has "
                                        f"{torch.cuda.device_count()}); lower --gpus or --nproc-per-node")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def run_process(c, rank, world_size, local_rank, init_method=None):
    """Set up this process (device, process group, log, stats) and train; returns training_loop's result."""
    from torch_utils import training_stats
    from training import training_loop

    c = dnnlib.EasyDict(c)
    device = select_device(local_rank, c.pop("device_type", None))
    if world_size > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, init_method=init_method or "env://", rank=rank,
                                             world_size=world_size)
        if device.type == "cpu":
            # CPU processes share the machine's cores; without this each would start one thread per core.
            local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", c.num_gpus))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(local_procs, 1)))
        training_stats.init_multiprocessing(rank=rank, sync_device=device)
    tee = Tee(os.path.join(c.run_dir, "log.txt")) if rank == 0 else None
    try:
        result = training_loop.training_loop(rank=rank, device=device, **c)
        if world_size > 1:
            # Nobody leaves before rank 0 has written its last snapshot: launchers stop the
            # remaining processes as soon as one exits with a nonzero status.
            torch.distributed.barrier()
        return result
    finally:
        if tee is not None:
            tee.close()
        if world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _spawned_worker(rank, c, temp_dir):
    """Entry point of a worker spawned by `--gpus=N`; reports user errors in one line.

    A signal stop exits 0 here (the parent would otherwise stop the other workers at the first
    nonzero status) and rank 0 leaves the reason in temp_dir for the parent's exit status.
    """
    try:
        result = run_process(c, rank=rank, world_size=c.num_gpus, local_rank=rank,
                             init_method="file://" + os.path.join(temp_dir, "init"))
    except dnnlib.util.UserError as err:
        if rank == 0:
            print(f"Error: {dnnlib.util.escape_text(str(err))}", file=sys.stderr, flush=True)
        sys.exit(1)
    if rank == 0 and result["stopped_by"] is not None:
        with open(os.path.join(temp_dir, "stopped_by"), "w") as f:
            f.write(result["stopped_by"])


def launch(c, outdir, desc, dry_run=False):
    """Create the run folder (rank 0), write training_options.json and train in 1..N processes.

    Returns the exit status: 0 when training finished, 130/143 when SIGINT/SIGTERM stopped it
    (after writing a snapshot).
    """
    env = torchrun_env()
    rank = env[0] if env else 0
    if rank == 0:
        print("Training options:")
        print(json.dumps(c, indent=2))
        print()
    if dry_run:
        print("Dry run; exiting.")
        return 0

    c = dnnlib.EasyDict(c)
    if env is not None:
        rank, world_size, local_rank = env
        if world_size != c.num_gpus:
            raise dnnlib.util.UserError(f"--gpus: {c.num_gpus} disagrees with torchrun's WORLD_SIZE {world_size}; "
                                        "leave --gpus out under torchrun")
        c.run_dir = _make_run_dir_rank0(outdir, desc, c) if rank == 0 else None
        result = run_process(c, rank=rank, world_size=world_size, local_rank=local_rank)
        return EXIT_STATUS.get(result["stopped_by"], 0)

    uses_cuda = c.get("device_type") != "cpu" and torch.cuda.is_available()
    if uses_cuda and c.num_gpus > torch.cuda.device_count():
        raise dnnlib.util.UserError(f"--gpus: {c.num_gpus} processes, but this machine has {torch.cuda.device_count()} "
                                    "GPUs; lower --gpus (or use --device=cpu)")
    c.run_dir = _make_run_dir_rank0(outdir, desc, c)
    if c.num_gpus == 1:
        result = run_process(c, rank=0, world_size=1, local_rank=0)
        return EXIT_STATUS.get(result["stopped_by"], 0)
    return _spawn(c)


def _make_run_dir_rank0(outdir, desc, c):
    run_dir = make_run_dir(outdir, desc)
    print(f"Output directory: {run_dir}")
    with open(os.path.join(run_dir, "training_options.json"), "wt") as f:
        json.dump(dict(c, run_dir=run_dir), f, indent=2)
    return run_dir


def _spawn(c):
    """Start c.num_gpus workers; forward SIGINT/SIGTERM to them; return the first nonzero exit status."""
    import torch.multiprocessing as mp
    if c.get("device_type") == "cpu" or not torch.cuda.is_available():
        print(f"Running {c.num_gpus} CPU processes (gloo).")

    with tempfile.TemporaryDirectory() as temp_dir:
        temp_dir = os.path.abspath(temp_dir)
        context = mp.start_processes(_spawned_worker, args=(c, temp_dir), nprocs=c.num_gpus, join=False,
                                     start_method="spawn")

        def forward(signum, _frame):
            for process in context.processes:
                if process.is_alive():
                    os.kill(process.pid, signum)
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                try:
                    if context.join():
                        break
                except mp.ProcessExitedException as err:
                    return err.exit_code if err.exit_code and err.exit_code > 0 else 1
                except mp.ProcessRaisedException as err:
                    print(err, file=sys.stderr)
                    return 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        status_file = os.path.join(temp_dir, "stopped_by")
        if os.path.exists(status_file):
            with open(status_file) as f:
                return EXIT_STATUS.get(f.read().strip(), 0)
    return 0
