"""Evaluating a network pickle (what calc_metrics.py runs): dataset options, run folder, one process per GPU.

Processes: one in-process run; `--gpus N` spawns N processes (NCCL on CUDA, gloo on the CPU); under
`torchrun` each started process joins the group through RANK / WORLD_SIZE / LOCAL_RANK. The metrics
split their images across the ranks and rank 0 prints and records the results.
"""
import os
import sys
import tempfile

import torch

import dnnlib
from . import metric_main

DATASET_CLASS = "training.dataset.ImageFolderDataset"


def load_network(network_pkl, verbose=False):
    """The snapshot dict of a network pickle (path or URL): G, D, G_ema, augment_pipe, training_set_kwargs."""
    import legacy  # imported here: the metrics themselves work on any generator object
    with dnnlib.util.open_url(network_pkl, verbose=verbose) as f:
        network_dict = legacy.load_network_pkl(f)
    if network_dict.get("G_ema") is None and network_dict.get("G") is None:
        raise dnnlib.util.UserError(f"--network: {network_pkl} holds no generator (G_ema or G); "
                                    "give a network snapshot")
    return network_dict


def generator_of(network_dict):
    """G_ema, the generator that published numbers evaluate; G where an export has no G_ema."""
    return network_dict["G_ema"] if network_dict.get("G_ema") is not None else network_dict["G"]


def dataset_kwargs_for(network_dict, data=None, mirror=None):
    """Real-data options: --data, else the snapshot's training set; resolution and labels follow the generator."""
    G = generator_of(network_dict)
    if data is not None:
        dataset_kwargs = dnnlib.EasyDict(class_name=DATASET_CLASS, path=data)
    elif network_dict.get("training_set_kwargs"):
        dataset_kwargs = dnnlib.EasyDict(network_dict["training_set_kwargs"])
        path = dataset_kwargs.get("path")
        if isinstance(path, str):
            path = dataset_kwargs.path = os.path.expanduser(path)
        if isinstance(path, str) and not os.path.exists(path):
            raise dnnlib.util.UserError(f"--data: the training set recorded in the network pickle ({path}) "
                                        "is not on this machine; pass --data=PATH")
    else:
        raise dnnlib.util.UserError("--data: the network pickle does not record its training set; pass --data=PATH")
    dataset_kwargs.resolution = G.img_resolution
    dataset_kwargs.use_labels = G.c_dim != 0
    if mirror is not None:
        dataset_kwargs.xflip = bool(mirror)
    return dataset_kwargs


def find_run_dir(network_pkl):
    """The training run folder holding a local snapshot (it has training_options.json), else None."""
    if dnnlib.util.is_url(network_pkl, allow_file_urls=True) or not os.path.isfile(network_pkl):
        return None
    pkl_dir = os.path.dirname(os.path.abspath(network_pkl))
    return pkl_dir if os.path.isfile(os.path.join(pkl_dir, "training_options.json")) else None


def resolve_device(device):
    """torch.device for --device: cuda when available, else cpu."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise dnnlib.util.UserError(f"--device: {device!r} is not a device ({err}); use cuda, cuda:N or cpu") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise dnnlib.util.UserError("--device: CUDA is not available on this machine; pass --device=cpu")
    return device


def torchrun_world():
    """(rank, world size, local rank) when started by torchrun with several processes, else None."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    return int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))


def evaluate_rank(rank, args, num_gpus, local_rank=None, init_method=None):
    """Compute args.metrics in this process (rank of num_gpus); rank 0 reports each result."""
    device = args.device
    if device.type == "cuda" and num_gpus > 1:
        device = torch.device("cuda", rank if local_rank is None else local_rank)
    elif device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if num_gpus > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=num_gpus)
    try:
        G = generator_of(load_network(args.network_pkl, verbose=False))
        for metric in args.metrics:
            if rank == 0:
                print(f"Calculating {metric}...", file=sys.stderr, flush=True)
            result = metric_main.calc_metric(
                metric=metric, G=G, dataset_kwargs=args.dataset_kwargs, num_gpus=num_gpus, rank=rank, device=device,
                verbose=args.progress, detectors=args.detectors, seed=args.seed, max_gen=args.max_gen,
                G_kwargs=args.get("G_kwargs"))
            if rank == 0:
                metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=args.network_pkl)
    finally:
        if num_gpus > 1:
            torch.distributed.destroy_process_group()


def _spawned_rank(rank, args, num_gpus, init_file):
    """Entry point of a spawned process: a user error prints one line and fails the process."""
    try:
        evaluate_rank(rank, args, num_gpus, init_method=f"file://{init_file}")
    except dnnlib.util.UserError as err:
        print(f"Error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)


def launch(args):
    """Run evaluate_rank in this process, in args.num_gpus spawned processes, or as one torchrun rank."""
    world = torchrun_world()
    if world is not None:
        rank, world_size, local_rank = world
        evaluate_rank(rank, args, world_size, local_rank=local_rank, init_method="env://")
        return
    if args.num_gpus == 1:
        evaluate_rank(0, args, 1)
        return
    if args.device.type == "cuda" and args.num_gpus > torch.cuda.device_count():
        raise dnnlib.util.UserError(f"--gpus: {args.num_gpus} requested but {torch.cuda.device_count()} CUDA devices "
                                    "are visible; lower --gpus")
    with tempfile.TemporaryDirectory() as temp_dir:
        init_file = os.path.abspath(os.path.join(temp_dir, ".torch_distributed_init"))
        try:
            torch.multiprocessing.spawn(fn=_spawned_rank, args=(args, args.num_gpus, init_file), nprocs=args.num_gpus)
        except torch.multiprocessing.ProcessExitedException as err:
            raise dnnlib.util.UserError(f"--gpus: metric process {err.error_index} failed (exit code {err.exit_code}); "
                                        "see its message above") from err
