"""calc_metrics.py / sg2-calc-metrics: quality metrics of a network snapshot, computed as the published
StyleGAN2-ADA numbers were.

Examples:
    python calc_metrics.py --metrics=fid50k_full --network=SHHQ-1.0_sg2_512.pkl --data=shhq_512x256.zip
    python calc_metrics.py --metrics=fid50k_full,kid50k_full,pr50k3_full --gpus=4 \
        --network=runs/00000-shhq/network-snapshot-001000.pkl
    torchrun --nproc_per_node=4 calc_metrics.py --metrics=fid50k_full --network=... --data=...

    # FID without the dataset: write its statistics once, then compute FID anywhere against the file.
    python calc_metrics.py --export-stats=shhq_512x256_stats.npz --data=shhq_512x256.zip
    python calc_metrics.py --metrics=fid50k_full --network=SHHQ-1.0_sg2_512.pkl --ref-stats=shhq_512x256_stats.npz

    # Beyond the published numbers: FD-DINOv2 and clean resizing, the images made once for both metrics.
    python calc_metrics.py --metrics=fid50k_full,fd_dinov2_50k_full --resize=clean --network=... --data=...

Prints one JSON line per metric on stdout; for a snapshot inside a training run folder the line is
also appended to <run>/metric-<name>.jsonl. With --dtype=bf16 the line says "dtype": "bfloat16".
"""
import json

import click
import torch

import dnnlib
from metrics import evaluate
from metrics import image_resize
from metrics import metric_main
from metrics import reference_stats
from torch_utils import cpu_tuning
from torch_utils import distributed
from torch_utils import precision
from training.checkpoint.load import load_checkpoint

from . import outputs
from .options import flag, network, shared
from .runner import run


def export_stats_cli(out, data, mirror, with_features, device, detectors, other_options, resize="original",
                     with_dinov2=False):
    """--export-stats: the real-image statistics of --data alone, written to `out`; prints a summary line."""
    if data is None:
        raise dnnlib.util.UserError("--export-stats: needs --data (the real images to describe)")
    given = [name for name, value in other_options.items() if value]
    if given:
        raise dnnlib.util.UserError(f"--export-stats: describes --data alone; drop {', '.join(given)}")
    summary = evaluate.export_reference_stats(data, out, mirror=bool(mirror), with_features=with_features,
                                              device=device, detectors=detectors, resize=resize,
                                              with_dinov2=with_dinov2)
    print(json.dumps(summary), flush=True)


@click.command()
@network(required=False)
@shared("--metrics")
@shared("--data", note="the snapshot's training set")
@shared("--mirror", default=None, note="as trained", detail="legacy metrics only; *_full never mirror")
@shared("--gpus", show_default=True, detail="to split the work over")
@shared("--device", param="device")
@shared("--seed", detail="of latents, labels and subsets")
@shared("--detector")
@shared("--vgg16", detail="precision/recall, PPL")
@shared("--dinov2")
@click.option("--resize", help="How images reach the detectors' input size: as the published numbers (original) or "
              "clean-fid's PIL bicubic in float (clean); recorded in the JSON line",
              type=click.Choice(list(image_resize.RESIZE_MODES)), default="original", show_default=True)
@shared("--ref-stats")
@click.option("--export-stats", help="Write the real-image statistics of --data to this .npz and exit",
              type=click.Path(dir_okay=False), metavar="NPZ")
@flag("--with-features", help="With --export-stats: also store the features (for KID and precision/recall)")
@flag("--with-dinov2", help="With --export-stats: also store DINOv2 statistics (for fd_dinov2; with "
      "--with-features, for prdc)")
@shared("--dtype")
@shared("--force", detail="the --export-stats file")
@shared("--verbose", expose_value=True)
@click.option("--num-gen", "max_gen", type=click.IntRange(min=2), hidden=True,
              help="Cap on generated images (quick checks only; the result line records it)")
def main(network_pkl, sha256, metrics, data, mirror, gpus, device, seed, detector, vgg16, dinov2, resize, ref_stats,
         export_stats, with_features, with_dinov2, dtype, force, verbose, max_gen):
    """Compute metrics of a network snapshot and print one JSON line per metric."""
    detectors = dict(inception=detector, vgg16=vgg16, dinov2=dinov2)
    if export_stats is not None:
        outputs.check_new([export_stats], force, "--export-stats")
        export_stats_cli(export_stats, data, mirror, with_features, distributed.resolve_device(device), detectors,
                         {"--network": network_pkl, "--ref-stats": ref_stats, "--gpus": gpus != 1}, resize=resize,
                         with_dinov2=with_dinov2)
        return
    if network_pkl is None:
        raise dnnlib.util.UserError("--network: missing; give the network to evaluate (or --export-stats to write "
                                    "real-image statistics)")
    if with_features or with_dinov2:
        raise dnnlib.util.UserError(f"{'--with-features' if with_features else '--with-dinov2'}: only applies with "
                                    "--export-stats")
    if ref_stats is not None and data is not None:
        raise dnnlib.util.UserError("--ref-stats: stands in for --data; give one of them")
    metrics = metric_main.parse_metrics(metrics)
    metric_main.check_resize_for(metrics, resize)
    if dtype != torch.float32 and any(name.startswith("ppl") for name in metrics):
        raise dnnlib.util.UserError("--dtype: the PPL metrics compare images 1e-4 apart and always run in fp32; "
                                    "compute them without --dtype=bf16")
    args = dnnlib.EasyDict(network_pkl=network_pkl, metrics=metrics, num_gpus=gpus, seed=seed, device=device,
                           max_gen=max_gen, progress=True, detectors=detectors, sha256=sha256, ref_stats=None,
                           resize=resize, G_kwargs=precision.synthesis_kwargs(dtype))
    if distributed.resolve_device(device, world_size=gpus).type == "cpu":  # a bad --device fails here, before any work
        cpu_tuning.reuse_freed_memory()
    network_dict = load_checkpoint(network_pkl, verbose=verbose, sha256=sha256)
    evaluate.generator_of(network_dict, network_pkl)
    if ref_stats is not None:
        args.ref_stats = reference_stats.resolve(ref_stats)
        args.dataset_kwargs = reference_stats.dataset_kwargs_without_data(network_dict, mirror=mirror)
    else:
        args.dataset_kwargs = evaluate.dataset_kwargs_for(network_dict, data=data, mirror=mirror)
    args.run_dir = evaluate.find_run_dir(network_pkl)
    del network_dict  # every process loads its own copy
    evaluate.launch(args)


def cli() -> None:
    """Entry point of `python calc_metrics.py` and the sg2-calc-metrics console script."""
    run(main)
