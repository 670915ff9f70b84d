"""Networks from what a file says of them, in any format: one of this package's classes looked up by its name
(never imported by name), constructor arguments checked against network_limits and built within an allocation
budget, then every tensor loaded by name and shape, strictly."""
import copy

import torch

from training import augment
from training import networks
from training.checkpoint import network_limits
from training.checkpoint.contents import check_entry_class, quote

# The classes a checkpoint may name, by the class name it records.
KNOWN_CLASSES = {name: getattr(networks, name) for name in (
    "Generator", "Discriminator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer",
    "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer", "DiscriminatorBlock", "DiscriminatorEpilogue",
    "MinibatchStdLayer")}
KNOWN_CLASSES["AugmentPipe"] = augment.AugmentPipe
BUILD_SLACK_ELEMENTS = 1 << 22  # Allocations beyond the file's tensors a build may make (filters, temporaries).


def network_tensors(net):
    """Every parameter and buffer by name: what load_tensors_strict expects back, and what plain weights store."""
    tensors = dict(net.named_parameters())
    tensors.update(net.named_buffers())
    return tensors


def _build_within_budget(cls, args, kwargs, tensors, what, class_name):
    """cls(*args, **kwargs) after range checks, allocating at most about what the file's tensors hold."""
    budget = 2 * sum(t.numel() for t in tensors.values()) + BUILD_SLACK_ELEMENTS
    try:
        network_limits.check_arguments(cls, args, kwargs)
        with network_limits.AllocationBudget(budget):
            return cls(*args, **kwargs)
    except network_limits.ArgumentError as err:
        raise ValueError(f"'{what}' ({quote(class_name)}) has a constructor argument out of range: {err}") from None
    except (TypeError, ValueError, AssertionError) as err:
        raise ValueError(f"'{what}' ({quote(class_name)}) has constructor arguments this package cannot build: "
                         f"{quote(str(err), 200)}") from None


def _fp16_kwargs(class_name, kwargs):
    # As the original loader's force_fp16: float16 on the 4 highest resolutions, clamped activations.
    kwargs = copy.deepcopy(kwargs)
    if class_name == "Generator":
        kwargs.setdefault("synthesis_kwargs", {}).update(num_fp16_res=4, conv_clamp=256)
    elif class_name == "Discriminator":
        kwargs.update(num_fp16_res=4, conv_clamp=256)
    return kwargs


def build_network(class_name, args, kwargs, tensors, key, force_fp16=False):
    """One of this package's network classes, built from a file's class name and constructor arguments (never
    imported by name), checked and within the allocation budget that the file's `tensors` allow; not loaded."""
    cls = KNOWN_CLASSES.get(class_name) if isinstance(class_name, str) else None
    if cls is None:
        raise ValueError(f"'{key}' is of class '{quote(class_name)}', which this package does not provide "
                         f"(load_network_pkl(..., allow_code=True) runs the file's own code, if you trust it)")
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict):
        raise ValueError(f"'{key}' ({quote(class_name)}) has constructor arguments that are not a list and a dict")
    args = tuple(args)
    kwargs = dict(kwargs)
    if force_fp16:
        kwargs = _fp16_kwargs(class_name, kwargs)
    return _build_within_budget(cls, args, kwargs, tensors, key, class_name)


def rebuild_network(class_name, args, kwargs, tensors, key, force_fp16=False, training=False):
    """build_network with the tensors loaded strictly. Shared by pickles and safetensors (plain weights)."""
    module = build_network(class_name, args, kwargs, tensors, key, force_fp16)
    load_tensors_strict(module, tensors, key)
    check_entry_class(key, class_name)  # after the checks above, which name what is wrong first
    module.train(bool(training))
    return module


def _compare_tensor_names(shapes, tensors, what):
    """`tensors` ({name: tensor}) must hold exactly the names of `shapes` ({name: shape}), with those shapes."""
    missing = sorted(set(shapes) - set(tensors))
    unexpected = sorted(quote(name) for name in set(tensors) - set(shapes))
    if missing:
        raise ValueError(f"'{what}' lacks tensor(s) {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        raise ValueError(f"'{what}' has unexpected tensor(s) {', '.join(unexpected[:5])}"
                         f"{' ...' if len(unexpected) > 5 else ''}")
    for name, shape in shapes.items():
        if tuple(tensors[name].shape) != tuple(shape):
            raise ValueError(f"'{what}' tensor '{name}' has shape {list(tensors[name].shape)}, expected {list(shape)}")


def load_tensors_strict(module, tensors, what):
    """Copy `tensors` into `module` by name; any missing, unexpected or wrongly shaped tensor is an error."""
    own = network_tensors(module)
    _compare_tensor_names({name: tuple(t.shape) for name, t in own.items()}, tensors, what)
    with torch.no_grad():
        for name, target in own.items():
            source = tensors[name]
            target.copy_(source)
            if isinstance(target, torch.nn.Parameter):
                target.requires_grad_(source.requires_grad)
