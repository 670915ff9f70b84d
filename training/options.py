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


@dataclasses.dataclass
class TrainCommand(_Options):
    data:        str                      # Training data: folder or zip (dataset_tool.py format).
    gpus:        int = 1                  # Number of processes (GPUs; CPU processes without CUDA).
    cfg:         str = "auto"             # Preset name, see presets.CONFIG_SPECS.
    batch:       Optional[int] = None     # Total batch size over all GPUs; None = preset.
    batch_gpu:   Optional[int] = None     # Images per GPU per pass (accumulation below batch/gpus); None = preset.
    gamma:       Optional[float] = None   # R1 weight; None = preset.
    kimg:        Optional[float] = None   # Training length in thousands of real images; None = preset.
    tick:        float = 4                # Progress line every this many kimg.
    snap:        int = 50                 # Snapshot (network pickle and image grid) every this many ticks.
    seed:        int = 0                  # Random seed.
    mirror:      bool = False             # Add x-flipped copies of the images.
    cond:        bool = False             # Train a class-conditional model from dataset.json labels.
    subset:      Optional[int] = None     # Train on a random subset of this many images.
    cbase:       Optional[int] = None     # Channel base (channels = min(cbase / res, cmax)); None = preset.
    cmax:        Optional[int] = None     # Maximum channels; None = 512.
    map:         Optional[int] = None     # Mapping network depth; None = preset.
    mbstd_group: Optional[int] = None     # Minibatch-stddev group size; None = preset.
    glr:         Optional[float] = None   # G learning rate; None = preset.
    dlr:         Optional[float] = None   # D learning rate; None = preset.
    aspect:      Optional[str] = None     # 'H:W'; None = from the dataset (which must then match).
    square:      Optional[bool] = None    # StyleGAN-Human's --square: False = 2:1, True = 1:1 (an alias of aspect).
    aug:         Optional[str] = None     # noaug | ada | fixed; None = noaug for shhq, ada otherwise.
    p:           Optional[float] = None   # Augmentation probability for --aug=fixed (0.2 default when fixed).
    target:      Optional[float] = None   # ADA target for the sign of D(real) (default 0.6).
    ada_kimg:    Optional[float] = None   # ADA speed: kimg for p to go from 0 to 1; None = 500, 100 when fine-tuning.
    augpipe:     str = "bgc"              # Augmentation pipeline name (training/augment.py).
    resume:      Optional[str] = None     # Snapshot to continue (exact resume) or checkpoint to fine-tune (weights).
    freezed:     Optional[int] = None     # Freeze-D: keep the first N layers of D fixed; None = 0 or the file's.
    fp32:        bool = False             # Disable mixed precision.
    nhwc:        bool = False             # Channels-last memory format in the FP16 layers.
    nobench:     bool = False             # Disable cuDNN benchmarking.
    allow_tf32:  bool = False             # Allow TF32 for matmul and convolutions.
    workers:     int = 3                  # DataLoader worker processes.
    metrics:     Union[str, list, None] = None  # Comma list or list of names; None = fid50k_full; 'none' = none.
    grid:        Optional[tuple] = None   # (rows, cols) of the image grids; None = what fits in 7680x4320.
    max_minutes: Optional[float] = None   # Stop (with a snapshot) at the first tick after this long; None = no limit.
    detector:    Optional[str] = None     # Inception detector file/URL for metrics; None = $SG2_INCEPTION_DETECTOR.
    vgg16:       Optional[str] = None     # VGG16 detector file/URL (pr50k3, ppl2_wend); None = $SG2_VGG16_DETECTOR.
    device:      Optional[str] = None     # 'cpu' or 'cuda'; None = CUDA when available.
    metric_kwargs: Optional[dict] = None  # More metrics.metric_utils.MetricOptions kwargs (library use, e.g. max_gen).
    ref_stats:   Optional[str] = None     # Real-image statistics file/URL (calc_metrics.py --export-stats).

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
