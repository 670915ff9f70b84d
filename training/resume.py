"""Starting a run from a checkpoint: exact resume of a snapshot, or fine-tuning from (partial) released weights.

Two halves, so that a bad combination fails before anything is written:
  - `network_options` (called by training/presets.py, before the run folder exists) reads the
    checkpoint and builds the run's G and D options from the constructor arguments stored in it,
    checked against the dataset and against the architecture options the user typed;
  - `load_weights` (called by the training loop) fills the freshly built networks, each from the
    best source the file has: G <- G, else G_ema; G_ema <- G_ema, else G; D <- D, else fresh; the
    augmentation probability p <- augment_pipe.

A snapshot of this package (with `progress` and all three networks) continues exactly; any other
checkpoint only provides weights ("fine-tuning": the released SHHQ pickles hold G_ema alone).
"""
import inspect
import os

import numpy as np

import dnnlib
from torch_utils import misc
from torch_utils import persistence
from training import freeze_d
from training import networks
from training.checkpoint.load import load_checkpoint

NETWORK_KEYS = ("G", "G_ema", "D")
# Filled in from the dataset by the training loop, so they never come from the file's options.
DATASET_KWARGS = ("c_dim", "img_resolution", "img_channels")
UserError = dnnlib.util.UserError
# stylegan2-ada-pytorch's --resume names for NVIDIA's downloads; this package has no such list.
ORIGINAL_RESUME_NAMES = ("ffhq256", "ffhq512", "ffhq1024", "celebahq256", "lsundog256")


# ----------------------------------------------------------------------------
# Reading the file.


def resolve_resume_option(text):
    """--resume as typed -> an existing path (file or run folder) or a URL, or None for no resume.

    'noresume' is stylegan2-ada-pytorch's way of saying none; its named downloads are refused clearly.
    """
    if text is None or text == "noresume":
        return None
    if dnnlib.util.is_url(text, allow_file_urls=True):
        return text
    if not os.path.exists(text):
        if text in ORIGINAL_RESUME_NAMES:
            raise UserError(f"--resume={text} is one of stylegan2-ada-pytorch's named downloads, which this package "
                            "does not have; download the pickle and give its path or URL")
        raise UserError(f"--resume: {text} does not exist; give a snapshot .pkl or a run folder")
    return text


def read_checkpoint(path):
    """The checkpoint dict (training.checkpoint.load); a file without G, G_ema or D is an error naming it."""
    data = load_checkpoint(path)
    if all(data.get(key) is None for key in NETWORK_KEYS):
        raise UserError(f"--resume: {path} holds none of G, G_ema, D (nothing to start from); give a network "
                        "checkpoint")
    return data


def is_exact(data):
    """True when the file can continue a run exactly: training progress and all three networks."""
    return data.get("progress") is not None and all(data.get(key) is not None for key in NETWORK_KEYS)


def sources(data):
    """{'G': key, 'G_ema': key, 'D': key} naming the file entry each network starts from (None = fresh)."""
    def first(*keys):
        return next((key for key in keys if data.get(key) is not None), None)
    return {"G": first("G", "G_ema"), "G_ema": first("G_ema", "G"), "D": first("D")}


def describe_sources(data, augment_pipe_used):
    """The one log line saying where each network comes from, e.g. 'G <- G_ema (no G in file), D: fresh ...'."""
    parts = []
    for name, src in sources(data).items():
        if src == name:
            parts.append(f"{name} <- {src}")
        elif src is not None:
            parts.append(f"{name} <- {src} (no {name} in file)")
        else:
            parts.append(f"{name}: fresh (no {'D' if name == 'D' else 'G or G_ema'} in file)")
    if augment_pipe_used:
        has_pipe = data.get("augment_pipe") is not None
        parts.append("augment p <- augment_pipe" if has_pipe else "augment p: fresh (no augment_pipe in file)")
    return ", ".join(parts)


# ----------------------------------------------------------------------------
# Network options from the constructor arguments stored in the file.


def _plain(value, where):
    """A JSON-friendly copy of a constructor argument (dicts, lists, numbers, strings); anything else is refused."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item, where) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _plain(item, f"{where}.{key}") for key, item in value.items()}
    raise UserError(f"--resume: the constructor argument {where} is a {type(value).__name__}, which cannot be "
                    "reused to build the network")


def _signature(cls):
    # A persistent class wraps the original, whose __init__ carries the real parameter list.
    return inspect.signature(cls.__mro__[1] if persistence.is_persistent(cls) else cls)


def constructor_kwargs(module, what):
    """All constructor arguments of a loaded network, as plain keyword arguments (positional ones named)."""
    bound = _signature(type(module)).bind(*module.init_args, **module.init_kwargs)
    return {key: _plain(value, f"{what}.{key}") for key, value in bound.arguments.items()}


def _default(cls, name):
    return _signature(cls).parameters[name].default


def architecture(kwargs, kind):
    """The architecture options (cbase, cmax, aspect, and map for G) that a network's constructor arguments give."""
    if kind == "G":
        cls, channels = networks.SynthesisNetwork, kwargs.get("synthesis_kwargs", {})
    else:
        cls, channels = networks.Discriminator, kwargs
    arch = dict(cbase=channels.get("channel_base", _default(cls, "channel_base")),
                cmax=channels.get("channel_max", _default(cls, "channel_max")),
                aspect=networks.resolve_aspect_ratio(kwargs.get("aspect_ratio"), kwargs.get("square")))
    if kind == "G":
        arch["map"] = kwargs.get("mapping_kwargs", {}).get("num_layers", _default(networks.MappingNetwork,
                                                                                  "num_layers"))
    return arch


# What each architecture option is called in messages, and which option --square stands for.
ARCH_LABELS = {"cbase": "channel base", "cmax": "max channels", "map": "mapping layers", "aspect": "aspect H:W"}
OPTION_ARCH = {"cbase": "cbase", "cmax": "cmax", "map": "map", "aspect": "aspect", "square": "aspect"}


def check_explicit_options(path, file_kwargs, explicit):
    """An architecture option that contradicts the file is an error naming both values.

    `file_kwargs` maps 'G'/'D' to the file's constructor arguments; `explicit` maps the options the
    user typed (cbase, cmax, map, aspect, square) to (text as typed, value), aspects as (H, W).
    """
    for kind, kwargs in file_kwargs.items():
        arch = architecture(kwargs, kind)
        for option, (typed, value) in explicit.items():
            key = OPTION_ARCH[option]
            if key in arch and arch[key] != value:
                theirs = f"{arch[key][0]}:{arch[key][1]}" if key == "aspect" else arch[key]
                raise UserError(f"--{option}={typed} contradicts {path}: its {kind} has {ARCH_LABELS[key]} {theirs}; "
                                f"omit --{option} (the checkpoint sets the architecture)")


def check_dataset(path, kwargs, kind, dataset):
    """The dataset must have the size, channels and labels of the file's network."""
    aspect = architecture(kwargs, kind)["aspect"]
    height, width = networks.shape_at(kwargs["img_resolution"], aspect)
    if (dataset.height, dataset.width) != (height, width):
        raise UserError(f"--data: {dataset.path} has {dataset.height}x{dataset.width} images (HxW), but {path} "
                        f"expects {height}x{width} (H:W {aspect[0]}:{aspect[1]}); make the dataset at that size "
                        f"(dataset_tool.py --height={height} --width={width})")
    if dataset.channels != kwargs["img_channels"]:
        raise UserError(f"--data: {dataset.path} has {dataset.channels}-channel images, but {path} expects "
                        f"{kwargs['img_channels']}-channel ones")
    if dataset.label_dim != kwargs["c_dim"]:
        if kwargs["c_dim"] == 0:
            raise UserError(f"--cond: {path} is unconditional, but the run has {dataset.label_dim} label values; "
                            "drop --cond")
        raise UserError(f"--cond: {path} is conditional with {kwargs['c_dim']} label values, the run has "
                        f"{dataset.label_dim}; use --cond=1 with a dataset.json of matching labels")


def _without_dataset_kwargs(kwargs):
    return {key: value for key, value in kwargs.items() if key not in DATASET_KWARGS}


def _apply_precision(kwargs, fp32, nhwc, kind):
    """--fp32 and --nhwc are performance choices and may differ from the file's."""
    layers = kwargs.setdefault("synthesis_kwargs", {}) if kind == "G" else kwargs
    if fp32:
        layers.update(num_fp16_res=0, conv_clamp=None)
    if nhwc:
        (layers if kind == "G" else kwargs.setdefault("block_kwargs", {}))["fp16_channels_last"] = True


def discriminator_like_generator(G_kwargs, preset_D_kwargs):
    """A fresh D's options: the preset's, with channels, precision and aspect taken from the file's G."""
    synthesis = G_kwargs.get("synthesis_kwargs", {})
    arch = architecture(G_kwargs, "G")
    D_kwargs = dnnlib.EasyDict(preset_D_kwargs)
    D_kwargs.update(channel_base=arch["cbase"], channel_max=arch["cmax"], aspect_ratio=list(arch["aspect"]),
                    num_fp16_res=synthesis.get("num_fp16_res", 0), conv_clamp=synthesis.get("conv_clamp"))
    return D_kwargs


def network_options(path, data, dataset, explicit, preset_G_kwargs, preset_D_kwargs, fp32=False, nhwc=False):
    """(G_kwargs, D_kwargs) for a run that starts from `data`, the checkpoint read from `path`.

    G and D are built with the constructor arguments stored in the file where it has them; a
    network the file lacks follows the preset (a fresh D matched to the file's G). `dataset` has
    path, height, width, channels and label_dim; `explicit` holds the architecture options the user
    typed (see check_explicit_options).
    """
    file_kwargs = {}
    if sources(data)["G"] is not None:
        file_kwargs["G"] = constructor_kwargs(data[sources(data)["G"]], sources(data)["G"])
    if data.get("D") is not None:
        file_kwargs["D"] = constructor_kwargs(data["D"], "D")
    check_explicit_options(path, file_kwargs, explicit)
    for kind, kwargs in file_kwargs.items():
        check_dataset(path, kwargs, kind, dataset)
        _apply_precision(kwargs, fp32, nhwc, kind)
    G_kwargs = preset_G_kwargs
    if "G" in file_kwargs:
        G_kwargs = dnnlib.EasyDict(class_name="training.networks.Generator",
                                   **_without_dataset_kwargs(file_kwargs["G"]))
    if "D" not in file_kwargs:
        return G_kwargs, discriminator_like_generator(G_kwargs, preset_D_kwargs)
    return G_kwargs, dnnlib.EasyDict(class_name="training.networks.Discriminator",
                                     **_without_dataset_kwargs(file_kwargs["D"]))


# ----------------------------------------------------------------------------
# Filling the networks of a run (inside the training loop).


def check_fit(src, dst, what):
    """Every tensor of `dst` must exist in `src` with the same shape, and `src` must have no others."""
    src_tensors = dict(misc.named_params_and_buffers(src))
    dst_names = set()
    for name, tensor in misc.named_params_and_buffers(dst):
        dst_names.add(name)
        if name not in src_tensors:
            raise UserError(f"--resume: {what} does not fit this run's network: it lacks tensor {name}; use a "
                            "checkpoint of the same architecture")
        if src_tensors[name].shape != tensor.shape:
            raise UserError(f"--resume: {what} does not fit this run's network: tensor {name} is "
                            f"{list(src_tensors[name].shape)} in the file, the run needs {list(tensor.shape)}")
    extra = [name for name in src_tensors if name not in dst_names]
    if extra:
        raise UserError(f"--resume: {what} does not fit this run's network: the file has tensor {extra[0]}, "
                        "which the run's network lacks")


def load_weights(path, nets, exact_allowed=True, log=print):
    """Read `path` and fill the run's networks; returns the file's `progress` for an exact resume, else None.

    `nets` maps G, G_ema, D and augment_pipe to the run's modules (augment_pipe may be None).
    """
    data = read_checkpoint(path)
    log(f"Resuming from {path}: {describe_sources(data, nets.get('augment_pipe') is not None)}")
    frozen = freeze_d.frozen_layers(nets["D"].init_kwargs)
    if frozen and data.get("D") is None:
        log(f"Note: D starts fresh, so its {frozen} frozen layers (--freezed) keep random weights; Freeze-D is "
            "meant for a pretrained D")
    for name, src in sources(data).items():
        if src is not None:
            check_fit(data[src], nets[name], f"{path} '{src}'")
            misc.copy_params_and_buffers(data[src], nets[name], require_all=True)
    if nets.get("augment_pipe") is not None and data.get("augment_pipe") is not None:
        nets["augment_pipe"].p.copy_(data["augment_pipe"].p)
    if not exact_allowed or data.get("progress") is None:
        return None
    if not is_exact(data):
        missing = [key for key in NETWORK_KEYS if data.get(key) is None]
        log(f"Note: {path} has training progress but no {', '.join(missing)}; starting from its weights only")
        return None
    return data["progress"]
