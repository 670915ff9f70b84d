"""Starting a training run: the numbered run folder, the log file, and one or more processes.

Three ways in, one code path:
  - one process (`--gpus=1`): the loop runs in this process;
  - `--gpus=N` on one machine: N worker processes spawned here, rendezvous through a file;
  - `torchrun --nnodes=... --nproc-per-node=... train.py ...`: each process is already started and
    finds its rank in the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
Processes talk over NCCL on GPUs and gloo on CPUs (torch_utils/distributed.py); rank 0 writes every file.
"""
import contextlib
import os
import re
import signal
import sys
import time

import torch

import dnnlib
from torch_utils import distributed
from torch_utils import training_stats
from training import training_loop
from training.run_outputs import check_metrics_handed_in

# Exit statuses of a run stopped by a signal: 128 + the signal number, the shell convention.
EXIT_STATUS = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


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


def run_process(options, rank, world_size, local_rank, init_method=None, snapshot_metrics=None):
    """Set up this process (device, process group, log, stats) and train; returns training_loop's result."""
    device = distributed.resolve_device(options.device, local_rank)
    distributed.init_process(rank, world_size, device, init_method)
    if world_size > 1:
        training_stats.init_multiprocessing(rank=rank, sync_device=device)
    tee = Tee(os.path.join(options.run_dir, "log.txt")) if rank == 0 else None
    try:
        result = training_loop.training_loop(options, rank=rank, device=device, snapshot_metrics=snapshot_metrics)
        if world_size > 1:
            # Nobody leaves before rank 0 has written its last snapshot: launchers stop the
            # remaining processes as soon as one exits with a nonzero status.
            torch.distributed.barrier()
        return result
    finally:
        if tee is not None:
            tee.close()
        if world_size > 1:
            distributed.close_process_group()


def exit_status(result):
    """0 when training finished, 130/143 when SIGINT/SIGTERM stopped it (after writing a snapshot)."""
    return EXIT_STATUS.get(result["stopped_by"], 0)


def _spawned_process(rank, world_size, init_method, options, snapshot_metrics):
    """A process of `--gpus=N` (see distributed.spawn); returns its exit status."""
    return exit_status(run_process(options, rank=rank, world_size=world_size, local_rank=rank,
                                   init_method=init_method, snapshot_metrics=snapshot_metrics))


def launch(options, outdir, desc, dry_run=False, snapshot_metrics=None):
    """Create the run folder (rank 0), write training_options.json and train in 1..N processes.

    `snapshot_metrics` computes options.metrics after each snapshot (train.py passes the metrics package's
    SnapshotMetrics). Returns the exit status: 0 when training finished, 130/143 when SIGINT/SIGTERM stopped it
    (after writing a snapshot).
    """
    env = distributed.torchrun_env()
    rank = env[0] if env else 0
    if rank == 0:
        print("Training options:")
        print(options.to_json())
        print()
    if dry_run:
        print("Dry run; exiting.")
        return 0
    check_metrics_handed_in(options, snapshot_metrics)
    if rank == 0 and options.metrics:  # a detector that cannot be fetched fails now, not after the first tick
        snapshot_metrics.check_detectors(options)

    if env is not None:
        rank, world_size, local_rank = env
        if world_size != options.num_gpus:
            raise dnnlib.util.UserError(f"--gpus: {options.num_gpus} disagrees with torchrun's WORLD_SIZE "
                                        f"{world_size}; leave --gpus out under torchrun")
        options = options.replace(run_dir=_make_run_dir_rank0(outdir, desc, options) if rank == 0 else None)
        return exit_status(run_process(options, rank=rank, world_size=world_size, local_rank=local_rank,
                                       snapshot_metrics=snapshot_metrics))

    distributed.check_process_count(options.num_gpus, options.device)
    options = options.replace(run_dir=_make_run_dir_rank0(outdir, desc, options))
    if options.num_gpus == 1:
        return exit_status(run_process(options, rank=0, world_size=1, local_rank=0, snapshot_metrics=snapshot_metrics))
    return distributed.spawn(_spawned_process, options.num_gpus, args=(options, snapshot_metrics),
                             device_name=options.device)


def _make_run_dir_rank0(outdir, desc, options):
    run_dir = make_run_dir(outdir, desc)
    print(f"Output directory: {run_dir}")
    text = options.replace(run_dir=run_dir).to_json()
    dnnlib.util.atomic_write(os.path.join(run_dir, "training_options.json"), lambda f: f.write(text.encode("utf-8")))
    return run_dir
