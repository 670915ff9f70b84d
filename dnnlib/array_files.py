"""Reading small files of numeric arrays (.npy, .npz, torch .pt) that may be hostile, within a memory budget.

What a file declares is checked before anything is allocated or decompressed:
- a zip (.npz, .pt) may list at most MAX_ZIP_ENTRIES members in a directory of at most MAX_DIRECTORY_BYTES
  (read from its end record before zipfile builds the listing);
- only the members the caller chooses by name are decompressed, one by one, each against what is left of
  the budget (`max_bytes`, counting the array as stored and as float32), in chunks;
- an .npy header must declare a plain numeric dtype and a shape whose bytes the file (or member) holds;
- a .pt file must be torch's zip format, its pickle at most MAX_PICKLE_BYTES, its records within the budget;
  every tensor must be a plain (strided, not sparse, quantized or nested) numeric tensor, and its elements
  count against the budget before it is copied (views of one storage, or zero-stride views, can claim far
  more elements than the file stores).
Arrays come back as float32 numpy arrays. Errors are dnnlib.util.UserError naming the file.
"""
import math
import os
import pickle
import struct
import warnings
import zipfile
from typing import Callable, Dict, IO, List, Optional

import numpy as np

from .errors import UserError

MAX_FILE_BYTES = 256 << 20      # a latent or direction file is kilobytes (a 1024 network's noise maps: 11 MB;
MAX_DECODED_BYTES = 256 << 20   # a W+ latent there: 36 KB); what its chosen arrays may take once read
MAX_ZIP_ENTRIES = 10_000        # members of an .npz / .pt
MAX_DIRECTORY_BYTES = 4 << 20   # bytes of a zip's central directory (zipfile reads it whole)
MAX_PICKLE_BYTES = 1 << 20      # the pickle inside a .pt (the tensors' records are separate)
MAX_NPY_HEADER_BYTES = 10_000   # numpy's own default limit
CHUNK_BYTES = 1 << 20
ARRAY_KINDS = "fiu"             # floats, signed and unsigned integers (no bools, complex, strings, objects)
EXTENSIONS = (".npz", ".npy", ".pt", ".pth")

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"


class _Budget:
    """Bytes the decoded arrays may still take; `take` refuses what would go past it."""

    def __init__(self, limit: int, where: str):
        self.left = limit
        self.limit = limit
        self.where = where

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise UserError(f"{self.where}: {what} would take {nbytes} bytes, more than the {self.limit >> 20} MB "
                            "a latent or direction file may decode to; not a latent or direction file")
        self.left -= nbytes


def zip_directory(f: IO[bytes]) -> tuple:
    """(entry count, central directory bytes) from a zip's end record (zip64 too), without reading the directory."""
    size = f.seek(0, os.SEEK_END)
    tail_start = max(0, size - (65535 + 22))  # the end record sits before a comment of at most 65535 bytes
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise zipfile.BadZipFile("no zip end record")
    entries, directory_bytes = struct.unpack("<10xHL6x", tail[at:at + 22])[0:2]
    locator = tail_start + at - 20
    if locator >= 0:
        f.seek(locator)
        signature, _disk, record64, _disks = struct.unpack("<4sLQL", f.read(20))
        if signature == _EOCD64_LOCATOR and record64 < size:
            f.seek(record64)
            head = f.read(56)
            if len(head) == 56 and head[:4] == _EOCD64:
                entries, directory_bytes = struct.unpack("<32xQQ8x", head)
    f.seek(0)
    return entries, directory_bytes


def open_zip(f: IO[bytes], where: str, kind: str = "a latent or direction file") -> zipfile.ZipFile:
    """A ZipFile of `f` once its end record declares a listing of bounded size; `kind` names what `f` should be."""
    entries, directory_bytes = zip_directory(f)
    if entries > MAX_ZIP_ENTRIES or directory_bytes > MAX_DIRECTORY_BYTES:
        raise UserError(f"{where}: a zip listing {entries} members in {directory_bytes} bytes, more than "
                        f"{MAX_ZIP_ENTRIES} members or {MAX_DIRECTORY_BYTES >> 20} MB; not {kind}")
    return zipfile.ZipFile(f)


def _read_exactly(stream: IO[bytes], target: np.ndarray, where: str) -> None:
    """Fill the bytes of a contiguous array from `stream`, chunk by chunk (no second copy of the data)."""
    view = target.reshape(-1).view(np.uint8)
    done = 0
    while done < view.size:
        chunk = stream.read(min(CHUNK_BYTES, view.size - done))
        if not chunk:
            raise UserError(f"{where}: the data ends after {done} of {view.size} bytes (a truncated file)")
        view[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
        done += len(chunk)


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UserError(f"{where}: holds {dtype} values, not plain numbers (float or integer)")


def read_npy_header(stream: IO[bytes], size: int, where: str, plain_numbers: bool = True) -> tuple:
    """(shape, fortran_order, dtype) from the .npy header `stream` starts with; `size` is the array's bytes, header
    included. Refused: a header numpy would not read, a dtype other than plain numbers (unless `plain_numbers` is
    False), and data declared larger than what follows the header."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream, MAX_NPY_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream, MAX_NPY_HEADER_BYTES)
        else:
            raise ValueError(f"npy format version {version} is not read here")
    except (ValueError, EOFError, SyntaxError, TypeError) as err:
        raise UserError(f"{where}: not a readable .npy array ({str(err).splitlines()[0][:200]})") from None
    if plain_numbers:
        _check_dtype(dtype, where)
    stored = math.prod(shape) * dtype.itemsize
    held = size - stream.tell()
    if stored > held:
        raise UserError(f"{where}: declares {list(shape)} {dtype} values ({stored} bytes) but holds {held} bytes")
    return shape, fortran_order, dtype


def read_npy(stream: IO[bytes], size: int, where: str, budget: _Budget) -> np.ndarray:
    """One .npy array of `size` bytes (header included) from `stream`, as float32; the header is checked first."""
    shape, fortran_order, dtype = read_npy_header(stream, size, where)
    count = math.prod(shape)
    stored = count * dtype.itemsize
    budget.take(stored + (0 if dtype == np.float32 else 4 * count), f"a {list(shape)} {dtype} array")
    array = np.empty(count, dtype=dtype)
    _read_exactly(stream, array, where)
    array = array.reshape(shape, order="F" if fortran_order else "C")
    with np.errstate(over="ignore"):  # values too large for float32 become inf; the caller refuses those
        return array.astype(np.float32, copy=False)


def _read_npz(f: IO[bytes], where: str, choose, budget: _Budget) -> Dict[str, np.ndarray]:
    with open_zip(f, where) as archive:
        members = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
        arrays = {}
        for key in choose(sorted(members)):
            info = members[key]
            with archive.open(info) as member:
                arrays[key] = read_npy(member, info.file_size, f"{where} (array '{key}')", budget)
        return arrays


def _pt_records_fit(f: IO[bytes], where: str, budget: _Budget) -> None:
    """A .pt zip whose pickle is small and whose records, all together, fit in the budget."""
    with open_zip(f, where) as archive:
        infos = archive.infolist()
    pickles = [info for info in infos if info.filename.endswith("data.pkl")]
    if len(pickles) != 1 or pickles[0].file_size > MAX_PICKLE_BYTES:
        raise UserError(f"{where}: not a torch file of plain tensors (its pickle is missing, repeated or larger "
                        f"than {MAX_PICKLE_BYTES >> 20} MB)")
    budget.take(sum(info.file_size for info in infos), "its records")
    f.seek(0)


def _tensor_array(tensor, name: str, where: str, budget: _Budget) -> np.ndarray:
    """A plain tensor as a float32 numpy array; other layouts and types are refused, sizes checked first."""
    import torch  # here: only .pt files need torch; the rest of dnnlib does not import it
    kind = "sparse" if tensor.layout != torch.strided else "quantized" if tensor.is_quantized else \
        "nested" if getattr(tensor, "is_nested", False) else None
    if kind is not None:
        raise UserError(f"{where}: tensor '{name}' is a {kind} tensor; only plain dense tensors are read (convert "
                        "it with .to_dense() / .dequantize() and save it again)")
    integer = tensor.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
    if not (tensor.is_floating_point() or integer):  # bool, complex and other types
        raise UserError(f"{where}: tensor '{name}' holds {tensor.dtype} values, not plain numbers (float or integer)")
    # Counted even when no copy is made: tensors may view one storage many times over (or with zero strides), and
    # every element of every array is then checked and used by the caller.
    budget.take(4 * tensor.numel(), f"tensor '{name}' of shape {list(tensor.shape)}")
    return tensor.detach().to(torch.float32).contiguous().numpy()  # bfloat16 and float16 convert exactly


def _read_pt(f: IO[bytes], where: str, choose, budget: _Budget) -> Dict[str, np.ndarray]:
    import torch  # here: only .pt files need torch; the rest of dnnlib does not import it
    if not zipfile.is_zipfile(f):
        raise UserError(f"{where}: not a torch file of the zip format that torch.save writes since torch 1.6 (an "
                        "older format, or not a torch file); save it again with a current torch")
    _pt_records_fit(f, where, budget)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on checking sparse tensors: they are refused below
            data = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{where}: holds pickled Python objects, not just tensors; refused without running "
                        "them") from None
    except (RuntimeError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError, OSError) as err:
        raise UserError(f"{where}: not a file of plain tensors, or a damaged one; nothing in it was run "
                        f"({str(err).splitlines()[0][:200] if str(err) else type(err).__name__})") from None
    tensors = data if isinstance(data, dict) else {"w": data}
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in tensors.items()):
        raise UserError(f"{where}: holds objects other than tensors (a tensor, or a dict of named tensors, "
                        "is expected)")
    return {key: _tensor_array(tensors[key], key, where, budget) for key in choose(sorted(tensors))}


def read_arrays(path: str, choose: Optional[Callable[[List[str]], List[str]]] = None,
                max_bytes: int = MAX_DECODED_BYTES) -> Dict[str, np.ndarray]:
    """{name: float32 array} of the arrays `choose(all names)` picks (default: all) from .npz, .npy or .pt.

    A single array (.npy, or a .pt holding one tensor) is named 'w'. Members not chosen are never decompressed.
    """
    path = os.fspath(path)
    choose = choose or (lambda names: names)
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise UserError(f"{path}: unknown file type '{ext}'; expected one of {', '.join(EXTENSIONS)}")
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise UserError(f"{path}: {size >> 20} MB is too large for a latent or direction file")
    budget = _Budget(max_bytes, path)
    with open(path, "rb") as f:
        try:
            if ext == ".npy":
                return {"w": read_npy(f, size, path, budget)}
            if ext == ".npz":
                return _read_npz(f, path, choose, budget)
            return _read_pt(f, path, choose, budget)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, struct.error, EOFError, NotImplementedError) as err:
            raise UserError(f"{path}: not a readable {ext} file ({str(err)[:200]})") from None
        except (OSError, ValueError) as err:  # zipfile reports damaged members (CRC, headers) as these
            if isinstance(err, FileNotFoundError):
                raise
            raise UserError(f"{path}: a damaged {ext} file ({str(err).splitlines()[0][:200]})") from None
