"""Hostile and broken files for the tests: pickles assembled opcode by opcode, crafted checkpoints, images, zips,
and what loading them gives (run in a child process by helpers_bounds.measure)."""
import functools
import io
import os
import pickle
import struct
import sys
import zipfile
import zlib

import numpy as np

import dnnlib
import legacy
from training.dataset import ImageFolderDataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERSISTENT = ("torch_utils.persistence", "_reconstruct_persistent_obj")


# ----------------------------------------------------------------------------
# A tiny pickle assembler (protocol 4 opcodes, written by hand so nothing is ever built to make them).

class Asm:
    def __init__(self):
        self.out = bytearray(pickle.PROTO + bytes([4]))
        self.memo = 0

    def op(self, code, arg=b""):
        self.out += code + arg
        return self

    def text(self, value):
        data = value.encode("utf-8")
        return self.op(pickle.BINUNICODE, struct.pack("<I", len(data)) + data)

    def int(self, value):
        if 0 <= value < 2 ** 31:
            return self.op(pickle.BININT, struct.pack("<i", value))
        data = pickle.encode_long(value)
        return self.op(pickle.LONG1, bytes([len(data)]) + data)

    def memoize(self):
        self.op(pickle.MEMOIZE)
        self.memo += 1
        return self.memo - 1

    def get(self, index):
        return self.op(pickle.LONG_BINGET, struct.pack("<I", index))

    def global_(self, module, name):
        return self.text(module).text(name).op(pickle.STACK_GLOBAL)

    def value(self, obj):
        """Push a plain value (None, bool, int, str, list, tuple, dict) built from opcodes."""
        if obj is None:
            return self.op(pickle.NONE)
        if isinstance(obj, bool):
            return self.op(pickle.NEWTRUE if obj else pickle.NEWFALSE)
        if isinstance(obj, int):
            return self.int(obj)
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, tuple):
            self.op(pickle.MARK)
            for item in obj:
                self.value(item)
            return self.op(pickle.TUPLE)
        if isinstance(obj, list):
            self.op(pickle.EMPTY_LIST).op(pickle.MARK)
            for item in obj:
                self.value(item)
            return self.op(pickle.APPENDS)
        if isinstance(obj, dict):
            self.op(pickle.EMPTY_DICT).op(pickle.MARK)
            for key, item in obj.items():
                self.value(key)
                if callable(item):
                    item(self)  # A hand-written fragment that pushes one value.
                else:
                    self.value(item)
            return self.op(pickle.SETITEMS)
        raise TypeError(type(obj))

    def bytes(self):
        return bytes(self.out + pickle.STOP)


def hash_bomb(depth=60):
    """{t: None} where t = (t', t'), t' = (t'', t''), ... `depth` levels of shared tuples: hashing t takes 2**depth."""
    asm = Asm().op(pickle.EMPTY_DICT)
    asm.op(pickle.EMPTY_TUPLE)
    index = asm.memoize()
    asm.op(pickle.POP)
    for _ in range(depth):
        asm.get(index).get(index).op(pickle.TUPLE2)
        index = asm.memoize()
        asm.op(pickle.POP)
    return asm.get(index).op(pickle.NONE).op(pickle.SETITEM).bytes()


def shared_list_bomb(depth=60, marker=None):
    """A checkpoint whose training_set_kwargs hold [l, l] nested `depth` deep (json.dumps would expand it)."""
    asm = Asm()

    def bomb(a):
        a.op(pickle.EMPTY_LIST)
        index = a.memoize()
        a.op(pickle.POP)
        for _ in range(depth):
            a.op(pickle.EMPTY_LIST).op(pickle.MARK).get(index).get(index).op(pickle.APPENDS)
            index = a.memoize()
            a.op(pickle.POP)
        a.get(index)
    return asm.value({"training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset",
                                              "path": marker or "data.zip", "junk": bomb}}).bytes()


def deep_list(depth=5000):
    """{'training_set_kwargs': [[[...]]]} nested `depth` deep."""
    asm = Asm().op(pickle.EMPTY_DICT).text("training_set_kwargs")
    for _ in range(depth):
        asm.op(pickle.EMPTY_LIST)
    for _ in range(depth - 1):
        asm.op(pickle.APPEND)
    return asm.op(pickle.SETITEM).bytes()


def cyclic_list():
    """{'G_ema': l} with l = [l]."""
    asm = Asm().op(pickle.EMPTY_DICT).text("G_ema").op(pickle.EMPTY_LIST)
    index = asm.memoize()
    return asm.get(index).op(pickle.APPEND).op(pickle.SETITEM).bytes()


def memo_index_bomb():
    """Stores a value at memo index 2**32-1 (the C unpickler would size its memo table to match)."""
    return Asm().op(pickle.NONE).op(pickle.LONG_BINPUT, struct.pack("<I", 2 ** 32 - 1)).bytes()


def huge_declared_bytes():
    """A BINBYTES8 that declares 2**60 bytes and holds 4."""
    return bytes(Asm().out) + pickle.BINBYTES8 + struct.pack("<Q", 2 ** 60) + b"abcd"


def record(asm, class_name="FullyConnectedLayer", state=None, meta_extra=None):
    """Push a persistent record reconstruct({type, version, module_src, class_name, state})."""
    meta = {"type": "class", "version": 6, "module_src": "# placeholder", "class_name": class_name}
    meta.update(meta_extra or {})
    if class_name is None:
        del meta["class_name"]
    asm.global_(*PERSISTENT)
    asm.op(pickle.MARK)
    asm.value(dict(meta, state=_state_pusher(state if state is not None else {})))
    return asm.op(pickle.TUPLE).op(pickle.REDUCE)


def _state_pusher(state):
    full = {"training": False, "_parameters": {}, "_buffers": {}, "_modules": {}, "_init_args": (),
            "_init_kwargs": {}}
    full.update(state)
    return lambda asm: asm.value(full)


def record_checkpoint(class_name="FullyConnectedLayer", state=None, meta_extra=None, key="G_ema"):
    """{key: one persistent record} with the given state entries (no tensors unless the state pushes some)."""
    asm = Asm().op(pickle.EMPTY_DICT).text(key)
    record(asm, class_name, state, meta_extra)
    return asm.op(pickle.SETITEM).bytes()


def deep_modules(depth=5000):
    """A record whose _modules nest `depth` records deep."""
    asm = Asm()
    record(asm, "SynthesisLayer")
    index = asm.memoize()
    asm.op(pickle.POP)
    for _ in range(depth - 1):
        record(asm, "SynthesisLayer", {"_modules": {"m": lambda a, i=index: a.get(i)}})
        index = asm.memoize()
        asm.op(pickle.POP)
    return asm.op(pickle.EMPTY_DICT).text("G_ema").get(index).op(pickle.SETITEM).bytes()


def cyclic_modules():
    """A record whose _modules dict, filled after the record exists, holds the record itself."""
    asm = Asm().op(pickle.EMPTY_DICT).text("G_ema")
    asm.op(pickle.EMPTY_DICT)
    modules = asm.memoize()
    asm.op(pickle.POP)
    record(asm, "SynthesisLayer", {"_modules": lambda a: a.get(modules)})
    rec = asm.memoize()
    asm.get(modules).text("self").get(rec).op(pickle.SETITEM).op(pickle.POP)  # _modules['self'] = the record
    return asm.op(pickle.SETITEM).bytes()


def newobj_record():
    """A persistent record made with NEWOBJ (skipping its constructor) and given its state with BUILD."""
    asm = Asm().op(pickle.EMPTY_DICT).text("G_ema")
    asm.global_(*PERSISTENT).op(pickle.EMPTY_TUPLE).op(pickle.NEWOBJ)
    asm.value({"meta": {"type": "class", "version": 6, "class_name": "Generator", "state": {}}})
    return asm.op(pickle.BUILD).op(pickle.SETITEM).bytes()


def storage_blob_bomb():
    """A tensor storage blob (torch.storage._load_from_bytes) whose own pickles hold a hash bomb."""
    blob = hash_bomb(40)
    asm = Asm().op(pickle.EMPTY_DICT).text("G_ema")
    asm.global_("torch.storage", "_load_from_bytes")
    asm.op(pickle.BINBYTES, struct.pack("<I", len(blob)) + blob).op(pickle.TUPLE1).op(pickle.REDUCE)
    return asm.op(pickle.SETITEM).bytes()


# ----------------------------------------------------------------------------
# Checkpoints from the compat fixture, edited.

class Record:
    """Stand-in for a persistent object while a checkpoint is edited; pickles back in the same format."""

    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        from torch_utils import persistence
        return (persistence._reconstruct_persistent_obj, (self.meta,))


class FixtureReader(pickle.Unpickler):
    # The fixture is our own trusted test data: real tensor globals, records for persistent objects.
    def find_class(self, module, name):
        if (module, name) == PERSISTENT:
            return Record
        return super().find_class(module, name)


def read_fixture(compat_dir):
    with open(os.path.join(compat_dir, "tiny_64x32.pkl"), "rb") as f:
        return FixtureReader(f).load()


def fixture_with(compat_dir, edit):
    """The fixture's bytes after edit(data) changed its dict of records."""
    data = read_fixture(compat_dir)
    edit(data)
    return pickle.dumps(data, protocol=4)


def tiny_checkpoint(edit=None):
    """A small checkpoint of this package (2:1 G, D, G_ema at 16x8, thin), optionally edited like fixture_with."""
    records = FixtureReader(io.BytesIO(_tiny_checkpoint_bytes())).load()
    if edit is not None:
        edit(records)
    return pickle.dumps(records, protocol=4)


@functools.lru_cache(maxsize=None)
def _tiny_checkpoint_bytes():
    import torch
    sys.path.insert(0, ROOT)
    from training import networks
    torch.manual_seed(0)
    common = dict(c_dim=0, img_resolution=16, img_channels=3, aspect_ratio=(2, 1))
    G = networks.Generator(z_dim=8, w_dim=8, mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=64, channel_max=8), **common)
    D = networks.Discriminator(channel_base=64, channel_max=8, **common)
    data = dict(G=G, D=D, G_ema=G, augment_pipe=None,
                training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="data.zip"))
    for key in ("G", "D", "G_ema"):
        data[key] = pickle.loads(pickle.dumps(data[key].eval().requires_grad_(False)))  # Unshared copies.
    return pickle.dumps(data, protocol=4)


def create_marker(path=None, marker=None, **_kwargs):
    """The code-execution payload of the tests: a 'class' that creates the file `marker` when called."""
    with open(marker, "w") as f:
        f.write("this code ran")


# ----------------------------------------------------------------------------
# Images and datasets.

def png_bytes(array, bit_depth=8):
    """PNG bytes of a [H, W] (gray) or [H, W, 3] (RGB) uint8/uint16 array, written chunk by chunk."""
    array = np.asarray(array)
    height, width = array.shape[:2]
    colour_type = 2 if array.ndim == 3 else 0
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + array[y].astype(dtype).tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width, height):
    """A few hundred bytes that claim to be a width x height RGB PNG (a decompression bomb by its header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        _chunk(b"IEND", b"")


def image_as(fmt, height=16, width=8, seed=0):
    """Bytes of a small RGB image in the PIL format `fmt` (e.g. 'BMP', 'TIFF', 'PPM', 'PNG')."""
    import PIL.Image
    pixels = np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def zip_with_bad_crc(path, members):
    """A stored (uncompressed) zip of {name: bytes} whose first member has one byte flipped after the CRC was taken."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    raw = bytearray(open(path, "rb").read())
    first = next(iter(members.values()))
    offset = raw.index(first) + len(first) // 2
    raw[offset] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    return str(path)


def deep_json(depth=100_000):
    return '{"labels": ' + "[" * depth + "]" * depth + "}"


# ----------------------------------------------------------------------------
# What loading gives (the targets that helpers_bounds.measure runs in a child process, with time and memory).

def load_outcome(path):
    """'loaded', or the CheckpointError of legacy.load_network_pkl on the file."""
    try:
        with open(path, "rb") as f:
            legacy.load_network_pkl(f)
    except legacy.CheckpointError as err:
        return "CheckpointError: " + str(err)
    return "loaded"


def dataset_outcome(folder, use_labels=False):
    """'N images' for a dataset folder that opens, or its one-line UserError."""
    try:
        return f"{len(ImageFolderDataset(folder, use_labels=use_labels))} images"
    except dnnlib.util.UserError as err:
        return "UserError: " + str(err)


# ----------------------------------------------------------------------------
# Small files that expand: deflate streams of zeros made from one compressed MiB repeated, zips assembled by hand.

def deflated_zeros(mib, prefix=b""):
    """(raw deflate data, CRC-32, size) of `prefix` followed by `mib` MiB of zeros. A full flush after each part
    makes the compressed MiB independent of what came before, so repeating its bytes repeats the MiB."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(bytes(1 << 20)) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    zero = bytes(1 << 20)
    for _ in range(mib):
        crc = zlib.crc32(zero, crc)
    return head + block * mib + comp.flush(), crc, len(prefix) + (mib << 20)


def stored(data):
    """A member kept as it is: (data, CRC-32, size, method 0)."""
    return data, zlib.crc32(data), len(data), 0


def write_zip(path, members):
    """A zip of {name: (data, CRC-32, uncompressed size[, method])} (method 8, deflate, by default), written by
    hand so that a member may be a deflate stream that was never expanded here."""
    local, central = bytearray(), bytearray()
    for name, member in members.items():
        data, crc, size, method = (*member, 8)[:4]
        encoded = name.encode("utf-8")
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(data), size,
                               len(encoded), 0, 0, 0, 0, 0, len(local)) + encoded
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), size, len(encoded),
                             0) + encoded + data
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0)
    with open(path, "wb") as f:
        f.write(bytes(local + central + end))
    return str(path)


def npy_header(shape, descr="<f4"):
    """The bytes of an .npy header declaring `shape` (the data that should follow is not included)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, dict(descr=descr, fortran_order=False, shape=tuple(shape)))
    return buffer.getvalue()


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class _StorageRef:
    """Pickles as the persistent id torch.save gives a storage: ('storage', type, key, location, numel)."""

    def __init__(self, numel):
        self.numel = numel


def torch_pt_declaring(numel, record):
    """Bytes of a torch .pt (zip format) holding one float32 tensor of `numel` elements whose storage record is
    `record` ((data, crc, size[, method]), e.g. deflated_zeros): the pickle is written here, as torch writes it."""
    import collections
    import torch

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", obj.numel) if isinstance(obj, _StorageRef) else None

    class Tensor:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (_StorageRef(numel), 0, (numel,), (1,), False,
                                                     collections.OrderedDict())
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(Tensor())
    return {"archive/data.pkl": stored(buffer.getvalue()), "archive/byteorder": stored(b"little"),
            "archive/version": stored(b"3\n"), "archive/data/0": record}


def safetensors_bytes(header):
    """A safetensors file made of a JSON header (bytes) and no data."""
    return struct.pack("<Q", len(header)) + header
