"""The .pkl checkpoint format of the StyleGAN2-ADA ecosystem: reading it safely, and writing it atomically.

A checkpoint is a pickled dict of persistent network objects (see torch_utils/persistence.py). It is read with
the restricted unpickler (unpickler.py), which never runs the embedded module source; each network's record is
then checked field by field and walked into named tensors, and one of this package's classes is rebuilt from
its class name and constructor arguments (rebuild.py). `allow_code=True` unpickles a file you trust with the
full pickle machinery instead (which executes its embedded code), e.g. a network class this package does not know.
"""
import copy
import os
import pickle

import torch

import dnnlib
from training.checkpoint import unpickler
from training.checkpoint.contents import CHECKPOINT_KEYS, NETWORK_KEYS, CheckpointError, check_plain_entries, quote
from training.checkpoint.rebuild import rebuild_network

MAX_MODULE_DEPTH = 32    # Submodule nesting of one network (a real generator has about 5 levels).

# ----------------------------------------------------------------------------
# Records: what the restricted unpickler gives for each network.

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
            raise ValueError(f"'{what}' ({quote(record.class_name)}) has {field} that is not {expected}")
    for field in ("_parameters", "_buffers", "_modules", "_init_kwargs"):
        if not all(isinstance(key, str) for key in (record.state.get(field) or {})):
            raise ValueError(f"'{what}' ({quote(record.class_name)}) has a {field} key that is not a name")


def _walk_records(record, what):
    """(dotted prefix, record) of a network and all its submodules, each checked; no sharing, no cycles."""
    seen = set()
    work = [("", record, 0)]
    while work:
        prefix, node, depth = work.pop()
        where = f"{what}.{prefix[:-1]}" if prefix else what
        if id(node) in seen:
            raise ValueError(f"'{quote(where)}' appears twice in one network (a shared or cyclic submodule)")
        if depth > MAX_MODULE_DEPTH:
            raise ValueError(f"'{quote(where, 120)}' nests submodules more than {MAX_MODULE_DEPTH} deep")
        seen.add(id(node))
        _check_record_fields(node, where)
        yield prefix, node
        for name, child in reversed(list((node.state.get("_modules") or {}).items())):
            if child is None:
                continue
            if not isinstance(child, unpickler.PersistentRecord):
                raise ValueError(f"submodule '{quote(prefix + name)}' of '{what}' is not a persistent network "
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
                    raise ValueError(f"'{quote(prefix + name)}' of '{what}' is not a tensor")
                tensors[prefix + name] = tensor
    return tensors


def _rebuild(record, key, force_fp16):
    if not isinstance(record, unpickler.PersistentRecord):
        raise ValueError(f"'{key}' is not a persistent network object")
    return rebuild_network(record.class_name, record.state.get("_init_args") or (),
                           record.state.get("_init_kwargs") or {}, _record_tensors(record, key), key, force_fp16,
                           training=record.state.get("training", False))


# ----------------------------------------------------------------------------
# Reading and writing.

def _unpickle(f, name, allow_code):
    """The file's dict, with the keys it lacks set to None; any failure is a CheckpointError naming the file."""
    try:
        data = pickle.load(f) if allow_code else unpickler.RestrictedUnpickler(f).load()
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
    return result


def read_checkpoint(f, name, force_fp16=False, allow_code=False):
    """The checkpoint dict of an open .pkl file, its networks rebuilt and its other entries checked (`name` is
    the file as error messages show it). With `allow_code`, the file's own objects, as pickle makes them."""
    if allow_code:
        return _unpickle(f, name, allow_code=True)
    result = _unpickle(unpickler.scan_checkpoint(f, name), name, allow_code=False)
    try:
        for key in NETWORK_KEYS:
            if result[key] is not None:
                result[key] = _rebuild(result[key], key, force_fp16)
    except ValueError as err:
        raise CheckpointError(f"{name}: {err}") from None
    for key, value in result.items():
        if isinstance(value, unpickler.PersistentRecord):
            raise CheckpointError(f"{name}: '{quote(key)}' holds a network object of class "
                                  f"{quote(value.class_name)} that this package does not rebuild")
    check_plain_entries(result, name)
    return result


def save_network_pkl(path, data):
    """Write a checkpoint dict atomically (temporary file, then rename), in the persistent format."""
    payload = dict(data)
    for key, value in payload.items():
        if isinstance(value, torch.nn.Module):
            payload[key] = copy.deepcopy(value).eval().requires_grad_(False).cpu()
    dnnlib.util.atomic_write(os.fspath(path), lambda f: pickle.dump(payload, f, protocol=4))
