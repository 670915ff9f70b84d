"""One training run from train.py's options: --resume resolved (a snapshot, a run folder, a URL, or `auto`), the
loop's options made, the run launched. train.py calls it on this machine, and a Slurm job (sg2_cli/slurm.py)
calls it on the cluster's nodes with the same options.
"""
import os

from metrics.snapshot_metrics import SnapshotMetrics
from torch_utils import distributed
from training import continuation, launch, presets
from training import resume as resume_option
from training.options import TrainCommand

AUTO = "auto"  # --resume=auto


def _rank0_log():
    env = distributed.launcher_env()
    return print if env is None or env[0] == 0 else (lambda *args, **kwargs: None)


def choose_start(outdir, fields, continue_run=False, log=print):
    """(the checkpoint to start from or None, the run folder to continue or None) for train.py's options.

    --resume=auto, or `continue_run` (a requeued cluster job), continues the newest run in `outdir` with the
    same options from its newest complete snapshot (training/continuation.py). With nothing to continue,
    --resume=auto starts a new run, and a requeued job starts as its --resume says.
    """
    typed = fields.get("resume")
    if typed == AUTO or continue_run:
        found = continuation.find_run(outdir, fields, log)
        if found is not None:
            run_dir, snapshot = found
            log(f"--resume=auto: continuing {run_dir} from {os.path.basename(snapshot)}")
            return snapshot, run_dir
        if typed == AUTO:
            log(f"--resume=auto: no run in {outdir} to continue; starting a new run")
            return None, None
    resume = resume_option.resolve_resume_option(typed)
    if resume is not None:
        resume = launch.find_latest_snapshot(resume)  # A run folder: its newest snapshot; files and URLs as given.
    return resume, None


def run_training(outdir, fields, dry_run=False, continue_run=False):
    """Train with train.py's options `fields` (TrainCommand's fields, --resume as typed); returns the exit status
    (0 finished, 128 + N stopped by signal N after writing a snapshot)."""
    fields = TrainCommand.from_dict(fields).to_dict()  # every field, so a run's record compares with any command
    resume, run_dir = choose_start(outdir, fields, continue_run, _rank0_log())
    command = TrainCommand.from_dict(dict(fields, resume=resume))
    snapshot_metrics = SnapshotMetrics()  # Training does not import the metrics: they are handed in.
    options, desc = presets.make_training_options(command, snapshot_metrics=snapshot_metrics)
    return launch.launch(options, outdir=outdir, desc=desc, dry_run=dry_run, snapshot_metrics=snapshot_metrics,
                         command=fields, run_dir=run_dir)
