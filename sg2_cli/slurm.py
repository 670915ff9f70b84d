"""train.py --slurm: the same run as a Slurm job, submitted through submitit, that requeues itself.

    train.py --outdir=runs --data=SHHQ-1024x512.zip --cfg=shhq --mirror=1 \\
        --slurm --nodes=4 --gpus=8 --partition=gpu --time=24:00 [--slurm-args=account=proj,qos=high]

One job of --nodes x --gpus tasks, one training process per GPU; each finds its rank, the process count and
the rendezvous in Slurm's environment (torch_utils/distributed.slurm_env). Submitit asks Slurm for its
warning signal SIGNAL_DELAY_S seconds before the time limit (SIGUSR2; --signal=USR2@120). On it, or on
SIGTERM (preemption), the training finishes its step, writes a snapshot and stops; the job then has submitit
requeue it (submitit's checkpointing protocol: `TrainingJob.checkpoint` returns the job to run next), and the
requeued job continues the same run folder from its newest complete snapshot (training/continuation.py).
SIGINT (`scancel --signal=INT JOB`) writes a snapshot and ends the job for good.

Needs the `cluster` extra (pip install .[cluster], which installs submitit), on the machine that submits and
on the nodes, which must see --data and --outdir on a shared file system.
"""
import dataclasses
import os
import re
import shutil
import signal
from typing import Optional

import dnnlib
from training import launch

from . import train_run

SIGNAL_DELAY_S = 120     # Seconds between submitit's warning signal and the time limit: a step, a snapshot, slack.
JOBS_FOLDER = "slurm-jobs"  # In --outdir: submitit's job files and the tasks' logs (<job id>_<task>_log.out/err).
# A stop by one of these is a time limit or a preemption: the job requeues itself. SIGINT means stop for good.
REQUEUE_STATUSES = {status for name, status in launch.EXIT_STATUS.items() if name in ("SIGTERM", "SIGUSR1", "SIGUSR2")}


def parse_time(text: str) -> int:
    """Slurm's --time forms MM, HH:MM, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS -> minutes (at least 1)."""
    match = re.fullmatch(r"\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*", str(text))
    if match is None:
        raise ValueError(f"'{text}' is not a Slurm time: HH:MM, HH:MM:SS or D-HH:MM")
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if days is None and second is None:
        minutes = first                                   # MM
    elif days is None:
        minutes = first * 60 + second + (third or 0) / 60  # HH:MM[:SS]
    else:
        minutes = days * 1440 + first * 60 + (second or 0) + (third or 0) / 60
    if minutes < 1:
        raise ValueError(f"'{text}' is less than a minute")
    return int(minutes)


def parse_slurm_args(text: Optional[str]) -> dict:
    """'account=proj,qos=high,exclusive' (commas or spaces, leading -- optional) -> {'account': 'proj', ...}."""
    settings = {}
    for item in re.split(r"[,\s]+", text or ""):
        if not item:
            continue
        key, sep, value = item.lstrip("-").partition("=")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key):
            raise ValueError(f"'{item}' is not an sbatch setting KEY=VALUE (e.g. account=proj)")
        settings[key.replace("_", "-")] = value if sep else True
    return settings


@dataclasses.dataclass
class SlurmSettings:
    """What the job asks Slurm for."""
    nodes: int
    gpus_per_node: int
    minutes: int
    partition: Optional[str] = None
    extra: dict = dataclasses.field(default_factory=dict)  # More sbatch settings (--slurm-args).
    job_name: str = "sg2-train"

    def sbatch_settings(self) -> dict:
        """The sbatch settings, as `#SBATCH --KEY=VALUE` would name them (what --dry-run prints)."""
        settings = {"job-name": self.job_name, "nodes": self.nodes, "ntasks-per-node": self.gpus_per_node,
                    "gpus-per-node": self.gpus_per_node, "time": self.minutes,
                    "signal": f"USR2@{SIGNAL_DELAY_S}"}
        if self.partition:
            settings["partition"] = self.partition
        settings.update(self.extra)
        return settings

    def submitit_parameters(self) -> dict:
        """The same settings as submitit.AutoExecutor.update_parameters takes them."""
        return dict(nodes=self.nodes, tasks_per_node=self.gpus_per_node, gpus_per_node=self.gpus_per_node,
                    timeout_min=self.minutes, name=self.job_name, slurm_partition=self.partition,
                    slurm_signal_delay_s=SIGNAL_DELAY_S, slurm_additional_parameters=dict(self.extra))


def job_fields(fields: dict) -> dict:
    """train.py's options for each task: --gpus is per node on the command line, the tasks take Slurm's count."""
    return {key: value for key, value in fields.items() if key != "gpus"}


class TrainingJob:
    """The callable submitit runs in every task: one process of the training run, requeued after a stop signal."""

    def __init__(self, outdir: str, fields: dict, continue_run: bool = False):
        self.outdir, self.fields, self.continue_run = outdir, dict(fields), continue_run

    def __call__(self) -> int:
        requeued = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0  # Slurm requeued it without asking us
        status = train_run.run_training(self.outdir, self.fields, continue_run=self.continue_run or requeued)
        if status in REQUEUE_STATUSES:
            request_requeue()
        return status

    def checkpoint(self):
        """Submitit's checkpointing protocol: what to run when the job is requeued (the snapshot is on disk
        already, written by the training loop when the signal came): the same run, continued."""
        import submitit  # here: the optional `cluster` extra
        return submitit.helpers.DelayedSubmission(TrainingJob(self.outdir, self.fields, continue_run=True))


def request_requeue() -> None:
    """Hand the stop to submitit as its own warning signal: its handler calls TrainingJob.checkpoint on rank 0 and
    requeues the job (scontrol requeue on Slurm)."""
    import submitit  # here: the optional `cluster` extra
    signal.raise_signal(getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG))


def describe(settings: SlurmSettings, fields: dict, outdir: str) -> str:
    """--dry-run's text: the sbatch settings and the options every task trains with."""
    lines = [f"#SBATCH --{key}" if value is True else f"#SBATCH --{key}={value}"
             for key, value in settings.sbatch_settings().items()]
    options = [f"--outdir={outdir}"] + [f"--{key.replace('_', '-')}={value}"
                                        for key, value in job_fields(fields).items() if value is not None]
    return "\n".join(["Slurm job (sbatch settings):", *lines, "", "Each task runs train.py with:", " ".join(options)])


def submit(outdir: str, fields: dict, settings: SlurmSettings, cluster: str = "slurm"):
    """Submit the run; returns the submitit job. `cluster='local'` runs it on this machine (the tests)."""
    try:
        import submitit  # here: the optional `cluster` extra
    except ImportError:
        raise dnnlib.util.UserError("--slurm: needs submitit: pip install .[cluster] (or pip install submitit)") \
            from None
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise dnnlib.util.UserError("--slurm: sbatch is not on this machine's PATH; submit from the cluster's login "
                                    "node (--dry-run shows the job's settings anywhere)")
    folder = os.path.join(outdir, JOBS_FOLDER, "%j")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**settings.submitit_parameters())
    job = executor.submit(TrainingJob(outdir, job_fields(fields)))
    print(f"Submitted job {job.job_id}: {settings.nodes} node(s) x {settings.gpus_per_node} GPU(s), "
          f"{settings.minutes} min per run, requeued until done; logs in {os.path.join(outdir, JOBS_FOLDER)}")
    return job
