"""--resume=auto: which earlier run in --outdir a command continues, in that run's own folder.

Each run folder records the train.py options it was started with (train_command.json, beside
training_options.json). A command continues the newest run whose recorded options are the same as its own,
except those that may change between the parts of one run (the length, how often it reports, where the
metrics come from, the processes): the run goes on from its newest complete snapshot, writing into the same
folder. A run without a complete snapshot, or one with other options, is not continued. This is what a
requeued cluster job needs (sg2_cli/slurm.py), and what a person needs after a crash.
"""
import json
import os
import re
from typing import List, Optional, Tuple

from training import snapshots

COMMAND_FILE = "train_command.json"
RUN_FOLDER = re.compile(r"^(\d+)-")
# TrainCommand fields that may differ between a run and its continuation.
MAY_CHANGE = {"resume", "kimg", "max_minutes", "gpus", "workers", "device", "metrics", "metric_kwargs", "max_gen",
              "detector", "vgg16", "ref_stats", "tick", "snap", "grid", "keep_snapshots", "keep_every"}


def write_command(run_dir: str, command: dict) -> None:
    """Record the options a run was started with (rank 0, when it makes the folder)."""
    with open(os.path.join(run_dir, COMMAND_FILE), "wt") as f:
        json.dump(command, f, indent=2)


def read_command(run_dir: str) -> Optional[dict]:
    """The recorded options of a run folder, or None (a folder of an older version, or an unreadable file)."""
    try:
        with open(os.path.join(run_dir, COMMAND_FILE)) as f:
            command = json.load(f)
    except (OSError, ValueError):
        return None
    return command if isinstance(command, dict) else None


def differences(recorded: dict, command: dict) -> List[str]:
    """The options (command-line names) on which `command` and a run's recorded options differ."""
    plain = json.loads(json.dumps(command))  # tuples as lists, as the recorded file has them
    names = (set(recorded) | set(plain)) - MAY_CHANGE
    return sorted("--" + name.replace("_", "-") for name in names if recorded.get(name) != plain.get(name))


def run_folders(outdir: str) -> List[str]:
    """The numbered run folders of `outdir`, newest (highest number) first."""
    try:
        names = os.listdir(outdir)
    except OSError:
        return []
    numbered = [(int(RUN_FOLDER.match(name).group(1)), name) for name in names
                if RUN_FOLDER.match(name) and os.path.isdir(os.path.join(outdir, name))]
    return [os.path.join(outdir, name) for _number, name in sorted(numbered, reverse=True)]


def find_run(outdir: str, command: dict, log=print) -> Optional[Tuple[str, str]]:
    """(run folder, its newest complete snapshot) of the newest run in `outdir` that `command` continues, or None.

    The runs passed over are named in the log with the reason (other options, no snapshot)."""
    for run_dir in run_folders(outdir):
        recorded = read_command(run_dir)
        if recorded is None:
            continue
        changed = differences(recorded, command)
        if changed:
            log(f"--resume=auto: {os.path.basename(run_dir)} has other options ({', '.join(changed[:4])}); not it")
            continue
        snapshot = snapshots.latest_snapshot(run_dir)
        if snapshot is None:
            log(f"--resume=auto: {os.path.basename(run_dir)} has no complete snapshot; not it")
            continue
        return run_dir, snapshot
    return None
