"""Edits in style space (S), as StyleGAN-Human makes them: per-layer vectors added to the styles.

The styles of a modulated convolution are its affine layer's output, s = A w + b (StyleSpace, Wu et al., CVPR
2021): one value per input channel. Style layer i is the i-th modulated convolution in synthesis order, toRGB
layers excluded: b4.conv1, b8.conv0, b8.conv1, ... (rosinality's conv1, convs[0], convs[1], ...). An edit adds
strength * vector_i to the styles of each chosen layer i; the networks take these offsets through
`G.synthesis(ws, style_offsets=[...])`.

StyleGAN-Human ships its directions as `latent_direction/ss/<attr>/style_vect_mean_<i>.pkl`, one pickled numpy
vector per layer. They are read with a restricted unpickler that rebuilds numpy arrays and nothing else (no
global other than numpy's array and dtype reconstructors, no dict or set opcodes), so nothing in them runs. A
direction can also be an .npz (one array per layer, each key ending in its layer number), a 2-D .npy/.pt
(row i = layer i), or a zip of such a folder (the web app's upload).

Its StyleSpace edit changes one layer under a channel mask: `ss_statics/<attr>_statis/<layer>/statis.csv` gives
each channel's strength (columns `channel` and `strength`); channels with |strength| > threshold are edited.
"""
import csv
import io
import math
import os
import pickle
import pickletools
import re
import zipfile

import numpy as np
import torch

from dnnlib.image_grid import make_grid
from dnnlib.util import UserError

from . import space

VECTOR_FILE = re.compile(r"style_vect_mean_(\d+)\.pkl")
MAX_PICKLE_BYTES = 16 << 20   # one vector is kilobytes
MAX_LAYERS = 64
MAX_ZIP_BYTES = 256 << 20
MAX_CSV_BYTES = 16 << 20
# Opcodes a pickled numpy array needs (protocols 0-5): scalars, strings, tuples, memo, globals, REDUCE, BUILD.
# No dict, set or list opcodes: nothing is hashed, and nothing but tuples nests.
_ARRAY_OPCODES = {
    "PROTO", "FRAME", "STOP", "MARK", "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG",
    "LONG1", "LONG4", "FLOAT", "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
    "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "EMPTY_TUPLE",
    "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD"}


# ----------------------------------------------------------------------------
# Pickled numpy arrays, rebuilt without running anything from the file.


class _ArrayBuilder:
    """What numpy's _reconstruct gives here: an empty array whose BUILD state (version, shape, dtype, Fortran
    order, raw bytes) is checked and then becomes the array."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("an array state that is not (version, shape, dtype, order, data)")
        _, shape, dtype, fortran, data = state
        self.array = _array_from_bytes(data, dtype, shape, "F" if fortran else "C")


def _array_from_bytes(data, dtype, shape, order):
    if isinstance(data, str):  # Python 2 pickles hold the bytes as a latin-1 string
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)) or not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError("array data that is not bytes of a plain dtype")
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise pickle.UnpicklingError("an array shape that is not a tuple of sizes")
    if math.prod(shape) * dtype.itemsize != len(data):
        raise pickle.UnpicklingError("array data whose size does not match its shape")
    return np.frombuffer(bytes(data), dtype=dtype).reshape(shape, order=order).copy()


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("an array of a subclass of numpy.ndarray")
    return _ArrayBuilder()


def _dtype(spec, align=False, copy=False):
    # Plain numbers only: bool, integers, floats (no object or structured dtypes).
    if not isinstance(spec, str) or len(spec) > 8:
        raise pickle.UnpicklingError("a numpy dtype that is not a plain number type")
    try:
        dtype = np.dtype(spec, copy=True)
    except TypeError:
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not allowed") from None
    if dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not allowed")
    return dtype


def _frombuffer(data, dtype, shape, order):  # numpy's protocol-5 form
    return _array_from_bytes(data, dtype, tuple(shape), order)


def _empty_bytes(*args):  # protocol 2 spells b"" as bytes()
    if args:
        raise pickle.UnpicklingError("bytes() with arguments")
    return b""


def _latin1(text, encoding="latin1"):  # how protocol 2 spells bytes: _codecs.encode(text, 'latin1')
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode of something other than latin-1 text")
    return text.encode("latin1")


_NDARRAY = object()  # stands for numpy.ndarray, which only _reconstruct may receive
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct, ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer, ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1, ("__builtin__", "bytes"): _empty_bytes, ("builtins", "bytes"): _empty_bytes,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        target = _ARRAY_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"it names '{module}.{name}', which a pickled numpy array never does")
        return target


def read_array_pickle(data, what):
    """The numpy array of a pickle (bytes), or a UserError naming `what`; nothing in the pickle runs."""
    if len(data) > MAX_PICKLE_BYTES:
        raise UserError(f"{what}: {len(data) >> 20} MB is too large for a style vector")
    try:
        for count, (opcode, arg, _) in enumerate(pickletools.genops(io.BytesIO(data))):
            if opcode.name not in _ARRAY_OPCODES:
                raise pickle.UnpicklingError(f"it uses the pickle opcode {opcode.name}, which a numpy array never "
                                             "needs")
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= int(arg) <= count:
                raise pickle.UnpicklingError(f"memo index {arg} out of range")  # the unpickler would allocate it
        result = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError, IndexError) as err:
        raise UserError(f"{what}: not a pickled numpy array; refused without running it ({err})") from None
    array = result.array if isinstance(result, _ArrayBuilder) else result
    if not isinstance(array, np.ndarray):
        raise UserError(f"{what}: holds a {type(array).__name__}, not a numpy array")
    return array


# ----------------------------------------------------------------------------
# Direction files: {style layer: vector}.


def _as_vector(array, what):
    vector = np.asarray(array)
    if vector.ndim == 2 and vector.shape[0] == 1:
        vector = vector[0]
    if vector.ndim != 1 or vector.dtype.kind not in "biuf" or not np.isfinite(vector).all():
        raise UserError(f"{what}: expected one vector of finite numbers ([C] or [1, C]), found shape "
                        f"{list(vector.shape)}")
    return vector.astype(np.float32)


def _add_layer(vectors, layer, vector, what):
    if layer >= MAX_LAYERS or layer in vectors:
        raise UserError(f"{what}: layer {layer} is out of range or given twice")
    vectors[layer] = _as_vector(vector, what)


def _from_pickles(named_blobs, source):
    """{layer: vector} of style_vect_mean_<i>.pkl files given as (name, bytes-getter) pairs."""
    vectors = {}
    for name, read in named_blobs:
        match = VECTOR_FILE.fullmatch(os.path.basename(name))
        if match:
            _add_layer(vectors, int(match.group(1)), read_array_pickle(read(), f"{source}/{name}"), f"{source}/{name}")
    if not vectors:
        raise UserError(f"{source}: no style_vect_mean_<layer>.pkl files in it")
    return vectors


def _reader(path):
    def read():
        if os.path.getsize(path) > MAX_PICKLE_BYTES:
            raise UserError(f"{path}: {os.path.getsize(path) >> 20} MB is too large for a style vector")
        with open(path, "rb") as f:
            return f.read()
    return read


def _zip(path):
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if VECTOR_FILE.fullmatch(os.path.basename(m.filename))]
        if len(members) > MAX_LAYERS or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise UserError(f"{path}: too many or too large style vector files")
        return _from_pickles([(m.filename, lambda m=m: archive.read(m)) for m in members], path)


def _arrays(path):
    arrays = space.read_arrays(path)
    if len(arrays) == 1 and next(iter(arrays.values())).ndim == 2 and next(iter(arrays)) in ("w", "directions"):
        rows = next(iter(arrays.values()))
        return {layer: _as_vector(row, f"{path}[{layer}]") for layer, row in enumerate(rows)}
    vectors = {}
    for key, value in arrays.items():
        match = re.fullmatch(r"\D*(\d+)", key)
        if match is None:
            raise UserError(f"{path}: array '{key}' does not end in its layer number (e.g. style_vect_mean_5)")
        _add_layer(vectors, int(match.group(1)), value, f"{path}: '{key}'")
    return vectors


def load_style_direction(path):
    """{style layer: float32 vector} of a direction: a folder or zip of style_vect_mean_<i>.pkl files, an .npz
    of per-layer arrays, or a 2-D .npy/.pt (row i = layer i)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return _from_pickles([(name, _reader(os.path.join(path, name))) for name in sorted(os.listdir(path))], path)
    if not os.path.isfile(path):
        raise UserError(f"--direction: {path} does not exist")
    if zipfile.is_zipfile(path) and not path.lower().endswith(".npz"):
        try:
            return _zip(path)
        except zipfile.BadZipFile as err:
            raise UserError(f"{path}: a damaged zip file ({err})") from None
    if path.lower().endswith(".pkl"):
        match = VECTOR_FILE.fullmatch(os.path.basename(path))
        if match is None:
            raise UserError(f"{path}: a single .pkl must be named style_vect_mean_<layer>.pkl")
        return {int(match.group(1)): _as_vector(read_array_pickle(_reader(path)(), path), path)}
    return _arrays(path)


# ----------------------------------------------------------------------------
# Layers, masks and the edit.


def style_layers(G):
    """[(name, layer)] of the modulated convolutions in synthesis order, toRGB excluded: the style layers."""
    found = []
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{res}")
        found += [(f"b{res}.{name}", getattr(block, name)) for name in ("conv0", "conv1") if hasattr(block, name)]
    return found


def select_layers(vectors, text, num_layers):
    """The layers to edit: `text` ('0-14', '5', 'all'; None = every layer of the direction), each one the direction
    holds and the network has."""
    if text is None or str(text).strip().lower() == "all":
        layers = sorted(vectors)
    else:
        try:
            layers = sorted(set(space.parse_range(text)))
        except ValueError as err:
            raise UserError(f"--layers: {err}") from None
    missing = [layer for layer in layers if layer not in vectors]
    if missing:
        raise UserError(f"--layers: the direction has no vector for layer {missing[0]} (it has "
                        f"{', '.join(map(str, sorted(vectors)))})")
    beyond = [layer for layer in layers if layer >= num_layers]
    if beyond:
        raise UserError(f"--layers: layer {beyond[0]} does not exist; this network has style layers 0-{num_layers - 1}")
    return layers


def check_lengths(G, vectors, layers, source):
    """Each chosen vector has as many values as its layer has style channels, or a one-line error naming both."""
    convs = style_layers(G)
    for layer in layers:
        name, conv = convs[layer]
        if len(vectors[layer]) != conv.in_channels:
            raise UserError(f"{source}: the vector of style layer {layer} ({name}) has {len(vectors[layer])} values; "
                            f"that layer has {conv.in_channels} style channels")


def read_statis(path, num_channels):
    """Per-channel strengths of StyleGAN-Human's statis.csv (columns channel, strength), in channel order."""
    path = os.fspath(path)
    if os.path.getsize(path) > MAX_CSV_BYTES:
        raise UserError(f"--statis: {path} is too large for a channel table")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    try:
        table = {int(float(row["channel"])): float(row["strength"]) for row in rows}
    except (KeyError, TypeError, ValueError):
        raise UserError(f"--statis: {path} needs numeric columns 'channel' and 'strength'") from None
    if sorted(table) != list(range(num_channels)) or len(rows) != num_channels:
        raise UserError(f"--statis: {path} lists {len(rows)} channels; the layer has channels 0-{num_channels - 1}, "
                        "each once")
    return np.array([table[c] for c in range(num_channels)], dtype=np.float32)


def masked(vector, strengths, threshold):
    """StyleGAN-Human's StyleSpace mask: only the channels with |strength| > threshold keep their value."""
    return vector * (np.abs(strengths) > threshold).astype(np.float32)


def style_offsets(G, vectors, layers, strength, device):
    """G.synthesis's style_offsets: strength * vector at the chosen layers, None elsewhere."""
    offsets = [None] * len(style_layers(G))
    for layer in layers:
        offsets[layer] = torch.from_numpy(vectors[layer] * np.float32(strength)).to(device)
    return offsets


def edit_strip(G, ws, vectors, layers, strengths, noise_mode="const", noise=None):
    """One HWC uint8 strip: the image of ws [1, num_ws, w_dim] with the style edit at each strength, side by side."""
    device = ws.device
    images = [space.synthesize(G, ws, noise_mode, noise, style_offsets=style_offsets(G, vectors, layers, s, device))[0]
              for s in strengths]
    return make_grid(images, 1, len(strengths))


def prepare_edit(G, direction, layers_text=None, statis=None, threshold=None):
    """(vectors, layers) of an edit: the direction read safely, the layers chosen and checked, and with a statis
    table the one chosen layer masked as StyleGAN-Human's StyleSpace edit does."""
    if (statis is None) != (threshold is None):
        raise UserError("--statis and --threshold: give both (the channel table and its threshold) or neither")
    vectors = load_style_direction(direction)
    layers = select_layers(vectors, layers_text, len(style_layers(G)))
    check_lengths(G, vectors, layers, direction)
    if statis is not None:
        if len(layers) != 1:
            raise UserError(f"--statis masks one layer, but --layers picks {len(layers)}; choose it, e.g. --layers=5")
        layer = layers[0]
        vectors = dict(vectors)
        vectors[layer] = masked(vectors[layer], read_statis(statis, len(vectors[layer])), threshold)
    return vectors, layers
