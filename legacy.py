"""Reading and writing network checkpoints (pickles) of the StyleGAN2-ADA ecosystem, safely.

A checkpoint is a pickled dict of persistent network objects (see torch_utils/persistence.py).
`load_network_pkl` reads it with a restricted unpickler that admits only the few globals such a
file legitimately names, never runs the embedded module source, and rebuilds this package's own
classes from each object's `class_name` and constructor arguments; tensors are then loaded by name,
strictly. Pass `allow_code=True` to unpickle a file you trust with the full pickle machinery
(which executes its embedded code), e.g. a network class this package does not know.
"""
import collections
import copy
import io
import os
import pickle

import numpy as np
import torch

import dnnlib
import plain_weights
from dnnlib.util import UserError

CHECKPOINT_KEYS = ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs")


class CheckpointError(UserError):
    """A checkpoint file that cannot be read: names the file and what is wrong with it."""


# ----------------------------------------------------------------------------
# The restricted unpickler.

class _PersistentRecord:
    """What a persistent object unpickles to here: its meta dict, nothing executed."""

    def __init__(self, meta):
        if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
            raise pickle.UnpicklingError("malformed persistent object")
        if meta.get("version") != 6:
            raise pickle.UnpicklingError(f"unsupported persistent object version {meta.get('version')!r}")
        self.meta = meta

    @property
    def class_name(self):
        return self.meta["class_name"]

    @property
    def state(self):
        return self.meta["state"]


def _load_storage_from_bytes(data):
    # The original global decodes with a full unpickler; decode with torch's weights-only one instead.
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage is not a byte string")
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise pickle.UnpicklingError("tensor without a storage")
    if backward_hooks:
        raise pickle.UnpicklingError("tensor with backward hooks")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
                                          collections.OrderedDict())


def _rebuild_parameter(data, requires_grad, backward_hooks=None):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter without a tensor")
    if backward_hooks:
        raise pickle.UnpicklingError("parameter with backward hooks")
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


_PLAIN_DTYPE_KINDS = "biufc"  # bool, integers, floats, complex: nothing that holds Python objects


def _numpy_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not allowed")
    dtype = np.dtype(spec)
    if dtype.kind not in _PLAIN_DTYPE_KINDS:
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not allowed")
    return dtype


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in _PLAIN_DTYPE_KINDS or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalar of a type that is not allowed")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


_ALLOWED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _PersistentRecord,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): dnnlib.EasyDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,   # numpy 1.x
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,  # numpy 2.x
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"it names the global '{module}.{name}', which does not belong in a "
                                         f"network checkpoint (refused without running it)")
        return target


# ----------------------------------------------------------------------------
# Rebuilding our classes from records.

def _known_classes():
    from training import networks
    classes = {name: getattr(networks, name) for name in (
        "Generator", "Discriminator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer",
        "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer", "DiscriminatorBlock", "DiscriminatorEpilogue",
        "MinibatchStdLayer")}
    try:
        from training import augment
        classes["AugmentPipe"] = augment.AugmentPipe
    except ImportError:
        pass
    return classes


def _record_tensors(record, prefix=""):
    """Walk a record's _parameters/_buffers/_modules into {dotted name: tensor}, like state_dict()."""
    state = record.state
    tensors = {}
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, tensor in (state.get(group) or {}).items():
            if tensor is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"'{prefix}{name}' is not a tensor")
            tensors[prefix + name] = tensor
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, _PersistentRecord):
            raise ValueError(f"submodule '{prefix}{name}' is not a persistent network object")
        tensors.update(_record_tensors(child, prefix + name + "."))
    return tensors


def _fp16_kwargs(class_name, kwargs):
    # As the original loader's force_fp16: float16 on the 4 highest resolutions, clamped activations.
    kwargs = copy.deepcopy(kwargs)
    if class_name == "Generator":
        kwargs.setdefault("synthesis_kwargs", {}).update(num_fp16_res=4, conv_clamp=256)
    elif class_name == "Discriminator":
        kwargs.update(num_fp16_res=4, conv_clamp=256)
    return kwargs


def _rebuild(record, key, force_fp16):
    if not isinstance(record, _PersistentRecord):
        raise ValueError(f"'{key}' is not a persistent network object")
    return rebuild_network(record.class_name, record.state.get("_init_args", ()), record.state.get("_init_kwargs", {}),
                           _record_tensors(record), key, force_fp16, training=record.state.get("training", False))


def rebuild_network(class_name, args, kwargs, tensors, key, force_fp16=False, training=False):
    """One of this package's network classes, built from a file's class name and constructor arguments (never
    imported by name), with its tensors loaded strictly. Shared by pickles and safetensors (plain weights)."""
    classes = _known_classes()
    cls = classes.get(class_name) if isinstance(class_name, str) else None
    if cls is None:
        raise ValueError(f"'{key}' is of class '{class_name}', which this package does not provide "
                         f"(load_network_pkl(..., allow_code=True) runs the file's own code, if you trust it)")
    args = tuple(args)
    kwargs = dict(kwargs)
    if force_fp16:
        kwargs = _fp16_kwargs(class_name, kwargs)
    try:
        module = cls(*args, **kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        raise ValueError(f"'{key}' ({class_name}) has constructor arguments this package cannot build: {err}")
    load_tensors_strict(module, tensors, key)
    module.train(bool(training))
    return module


def load_tensors_strict(module, tensors, what):
    """Copy `tensors` into `module` by name; any missing, unexpected or wrongly shaped tensor is an error."""
    own = dict(module.named_parameters())
    own.update(module.named_buffers())
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing:
        raise ValueError(f"'{what}' lacks tensor(s) {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        raise ValueError(f"'{what}' has unexpected tensor(s) {', '.join(unexpected[:5])}"
                         f"{' ...' if len(unexpected) > 5 else ''}")
    with torch.no_grad():
        for name, target in own.items():
            source = tensors[name]
            if tuple(source.shape) != tuple(target.shape):
                raise ValueError(f"'{what}' tensor '{name}' has shape {list(source.shape)}, "
                                 f"expected {list(target.shape)}")
            target.copy_(source)
            if isinstance(target, torch.nn.Parameter):
                target.requires_grad_(source.requires_grad)


# ----------------------------------------------------------------------------
# Public API.

def load_network_pkl(f, force_fp16=False, allow_code=False):
    """Read a checkpoint from an open binary file: dict with G, D, G_ema, augment_pipe, training_set_kwargs.

    A safetensors file (plain weights, see plain_weights.py) is recognised by its first bytes and read
    without any unpickling. Keys the file lacks come back as None; other keys of the file (e.g. training progress) are kept.
    """
    name = getattr(f, "name", "<checkpoint stream>")
    if plain_weights.is_safetensors(f):
        return _load_plain_weights(f, name, force_fp16)
    try:
        data = pickle.load(f) if allow_code else _RestrictedUnpickler(f).load()
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{name}: not a loadable network checkpoint: {err}") from None
    except EOFError:
        raise CheckpointError(f"{name}: the file is truncated (unexpected end of data); download it again") from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RuntimeError, UnicodeDecodeError,
            OverflowError, MemoryError) as err:
        raise CheckpointError(f"{name}: not a network checkpoint, or a damaged one ({type(err).__name__}: "
                              f"{err})") from None

    if not isinstance(data, dict) or not any(key in data for key in CHECKPOINT_KEYS):
        raise CheckpointError(f"{name}: not a network checkpoint (expected a dict with some of "
                              f"{', '.join(CHECKPOINT_KEYS)}; found {type(data).__name__})")
    result = dict(data)
    for key in CHECKPOINT_KEYS:
        result.setdefault(key, None)
    if allow_code:
        return result

    try:
        for key in ("G", "D", "G_ema", "augment_pipe"):
            if result[key] is not None:
                result[key] = _rebuild(result[key], key, force_fp16)
    except ValueError as err:
        raise CheckpointError(f"{name}: {err}") from None
    for key, value in result.items():
        if isinstance(value, _PersistentRecord):
            raise CheckpointError(f"{name}: '{key}' holds a network object of class {value.class_name} "
                                  f"that this package does not rebuild")
    tsk = result["training_set_kwargs"]
    if tsk is not None and not isinstance(tsk, dnnlib.EasyDict):
        result["training_set_kwargs"] = dnnlib.EasyDict(tsk)
    return result


def _load_plain_weights(f, name, force_fp16):
    """A safetensors checkpoint (plain_weights.py): the dict and the checks of a pickle, without unpickling."""
    try:
        config, tensors = plain_weights.read_plain_weights(f)
        result = {key: None for key in CHECKPOINT_KEYS}
        for key, spec in config["networks"].items():
            result[key] = rebuild_network(spec["class_name"], spec.get("init_args", []), spec.get("init_kwargs", {}),
                                          tensors[key], key, force_fp16, training=spec.get("training", False))
    except ValueError as err:
        raise CheckpointError(f"{name}: {err}") from None
    if config.get("training_set_kwargs") is not None:
        result["training_set_kwargs"] = dnnlib.EasyDict(config["training_set_kwargs"])
    return result


def load_checkpoint(url_or_path, sha256=None, verbose=True, **kwargs):
    """Open a path or URL (.pkl or .safetensors; `sha256` checked first) and return the whole checkpoint dict
    (load_network_pkl's: G, D, G_ema, augment_pipe, training_set_kwargs, and any other keys of the file)."""
    with dnnlib.util.open_url(url_or_path, sha256=sha256, verbose=verbose) as f:
        return load_network_pkl(f, **kwargs)


def load_network(url_or_path, key="G_ema", device=None, sha256=None, **kwargs):
    """Open a path or URL (.pkl or .safetensors; `sha256` checked first) and return one network from the
    checkpoint (default G_ema), ready to run. For the whole dict, see load_checkpoint."""
    net = load_checkpoint(url_or_path, sha256=sha256, **kwargs)[key]
    if net is None:
        raise CheckpointError(f"{url_or_path}: the checkpoint holds no '{key}'")
    net = net.eval().requires_grad_(False)
    return net.to(device) if device is not None else net


def save_network_pkl(path, data):
    """Write a checkpoint dict atomically (temporary file, then rename), in the persistent format."""
    payload = dict(data)
    for key, value in payload.items():
        if isinstance(value, torch.nn.Module):
            payload[key] = copy.deepcopy(value).eval().requires_grad_(False).cpu()
    dnnlib.util.atomic_write(os.fspath(path), lambda f: pickle.dump(payload, f, protocol=4))
