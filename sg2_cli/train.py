"""train.py / sg2-train: train a StyleGAN2 generator, e.g. on SHHQ at 1024x512 or 512x256.

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

The options are the fields of training.options.TrainCommand: their defaults, help texts and bounds are
written there once, and turned into click options here.
"""
import dataclasses
import sys
import typing

import click

from metrics.snapshot_metrics import SnapshotMetrics
from training import launch, presets
from training import resume as resume_option
from training.options import TrainCommand

from .options import Number, flag, shared
from .runner import run


def _value_type(annotation):
    """int, float, str, bool or tuple of a field's annotation (Optional[X] -> X)."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return args[0] if typing.get_origin(annotation) is typing.Union and len(args) == 1 else annotation


def _click_type(kind, meta):
    if "choices" in meta:
        return click.Choice(list(meta["choices"]))
    bounds = dict(min=meta.get("min"), max=meta.get("max"), min_open=meta.get("min_open", False))
    if kind is int:
        return click.IntRange(**bounds)
    if kind is float:
        return Number(**bounds)
    return None


def field_option(field, annotation):
    """The click.option decorator of one TrainCommand field, from its metadata (see training.options.option)."""
    meta = dict(field.metadata)
    required = field.default is dataclasses.MISSING
    default = None if required else field.default
    if "shared" in meta:
        changes = {key: meta[key] for key in ("note", "detail") if key in meta}
        changes.update(dict(required=True) if required else dict(default=default))
        return shared(meta["shared"], param=field.name, **changes)
    name = "--" + field.name.replace("_", "-")
    decls = (name, *meta.get("decls", ()), field.name)
    note = meta.get("note")
    text = meta["help"] + (f"  [default: {note}]" if note else "")
    kind = _value_type(annotation)
    if kind is bool:
        return flag(*decls, default=default, help=text, hidden=meta.get("hidden", False))
    return click.option(*decls, type=_click_type(kind, meta), default=default, required=required,
                        show_default=note is None and default is not None, metavar=meta.get("metavar"),
                        hidden=meta.get("hidden", False), help=text)


def train_command_options(fn):
    """Every TrainCommand field with command-line metadata as a click option, in the order of the fields."""
    hints = typing.get_type_hints(TrainCommand)
    for field in reversed(dataclasses.fields(TrainCommand)):
        if field.metadata:
            fn = field_option(field, hints[field.name])(fn)
    return fn


@click.command()
@shared("--outdir", detail="a numbered run folder is made in it")
@train_command_options
@flag("-n", "--dry-run", help="Print the training options and exit")
@shared("--verbose")
def main(outdir, dry_run, **opts):
    """Train StyleGAN2 (e.g. on SHHQ full-body images).

    SIGINT (Ctrl-C) or SIGTERM finishes the current step, writes a snapshot and exits with status
    130 or 143; `--resume` with that snapshot (or its run folder) continues exactly there.
    """
    resume = resume_option.resolve_resume_option(opts.pop("resume"))
    if resume is not None:
        resume = launch.find_latest_snapshot(resume)  # A run folder: its newest snapshot; files and URLs as given.
    command = TrainCommand.from_dict(dict(opts, resume=resume))
    snapshot_metrics = SnapshotMetrics()  # Training does not import the metrics: they are handed in.
    options, desc = presets.make_training_options(command, snapshot_metrics=snapshot_metrics)
    status = launch.launch(options, outdir=outdir, desc=desc, dry_run=dry_run, snapshot_metrics=snapshot_metrics)
    if status:
        sys.exit(status)


def cli() -> None:
    """Entry point of `python train.py` and the sg2-train console script."""
    run(main)
