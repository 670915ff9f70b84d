"""Evaluating a network pickle (what calc_metrics.py runs): dataset options, run folder, one process per GPU.

Processes (torch_utils/distributed.py): one in-process run; `--gpus N` spawns N processes (NCCL on CUDA,
gloo on the CPU); under `torchrun` each started process joins the group through RANK / WORLD_SIZE /
LOCAL_RANK. The metrics split their images across the ranks and rank 0 prints and records the results.
"""
import copy
import os
import sys
from typing import Optional, Union

import torch

import dnnlib
from torch_utils import distributed
from training.checkpoint.load import load_checkpoint
from training.dataset import dataset_kwargs_from_checkpoint, open_dataset
from . import fd_dinov2
from . import frechet_inception_distance
from . import metric_main
from . import metric_utils
from . import precision_recall
from . import reference_stats
from .dataset_fingerprint import dataset_fingerprint
from .detectors import detector_sha256, detector_spec

DATASET_CLASS = "training.dataset.ImageFolderDataset"  # The only dataset class; see training.dataset.open_dataset.


def generator_of(network_dict: dict, source: str = "the checkpoint") -> torch.nn.Module:
    """G_ema, the generator that published numbers evaluate; G where an export has no G_ema."""
    if network_dict.get("G_ema") is None and network_dict.get("G") is None:
        raise dnnlib.util.UserError(f"--network: {source} holds no generator (G_ema or G); give a network snapshot")
    return network_dict["G_ema"] if network_dict.get("G_ema") is not None else network_dict["G"]


def dataset_kwargs_for(network_dict: dict, data: Optional[str] = None, mirror: Optional[bool] = None) -> dnnlib.EasyDict:
    """Real-data options: --data, else the snapshot's training set; resolution and labels follow the generator."""
    G = generator_of(network_dict)
    if data is not None:
        dataset_kwargs = dnnlib.EasyDict(class_name=DATASET_CLASS, path=data)
    elif network_dict.get("training_set_kwargs"):
        # Checked like any data from a file: ImageFolderDataset's options only, never a class named by the file.
        try:
            dataset_kwargs = dataset_kwargs_from_checkpoint(network_dict["training_set_kwargs"], "--network")
        except dnnlib.util.UserError as err:
            raise dnnlib.util.UserError(f"{err}; pass --data=PATH for the real images") from None
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


def evaluate_rank(rank, world_size, init_method, args, local_rank=None):
    """Compute args.metrics in this process (`rank` of `world_size`); rank 0 reports each result."""
    device = distributed.resolve_device(args.device, rank if local_rank is None else local_rank, world_size)
    distributed.init_process(rank, world_size, device, init_method)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        G = generator_of(load_checkpoint(args.network_pkl, verbose=False, sha256=args.get("sha256")),
                         args.network_pkl)
        shared = metric_main.shared_generation_for(args.metrics)  # the generated images are made once for all
        for metric in args.metrics:
            if rank == 0:
                print(f"Calculating {metric}...", file=sys.stderr, flush=True)
            result = metric_main.calc_metric(
                metric=metric, G=G, dataset_kwargs=args.dataset_kwargs, num_gpus=world_size, rank=rank, device=device,
                verbose=args.progress, detectors=args.detectors, seed=args.seed, max_gen=args.max_gen,
                ref_stats=args.get("ref_stats"), G_kwargs=args.get("G_kwargs"), resize=args.get("resize", "original"),
                shared_generation=shared)
            if rank == 0:
                metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=args.network_pkl)
    finally:
        if world_size > 1:
            distributed.close_process_group()
    return 0


def launch(args):
    """Run evaluate_rank in this process, in args.num_gpus spawned processes, or as one torchrun rank.

    args.device is the --device value (None, cpu, cuda or cuda:N); each process resolves its own device.
    """
    env = distributed.torchrun_env()
    if env is not None:
        rank, world_size, local_rank = env
        evaluate_rank(rank, world_size, "env://", args, local_rank=local_rank)
        return
    if args.num_gpus == 1:
        evaluate_rank(0, 1, None, args)
        return
    distributed.check_process_count(args.num_gpus, args.device)
    status = distributed.spawn(evaluate_rank, args.num_gpus, args=(args,), device_name=args.device)
    if status:
        raise dnnlib.util.UserError(f"--gpus: a metric process failed (exit status {status}); see its message above")


def export_reference_stats(data: str, out: str, mirror: bool = False, with_features: bool = False,
                           device: Union[str, torch.device] = "cpu", detectors: Optional[dict] = None,
                           verbose: bool = True, resize: str = "original", with_dinov2: bool = False) -> dict:
    """calc_metrics.py --export-stats: the statistics of every real image of `data` (x-flipped copies too with
    `mirror`), computed exactly as the metrics compute them under `resize`; `with_features` adds the features KID
    and precision/recall need, `with_dinov2` the DINOv2 statistics (and features, with `with_features`).
    Returns the summary of metrics/reference_stats.save_reference_stats."""
    dataset_kwargs = dnnlib.EasyDict(class_name=DATASET_CLASS, path=data, use_labels=True, xflip=bool(mirror))
    dataset = open_dataset(dataset_kwargs, "--data")
    try:
        image_shape, labels = list(dataset.image_shape), reference_stats.dataset_labels(dataset)
    finally:
        dataset.close()
    opts = metric_utils.MetricOptions(dataset_kwargs=dataset_kwargs, device=device, detectors=detectors,
                                      verbose=verbose, resize=resize)
    stats = metric_utils.compute_feature_stats_for_dataset(
        opts, "inception", frechet_inception_distance.DETECTOR_KWARGS, max_items=None, capture_mean_cov=True,
        capture_all=with_features)
    extra = dict(inception_features=stats.get_all()) if with_features else {}
    if with_features:
        vgg16_opts = copy.copy(opts)
        vgg16_opts.resize = "original"  # VGG16 resizes inside its file whatever --resize says (no clean mode)
        vgg16 = metric_utils.compute_feature_stats_for_dataset(vgg16_opts, "vgg16", precision_recall.DETECTOR_KWARGS,
                                                               max_items=None, capture_all=True)
        extra.update(_detector_fields(opts, "vgg16"), vgg16_features=vgg16.get_all())
    if with_dinov2:
        extra.update(_dinov2_fields(opts, with_features))
    mu, sigma = stats.get_mean_cov(ddof=reference_stats.COVARIANCE_DDOF["inception"])
    fields = _detector_fields(opts, "inception")
    return reference_stats.save_reference_stats(
        out, mu, sigma, stats.num_items, fields["detector_sha256"], image_shape, bool(mirror), labels, extra,
        resize=resize, dataset_name=os.path.basename(os.path.normpath(data)),
        dataset_fingerprint=dataset_fingerprint(data), detector_name=fields["detector_name"])


def _detector_fields(opts, kind):
    """{<kind>_sha256, <kind>_name} of the detector file this export used, as reference_stats names them."""
    spec, _ = detector_spec(opts, kind)
    name = os.path.basename(spec.split("#")[0].rstrip("/")) or spec
    return {reference_stats.SHA_KEYS[kind]: detector_sha256(opts, kind),
            reference_stats.NAME_KEYS[kind]: name}


def _dinov2_fields(opts, with_features):
    """The DINOv2 arrays of a statistics file: mean, covariance (over N - 1, as FD-DINOv2 uses), detector."""
    stats = metric_utils.compute_feature_stats_for_dataset(opts, "dinov2", fd_dinov2.DETECTOR_KWARGS, max_items=None,
                                                           capture_mean_cov=True, capture_all=with_features)
    mu, sigma = stats.get_mean_cov(ddof=reference_stats.COVARIANCE_DDOF["dinov2"])
    fields = dict(_detector_fields(opts, "dinov2"), dinov2_mu=mu, dinov2_sigma=sigma)
    if with_features:
        fields.update(dinov2_features=stats.get_all())
    return fields
