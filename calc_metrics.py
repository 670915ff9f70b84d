"""Compute quality metrics of a network snapshot, as the published StyleGAN2-ADA numbers were computed.

Examples:
    python calc_metrics.py --metrics=fid50k_full --network=SHHQ-1.0_sg2_512.pkl --data=shhq_512x256.zip
    python calc_metrics.py --metrics=fid50k_full,kid50k_full,pr50k3_full --gpus=4 \
        --network=runs/00000-shhq/network-snapshot-001000.pkl
    torchrun --nproc_per_node=4 calc_metrics.py --metrics=fid50k_full --network=... --data=...

Prints one JSON line per metric on stdout; for a snapshot inside a training run folder the line is
also appended to <run>/metric-<name>.jsonl.
"""
import click
import torch

import dnnlib
from metrics import evaluate
from metrics import metric_main
from metrics import metric_utils
from torch_utils import cpu_tuning


def parse_metrics(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if not metric_main.is_valid_metric(name)]
    if not names or unknown:
        raise dnnlib.util.UserError(f"--metrics: unknown metric {', '.join(unknown) or '(none)'}; "
                                    f"choose from {', '.join(metric_main.list_valid_metrics())}")
    return names


@click.command()
@click.option("--network", "network_pkl", help="Network pickle: path or URL", metavar="PATH", required=True)
@click.option("--metrics", help=f"Comma-separated list of {', '.join(metric_main.list_valid_metrics())}",
              default="fid50k_full", show_default=True)
@click.option("--data", help="Real images, folder or zip [default: the snapshot's training set]", metavar="PATH")
@click.option("--mirror", help="Add x-flipped real images (legacy metrics; *_full never mirror) [default: as trained]",
              type=bool, metavar="BOOL")
@click.option("--gpus", help="Number of processes (GPUs) to split the work over", type=click.IntRange(min=1),
              default=1, show_default=True)
@click.option("--device", help="cuda, cuda:N or cpu [default: cuda if available]", metavar="DEVICE")
@click.option("--seed", help="Seed of latents, labels and subsets", type=int, default=0, show_default=True)
@click.option("--detector", help=f"Inception-v3 TorchScript file or URL [default: "
              f"${metric_utils.DETECTORS['inception'].env}, else the standard URL]", metavar="PATH")
@click.option("--vgg16", help=f"VGG16 TorchScript file or URL (precision/recall, PPL) [default: "
              f"${metric_utils.DETECTORS['vgg16'].env}, else the standard URL]", metavar="PATH")
@click.option("--dtype", help="Generator precision; bf16 results are marked \"dtype\": \"bfloat16\" in the JSON line",
              type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
@click.option("--verbose", help="Show full tracebacks of errors", is_flag=True)
@click.option("--num-gen", "max_gen", type=click.IntRange(min=2), hidden=True,
              help="Cap on generated images (quick checks only; the result line records it)")
def main(network_pkl, metrics, data, mirror, gpus, device, seed, detector, vgg16, dtype, verbose, max_gen):
    """Compute metrics of a network snapshot and print one JSON line per metric."""
    metrics = parse_metrics(metrics)
    if dtype == "bf16" and any(name.startswith("ppl") for name in metrics):
        raise dnnlib.util.UserError("--dtype: the PPL metrics compare images 1e-4 apart and always run in fp32; "
                                    "compute them without --dtype=bf16")
    args = dnnlib.EasyDict(network_pkl=network_pkl, metrics=metrics, num_gpus=gpus, seed=seed,
                           device=evaluate.resolve_device(device), max_gen=max_gen, progress=True,
                           detectors=dict(inception=detector, vgg16=vgg16),
                           G_kwargs=dict(dtype=torch.bfloat16) if dtype == "bf16" else {})
    if args.device.type == "cpu":
        cpu_tuning.reuse_freed_memory()
    network_dict = evaluate.load_network(network_pkl, verbose=verbose)
    args.dataset_kwargs = evaluate.dataset_kwargs_for(network_dict, data=data, mirror=mirror)
    args.run_dir = evaluate.find_run_dir(network_pkl)
    del network_dict  # every process loads its own copy
    evaluate.launch(args)


if __name__ == "__main__":
    dnnlib.cli.run(main)
