"""Typed training options: what train.py fills (`TrainCommand`) and what the loop consumes (`TrainingOptions`).

training/presets.py turns the one into the other. A `TrainingOptions` is written to the run folder as
training_options.json, key for key (the keys of StyleGAN2-ADA's file, plus those this package adds),
and can be read back from it. A key that is not a field is an error naming it, whichever way the
options come in, and so is a value of the wrong type. The `*_kwargs` dicts name the classes to build
(`class_name`), as checkpoints and the original tools expect.
"""
import dataclasses
import difflib
import json
import typing
from typing import Optional, Union

import dnnlib

# Keys of training_options.json files written before the options were typed, and what became of them.
RENAMED_KEYS = {"device_type": "device", "grid_size": "grid"}


def _made_by(factory):
    # A field whose default is a fresh factory() per instance (short, so the option table stays aligned).
    return dataclasses.field(default_factory=factory)


# ----------------------------------------------------------------------------
# Type checks (the few types the options use: bool, int, float, str, list, tuple, dict, Optional, Union).


def _type_name(annotation):
    if typing.get_origin(annotation) is Union:
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    return "null" if annotation is type(None) else annotation.__name__


def _has_type(value, annotation):
    if typing.get_origin(annotation) is Union:
        return any(_has_type(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (list, tuple):
        return isinstance(value, (list, tuple))
    return isinstance(value, annotation)


class _Options:
    """Shared by the option classes: construction from a dict that names unknown keys, and type checks."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not _has_type(value, hints[field.name]):
                raise dnnlib.util.UserError(f"{self._what()}: '{field.name}' must be {_type_name(hints[field.name])}, "
                                            f"not {value!r}")

    @classmethod
    def _what(cls):
        return "training options"

    @classmethod
    def field_names(cls):
        return [field.name for field in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values, source=None):
        """Build from a dict; a key that is not a field (a misspelling) or a missing required one is an error."""
        names = cls.field_names()
        where = source or cls._what()
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise dnnlib.util.UserError(f"{where}: unknown option '{key}'{hint}")
        missing = [field.name for field in dataclasses.fields(cls) if field.name not in values
                   and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
        if missing:
            raise dnnlib.util.UserError(f"{where}: missing option(s) {', '.join(missing)}")
        return cls(**values)

    def to_dict(self):
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------
# What train.py fills: its options, under their command-line names.

DEFAULT_METRICS = "fid50k_full"  # Also calc_metrics.py's default.
AUG_MODES = ("noaug", "ada", "fixed")


def option(default=dataclasses.MISSING, help=None, **cli):
    """A TrainCommand field that train.py offers as --NAME (underscores as dashes), with its default.

    `help` and `cli` describe the option; sg2_cli/train.py builds the click options from them, so each
    default is written once, here. cli: min, max (bounds, with min_open), choices, metavar, decls (more
    spellings), hidden, note ([default: ...] text), or shared='--opt' to take a tools-wide option's help
    and checks from sg2_cli/options.py.
    """
    return dataclasses.field(default=default, metadata=dict(help=help, **cli))


@dataclasses.dataclass
class TrainCommand(_Options):
    data:        str = option(shared="--data", required=True)
    gpus:        Optional[int] = option(None, shared="--gpus", note="1, WORLD_SIZE under torchrun")
    cfg:         str = option("auto", "Preset: auto, shhq, stylegan2, paper256, paper512 or paper1024 (README: Training)")
    batch:       Optional[int] = option(None, "Total batch size over all GPUs", min=1, max=1 << 16, note="preset")
    batch_gpu:   Optional[int] = option(None, "Images per GPU per pass (gradient accumulation below batch/gpus)",
                                        min=1, max=1 << 16, note="preset")
    gamma:       Optional[float] = option(None, "R1 regularisation weight", min=0, note="preset")
    kimg:        Optional[float] = option(None, "Training length in thousands of images", min=0, min_open=True,
                                          note="preset, 25000")
    tick:        float = option(4, "Progress line every this many kimg", min=0, min_open=True)
    snap:        int = option(50, "Snapshot (network pickle and image grid) every this many ticks", min=1)
    seed:        int = option(0, shared="--seed")
    mirror:      bool = option(False, shared="--mirror")
    cond:        bool = option(False, "Class-conditional training from dataset.json labels")
    subset:      Optional[int] = option(None, "Train on a random subset of this many images", min=1)
    cbase:       Optional[int] = option(None, "Channel base (channels = min(cbase / res, cmax))", min=1,
                                        max=1 << 24, note="preset; with --resume, the file's")
    cmax:        Optional[int] = option(None, "Maximum channels", min=1, max=4096, note="512; with --resume, the "
                                        "file's")
    map:         Optional[int] = option(None, "Mapping network depth", min=1, max=64,
                                        note="preset; with --resume, the file's")
    mbstd_group: Optional[int] = option(None, "Minibatch-stddev group size", min=1, max=1 << 16, note="preset")
    glr:         Optional[float] = option(None, "G learning rate", min=0, min_open=True, note="preset")
    dlr:         Optional[float] = option(None, "D learning rate", min=0, min_open=True, note="preset")
    aspect:      Optional[str] = option(None, "Image height:width, e.g. 2:1", metavar="H:W", note="from the dataset")
    square:      Optional[bool] = option(None, "StyleGAN-Human's spelling of --aspect: False = 2:1, True = 1:1",
                                         hidden=True)
    aug:         Optional[str] = option(None, "Augmentation mode", choices=AUG_MODES,
                                        note="noaug for --cfg=shhq, else ada")
    p:           Optional[float] = option(None, "Augmentation probability for --aug=fixed; under torchrun write "
                                          "--aug-p (torchrun reads --p as one of its own options)", min=0, max=1,
                                          decls=("--aug-p",), note="0.2")
    target:      Optional[float] = option(None, "ADA target for --aug=ada", min=0, max=1, note="0.6")
    ada_kimg:    Optional[float] = option(None, "ADA speed: kimg for p to go from 0 to 1", min=0, min_open=True,
                                          note="500, fine-tuning 100")
    augpipe:     str = option("bgc", "Augmentation pipeline (training/augment.py; 'body' keeps figures upright)")
    resume:      Optional[str] = option(None, "Continue from a snapshot or run folder (exact: counters, optimizers, "
                                        "RNG), or fine-tune a checkpoint without training state (e.g. a released "
                                        "one); the networks are built as the file says", metavar="PKL|DIR|URL")
    freezed:     Optional[int] = option(None, "Freeze-D: the first N layers of D (from the image side) are not "
                                        "trained", min=0, max=4096, metavar="N", note="0")
    fp32:        bool = option(False, "Disable mixed precision")
    nhwc:        bool = option(False, "Channels-last memory format in the FP16 layers")
    nobench:     bool = option(False, "Disable cuDNN benchmarking")
    allow_tf32:  bool = option(False, "Allow TF32 matmul and convolutions")
    workers:     int = option(3, "DataLoader worker processes", min=0, max=256)
    metrics:     Union[str, list] = option(DEFAULT_METRICS, shared="--metrics", detail="after each snapshot; or "
                                           "none")
    grid:        Optional[tuple] = option(None, shared="--grid", note="what fits in 7680x4320",
                                          detail="the snapshots' grids of fakes")
    max_minutes: Optional[float] = option(None, "Stop with a snapshot at the first tick after this many minutes "
                                          "(e.g. before a cluster time limit)", min=0, min_open=True)
    detector:    Optional[str] = option(None, shared="--detector")
    vgg16:       Optional[str] = option(None, shared="--vgg16")
    dinov2:      Optional[str] = option(None, shared="--dinov2")
    device:      Optional[str] = option(None, shared="--device", detail="train.py: cpu or cuda")
    metric_kwargs: Optional[dict] = None  # More metrics.metric_utils.MetricOptions kwargs (library use, e.g. max_gen).
    ref_stats:   Optional[str] = option(None, shared="--ref-stats")

    @classmethod
    def _what(cls):
        return "train.py options"


# ----------------------------------------------------------------------------
# What the loop consumes: the content of training_options.json.


@dataclasses.dataclass
class TrainingOptions(_Options):
    training_set_kwargs:    dict            # Training set (training.dataset.ImageFolderDataset) options.
    G_kwargs:               dict            # Generator class and constructor arguments.
    D_kwargs:               dict            # Discriminator class and constructor arguments.
    G_opt_kwargs:           dict            # Generator optimizer class and options.
    D_opt_kwargs:           dict            # Discriminator optimizer class and options.
    loss_kwargs:            dict            # Loss class (training.loss.StyleGAN2Loss) and options.
    G_reg_interval:         Optional[int] = 4      # Path length reg. every N steps; None = with the main loss.
    D_reg_interval:         Optional[int] = 16     # R1 regularisation every N steps; None = with the main loss.
    total_kimg:             float = 25000          # Training length in thousands of real images shown to D.
    batch_size:             int = 4                # Total batch size of one training step over all processes.
    batch_gpu:              int = 4                # Images per chunk (one forward/backward pass).
    ema_kimg:               float = 10             # Half-life of the G_ema average, in thousands of images.
    ema_rampup:             Optional[float] = 0.05  # G_ema half-life at most this share of the images seen.
    fine_tune:              bool = False           # Started from another run's weights (kept in snapshots for resumes).
    kimg_per_tick:          float = 4              # Progress line every this many kimg.
    image_snapshot_ticks:   Optional[int] = 50     # Image grid every this many ticks; None = never.
    network_snapshot_ticks: Optional[int] = 50     # Network pickle every N ticks; None = only at the end/on signals.
    random_seed:            int = 0                # Global random seed.
    num_gpus:               int = 1                # Number of processes of the run.
    metrics:                list = _made_by(list)   # Metrics to compute after each network snapshot.
    metric_kwargs:          dict = _made_by(dnnlib.EasyDict)  # metrics.metric_utils.MetricOptions kwargs.
    grid:                   Optional[list] = None  # (rows, cols) of the image grids; None = what fits in 7680x4320.
    data_loader_kwargs:     dict = _made_by(dnnlib.EasyDict)  # torch.utils.data.DataLoader options.
    cudnn_benchmark:        bool = True            # Let cuDNN pick the fastest convolution algorithms.
    allow_tf32:             bool = False           # Allow TF32 matmul/convolutions on Ampere and newer.
    augment_kwargs:         Optional[dict] = None  # Augmentation pipeline class and options; None = no augmentation.
    augment_p:              float = 0              # Initial (or, without ADA, fixed) augmentation probability.
    ada_target:             Optional[float] = None  # ADA target for E[sign(D(real))]; None = p stays fixed.
    ada_kimg:               float = 500            # ADA speed: p can move from 0 to 1 in this many kimg.
    device:                 Optional[str] = None   # 'cpu' or 'cuda'; None = cuda:<local rank> if available, else cpu.
    resume_pkl:             Optional[str] = None   # Snapshot to start from: exact resume with `progress`, else weights.
    max_minutes:            Optional[float] = None  # Stop (with a snapshot) at the first tick after this long.
    run_dir:                Optional[str] = None   # The run folder (rank 0 writes into it); None = the current folder.
    ada_interval:           int = 4                # Adjust p every this many steps.
    resume_progress:        bool = True            # Restore the `progress` of resume_pkl (counters, optimizers, RNG)?

    def __post_init__(self):
        super().__post_init__()
        for field in dataclasses.fields(self):  # Nested options read as attributes, as they always have.
            value = getattr(self, field.name)
            if field.name.endswith("_kwargs") and isinstance(value, dict):
                setattr(self, field.name, _easydict(value))
        if self.grid is not None:
            self.grid = [int(n) for n in self.grid]

    @classmethod
    def from_json_dict(cls, values, source="training_options.json"):
        """Options from a training_options.json dict, including files written before the options were typed."""
        values = dict(values)
        if "device_type" in values:
            values.setdefault("device", values.pop("device_type"))
        if "grid_size" in values:  # Stored as (cols, rows) back then.
            grid_size = values.pop("grid_size")
            values.setdefault("grid", list(reversed(grid_size)) if grid_size is not None else None)
        return cls.from_dict(values, source=source)

    @classmethod
    def load(cls, path):
        """Read a run folder's training_options.json."""
        with open(path, "rt") as f:
            try:
                values = json.load(f)
            except json.JSONDecodeError as err:
                raise dnnlib.util.UserError(f"{path}: not a JSON file ({err})") from None
        if not isinstance(values, dict):
            raise dnnlib.util.UserError(f"{path}: expected a JSON object of training options")
        return cls.from_json_dict(values, source=path)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2)


def _easydict(value):
    if isinstance(value, dict):
        return dnnlib.EasyDict({key: _easydict(item) for key, item in value.items()})
    return value
