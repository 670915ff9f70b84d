"""The metric registry: names as in the StyleGAN2-ADA papers and result files, how to compute and report them.

Training calls, after each snapshot and on every rank (through snapshot_metrics.SnapshotMetrics):
    result = metric_main.calc_metric(metric=name, G=G_ema, dataset_kwargs=training_set_kwargs,
                                     num_gpus=num_gpus, rank=rank, device=device)
    if rank == 0: metric_main.report_metric(result, run_dir=run_dir, snapshot_pkl=snapshot_pkl)
"""
import json
import os
import time
from typing import List, Optional, Sequence, Union

import torch

import dnnlib
from . import detectors
from . import fd_dinov2
from . import frechet_inception_distance
from . import inception_score
from . import kernel_inception_distance
from . import metric_utils
from . import perceptual_path_length
from . import prdc
from . import precision_recall
from . import shared_generation

_metric_dict = dict()  # name -> fn(opts) -> dict of results


def register_metric(fn):
    assert callable(fn)
    _metric_dict[fn.__name__] = fn
    return fn


def is_valid_metric(metric: str) -> bool:
    """Is `metric` a name calc_metric takes?"""
    return metric in _metric_dict


def list_valid_metrics() -> List[str]:
    """The metric names calc_metric takes, in the order they were registered."""
    return list(_metric_dict.keys())


def parse_metrics(text: Union[str, Sequence[str]], allow_none: bool = False) -> List[str]:
    """--metrics: 'fid50k_full,kid50k_full' (or a list) -> the list of names, each checked.

    With `allow_none` (train.py), 'none' or nothing means no metrics; otherwise (calc_metrics.py) at least one
    name is needed. An unknown name is an error that names it and lists the valid ones.
    """
    names = [str(name).strip() for name in (text if isinstance(text, (list, tuple)) else str(text).split(","))]
    names = [name for name in names if name]
    if allow_none and names in ([], ["none"]):
        return []
    unknown = [name for name in names if not is_valid_metric(name)]
    if not names or unknown:
        raise dnnlib.util.UserError(f"--metrics: unknown metric {', '.join(unknown) or '(none)'}; choose from "
                                    f"{', '.join(list_valid_metrics())}{' or none' if allow_none else ''}")
    return names


PPL_DETECTOR = "vgg16"  # the PPL metrics run image pairs through VGG16 (LPIPS) themselves, outside GENERATED_FEATURES


def detectors_of(metric: str) -> List[str]:
    """The detector kinds (keys of detectors.DETECTORS) whose files `metric` runs its images through."""
    requests = GENERATED_FEATURES.get(metric)
    if requests is None:
        return [PPL_DETECTOR]
    return sorted({request.detector for request, _num_gen in requests})


def check_detectors(metrics: Union[str, Sequence[str]], **kwargs) -> None:
    """Fetch and load the detector files the metrics need (on the CPU), so that a missing or unreadable one is a
    one-line error before a training run starts rather than after its first snapshot."""
    opts = metric_utils.MetricOptions(**dict(kwargs, device="cpu", rank=0, num_gpus=1))
    for kind in sorted({kind for metric in parse_metrics(metrics) for kind in detectors_of(metric)}):
        detectors.get_feature_detector(opts, kind)


def calc_metric(metric: str, **kwargs) -> dnnlib.EasyDict:
    """Compute `metric` with MetricOptions(**kwargs); every rank must call it, every rank gets the numbers.

    Returns an EasyDict with results (name -> float), metric, total_time, total_time_str, num_gpus.
    """
    parse_metrics([metric])
    opts = metric_utils.MetricOptions(**kwargs)
    start_time = time.time()
    results = _metric_dict[metric](opts)
    total_time = time.time() - start_time

    # Rank 0 computed the numbers; the others hold NaN until it shares them.
    for key, value in list(results.items()):
        if opts.num_gpus > 1 and torch.distributed.is_initialized():
            value = torch.as_tensor(value, dtype=torch.float64, device=opts.device)
            torch.distributed.broadcast(tensor=value, src=0)
            value = float(value.cpu())
        results[key] = value

    result = dnnlib.EasyDict(results=dnnlib.EasyDict(results), metric=metric, total_time=total_time,
                             total_time_str=dnnlib.util.format_time(total_time), num_gpus=opts.num_gpus)
    if opts.max_gen is not None or opts.max_real is not None:
        # A shortened run must never pass for the real metric in a result file.
        result.update(max_gen=opts.max_gen, max_real=opts.max_real)
    if opts.G_kwargs.get("dtype") is not None:
        # Nor a generator run in another precision (e.g. --dtype=bf16) for the float32 metric.
        result.update(dtype=str(opts.G_kwargs["dtype"]).replace("torch.", ""))
    if uses_resizing(metric):
        result.update(resize=opts.resize)  # 'original' or 'clean': the numbers differ by whole FID points
    return result


def uses_resizing(metric: str) -> bool:
    """Does --resize change this metric (it reads Inception-v3 or DINOv2 features)?"""
    return any(request.detector in ("inception", "dinov2") for request, _num_gen in GENERATED_FEATURES.get(metric, []))


def check_resize_for(metrics: Sequence[str], resize: str) -> None:
    """--resize=clean applies to the Inception-v3 and DINOv2 metrics only; refuse it up front for the others."""
    if resize != "original":
        others = [metric for metric in metrics if not uses_resizing(metric)]
        if others:
            raise dnnlib.util.UserError(f"--resize={resize}: applies to the Inception-v3 and DINOv2 metrics, not "
                                        f"{', '.join(others)}; compute those without --resize")


def shared_generation_for(metrics: Sequence[str]) -> shared_generation.SharedGeneration:
    """A SharedGeneration for one call of `metrics`, so that their generated images are made once."""
    return shared_generation.SharedGeneration(request for metric in metrics
                                              for request in GENERATED_FEATURES.get(metric, []))


def report_metric(result_dict: dict, run_dir: Optional[str] = None, snapshot_pkl: Optional[str] = None) -> None:
    """Print the result as one JSON line and append it to <run_dir>/metric-<name>.jsonl when run_dir exists."""
    metric = result_dict["metric"]
    assert is_valid_metric(metric)
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    jsonl_line = json.dumps(dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time()))
    print(jsonl_line, flush=True)
    if run_dir is not None and os.path.isdir(run_dir):
        with open(os.path.join(run_dir, f"metric-{metric}.jsonl"), "at") as f:
            f.write(jsonl_line + "\n")


# ----------------------------------------------------------------------------
# Recommended metrics (StyleGAN2-ADA): all real images, never mirrored.


@register_metric
def fid50k_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    fid = frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=50000)
    return dict(fid50k_full=fid)


@register_metric
def kid50k_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    kid = kernel_inception_distance.compute_kid(opts, max_real=1000000, num_gen=50000, num_subsets=100,
                                                max_subset_size=1000)
    return dict(kid50k_full=kid)


@register_metric
def pr50k3_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    precision, recall = precision_recall.compute_pr(opts, max_real=200000, num_gen=50000, nhood_size=3,
                                                    row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_full_precision=precision, pr50k3_full_recall=recall)


@register_metric
def fd_dinov2_50k_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    fd = fd_dinov2.compute_fd_dinov2(opts, max_real=None, num_gen=50000)
    return dict(fd_dinov2_50k_full=fd)


@register_metric
def fd_dinov2_10k(opts):
    """A cheaper estimate for training: all real images, 10,000 generated (biased upwards against the 50k number)."""
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    fd = fd_dinov2.compute_fd_dinov2(opts, max_real=None, num_gen=10000)
    return dict(fd_dinov2_10k=fd)


@register_metric
def prdc_dinov2_50k_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    results = prdc.compute_prdc(opts, max_real=200000, num_gen=50000, nhood_size=5, row_batch_size=10000,
                                col_batch_size=10000)
    return {f"prdc_dinov2_50k_full_{name}": value for name, value in results.items()}


@register_metric
def ppl2_wend(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space="w", sampling="end",
                                             crop=False, batch_size=2)
    return dict(ppl2_wend=ppl)


@register_metric
def is50k(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    mean, std = inception_score.compute_is(opts, num_gen=50000, num_splits=10)
    return dict(is50k_mean=mean, is50k_std=std)


# ----------------------------------------------------------------------------
# Legacy metrics (StyleGAN/StyleGAN2 papers): the first 50k real images, mirrored if the data is.


@register_metric
def fid50k(opts):
    opts.dataset_kwargs.update(max_size=None)
    fid = frechet_inception_distance.compute_fid(opts, max_real=50000, num_gen=50000)
    return dict(fid50k=fid)


@register_metric
def kid50k(opts):
    opts.dataset_kwargs.update(max_size=None)
    kid = kernel_inception_distance.compute_kid(opts, max_real=50000, num_gen=50000, num_subsets=100,
                                                max_subset_size=1000)
    return dict(kid50k=kid)


@register_metric
def pr50k3(opts):
    opts.dataset_kwargs.update(max_size=None)
    precision, recall = precision_recall.compute_pr(opts, max_real=50000, num_gen=50000, nhood_size=3,
                                                    row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_precision=precision, pr50k3_recall=recall)


def _legacy_ppl(opts, space, sampling):
    """The StyleGAN (2019) PPL variants: face crop, so square images only."""
    return perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space=space,
                                              sampling=sampling, crop=True, batch_size=2)


@register_metric
def ppl_zfull(opts):
    return dict(ppl_zfull=_legacy_ppl(opts, "z", "full"))


@register_metric
def ppl_wfull(opts):
    return dict(ppl_wfull=_legacy_ppl(opts, "w", "full"))


@register_metric
def ppl_zend(opts):
    return dict(ppl_zend=_legacy_ppl(opts, "z", "end"))


@register_metric
def ppl_wend(opts):
    return dict(ppl_wend=_legacy_ppl(opts, "w", "end"))


# ----------------------------------------------------------------------------
# What each metric reads from generated images: [(FeatureRequest, image count)]. A call of several metrics makes
# its images once for all of them (shared_generation.py); tests check that this matches what each metric asks.


def _generated(detector, detector_kwargs, num_gen, **stats_kwargs):
    return metric_utils.FeatureRequest(detector, dict(detector_kwargs), stats_kwargs), num_gen


_FID = frechet_inception_distance.DETECTOR_KWARGS
GENERATED_FEATURES = {
    "fid50k_full": [_generated("inception", _FID, 50000, capture_mean_cov=True)],
    "fid50k": [_generated("inception", _FID, 50000, capture_mean_cov=True)],
    "kid50k_full": [_generated("inception", kernel_inception_distance.DETECTOR_KWARGS, 50000, capture_all=True)],
    "kid50k": [_generated("inception", kernel_inception_distance.DETECTOR_KWARGS, 50000, capture_all=True)],
    "is50k": [_generated("inception", inception_score.DETECTOR_KWARGS, 50000, capture_all=True)],
    "pr50k3_full": [_generated("vgg16", precision_recall.DETECTOR_KWARGS, 50000, capture_all=True)],
    "pr50k3": [_generated("vgg16", precision_recall.DETECTOR_KWARGS, 50000, capture_all=True)],
    "fd_dinov2_50k_full": [_generated("dinov2", fd_dinov2.DETECTOR_KWARGS, 50000, capture_mean_cov=True)],
    "fd_dinov2_10k": [_generated("dinov2", fd_dinov2.DETECTOR_KWARGS, 10000, capture_mean_cov=True)],
    "prdc_dinov2_50k_full": [_generated("dinov2", prdc.DETECTOR_KWARGS, 50000, capture_all=True)],
}
