"""Training configurations: the --cfg presets, and train.py's options (TrainCommand) turned into the loop's
(TrainingOptions).

The preset values are those of StyleGAN2-ADA (Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data", appendix D / its train.py), plus `shhq`: the `auto`
rules with an 8-layer mapping network, which is how the SHHQ checkpoints of StyleGAN-Human were
trained (with --aug=noaug --mirror=1).
"""
import math
import re

import dnnlib
from torch_utils import distributed
from training import augment
from training import freeze_d
from training import resume as resume_lib
from training.dataset import ImageFolderDataset
from training.options import AUG_MODES, TrainCommand, TrainingOptions

# Keys: ref_gpus = GPUs the batch was tuned for (-1 = the run's), kimg = default length, mb = batch,
# mbstd = minibatch-stddev group, fmaps = channel_base / 32768, lrate = Adam lr (G and D), gamma = R1
# weight, ema = G_ema half-life in kimg, ramp = G_ema ramp-up (None = off), map = mapping layers.
# -1 means "derived from the resolution and GPU count" (see derive_auto_spec).
CONFIG_SPECS = {
    "auto":      dict(ref_gpus=-1, kimg=25000, mb=-1, mbstd=-1, fmaps=-1,  lrate=-1,     gamma=-1,  ema=-1, ramp=0.05, map=2),
    "shhq":      dict(ref_gpus=-1, kimg=25000, mb=-1, mbstd=-1, fmaps=-1,  lrate=-1,     gamma=-1,  ema=-1, ramp=0.05, map=8),
    "stylegan2": dict(ref_gpus=8,  kimg=25000, mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=10,  ema=10, ramp=None, map=8),
    "paper256":  dict(ref_gpus=8,  kimg=25000, mb=64, mbstd=8,  fmaps=0.5, lrate=0.0025, gamma=1,   ema=20, ramp=None, map=8),
    "paper512":  dict(ref_gpus=8,  kimg=25000, mb=64, mbstd=8,  fmaps=1,   lrate=0.0025, gamma=0.5, ema=20, ramp=None, map=8),
    "paper1024": dict(ref_gpus=8,  kimg=25000, mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=2,   ema=10, ramp=None, map=8),
}

# Presets of the original code bases that this package does not have, with what they were for.
ORIGINAL_ONLY_CFGS = {
    "cifar": "stylegan2-ada-pytorch's CIFAR-10 preset (32x32, class-conditional)",
    "stylegan3-t": "a StyleGAN3 preset (StyleGAN-Human trains SG3 with it)",
    "stylegan3-r": "a StyleGAN3 preset (StyleGAN-Human trains SG3 with it)",
}



def derive_auto_spec(spec: dict, resolution: int, gpus: int) -> dict:
    """Fill the -1 entries of an auto-style preset from the resolution (the larger image side) and GPU count."""
    spec = dict(spec)
    if spec["ref_gpus"] < 0:
        spec["ref_gpus"] = gpus
    if spec["mb"] < 0:
        spec["mb"] = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    if spec["mbstd"] < 0:
        spec["mbstd"] = min(spec["mb"] // gpus, 4)
    if spec["fmaps"] < 0:
        spec["fmaps"] = 1 if resolution >= 512 else 0.5
    if spec["lrate"] < 0:
        spec["lrate"] = 0.002 if resolution >= 1024 else 0.0025
    if spec["gamma"] < 0:
        spec["gamma"] = 0.0002 * (resolution ** 2) / spec["mb"]
    if spec["ema"] < 0:
        spec["ema"] = spec["mb"] * 10 / 32
    return spec


def parse_aspect(text: str) -> tuple:
    """'2:1' -> (2, 1), height:width in lowest terms."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(text))
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise dnnlib.util.UserError(f"--aspect: '{text}' is not H:W (e.g. 2:1 for 1024x512 images); fix the option")
    h, w = int(match.group(1)), int(match.group(2))
    g = math.gcd(h, w)
    return (h // g, w // g)


def aspect_option(aspect, square):
    """(option, text as typed, (H, W)) of --aspect or StyleGAN-Human's --square (False = 2:1); None if neither."""
    if square is not None:
        square_aspect = (1, 1) if square else (2, 1)
        if aspect is not None and parse_aspect(aspect) != square_aspect:
            raise dnnlib.util.UserError(f"--square={square} contradicts --aspect={aspect}; give one of them")
        return "square", f"{bool(square)}", square_aspect
    if aspect is not None:
        return "aspect", aspect, parse_aspect(aspect)
    return None


def check_cfg(cfg):
    if cfg in ORIGINAL_ONLY_CFGS:
        raise dnnlib.util.UserError(f"--cfg: '{cfg}' is {ORIGINAL_ONLY_CFGS[cfg]}, which this package does not have; "
                                    f"choose one of {', '.join(CONFIG_SPECS)}")
    if cfg not in CONFIG_SPECS:
        raise dnnlib.util.UserError(f"--cfg: unknown preset '{cfg}'; choose one of {', '.join(CONFIG_SPECS)}")


def _metrics_for(option, snapshot_metrics):
    """The metrics' side of the options (training does not import the metrics; train.py hands them in)."""
    if snapshot_metrics is None:
        raise ValueError(f"{option} needs the metrics: pass snapshot_metrics=metrics.snapshot_metrics."
                         "SnapshotMetrics() as train.py does")
    return snapshot_metrics


def parse_metrics(text, snapshot_metrics=None) -> list:
    """--metrics of train.py: 'none' (or nothing) = none, else names checked by `snapshot_metrics`."""
    if isinstance(text, str) and text.strip() in ("", "none"):
        return []
    return _metrics_for("--metrics", snapshot_metrics).parse(text)


def _start_from_checkpoint(c, path, shape, explicit, fp32, nhwc, freezed, mbstd_group, batch_gpu):
    """Take c.G_kwargs and c.D_kwargs from the checkpoint's own options (training/resume.py); True when the run
    fine-tunes.

    A run fine-tunes unless the file continues a run exactly (or continues a run that fine-tuned).
    """
    data = resume_lib.read_checkpoint(path)
    c.G_kwargs, c.D_kwargs = resume_lib.network_options(path, data, shape, explicit, c.G_kwargs, c.D_kwargs,
                                                        fp32=fp32, nhwc=nhwc)
    if data.get("D") is not None:
        epilogue = c.D_kwargs.setdefault("epilogue_kwargs", {})
        group = mbstd_group if mbstd_group is not None else epilogue.get("mbstd_group_size", 4)
        if group is not None:
            group = min(group, batch_gpu)
            if batch_gpu % group != 0:
                raise dnnlib.util.UserError(f"--batch-gpu: {batch_gpu} is not a multiple of the minibatch-stddev group "
                                            f"({group}) of {path}'s D; pass --mbstd-group with a divisor of it")
        epilogue["mbstd_group_size"] = group
    exact = resume_lib.is_exact(data)
    frozen = freeze_d.frozen_layers(c.D_kwargs)
    if not exact:  # Freeze-D is a choice of the run (--freezed, default 0), not of the file's D.
        (c.D_kwargs.get("block_kwargs") or {}).pop("freeze_layers", None)
    elif freezed is not None and freezed != frozen:
        raise dnnlib.util.UserError(f"--freezed={freezed}: {path} continues a run trained with --freezed={frozen} "
                                    "and holds its optimizer state; omit --freezed")
    return not exact or bool(data["progress"].get("fine_tune", False))



# ----------------------------------------------------------------------------
# From train.py's options to the loop's, one concern at a time.


def describe_dataset(cmd):
    """Open the dataset once to learn its shape (and to fail early on bad files): its options and what it holds."""
    kwargs = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path=cmd.data, use_labels=bool(cmd.cond),
                             max_size=cmd.subset, xflip=bool(cmd.mirror), random_seed=cmd.seed)
    dataset = ImageFolderDataset(**{k: v for k, v in kwargs.items() if k != "class_name"})
    try:
        kwargs.resolution = dataset.resolution
        kwargs.max_size = len(dataset) // (2 if cmd.mirror else 1)
        if cmd.cond and not dataset.has_labels:
            raise dnnlib.util.UserError(f"--cond: {cmd.data} has no labels in dataset.json; add labels or drop --cond")
        aspect = tuple(dataset.aspect_ratio)
        typed_aspect = aspect_option(cmd.aspect, cmd.square)
        if typed_aspect is not None and typed_aspect[2] != aspect:
            raise dnnlib.util.UserError(f"--{typed_aspect[0]}={typed_aspect[1]} does not match the dataset's images "
                                        f"({dataset.height}x{dataset.width}, H:W = {aspect[0]}:{aspect[1]}); omit "
                                        "it or use a matching dataset")
        shape = dnnlib.EasyDict(path=cmd.data, height=dataset.height, width=dataset.width,
                                channels=dataset.num_channels, label_dim=dataset.label_dim)
        return dnnlib.EasyDict(kwargs=kwargs, resolution=dataset.resolution, name=dataset.name, aspect=aspect,
                               typed_aspect=typed_aspect, shape=shape)
    finally:
        dataset.close()


def preset_with_overrides(cmd, resolution):
    """The preset's values with the explicit options applied, and the checked images per pass (batch_gpu)."""
    spec = derive_auto_spec(CONFIG_SPECS[cmd.cfg], resolution, cmd.gpus)
    if cmd.batch is not None:
        # As in StyleGAN2-ADA, --batch changes only the batch: gamma, ema and mbstd keep their preset values.
        spec["mb"] = cmd.batch
        spec["ref_gpus"] = cmd.gpus
    batch_gpu = cmd.batch_gpu if cmd.batch_gpu is not None else max(spec["mb"] // spec["ref_gpus"], 1)
    if spec["mb"] % cmd.gpus != 0 or (spec["mb"] // cmd.gpus) % batch_gpu != 0:
        raise dnnlib.util.UserError(f"--batch: {spec['mb']} must be a multiple of --gpus ({cmd.gpus}) times "
                                    f"--batch-gpu ({batch_gpu}); change --batch or --batch-gpu")
    if cmd.mbstd_group is not None:
        spec["mbstd"] = cmd.mbstd_group
    spec["mbstd"] = min(spec["mbstd"], batch_gpu)
    if spec["mbstd"] < 1 or batch_gpu % spec["mbstd"] != 0:
        raise dnnlib.util.UserError(f"--mbstd-group: {spec['mbstd']} must divide --batch-gpu ({batch_gpu})")
    for key, value in [("gamma", cmd.gamma), ("kimg", cmd.kimg), ("map", cmd.map)]:
        if value is not None:
            spec[key] = value
    return spec, batch_gpu


def network_kwargs(cmd, spec, aspect):
    """G and D options of a fresh run: the preset's architecture at the dataset's aspect ratio."""
    channel_base = int(spec["fmaps"] * 32768) if cmd.cbase is None else cmd.cbase
    channel_max = 512 if cmd.cmax is None else cmd.cmax
    fp16 = dict(num_fp16_res=0, conv_clamp=None) if cmd.fp32 else dict(num_fp16_res=4, conv_clamp=256)
    G_kwargs = dnnlib.EasyDict(class_name="training.networks.Generator", z_dim=512, w_dim=512,
                               aspect_ratio=list(aspect), mapping_kwargs=dnnlib.EasyDict(num_layers=spec["map"]),
                               synthesis_kwargs=dnnlib.EasyDict(channel_base=channel_base, channel_max=channel_max,
                                                                **fp16))
    D_kwargs = dnnlib.EasyDict(class_name="training.networks.Discriminator", architecture="resnet",
                               channel_base=channel_base, channel_max=channel_max, aspect_ratio=list(aspect),
                               block_kwargs=dnnlib.EasyDict(), mapping_kwargs=dnnlib.EasyDict(),
                               epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=spec["mbstd"]), **fp16)
    if cmd.nhwc:
        G_kwargs.synthesis_kwargs.fp16_channels_last = True
        D_kwargs.block_kwargs.fp16_channels_last = True
    return G_kwargs, D_kwargs


def checkpoint_network_kwargs(cmd, dataset, spec, batch_gpu, nets):
    """--resume: nets.G_kwargs and nets.D_kwargs from the file (changed in place); True when the run fine-tunes."""
    explicit = {key: (value, value) for key, value in [("cbase", cmd.cbase), ("cmax", cmd.cmax), ("map", cmd.map)]
                if value is not None}
    if dataset.typed_aspect is not None:
        explicit[dataset.typed_aspect[0]] = dataset.typed_aspect[1:]
    mbstd_group = spec["mbstd"] if cmd.mbstd_group is not None else None
    return _start_from_checkpoint(nets, cmd.resume, dataset.shape, explicit, fp32=cmd.fp32, nhwc=cmd.nhwc,
                                  freezed=cmd.freezed, mbstd_group=mbstd_group, batch_gpu=batch_gpu)


def optimizer_options(cmd, spec):
    """Adam with beta1 = 0 and the lazy-regularisation intervals of the StyleGAN2 paper (appendix B)."""
    def adam(lr):
        return dnnlib.EasyDict(class_name="torch.optim.Adam", lr=spec["lrate"] if lr is None else lr, betas=[0, 0.99],
                               eps=1e-8)
    loss_kwargs = dnnlib.EasyDict(class_name="training.loss.StyleGAN2Loss", r1_gamma=spec["gamma"],
                                  style_mixing_prob=0.9, pl_weight=2, pl_batch_shrink=2, pl_decay=0.01,
                                  pl_no_weight_grad=True)
    return dict(G_opt_kwargs=adam(cmd.glr), D_opt_kwargs=adam(cmd.dlr), loss_kwargs=loss_kwargs, G_reg_interval=4,
                D_reg_interval=16)


def metric_options(cmd, snapshot_metrics):
    """The metrics after each snapshot and their options (detectors, reference statistics)."""
    metric_kwargs = dnnlib.EasyDict(cmd.metric_kwargs or {})
    detectors = {kind: path for kind, path in [("inception", cmd.detector), ("vgg16", cmd.vgg16),
                                               ("dinov2", cmd.dinov2)] if path}
    if detectors:
        metric_kwargs.detectors = detectors
    metrics = parse_metrics(cmd.metrics, snapshot_metrics)
    if cmd.ref_stats is not None:
        metric_kwargs.ref_stats = _metrics_for("--ref-stats", snapshot_metrics).resolve_ref_stats(cmd.ref_stats)
    return dict(metrics=metrics, metric_kwargs=metric_kwargs)


def augment_mode(cmd):
    """--aug, checked against --p and --target; the default is noaug for shhq and ada otherwise."""
    aug = cmd.aug if cmd.aug is not None else ("noaug" if cmd.cfg == "shhq" else "ada")
    if aug not in AUG_MODES:
        raise dnnlib.util.UserError(f"--aug: unknown mode '{aug}'; choose one of {', '.join(AUG_MODES)}")
    if cmd.p is not None and aug != "fixed":
        raise dnnlib.util.UserError("--p: only applies with --aug=fixed")
    if cmd.target is not None and aug != "ada":
        raise dnnlib.util.UserError("--target: only applies with --aug=ada")
    return aug


def augment_options(cmd, aug, fine_tune):
    """Augmentation (ADA paper): --aug=ada adapts p towards the target, --aug=fixed keeps --p."""
    if aug == "noaug":
        return dict(augment_kwargs=None, augment_p=0.0, ada_target=None)
    values = dict(augment_kwargs=augment.augpipe_kwargs(cmd.augpipe), augment_p=0.0, ada_target=None)
    if aug == "fixed":
        values["augment_p"] = 0.2 if cmd.p is None else float(cmd.p)
        if not 0 <= values["augment_p"] <= 1:
            raise dnnlib.util.UserError(f"--p: {cmd.p} is not a probability in [0, 1]")
        return values
    values["ada_target"] = 0.6 if cmd.target is None else float(cmd.target)
    values["ada_kimg"] = cmd.ada_kimg if cmd.ada_kimg is not None else (100 if fine_tune else 500)
    if not 0 <= values["ada_target"] <= 1:
        raise dnnlib.util.UserError(f"--target: {cmd.target} must lie in [0, 1]")
    return values


def describe_run(cmd, dataset_name, options, gamma, aug):
    """The run folder's name after its number, e.g. 'shhq-shhq-gpus8-batch32-gamma10-mirror'."""
    desc = f"{dataset_name}-{cmd.cfg}-gpus{cmd.gpus:d}-batch{options.batch_size:d}-gamma{gamma:g}"
    if cmd.cond:
        desc += "-cond"
    if cmd.mirror:
        desc += "-mirror"
    if aug != "noaug":
        desc += f"-{aug}-{cmd.augpipe}" + (f"-p{options.augment_p:g}" if aug == "fixed" else "")
    if cmd.resume is not None:
        desc += "-resume"
    if freeze_d.frozen_layers(options.D_kwargs):
        desc += f"-freezed{freeze_d.frozen_layers(options.D_kwargs):d}"
    return desc


def make_training_options(command: TrainCommand = None, snapshot_metrics=None, **fields) -> tuple:
    """The loop's TrainingOptions for train.py's options, and a short run description for the run folder name.

    Pass a TrainCommand, or its fields as keywords (a misspelt one is an error naming it). `snapshot_metrics`
    (metrics.snapshot_metrics.SnapshotMetrics, as train.py passes it) checks the metric names and --ref-stats;
    without it, only --metrics=none and the default metrics are accepted.
    """
    cmd = command if command is not None else TrainCommand.from_dict(fields)
    check_cfg(cmd.cfg)
    if cmd.gpus is None:  # One process, or as many as torchrun started.
        env = distributed.torchrun_env()
        cmd = cmd.replace(gpus=env[1] if env is not None else 1)
    if cmd.gpus < 1:
        raise dnnlib.util.UserError(f"--gpus: must be at least 1, got {cmd.gpus}")
    dataset = describe_dataset(cmd)
    spec, batch_gpu = preset_with_overrides(cmd, dataset.resolution)
    nets = dnnlib.EasyDict(zip(("G_kwargs", "D_kwargs"), network_kwargs(cmd, spec, dataset.aspect)))
    fine_tune = False
    if cmd.resume is not None:
        fine_tune = checkpoint_network_kwargs(cmd, dataset, spec, batch_gpu, nets)
    if cmd.freezed is not None:
        freeze_d.set_frozen_layers(nets.D_kwargs, cmd.freezed, dataset.resolution)
    values = dict(
        training_set_kwargs=dataset.kwargs, G_kwargs=nets.G_kwargs, D_kwargs=nets.D_kwargs,
        **optimizer_options(cmd, spec),
        total_kimg=spec["kimg"], batch_size=spec["mb"], batch_gpu=batch_gpu, ema_kimg=spec["ema"],
        # Fine-tuning as in StyleGAN2-ADA's transfer learning: no G_ema ramp-up, faster ADA (augment_options).
        ema_rampup=None if fine_tune else spec["ramp"], fine_tune=fine_tune,
        kimg_per_tick=cmd.tick, image_snapshot_ticks=cmd.snap, network_snapshot_ticks=cmd.snap,
        random_seed=cmd.seed, num_gpus=cmd.gpus,
        **metric_options(cmd, snapshot_metrics),
        grid=list(cmd.grid) if cmd.grid is not None else None,
        data_loader_kwargs=dnnlib.EasyDict(num_workers=cmd.workers, prefetch_factor=2 if cmd.workers > 0 else None),
        cudnn_benchmark=not cmd.nobench, allow_tf32=bool(cmd.allow_tf32))
    aug = augment_mode(cmd)
    values.update(augment_options(cmd, aug, fine_tune))
    if cmd.device not in (None, "cpu", "cuda"):
        raise dnnlib.util.UserError(f"--device: '{cmd.device}' is not cpu or cuda")
    options = TrainingOptions(**values, device=cmd.device, resume_pkl=cmd.resume, max_minutes=cmd.max_minutes)
    return options, describe_run(cmd, dataset.name, options, spec["gamma"], aug)
