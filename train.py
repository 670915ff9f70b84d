"""Train a StyleGAN2 generator, e.g. on SHHQ at 1024x512 or 512x256.

Examples:

  # One GPU, the SHHQ recipe at 512x256:
  python train.py --outdir=training-runs --data=SHHQ-512x256.zip --cfg=shhq --mirror=1 --gpus=1

  # Eight GPUs on one machine:
  python train.py --outdir=training-runs --data=SHHQ-1024x512.zip --cfg=shhq --mirror=1 --gpus=8

  # Several machines (run on each; rank 0 writes the files):
  torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
      train.py --outdir=training-runs --data=SHHQ-1024x512.zip --cfg=shhq --mirror=1

  # Continue a run exactly where it stopped (snapshot or run folder):
  python train.py --outdir=training-runs --data=... --cfg=shhq --mirror=1 --resume=training-runs/00000-...

  # Fine-tune a released model on your own 512x256 images (architecture taken from the file):
  python train.py --outdir=finetune-runs --data=my-512x256.zip --resume=SHHQ-1.0_sg2_512.pkl --aug=ada --mirror=1
"""
import sys

import click

import dnnlib
import dnnlib.cli
from dnnlib.image_grid import parse_grid
from metrics.snapshot_metrics import SnapshotMetrics
from torch_utils import distributed
from training import launch, presets
from training import resume as resume_option
from training.options import TrainCommand


@click.command()
# Required.
@click.option("--outdir", help="Where to make the run folder", metavar="DIR", required=True)
@click.option("--data", help="Training data (folder or zip made by dataset_tool.py)", metavar="PATH", required=True)
@click.option("--gpus", help="Number of processes (GPUs; CPU processes with gloo when there is no CUDA)  [default: 1, "
              "WORLD_SIZE under torchrun]", type=click.IntRange(min=1), default=None)
# Base configuration.
@click.option("--cfg", help="Preset", metavar=f"[{'|'.join(presets.CONFIG_SPECS)}]", default="auto",
              show_default=True)
@click.option("--batch", help="Total batch size  [default: preset]", type=click.IntRange(min=1))
@click.option("--batch-gpu", help="Images per GPU per pass (gradient accumulation below batch/gpus)  [default: preset]",
              type=click.IntRange(min=1))
@click.option("--gamma", help="R1 regularisation weight  [default: preset]", type=click.FloatRange(min=0))
@click.option("--kimg", help="Training length in thousands of images  [default: preset, 25000]",
              type=click.FloatRange(min=0, min_open=True))
@click.option("--tick", help="Progress line every KIMG", type=click.FloatRange(min=0, min_open=True), default=4,
              show_default=True)
@click.option("--snap", help="Snapshot every this many ticks", type=click.IntRange(min=1), default=50,
              show_default=True)
@click.option("--seed", help="Random seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--aspect", help="Image height:width, e.g. 2:1  [default: from the dataset]", metavar="H:W")
@click.option("--square", help="StyleGAN-Human's spelling of --aspect: False = 2:1, True = 1:1", type=bool,
              hidden=True)
# Dataset.
@click.option("--mirror", help="Add x-flipped copies of the images", type=bool, default=False, show_default=True)
@click.option("--cond", help="Class-conditional training from dataset.json labels", type=bool, default=False,
              show_default=True)
@click.option("--subset", help="Train on a random subset of this many images", type=click.IntRange(min=1))
# Networks and optimisation.
@click.option("--cbase", help="Channel base (channels = min(cbase/res, cmax))  [default: preset; with --resume, the "
              "file's]",
              type=click.IntRange(min=1))
@click.option("--cmax", help="Maximum channels  [default: 512; with --resume, the file's]", type=click.IntRange(min=1))
@click.option("--map", help="Mapping network depth  [default: preset; with --resume, the file's]",
              type=click.IntRange(min=1))
@click.option("--mbstd-group", help="Minibatch-stddev group size  [default: preset]", type=click.IntRange(min=1))
@click.option("--glr", help="G learning rate  [default: preset]", type=click.FloatRange(min=0, min_open=True))
@click.option("--dlr", help="D learning rate  [default: preset]", type=click.FloatRange(min=0, min_open=True))
# Augmentation (ADA).
@click.option("--aug", help="Augmentation mode  [default: noaug for --cfg=shhq, else ada]",
              type=click.Choice(list(presets.AUG_MODES)))
@click.option("--p", "--aug-p", "p", help="Augmentation probability for --aug=fixed  [default: 0.2]; under torchrun "
              "write --aug-p (torchrun reads --p as one of its own options)", type=click.FloatRange(0, 1))
@click.option("--target", help="ADA target value for --aug=ada  [default: 0.6]", type=click.FloatRange(0, 1))
@click.option("--ada-kimg", help="ADA speed: kimg for p to go from 0 to 1  [default: 500, fine-tuning 100]",
              type=click.FloatRange(min=0, min_open=True))
@click.option("--augpipe", help="Augmentation pipeline (training/augment.py; 'body' keeps figures upright)",
              default="bgc", show_default=True)
# Transfer learning and resuming.
@click.option("--resume", help="Continue from a snapshot or run folder (exact: counters, optimizers, RNG), or "
              "fine-tune a checkpoint without training state (e.g. a released one); the networks are built as the "
              "file says", metavar="PKL|DIR|URL")
@click.option("--freezed", help="Freeze-D: the first N layers of D (from the image side) are not trained  [default: 0]",
              type=click.IntRange(min=0), metavar="N")
# Performance.
@click.option("--fp32", help="Disable mixed precision", type=bool, default=False, show_default=True)
@click.option("--nhwc", help="Channels-last memory format in the FP16 layers", type=bool, default=False,
              show_default=True)
@click.option("--nobench", help="Disable cuDNN benchmarking", type=bool, default=False, show_default=True)
@click.option("--allow-tf32", help="Allow TF32 matmul and convolutions", type=bool, default=False, show_default=True)
@click.option("--device", help="cpu or cuda  [default: cuda when available]", type=click.Choice(["cpu", "cuda"]))
@click.option("--workers", help="DataLoader worker processes", type=click.IntRange(min=0), default=3, show_default=True)
# Reporting.
@click.option("--metrics", help="Metrics after each snapshot (comma list, or none)", default="fid50k_full",
              show_default=True)
@click.option("--detector", help="Inception detector file or URL for the metrics  [default: $SG2_INCEPTION_DETECTOR, "
              "else download]", metavar="PT|URL")
@click.option("--vgg16", help="VGG16 detector file or URL (pr50k3, ppl2_wend)  [default: $SG2_VGG16_DETECTOR, else "
              "download]", metavar="PT|URL")
@click.option("--ref-stats", help="Real-image statistics for the metrics (calc_metrics.py --export-stats) in place of "
              "the dataset's", metavar="NPZ|URL")
@click.option("--grid", help="Image grid size ROWSxCOLS  [default: what fits in 7680x4320]",
              callback=dnnlib.cli.parsed_by(parse_grid), metavar="ROWSxCOLS")
@click.option("--max-minutes", help="Stop with a snapshot at the first tick after this many minutes (e.g. before a "
              "cluster time limit)", type=click.FloatRange(min=0, min_open=True))
@click.option("-n", "--dry-run", help="Print the training options and exit", is_flag=True)
@click.option("--verbose", help="Show full tracebacks on errors", is_flag=True)
def main(outdir, data, gpus, dry_run, verbose, **opts):
    """Train StyleGAN2 (e.g. on SHHQ full-body images).

    SIGINT (Ctrl-C) or SIGTERM finishes the current step, writes a snapshot and exits with status
    130 or 143; `--resume` with that snapshot (or its run folder) continues exactly there.
    """
    _ = verbose  # Read by dnnlib.cli.run.
    env = distributed.torchrun_env()
    if gpus is None:
        gpus = env[1] if env is not None else 1
    resume = resume_option.resolve_resume_option(opts.pop("resume"))
    if resume is not None:
        resume = launch.find_latest_snapshot(resume)  # A run folder: its newest snapshot; files and URLs as given.
    command = TrainCommand.from_dict(dict(opts, data=data, gpus=gpus, resume=resume))
    snapshot_metrics = SnapshotMetrics()  # Training does not import the metrics: they are handed in.
    options, desc = presets.make_training_options(command, snapshot_metrics=snapshot_metrics)
    status = launch.launch(options, outdir=outdir, desc=desc, dry_run=dry_run, snapshot_metrics=snapshot_metrics)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    dnnlib.cli.run(main)
