"""Sane ranges for the constructor arguments of this package's networks, checked before anything is built.

A checkpoint names its network by class and constructor arguments, and the loader builds that
network before it copies the file's tensors in. Unchecked, a few hundred bytes could ask for a
20000x20000 layer or 300000 mapping layers. `check_arguments` refuses values outside these
ranges, so building costs at most what a real network costs:

  - resolutions: powers of two from 4 to 4096;
  - feature dimensions (z_dim, w_dim, c_dim, ...) and channels: 0 to 4096;
  - layer counts: up to 64; kernel sizes: 1 to 16; resampling factors: 1 to 8;
  - activations and architectures: the names this package implements;
  - every other number finite, every other value a plain scalar.

Within those ranges a network can still be far larger than the tensors its file holds; the
loader therefore builds it inside `AllocationBudget`, which refuses torch factory calls (randn,
zeros, ...) beyond a budget set by those tensors, before the memory is taken.
"""
import inspect
import math
import numbers

import numpy as np
import torch

from torch_utils.ops import bias_act

MAX_RESOLUTION = 4096
MAX_DIM = 4096
MAX_LAYERS = 64
MAX_KERNEL = 16
MAX_FACTOR = 8
MAX_CHANNEL_BASE = MAX_DIM * MAX_RESOLUTION
MAX_FILTER_TAPS = 16
MAX_MAGNITUDE = 1e6      # Learning-rate multipliers, augmentation strengths, clamps, ...
MAX_NESTING = 4          # Generator -> synthesis_kwargs -> (block) kwargs -> ...

RESOLUTIONS = {"img_resolution", "resolution"}
DIMS = {"z_dim", "c_dim", "w_dim", "cmap_dim", "embed_features", "layer_features", "in_features", "out_features",
        "img_channels", "mbstd_num_channels", "num_channels", "in_channels", "out_channels", "tmp_channels",
        "channel_max"}
COUNTS = {"num_layers": 1, "num_ws": 1, "num_fp16_res": 0, "freeze_layers": 0, "first_layer_idx": 0}
FLAGS = {"bias", "use_noise", "is_last", "use_fp16", "fp16_channels_last", "channels_last", "trainable", "square"}
ARCHITECTURES = ("orig", "skip", "resnet")
NESTED = {"mapping_kwargs", "synthesis_kwargs", "block_kwargs", "epilogue_kwargs", "layer_kwargs"}


class ArgumentError(ValueError):
    """A constructor argument outside its sane range; the message names it."""


def _integer(name, value, low, high, optional=True):
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= int(value) <= high:
        raise ArgumentError(f"{name}={_show(value)} is not an integer from {low} to {high}")


def _number(name, value, optional=True, positive=False):
    if value is None and optional:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)) and \
        abs(float(value)) <= MAX_MAGNITUDE and (float(value) > 0 or not positive)
    if not ok:
        raise ArgumentError(f"{name}={_show(value)} is not a finite number{' above 0' if positive else ''} "
                            f"of magnitude at most {MAX_MAGNITUDE:g}")


def _show(value):
    text = repr(value) if isinstance(value, (numbers.Number, str, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _resolution(name, value):
    _integer(name, value, 4, MAX_RESOLUTION, optional=False)
    if int(value) & (int(value) - 1):
        raise ArgumentError(f"{name}={value} is not a power of two")


def _numbers_list(name, value, max_len):
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= max_len:
        raise ArgumentError(f"{name} is not a list of 1 to {max_len} numbers")
    for item in value:
        if isinstance(item, (list, tuple)):  # A 2-D resampling filter.
            _numbers_list(name, item, max_len)
        else:
            _number(name, item, optional=False)


def _choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ArgumentError(f"{name}={_show(value)} is not one of {', '.join(choices)}")


def _aspect_ratio(name, value):
    if value is None:
        return
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ArgumentError(f"{name} is not a pair (height, width)")
    for item in value:
        _integer(name, item, 1, 4, optional=False)


def check_value(name, value, depth=0):
    """One constructor argument (nested *_kwargs dicts included) against its range."""
    if name in RESOLUTIONS:
        _resolution(name, value)
    elif name in DIMS:
        _integer(name, value, 0, MAX_DIM)
    elif name in COUNTS:
        _integer(name, value, COUNTS[name], MAX_LAYERS)
    elif name == "channel_base":
        _integer(name, value, 1, MAX_CHANNEL_BASE, optional=False)
    elif name == "kernel_size":
        _integer(name, value, 1, MAX_KERNEL, optional=False)
    elif name in ("up", "down"):
        _integer(name, value, 1, MAX_FACTOR, optional=False)
    elif name in ("mbstd_group_size", "group_size"):
        _integer(name, value, 1, MAX_DIM)
    elif name == "activation":
        _choice(name, value, tuple(bias_act.activation_funcs))
    elif name == "architecture":
        _choice(name, value, ARCHITECTURES)
    elif name in ("resample_filter", "imgfilter_bands"):
        _numbers_list(name, value, MAX_FILTER_TAPS)
    elif name == "conv_clamp":
        _number(name, value, positive=True)
    elif name == "aspect_ratio":
        _aspect_ratio(name, value)
    elif name in FLAGS:
        if not (value is None or isinstance(value, (bool, np.bool_)) or
                isinstance(value, numbers.Integral) and value in (0, 1)):
            raise ArgumentError(f"{name}={_show(value)} is not a boolean")
    elif name in NESTED:
        check_kwargs(name, value, depth + 1)
    elif not (value is None or isinstance(value, (str, bool)) and len(str(value)) <= 100):
        _number(name, value)  # Any other argument: a plain scalar (lr_multiplier, augmentation strengths, ...).


def check_kwargs(name, kwargs, depth=0):
    if depth > MAX_NESTING or not isinstance(kwargs, dict):
        raise ArgumentError(f"{name} is not a dict of arguments")
    for key, value in kwargs.items():
        if not isinstance(key, str):
            raise ArgumentError(f"{name} has a key that is not a name")
        check_value(key, value, depth)


def original_class(cls):
    """The class a persistent_class decorator wraps (its __init__ has the real signature)."""
    for base in cls.__mro__:
        if "__init__" in base.__dict__ and base.__init__.__code__.co_flags & inspect.CO_VARARGS == 0:
            return base
    return cls


def check_arguments(cls, args, kwargs):
    """{name: value} of the call cls(*args, **kwargs), every value in its range; ArgumentError otherwise."""
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise ArgumentError("the constructor arguments are not a tuple and a dict")
    if not all(isinstance(key, str) for key in kwargs):
        raise ArgumentError("a constructor argument name is not a string")
    signature = inspect.signature(original_class(cls).__init__)
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError as err:
        raise ArgumentError(f"the arguments do not fit {cls.__name__}: {err}") from None
    arguments = dict(list(bound.arguments.items())[1:])  # Without self.
    for name, value in arguments.items():
        param = signature.parameters[name]
        if param.kind == inspect.Parameter.VAR_KEYWORD:
            check_kwargs(name, value)
        elif param.kind == inspect.Parameter.VAR_POSITIONAL:
            raise ArgumentError(f"{cls.__name__} takes no extra positional arguments")
        else:
            check_value(name, value)
    return arguments


# ----------------------------------------------------------------------------
# Building within the size of the file's own tensors.

def _requested_elements(func, args, kwargs):
    """Elements a torch factory call will allocate, from its size arguments (before it runs)."""
    if func is torch.eye:
        rows = kwargs.get("n", args[0] if args else 0)
        cols = kwargs.get("m", args[1] if len(args) > 1 and isinstance(args[1], numbers.Integral) else rows)
        return max(int(rows), 0) * max(int(cols), 0)
    size = kwargs.get("size", args[0] if args else ())
    if isinstance(size, numbers.Integral):  # torch.randn(3, 4) form.
        size = [arg for arg in args if isinstance(arg, numbers.Integral)]
    count = 1
    for side in size:
        count *= max(int(side), 0)
    return count


class AllocationBudget(torch.overrides.TorchFunctionMode):
    """While active, torch factory calls (randn, zeros, full, ...) may allocate at most `max_elements` in all.

    The loader builds a network inside this with the budget set by the tensors its file holds:
    arguments that ask for more than the file can fill are refused before the memory is taken.
    """

    FACTORIES = {torch.randn, torch.rand, torch.zeros, torch.ones, torch.empty, torch.full, torch.eye}

    def __init__(self, max_elements):
        super().__init__()
        self.max_elements = max_elements
        self.used = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES:
            self.used += _requested_elements(func, args, kwargs)
            if self.used > self.max_elements:
                raise ArgumentError(f"building it would allocate more than {self.max_elements} values, more than "
                                    "the tensors stored for it")
        return func(*args, **kwargs)
