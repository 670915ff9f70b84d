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

  # Continue the newest run of these options in its own folder, or start one (after a crash, in a job script):
  python train.py --outdir=training-runs --data=... --cfg=shhq --mirror=1 --resume=auto

  # The same run as a Slurm job that requeues itself at the time limit (pip install .[cluster]):
  python train.py --outdir=training-runs --data=... --cfg=shhq --mirror=1 \\
      --slurm --nodes=4 --gpus=8 --partition=gpu --time=24:00

  # Fine-tune a released model on your own 512x256 images (architecture taken from the file):
  python train.py --outdir=finetune-runs --data=my-512x256.zip --resume=SHHQ-1.0_sg2_512.pkl --aug=ada --mirror=1

The options are the fields of training.options.TrainCommand: their defaults, help texts and bounds are
written there once, and turned into click options here.
"""
import dataclasses
import os
import sys
import typing

import click

from dnnlib.util import UserError
from training.options import TrainCommand

from . import slurm, train_run
from .options import Number, flag, shared
from .runner import parsed_by, run


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


# What --slurm and its settings are called in main(); they say where the run goes, not how it trains.
SUBMISSION_PARAMS = ("use_slurm", "nodes", "partition", "slurm_minutes", "slurm_extra")


def slurm_options(fn):
    """--slurm and the job's settings (sg2_cli/slurm.py); --gpus is then the GPUs of each node."""
    for decorate in reversed([
        flag("--slurm", "use_slurm",
             help="Submit the run as a Slurm job (submitit) that requeues itself at the time limit"),
        click.option("--nodes", type=click.IntRange(1, 4096), default=1, show_default=True,
                     help="With --slurm: nodes of the job (--gpus is then per node)"),
        click.option("--partition", metavar="NAME", help="With --slurm: the partition  [default: the cluster's]"),
        click.option("--time", "slurm_minutes", metavar="HH:MM", callback=parsed_by(slurm.parse_time),
                     help="With --slurm: the time limit of each run of the job (it requeues itself until done)"),
        click.option("--slurm-args", "slurm_extra", metavar="K=V,...", callback=parsed_by(slurm.parse_slurm_args),
                     help="With --slurm: more sbatch settings, e.g. account=proj,qos=high,cpus-per-task=8"),
    ]):
        fn = decorate(fn)
    return fn


def submit_to_slurm(outdir, opts, dry_run, nodes, partition, slurm_minutes, slurm_extra):
    """--slurm: check the job's settings, then print them (--dry-run) or submit the job."""
    if slurm_minutes is None:
        raise UserError("--time: --slurm needs the job's time limit, e.g. --time=24:00")
    data_name = os.path.splitext(os.path.basename(str(opts["data"]).rstrip("/")))[0]
    settings = slurm.SlurmSettings(nodes=nodes, gpus_per_node=opts["gpus"] or 1, minutes=slurm_minutes,
                                   partition=partition, extra=slurm_extra or {}, job_name=f"sg2-{data_name}")
    if dry_run:
        print(slurm.describe(settings, opts, outdir))
        return
    slurm.submit(outdir, opts, settings)


@click.command()
@shared("--outdir", detail="a numbered run folder is made in it")
@train_command_options
@flag("-n", "--dry-run", help="Print the training options (with --slurm: the job's settings) and exit")
@slurm_options
@shared("--verbose")
@shared("--progress")
def main(outdir, dry_run, use_slurm, nodes, partition, slurm_minutes, slurm_extra, **opts):
    """Train StyleGAN2 (e.g. on SHHQ full-body images).

    SIGINT (Ctrl-C), SIGTERM, SIGUSR1 or SIGUSR2 finishes the current step, writes a snapshot and exits with
    status 128 + the signal number (130, 143, 138, 140); `--resume` with that snapshot (or its run folder, or
    `auto`) continues exactly there.
    """
    if use_slurm:
        submit_to_slurm(outdir, opts, dry_run, nodes, partition, slurm_minutes, slurm_extra)
        return
    unused = [name for name, value in [("--nodes", nodes != 1), ("--partition", partition),
                                       ("--time", slurm_minutes), ("--slurm-args", slurm_extra)] if value]
    if unused:
        raise UserError(f"{unused[0]}: only applies with --slurm")
    status = train_run.run_training(outdir, opts, dry_run=dry_run)
    if status:
        sys.exit(status)


def cli() -> None:
    """Entry point of `python train.py` and the sg2-train console script."""
    run(main)
