"""Training configurations: the --cfg presets and the translation of train.py options into training_loop kwargs.

The preset values are those of StyleGAN2-ADA (Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data", appendix D / its train.py), plus `shhq`: the `auto`
rules with an 8-layer mapping network, which is how the SHHQ checkpoints of StyleGAN-Human were
trained (with --aug=noaug --mirror=1).
"""
import math
import re

import dnnlib
from training import freeze_d

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

AUG_MODES = ("noaug", "ada", "fixed")
DEFAULT_METRICS = ("fid50k_full",)


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


def parse_metrics(text) -> list:
    """'fid50k_full,kid50k' -> list of names; 'none' or '' -> []. Names are checked against metrics.metric_main."""
    if text is None:
        return list(DEFAULT_METRICS)
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if names in ([], ["none"]):
        return []
    try:
        from metrics import metric_main
    except ImportError as err:
        raise dnnlib.util.UserError(f"--metrics: the metrics package cannot be imported ({err}); "
                                    "pass --metrics=none to train without metrics") from err
    for name in names:
        if not metric_main.is_valid_metric(name):
            raise dnnlib.util.UserError(f"--metrics: unknown metric '{name}'; choose from "
                                        f"{', '.join(metric_main.list_valid_metrics())} or none")
    return names


def _start_from_checkpoint(c, path, shape, explicit, fp32, nhwc, freezed, mbstd_group, batch_gpu):
    """Take G and D from the checkpoint's own options (training/resume.py); True when the run fine-tunes.

    A run fine-tunes unless the file continues a run exactly (or continues a run that fine-tuned).
    """
    from training import resume as resume_lib
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


def make_training_options(
    data,                   # Training data: folder or zip (dataset_tool.py format).
    gpus        = 1,        # Number of processes (GPUs; CPU processes without CUDA).
    cfg         = "auto",   # Preset name, see CONFIG_SPECS.
    batch       = None,     # Total batch size over all GPUs; None = preset.
    batch_gpu   = None,     # Images per GPU per forward pass (gradient accumulation below batch/gpus); None = preset.
    gamma       = None,     # R1 weight; None = preset.
    kimg        = None,     # Training length in thousands of real images; None = preset.
    tick        = 4,        # Progress line every this many kimg.
    snap        = 50,       # Snapshot (network pickle and image grid) every this many ticks.
    seed        = 0,        # Random seed.
    mirror      = False,    # Add x-flipped copies of the images.
    cond        = False,    # Train a class-conditional model from dataset.json labels.
    subset      = None,     # Train on a random subset of this many images.
    cbase       = None,     # Channel base (channels = min(cbase / res, cmax)); None = preset.
    cmax        = None,     # Maximum channels; None = 512.
    map         = None,     # Mapping network depth; None = preset.
    mbstd_group = None,     # Minibatch-stddev group size; None = preset.
    glr         = None,     # G learning rate; None = preset.
    dlr         = None,     # D learning rate; None = preset.
    aspect      = None,     # 'H:W'; None = from the dataset (which must then match).
    square      = None,     # StyleGAN-Human's --square: False = 2:1, True = 1:1 (an alias of aspect).
    aug         = None,     # noaug | ada | fixed; None = noaug for shhq, ada otherwise.
    p           = None,     # Augmentation probability for --aug=fixed (0.2 default when fixed).
    target      = None,     # ADA target for the sign of D(real) (default 0.6).
    ada_kimg    = None,     # ADA speed: kimg for p to go from 0 to 1; None = 500, 100 when fine-tuning.
    augpipe     = "bgc",    # Augmentation pipeline name (training/augment.py).
    resume      = None,     # Snapshot to continue from (exact resume) or checkpoint to fine-tune (weights only).
    freezed     = None,     # Freeze-D: keep the first N layers of D fixed (training/freeze_d.py); None = 0 or the file's.
    fp32        = False,    # Disable mixed precision.
    nhwc        = False,    # Channels-last memory format in the FP16 layers.
    nobench     = False,    # Disable cuDNN benchmarking.
    allow_tf32  = False,    # Allow TF32 for matmul and convolutions.
    workers     = 3,        # DataLoader worker processes.
    metrics     = None,     # Comma list or list of metric names; None = fid50k_full; 'none' = no metrics.
    grid        = None,     # (cols, rows) of the image grids; None = as many as fit in 7680x4320 (4-32 each way).
    max_minutes = None,     # Stop (with a snapshot) at the first tick after this much training time; None = no limit.
    detector    = None,     # Inception detector file/URL for metrics; None = $SG2_INCEPTION_DETECTOR or download.
    vgg16       = None,     # VGG16 detector file/URL (pr50k3, ppl2_wend); None = $SG2_VGG16_DETECTOR or download.
    device      = None,     # 'cpu' or 'cuda'; None = CUDA when available.
    metric_kwargs = None,   # More metrics.metric_utils.MetricOptions kwargs (library use, e.g. max_gen).
    ref_stats   = None,     # Real-image statistics file/URL (calc_metrics.py --export-stats) for the metrics.
) -> tuple:
    """Validated training_loop kwargs (an EasyDict) and a short run description for the run folder name."""
    from training.dataset import ImageFolderDataset

    check_cfg(cfg)
    if gpus < 1:
        raise dnnlib.util.UserError(f"--gpus: must be at least 1, got {gpus}")
    c = dnnlib.EasyDict()

    # Dataset: opened once here to learn its shape (and to fail early on bad files).
    c.training_set_kwargs = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path=data,
                                            use_labels=bool(cond), max_size=subset, xflip=bool(mirror),
                                            random_seed=seed)
    dataset = ImageFolderDataset(**{k: v for k, v in c.training_set_kwargs.items() if k != "class_name"})
    try:
        c.training_set_kwargs.resolution = dataset.resolution
        c.training_set_kwargs.max_size = len(dataset) // (2 if mirror else 1)
        if cond and not dataset.has_labels:
            raise dnnlib.util.UserError(f"--cond: {data} has no labels in dataset.json; add labels or drop --cond")
        dataset_aspect = tuple(dataset.aspect_ratio)
        typed_aspect = aspect_option(aspect, square)
        if typed_aspect is not None and typed_aspect[2] != dataset_aspect:
            raise dnnlib.util.UserError(f"--{typed_aspect[0]}={typed_aspect[1]} does not match the dataset's images "
                                        f"({dataset.height}x{dataset.width}, H:W = {dataset_aspect[0]}:"
                                        f"{dataset_aspect[1]}); omit it or use a matching dataset")
        resolution, name = dataset.resolution, dataset.name
        shape = dnnlib.EasyDict(path=data, height=dataset.height, width=dataset.width,
                                channels=dataset.num_channels, label_dim=dataset.label_dim)
    finally:
        dataset.close()

    # Preset, then explicit overrides.
    spec = derive_auto_spec(CONFIG_SPECS[cfg], resolution, gpus)
    if batch is not None:
        # As in StyleGAN2-ADA, --batch changes only the batch: gamma, ema and mbstd keep their preset values.
        spec["mb"] = batch
        spec["ref_gpus"] = gpus
    if batch_gpu is None:
        batch_gpu = max(spec["mb"] // spec["ref_gpus"], 1)
    if spec["mb"] % gpus != 0 or (spec["mb"] // gpus) % batch_gpu != 0:
        raise dnnlib.util.UserError(f"--batch: {spec['mb']} must be a multiple of --gpus ({gpus}) times --batch-gpu "
                                    f"({batch_gpu}); change --batch or --batch-gpu")
    if mbstd_group is not None:
        spec["mbstd"] = mbstd_group
    spec["mbstd"] = min(spec["mbstd"], batch_gpu)
    if spec["mbstd"] < 1 or batch_gpu % spec["mbstd"] != 0:
        raise dnnlib.util.UserError(f"--mbstd-group: {spec['mbstd']} must divide --batch-gpu ({batch_gpu})")
    if gamma is not None:
        spec["gamma"] = gamma
    if kimg is not None:
        spec["kimg"] = kimg
    if map is not None:
        spec["map"] = map

    channel_base = int(spec["fmaps"] * 32768) if cbase is None else cbase
    channel_max = 512 if cmax is None else cmax
    fp16 = dict(num_fp16_res=0, conv_clamp=None) if fp32 else dict(num_fp16_res=4, conv_clamp=256)
    c.G_kwargs = dnnlib.EasyDict(class_name="training.networks.Generator", z_dim=512, w_dim=512,
                                 aspect_ratio=list(dataset_aspect),
                                 mapping_kwargs=dnnlib.EasyDict(num_layers=spec["map"]),
                                 synthesis_kwargs=dnnlib.EasyDict(channel_base=channel_base, channel_max=channel_max,
                                                                  **fp16))
    c.D_kwargs = dnnlib.EasyDict(class_name="training.networks.Discriminator", architecture="resnet",
                                 channel_base=channel_base, channel_max=channel_max, aspect_ratio=list(dataset_aspect),
                                 block_kwargs=dnnlib.EasyDict(), mapping_kwargs=dnnlib.EasyDict(),
                                 epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=spec["mbstd"]), **fp16)
    if nhwc:
        c.G_kwargs.synthesis_kwargs.fp16_channels_last = True
        c.D_kwargs.block_kwargs.fp16_channels_last = True
    fine_tune = False
    if resume is not None:
        explicit = {key: (value, value) for key, value in [("cbase", cbase), ("cmax", cmax), ("map", map)]
                    if value is not None}
        if typed_aspect is not None:
            explicit[typed_aspect[0]] = typed_aspect[1:]
        fine_tune = _start_from_checkpoint(c, resume, shape, explicit, fp32=fp32, nhwc=nhwc, freezed=freezed,
                                           mbstd_group=spec["mbstd"] if mbstd_group is not None else None,
                                           batch_gpu=batch_gpu)
    if freezed is not None:
        freeze_d.set_frozen_layers(c.D_kwargs, freezed, resolution)

    # Adam with beta1 = 0 and the lazy-regularisation intervals of the StyleGAN2 paper (appendix B).
    c.G_opt_kwargs = dnnlib.EasyDict(class_name="torch.optim.Adam", lr=spec["lrate"] if glr is None else glr,
                                     betas=[0, 0.99], eps=1e-8)
    c.D_opt_kwargs = dnnlib.EasyDict(class_name="torch.optim.Adam", lr=spec["lrate"] if dlr is None else dlr,
                                     betas=[0, 0.99], eps=1e-8)
    c.loss_kwargs = dnnlib.EasyDict(class_name="training.loss.StyleGAN2Loss", r1_gamma=spec["gamma"],
                                    style_mixing_prob=0.9, pl_weight=2, pl_batch_shrink=2, pl_decay=0.01,
                                    pl_no_weight_grad=True)
    c.G_reg_interval = 4
    c.D_reg_interval = 16

    c.total_kimg = spec["kimg"]
    c.batch_size = spec["mb"]
    c.batch_gpu = batch_gpu
    c.ema_kimg = spec["ema"]
    # Fine-tuning as in StyleGAN2-ADA's transfer learning: no G_ema ramp-up, faster ADA (below).
    c.ema_rampup = None if fine_tune else spec["ramp"]
    c.fine_tune = fine_tune
    c.kimg_per_tick = tick
    c.image_snapshot_ticks = c.network_snapshot_ticks = snap
    c.random_seed = seed
    c.num_gpus = gpus
    c.metrics = parse_metrics(metrics)
    c.metric_kwargs = dnnlib.EasyDict(metric_kwargs or {})
    detectors = {kind: path for kind, path in [("inception", detector), ("vgg16", vgg16)] if path}
    if detectors:
        c.metric_kwargs.detectors = detectors
    if ref_stats is not None:
        from metrics import reference_stats
        c.metric_kwargs.ref_stats = reference_stats.resolve(ref_stats)
    c.grid_size = list(grid) if grid is not None else None
    c.data_loader_kwargs = dnnlib.EasyDict(num_workers=workers, prefetch_factor=2 if workers > 0 else None)
    c.cudnn_benchmark = not nobench
    c.allow_tf32 = bool(allow_tf32)

    # Augmentation (ADA paper): --aug=ada adapts p towards the target, --aug=fixed keeps --p.
    if aug is None:
        aug = "noaug" if cfg == "shhq" else "ada"
    if aug not in AUG_MODES:
        raise dnnlib.util.UserError(f"--aug: unknown mode '{aug}'; choose one of {', '.join(AUG_MODES)}")
    if p is not None and aug != "fixed":
        raise dnnlib.util.UserError("--p: only applies with --aug=fixed")
    if target is not None and aug != "ada":
        raise dnnlib.util.UserError("--target: only applies with --aug=ada")
    c.augment_kwargs = None
    c.augment_p = 0.0
    c.ada_target = None
    if aug != "noaug":
        from training import augment
        c.augment_kwargs = augment.augpipe_kwargs(augpipe)
        if aug == "fixed":
            c.augment_p = 0.2 if p is None else float(p)
            if not 0 <= c.augment_p <= 1:
                raise dnnlib.util.UserError(f"--p: {p} is not a probability in [0, 1]")
        else:
            c.ada_target = 0.6 if target is None else float(target)
            c.ada_kimg = ada_kimg if ada_kimg is not None else (100 if fine_tune else 500)
            if not 0 <= c.ada_target <= 1:
                raise dnnlib.util.UserError(f"--target: {target} must lie in [0, 1]")

    if device not in (None, "cpu", "cuda"):
        raise dnnlib.util.UserError(f"--device: '{device}' is not cpu or cuda")
    c.device_type = device
    c.resume_pkl = resume
    c.max_minutes = max_minutes

    desc = f"{name}-{cfg}-gpus{gpus:d}-batch{c.batch_size:d}-gamma{spec['gamma']:g}"
    if cond:
        desc += "-cond"
    if mirror:
        desc += "-mirror"
    if aug != "noaug":
        desc += f"-{aug}-{augpipe}" + (f"-p{c.augment_p:g}" if aug == "fixed" else "")
    if resume is not None:
        desc += "-resume"
    if freeze_d.frozen_layers(c.D_kwargs):
        desc += f"-freezed{freeze_d.frozen_layers(c.D_kwargs):d}"
    return c, desc
