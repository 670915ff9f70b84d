"""Reading and writing network checkpoints (pickles) of the StyleGAN2-ADA ecosystem, safely.

A checkpoint is a pickled dict of persistent network objects (see torch_utils/persistence.py).
`load_network_pkl` reads it with a restricted unpickler that admits only the few globals such a
file legitimately names, never runs the embedded module source, and rebuilds this package's own
classes from each object's `class_name` and constructor arguments; tensors are then loaded by name,
strictly. Pass `allow_code=True` to unpickle a file you trust with the full pickle machinery
(which executes its embedded code), e.g. a network class this package does not know.

Before anything is built the loader bounds the work a file can cause: the pickle's opcodes are
replayed on placeholders (dnnlib/pickle_scan.py: no hash bombs, deep nesting or memo tricks),
each persistent record is checked for its fields, constructor arguments must lie in sane ranges
(training/network_limits.py) and the build may allocate only about what the record's tensors hold,
and other entries (training_set_kwargs, progress, ...) must be plain data whose class names are this
package's own (dnnlib/plain_data.py).
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
from dnnlib import pickle_scan
from dnnlib import plain_data
from dnnlib.util import UserError, escape_text

CHECKPOINT_KEYS = ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs")
NETWORK_KEYS = plain_weights.NETWORK_KEYS  # ("G", "D", "G_ema", "augment_pipe")
# The only class names a checkpoint's plain-data entries may mention (e.g. training_set_kwargs.class_name).
DATA_CLASS_NAMES = ("training.dataset.ImageFolderDataset", "training.augment.AugmentPipe")
# The class each network entry must have: a file whose G_ema is, say, a FullyConnectedLayer is refused at load time.
ENTRY_CLASSES = {"G": "Generator", "G_ema": "Generator", "D": "Discriminator", "augment_pipe": "AugmentPipe"}
MAX_MODULE_DEPTH = 32    # Submodule nesting of one network (a real generator has about 5 levels).
BUILD_SLACK_ELEMENTS = 1 << 22  # Allocations beyond the file's tensors a build may make (filters, temporaries).


class CheckpointError(UserError):
    """A checkpoint file that cannot be read: names the file and what is wrong with it."""


def _quote(text, max_len=80):
    """A name read from a file, safe to print: control characters escaped, length bounded."""
    return escape_text(text if isinstance(text, str) else repr(text), max_len)


# ----------------------------------------------------------------------------
# The restricted unpickler.

class _PersistentRecord:
    """What a persistent object unpickles to here: its meta dict, nothing executed."""

    def __init__(self, meta):
        if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
            raise pickle.UnpicklingError("malformed persistent object")
        if meta.get("version") != 6:
            raise pickle.UnpicklingError(f"unsupported persistent object version {_quote(meta.get('version'))}")
        if not isinstance(meta.get("class_name"), str):
            raise pickle.UnpicklingError("a persistent object without a class_name")
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
    _check_storage_blob(bytes(data))
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


class _StorageIdReader(pickle.Unpickler):
    """Reads the persistent id of a storage blob's main pickle: globals come back as their names, nothing runs."""

    def find_class(self, module, name):
        return f"{module}.{name}"

    def persistent_load(self, pid):
        self.pid = pid


def _storage_blob_global_role(module, name):
    # A storage blob names only its storage type (torch.FloatStorage, ...), as data in its persistent id.
    return pickle_scan.CALL if module == "torch" and name.endswith("Storage") and name.isidentifier() else None


def _check_storage_blob(data):
    """A storage blob (torch's legacy format: five pickles, then raw bytes) of bounded structure and size.

    torch allocates the storage a blob declares before it reads the bytes, so the declared
    element count must fit in the blob itself.
    """
    if not data.startswith(b"\x80"):
        raise pickle.UnpicklingError("tensor storage is not in torch's legacy storage format")
    stream = io.BytesIO(data)
    pid_reader = None
    for index in range(5):  # Magic number, protocol, system info, the storage's persistent id, storage keys.
        start = stream.tell()
        try:
            pickle_scan.scan(stream, len(data) - start, _storage_blob_global_role, allow_persistent_ids=True)
        except pickle_scan.PickleScanError as err:
            raise pickle.UnpicklingError(f"tensor storage: {err}") from None
        if index == 3:
            pid_reader = _StorageIdReader(io.BytesIO(data[start:stream.tell()]))
            pid_reader.pid = None
            pid_reader.load()
    pid = pid_reader.pid
    if not (isinstance(pid, tuple) and len(pid) >= 5 and isinstance(pid[4], int) and 0 <= pid[4] <= len(data)):
        raise pickle.UnpicklingError("tensor storage declares more elements than it holds")


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
    if not isinstance(spec, str) or len(spec) > 8:
        raise pickle.UnpicklingError(f"numpy dtype {_quote(spec, 20)} is not allowed")
    try:
        dtype = np.dtype(spec, copy=True)  # A copy: the BUILD that follows must not alter numpy's own dtype.
    except TypeError:
        raise pickle.UnpicklingError(f"numpy dtype {_quote(spec, 20)} is not allowed") from None
    if dtype.kind not in _PLAIN_DTYPE_KINDS:
        raise pickle.UnpicklingError(f"numpy dtype {_quote(spec, 20)} is not allowed")
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


# How dnnlib.pickle_scan treats each admitted global while it replays a checkpoint's opcodes.
_GLOBAL_ROLES = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): pickle_scan.RECORD,
    ("collections", "OrderedDict"): pickle_scan.DICT,
    ("dnnlib.util", "EasyDict"): pickle_scan.DICT,
    ("builtins", "set"): pickle_scan.SET,
    ("builtins", "frozenset"): pickle_scan.SET,
    ("numpy", "dtype"): pickle_scan.STATEFUL,
}


def _global_role(module, name):
    if (module, name) not in _ALLOWED_GLOBALS:
        return None
    return _GLOBAL_ROLES.get((module, name), pickle_scan.CALL)


def _scan_checkpoint(f, name):
    """Refuse a hostile pickle structure before anything is built; returns a stream at the pickle's start."""
    if not (hasattr(f, "seekable") and f.seekable()):
        f = io.BytesIO(f.read())
    start = f.tell()
    size = f.seek(0, io.SEEK_END) - start
    f.seek(start)
    try:
        pickle_scan.scan(f, size, _global_role)
    except pickle_scan.PickleScanError as err:
        if "truncated" in str(err):
            raise CheckpointError(f"{name}: the file is truncated (unexpected end of data); download it again") \
                from None
        raise CheckpointError(f"{name}: not a loadable network checkpoint: {err}") from None
    f.seek(start)
    return f


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


_RECORD_FIELDS = {  # state field -> (accepted types, what it should be); a missing field counts as empty.
    "_parameters": (dict, "a dict of tensors"),
    "_buffers": (dict, "a dict of tensors"),
    "_modules": (dict, "a dict of submodules"),
    "_init_args": ((tuple, list), "a tuple of constructor arguments"),
    "_init_kwargs": (dict, "a dict of constructor arguments"),
    "_non_persistent_buffers_set": ((set, frozenset), "a set of names"),
    "training": (bool, "a boolean"),
}


def _check_record_fields(record, what):
    for field, (types, expected) in _RECORD_FIELDS.items():
        value = record.state.get(field)
        if value is not None and not isinstance(value, types):
            raise ValueError(f"'{what}' ({_quote(record.class_name)}) has {field} that is not {expected}")
    for field in ("_parameters", "_buffers", "_modules", "_init_kwargs"):
        if not all(isinstance(key, str) for key in (record.state.get(field) or {})):
            raise ValueError(f"'{what}' ({_quote(record.class_name)}) has a {field} key that is not a name")


def _walk_records(record, what):
    """(dotted prefix, record) of a network and all its submodules, each checked; no sharing, no cycles."""
    seen = set()
    work = [("", record, 0)]
    while work:
        prefix, node, depth = work.pop()
        where = f"{what}.{prefix[:-1]}" if prefix else what
        if id(node) in seen:
            raise ValueError(f"'{_quote(where)}' appears twice in one network (a shared or cyclic submodule)")
        if depth > MAX_MODULE_DEPTH:
            raise ValueError(f"'{_quote(where, 120)}' nests submodules more than {MAX_MODULE_DEPTH} deep")
        seen.add(id(node))
        _check_record_fields(node, where)
        yield prefix, node
        for name, child in reversed(list((node.state.get("_modules") or {}).items())):
            if child is None:
                continue
            if not isinstance(child, _PersistentRecord):
                raise ValueError(f"submodule '{_quote(prefix + name)}' of '{what}' is not a persistent network "
                                 "object")
            work.append((prefix + name + ".", child, depth + 1))


def _record_tensors(record, what="network"):
    """Walk a record's _parameters/_buffers/_modules into {dotted name: tensor}, like state_dict()."""
    tensors = {}
    for prefix, node in _walk_records(record, what):
        non_persistent = node.state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for name, tensor in (node.state.get(group) or {}).items():
                if tensor is None or (group == "_buffers" and name in non_persistent):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise ValueError(f"'{_quote(prefix + name)}' of '{what}' is not a tensor")
                tensors[prefix + name] = tensor
    return tensors


def _build_within_budget(cls, args, kwargs, tensors, what, class_name):
    """cls(*args, **kwargs) after range checks, allocating at most about what the file's tensors hold."""
    from training import network_limits
    budget = 2 * sum(t.numel() for t in tensors.values()) + BUILD_SLACK_ELEMENTS
    try:
        network_limits.check_arguments(cls, args, kwargs)
        with network_limits.AllocationBudget(budget):
            return cls(*args, **kwargs)
    except network_limits.ArgumentError as err:
        raise ValueError(f"'{what}' ({_quote(class_name)}) has a constructor argument out of range: {err}") from None
    except (TypeError, ValueError, AssertionError) as err:
        raise ValueError(f"'{what}' ({_quote(class_name)}) has constructor arguments this package cannot build: "
                         f"{_quote(str(err), 200)}") from None


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
    return rebuild_network(record.class_name, record.state.get("_init_args") or (),
                           record.state.get("_init_kwargs") or {}, _record_tensors(record, key), key, force_fp16,
                           training=record.state.get("training", False))


def rebuild_network(class_name, args, kwargs, tensors, key, force_fp16=False, training=False):
    """One of this package's network classes, built from a file's class name and constructor arguments (never
    imported by name), with its tensors loaded strictly. Shared by pickles and safetensors (plain weights)."""
    classes = _known_classes()
    cls = classes.get(class_name) if isinstance(class_name, str) else None
    if cls is None:
        raise ValueError(f"'{key}' is of class '{_quote(class_name)}', which this package does not provide "
                         f"(load_network_pkl(..., allow_code=True) runs the file's own code, if you trust it)")
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict):
        raise ValueError(f"'{key}' ({_quote(class_name)}) has constructor arguments that are not a list and a dict")
    args = tuple(args)
    kwargs = dict(kwargs)
    if force_fp16:
        kwargs = _fp16_kwargs(class_name, kwargs)
    module = _build_within_budget(cls, args, kwargs, tensors, key, class_name)
    load_tensors_strict(module, tensors, key)
    expected = ENTRY_CLASSES.get(key)
    if expected is not None and class_name != expected:  # after the checks above, which name what is wrong first
        raise ValueError(f"'{key}' is a {class_name}, not a {expected}; not a usable checkpoint (each of "
                         f"{', '.join(ENTRY_CLASSES)} must be the network its name says)")
    module.train(bool(training))
    return module


def _compare_tensor_names(shapes, tensors, what):
    """`tensors` ({name: tensor}) must hold exactly the names of `shapes` ({name: shape}), with those shapes."""
    missing = sorted(set(shapes) - set(tensors))
    unexpected = sorted(_quote(name) for name in set(tensors) - set(shapes))
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
    own = plain_weights.network_tensors(module)
    _compare_tensor_names({name: tuple(t.shape) for name, t in own.items()}, tensors, what)
    with torch.no_grad():
        for name, target in own.items():
            source = tensors[name]
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
    name = escape_text(str(getattr(f, "name", "<checkpoint stream>")))
    if plain_weights.is_safetensors(f):
        return _load_plain_weights(f, name, force_fp16)
    if not allow_code:
        f = _scan_checkpoint(f, name)
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
        for key in NETWORK_KEYS:
            if result[key] is not None:
                result[key] = _rebuild(result[key], key, force_fp16)
    except ValueError as err:
        raise CheckpointError(f"{name}: {err}") from None
    _check_plain_entries(result, name)
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
        result["training_set_kwargs"] = config["training_set_kwargs"]
    _check_plain_entries(result, name)
    return result


def _check_plain_entries(result, name):
    """Entries other than the networks (training_set_kwargs, progress, ...) become checked plain-data copies;
    training_set_kwargs an EasyDict, as the ecosystem's code reads it."""
    for key, value in list(result.items()):
        if key in NETWORK_KEYS:
            continue
        if isinstance(value, _PersistentRecord):
            raise CheckpointError(f"{name}: '{_quote(key)}' holds a network object of class "
                                  f"{_quote(value.class_name)} that this package does not rebuild")
        try:
            result[key] = plain_data.plain_copy(value, f"'{_quote(key)}'", allowed_class_names=DATA_CLASS_NAMES,
                                                allow_tensors=True)
        except plain_data.PlainDataError as err:
            raise CheckpointError(f"{name}: {err}") from None
    progress = result.get("progress")
    if isinstance(progress, dict) and progress.get("version") == 1:  # This package's format (training_state.py).
        from training import training_state
        problem = training_state.progress_problem(progress)
        if problem is not None:
            raise CheckpointError(f"{name}: the progress entry (training state) is damaged: {problem}")
    if result.get("training_set_kwargs") is not None:
        result["training_set_kwargs"] = dnnlib.EasyDict(result["training_set_kwargs"])


def load_checkpoint(url_or_path, sha256=None, verbose=True, **kwargs):
    """Open a path or URL (.pkl or .safetensors; `sha256` checked first) and return the whole checkpoint dict
    (load_network_pkl's: G, D, G_ema, augment_pipe, training_set_kwargs, and any other keys of the file)."""
    with dnnlib.util.open_url(url_or_path, sha256=sha256, verbose=verbose) as f:
        return load_network_pkl(f, **kwargs)


def load_network(url_or_path, key="G_ema", device=None, sha256=None, **kwargs):
    """Open a path or URL (.pkl or .safetensors; `sha256` checked first) and return one network from the
    checkpoint (default G_ema), ready to run. For the whole dict, see load_checkpoint."""
    return network_of(load_checkpoint(url_or_path, sha256=sha256, **kwargs), key, url_or_path, device)


def network_of(checkpoint, key, source, device=None):
    """One network of a loaded checkpoint dict, ready to run; a missing one is an error naming `source`."""
    net = checkpoint[key]
    if net is None:
        raise CheckpointError(f"{source}: the checkpoint holds no '{key}'")
    net = net.eval().requires_grad_(False)
    return net.to(device) if device is not None else net


def save_network_pkl(path, data):
    """Write a checkpoint dict atomically (temporary file, then rename), in the persistent format."""
    payload = dict(data)
    for key, value in payload.items():
        if isinstance(value, torch.nn.Module):
            payload[key] = copy.deepcopy(value).eval().requires_grad_(False).cpu()
    dnnlib.util.atomic_write(os.fspath(path), lambda f: pickle.dump(payload, f, protocol=4))
