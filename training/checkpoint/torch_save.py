"""Files written by torch.save (rosinality's .pt checkpoints and the like), read weights-only within this
package's loader bounds.

torch's weights-only unpickler builds tensors, dicts, lists and numbers and nothing else. Before it runs,
the file's pickle is replayed on placeholders (pickle_scan: no hash bombs, deep nesting or memo tricks) with
an allow-list of the globals such a checkpoint names, and the storage sizes it declares are checked against
the bytes the file holds, so a small file cannot make torch allocate a large one. Both layouts are read: the
zip archive of torch >= 1.6 (its entries must be stored, not compressed), and the older single stream.
`argparse.Namespace` is admitted as plain data: rosinality's train.py saves its options as one.
"""
import argparse
import io
import pickle
import zipfile

import torch

from training.checkpoint import pickle_scan
from training.checkpoint.contents import CheckpointError

ZIP_MAGIC = b"PK\x03\x04"
# The first pickle of the pre-1.6 layout: protocol 2, then torch's magic number as an 80-bit long.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
MAX_ZIP_ENTRIES = 100_000
STORAGE_ELEMENT_BYTES = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1}

# How pickle_scan treats each global a torch.save checkpoint may name (anything else is refused).
_GLOBAL_ROLES = {
    ("torch._utils", "_rebuild_tensor_v2"): pickle_scan.CALL,
    ("torch._utils", "_rebuild_parameter"): pickle_scan.CALL,
    ("collections", "OrderedDict"): pickle_scan.DICT,
    ("argparse", "Namespace"): pickle_scan.DICT,  # created empty, then its attributes set from a dict
}


def _global_role(module, name):
    if module == "torch" and name in STORAGE_ELEMENT_BYTES:
        return pickle_scan.CALL  # a storage type, named inside a tensor's persistent id
    return _GLOBAL_ROLES.get((module, name))


def is_torch_save(f):
    """Whether a seekable binary file starts like a torch.save file (zip archive or the pre-1.6 stream); the
    position is left unchanged."""
    if not (hasattr(f, "seekable") and f.seekable()):
        return False
    position = f.tell()
    head = f.read(len(LEGACY_MAGIC))
    f.seek(position)
    return head.startswith(ZIP_MAGIC) or head == LEGACY_MAGIC


class _Opaque:
    """What every object becomes while the persistent ids are collected: it accepts anything, does nothing."""

    qualname = None

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass


class _StorageIdCollector(pickle.Unpickler):
    """Replays a pickle (already scanned) with opaque stand-ins for its globals, keeping the persistent ids."""

    def __init__(self, f):
        super().__init__(f)
        self.ids = []

    def find_class(self, module, name):
        return type(name, (_Opaque,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid):
        self.ids.append(pid)
        return _Opaque()


def _scan(f, size, what):
    try:
        pickle_scan.scan(f, size, _global_role, allow_persistent_ids=True)
    except pickle_scan.PickleScanError as err:
        raise ValueError(f"{what}: {err}") from None


def _declared_storage_bytes(pickle_bytes):
    """{storage key: bytes} that the tensors of a scanned pickle declare."""
    collector = _StorageIdCollector(io.BytesIO(pickle_bytes))
    collector.load()
    storages = {}
    for pid in collector.ids:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ValueError("a tensor with a malformed storage reference")
        type_name = getattr(pid[1], "qualname", None) or ""
        element_bytes = STORAGE_ELEMENT_BYTES.get(type_name.rpartition(".")[2])
        if element_bytes is None or not isinstance(pid[4], int) or pid[4] < 0:
            raise ValueError("a tensor with a malformed storage reference")
        storages[str(pid[2])] = pid[4] * element_bytes
    return storages


def _check_zip(f):
    """The archive's pickle is scanned; its entries are stored (no decompression bombs) and few."""
    with zipfile.ZipFile(f) as archive:
        entries = archive.infolist()
        if len(entries) > MAX_ZIP_ENTRIES:
            raise ValueError(f"a torch.save archive with more than {MAX_ZIP_ENTRIES} entries")
        if any(entry.compress_type != zipfile.ZIP_STORED for entry in entries):
            raise ValueError("a torch.save archive with compressed entries (torch writes them stored)")
        pickles = [entry for entry in entries if entry.filename.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError("a zip file without the one data.pkl of a torch.save archive")
        with archive.open(pickles[0]) as data:
            _scan(data, pickles[0].file_size, "data.pkl")
    # torch itself refuses a storage whose record is shorter than declared.


def _check_legacy(f):
    """The five pickles of the pre-1.6 stream are scanned, and the storages they declare fit in the file."""
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    main = None
    for index in range(5):  # magic number, protocol version, system info, the object, storage keys
        start = f.tell()
        _scan(f, size - start, "the pickled object")
        if index == 3:
            end = f.tell()
            f.seek(start)
            main = f.read(end - start)
    declared = sum(_declared_storage_bytes(main).values())
    if declared > size - f.tell():
        raise ValueError(f"its tensors declare {declared} bytes of storage, more than the file holds")


def load_torch_file(f, name):
    """The object in a torch.save file, read weights-only after the checks above; CheckpointError names `name`."""
    if not (hasattr(f, "seekable") and f.seekable()):
        f = io.BytesIO(f.read())
    start = f.tell()
    is_zip = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    f.seek(start)
    data = io.BytesIO(f.read()) if start else f
    try:
        if is_zip:
            _check_zip(data)
        else:
            _check_legacy(data)
        data.seek(0)
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(data, map_location="cpu", weights_only=True)
    except (ValueError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError) as err:
        message = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        raise CheckpointError(f"{name}: not a loadable torch.save checkpoint: {message}") from None
