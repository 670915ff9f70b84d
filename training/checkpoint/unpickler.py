"""The restricted unpickler of .pkl checkpoints: the few globals such a file legitimately names, each rebuilt
without running code, and the replay of the pickle's opcodes on placeholders (pickle_scan) before anything is
built: no hash bombs, deep nesting or memo tricks.

A persistent network object unpickles to a PersistentRecord (its meta dict, nothing executed); tensor storages
are decoded by torch's weights-only unpickler after their structure and size are checked.
"""
import collections
import io
import pickle

import numpy as np
import torch

import dnnlib
from training.checkpoint import pickle_scan
from training.checkpoint.contents import CheckpointError, quote

class PersistentRecord:
    """What a persistent object unpickles to here: its meta dict, nothing executed."""

    def __init__(self, meta):
        if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
            raise pickle.UnpicklingError("malformed persistent object")
        if meta.get("version") != 6:
            raise pickle.UnpicklingError(f"unsupported persistent object version {quote(meta.get('version'))}")
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
        raise pickle.UnpicklingError(f"numpy dtype {quote(spec, 20)} is not allowed")
    try:
        dtype = np.dtype(spec, copy=True)  # A copy: the BUILD that follows must not alter numpy's own dtype.
    except TypeError:
        raise pickle.UnpicklingError(f"numpy dtype {quote(spec, 20)} is not allowed") from None
    if dtype.kind not in _PLAIN_DTYPE_KINDS:
        raise pickle.UnpicklingError(f"numpy dtype {quote(spec, 20)} is not allowed")
    return dtype


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in _PLAIN_DTYPE_KINDS or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalar of a type that is not allowed")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


ALLOWED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentRecord,
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


# How pickle_scan treats each admitted global while it replays a checkpoint's opcodes.
_GLOBAL_ROLES = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): pickle_scan.RECORD,
    ("collections", "OrderedDict"): pickle_scan.DICT,
    ("dnnlib.util", "EasyDict"): pickle_scan.DICT,
    ("builtins", "set"): pickle_scan.SET,
    ("builtins", "frozenset"): pickle_scan.SET,
    ("numpy", "dtype"): pickle_scan.STATEFUL,
}


def _global_role(module, name):
    if (module, name) not in ALLOWED_GLOBALS:
        return None
    return _GLOBAL_ROLES.get((module, name), pickle_scan.CALL)


def scan_checkpoint(f, name):
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


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"it names the global '{module}.{name}', which does not belong in a "
                                         f"network checkpoint (refused without running it)")
        return target

