"""Training images: a folder or zip of same-sized PNG/JPEG images, with optional labels from dataset.json.

Images may have any power-of-two aspect ratio (height:width), e.g. 2:1 for SHHQ at 1024x512.
Only 8-bit RGB and grayscale (L) images are read directly; `dataset_tool.py` converts anything
else (RGBA is flattened onto white there), so a dataset never depends on a silent conversion.

Files are distrusted (dnnlib/image_files.py): an image is decoded only as the format its extension
names (PNG or JPEG), within PIL's decompression-bomb limit; its format and size come from its header
alone, and a file far larger than such an image (data appended) is refused before it is read; zip
members are then read whole, so their CRC is checked; anything that is not a regular file (a FIFO, a
device) is refused instead of blocking; labels must be finite numbers (not booleans) and class
indices below MAX_CLASSES. Dataset options read from a checkpoint are
checked by `dataset_kwargs_from_checkpoint`, and `open_dataset` is the one way to build a
dataset from such options: it never imports a class named in them.
"""
import inspect
import io
import json
import math
import numbers
import os
import zipfile
from typing import IO, List, Optional

import numpy as np
import torch

import dnnlib
from dnnlib import image_files
from training.checkpoint import plain_data

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CHANNELS_BY_MODE = {"L": 1, "RGB": 3}  # PIL image mode -> channels in the CHW array
LABELS_FILE = "dataset.json"
CLASS_NAME = "training.dataset.ImageFolderDataset"
MIN_SIDE, MAX_SIDE, MAX_ASPECT = 8, 4096, 4  # Trainable sizes: larger side 8..4096, at most 4:1 (networks.py).
MAX_CLASSES = 4096                  # Class labels 0..4095 (the networks' c_dim is at most 4096).
MAX_MEMBER_BYTES = 1 << 30          # A zip member is read whole (CRC checked), so its size is bounded.
# dataset.json is parsed whole (Python objects take up to ~8x its text): 16 MB plus 4 KB per image (class labels take
# ~40 bytes an image, 100 float values ~1 KB), checked before it is read.
LABELS_BASE_BYTES, LABELS_BYTES_PER_IMAGE = 16 << 20, 4 << 10


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def trainable_size_problem(height: int, width: int) -> Optional[str]:
    """Why the networks cannot train on height x width images, or None when they can."""
    if not (is_power_of_two(height) and is_power_of_two(width)):
        return "height and width must be powers of two"
    if not MIN_SIDE <= max(height, width) <= MAX_SIDE:
        return f"the larger side must be {MIN_SIDE} to {MAX_SIDE} pixels"
    if max(height, width) > MAX_ASPECT * min(height, width):
        return f"the aspect ratio may be at most {MAX_ASPECT}:1 either way"
    return None


class ImageSource:
    """Files of a folder or zip, named by posix-style relative path.

    The zip handle is opened lazily and again in every process: a handle inherited through fork
    shares its file offset with the parent, and open handles cannot be pickled for spawned workers.
    """

    def __init__(self, path: str):
        self.path = path
        self._zip = None
        self._zip_pid = None
        if os.path.isdir(path):
            self.kind = "dir"
            self.names = sorted(
                os.path.relpath(os.path.join(root, fname), path).replace(os.sep, "/")
                for root, _dirs, fnames in os.walk(path) for fname in fnames)
        elif os.path.isfile(path) and zipfile.is_zipfile(path):
            self.kind = "zip"
            self.names = sorted(info.filename for info in self._get_zip().infolist() if not info.is_dir())
        elif os.path.exists(path):
            raise dnnlib.util.UserError(f"{path}: not a folder or a zip file; give a folder or zip of images")
        else:
            raise dnnlib.util.UserError(f"{path}: no such folder or zip file")

    def _get_zip(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)  # A forked child never touches its parent's handle.
            self._zip_pid = os.getpid()
        return self._zip

    def open_stream(self, name: str) -> IO[bytes]:
        """The file's bytes as a stream, read only as far as the reader goes (for headers). Only regular files are
        opened (a FIFO would block)."""
        if self.kind == "dir":
            return image_files.open_regular_file(os.path.join(self.path, name), self.describe(name))
        return self._get_zip().open(self._get_zip().getinfo(name), "r")

    def size(self, name: str) -> int:
        """The file's size in bytes (a zip member's uncompressed size)."""
        if self.kind == "dir":
            return os.path.getsize(os.path.join(self.path, name))
        return self._get_zip().getinfo(name).file_size

    def open(self, name: str) -> IO[bytes]:
        """The file's bytes. Zip members are read whole, so a bad CRC is an error here rather than silently wrong
        pixels (their size was checked against their image's by read_header)."""
        if self.kind == "dir":
            return self.open_stream(name)
        info = self._get_zip().getinfo(name)
        if info.file_size > MAX_MEMBER_BYTES:
            raise dnnlib.util.UserError(f"{self.describe(name)}: {info.file_size} bytes uncompressed, more than "
                                        f"{MAX_MEMBER_BYTES}; not an image of a training set")
        with self._get_zip().open(info, "r") as f:
            return io.BytesIO(f.read())

    def describe(self, name: str) -> str:
        """How error messages name a file: a real path, or 'archive.zip/member'."""
        return os.path.join(self.path, name) if self.kind == "dir" else f"{self.path}/{name}"

    def close(self) -> None:
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _zip=None, _zip_pid=None)


def open_image(source: ImageSource, name: str):
    """Context manager: the PIL image of one file of `source` (see dnnlib.image_files.open_image)."""
    return image_files.open_image(lambda: source.open(name), name, source.describe(name))


def read_header(source: ImageSource, name: str) -> tuple:
    """(height, width, PIL mode) of one image from its header alone (no pixel decoding, at most
    image_files.HEADER_BYTES read); a file far larger than its image can take is refused."""
    return image_files.read_header(lambda: source.open_stream(name), name, source.describe(name), source.size(name))


def read_labels_json(source: ImageSource) -> Optional[dict]:
    """{relative image name: label} from dataset.json, or None when absent or `"labels": null`."""
    if LABELS_FILE not in source.names:
        return None
    where = source.describe(LABELS_FILE)
    expected = ('expected {"labels": [["00000/img00000000.png", 6], ...]} or {"labels": null}; fix or remove '
                "the file")
    limit = LABELS_BASE_BYTES + LABELS_BYTES_PER_IMAGE * sum(map(is_image_name, source.names))
    try:
        if source.size(LABELS_FILE) > limit:
            raise dnnlib.util.UserError(f"{where}: {source.size(LABELS_FILE)} bytes, more than the {limit} labels of "
                                        f"this many images may take; {expected}")
        with source.open_stream(LABELS_FILE) as f:
            text = f.read(limit + 1)
        if len(text) > limit:
            raise dnnlib.util.UserError(f"{where}: larger than {limit} bytes; {expected}")
        labels = json.loads(text).get("labels")
        if labels is None:
            return None
        if not isinstance(labels, list) or not all(isinstance(entry, list) and len(entry) == 2 and
                                                   isinstance(entry[0], str) for entry in labels):
            raise dnnlib.util.UserError(f"{where}: {expected}")
        return {name: label for name, label in labels}
    except RecursionError:
        raise dnnlib.util.UserError(f"{where}: nested too deeply to read; {expected}") from None
    except (ValueError, TypeError, AttributeError) as err:
        raise dnnlib.util.UserError(f"{where}: {expected} ({err})") from None


def labels_to_array(labels: list, where: str) -> np.ndarray:
    """Integer class labels (0 .. MAX_CLASSES-1) become one-hot float32 rows; lists of finite numbers become
    float32 rows (at most MAX_CLASSES values each). Booleans are refused, not read as 0 and 1."""
    stack = list(labels)
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            raise dnnlib.util.UserError(f"{where}: labels hold the boolean {str(item).lower()}; use class integers or "
                                        "lists of numbers (e.g. 0 and 1), fix the labels")
        if isinstance(item, list):
            stack.extend(item)
    if all(isinstance(x, int) and not isinstance(x, bool) for x in labels):
        bad = [x for x in labels if not 0 <= x < MAX_CLASSES]
        if bad:
            raise dnnlib.util.UserError(f"{where}: class label {dnnlib.util.escape_text(str(bad[0]), 30)} is not "
                                        f"from 0 to {MAX_CLASSES - 1}; fix the labels")
        classes = np.array(labels, dtype=np.int64)
        onehot = np.zeros([len(labels), classes.max() + 1], dtype=np.float32)
        onehot[np.arange(len(labels)), classes] = 1
        return onehot
    try:
        with np.errstate(over="ignore"):  # Too large for float32 becomes inf, refused below.
            array = np.array(labels, dtype=np.float32).reshape(len(labels), -1)
    except (ValueError, TypeError, OverflowError) as err:
        raise dnnlib.util.UserError(f"{where}: labels must be all class integers or all equal-length "
                                    f"lists of numbers ({err}); fix the labels") from err
    if not np.isfinite(array).all():
        raise dnnlib.util.UserError(f"{where}: labels hold NaN or infinite values (or numbers too large for "
                                    "float32); fix the labels")
    if array.shape[1] > MAX_CLASSES:
        raise dnnlib.util.UserError(f"{where}: labels of {array.shape[1]} values, more than {MAX_CLASSES}; "
                                    "fix the labels")
    return array


# Training-set format of the StyleGAN2-ADA code base (Karras et al. 2020): zip/folder + dataset.json, --mirror x-flips.
class ImageFolderDataset(torch.utils.data.Dataset):
    """Images of one size from a folder or zip, ordered by relative path; `dataset[i]` is (uint8 CHW, label)."""

    def __init__(self,
        path:           str,            # Folder or zip of PNG/JPEG images (searched recursively).
        resolution:     int = None,     # Expected larger image side; None = take it from the images.
        use_labels:     bool = False,   # Read labels from dataset.json? False = empty labels of shape [0].
        max_size:       int = None,     # Use a random subset of at most this many images; None = all.
        xflip:          bool = False,   # Double the dataset with horizontally mirrored copies?
        random_seed:    int = 0,        # Seed of the max_size subset.
        square:         bool = None,    # Legacy StyleGAN-Human check: True = H==W, False = H==2W, None = any.
        **_kwargs,                      # Other keys found in checkpoints' training_set_kwargs; ignored.
    ):
        self._path = path
        self._source = ImageSource(path)
        self._image_fnames = [name for name in self._source.names if is_image_name(name)]
        if not self._image_fnames:
            raise dnnlib.util.UserError(f"{path}: no images found ({', '.join(IMAGE_EXTENSIONS)}); "
                                        "point --data at a folder or zip made by dataset_tool.py")
        self.name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]

        # The max_size subset, then the mirrored second half (same order as the ecosystem's datasets).
        self._raw_idx = np.arange(len(self._image_fnames), dtype=np.int64)
        if max_size is not None and len(self._raw_idx) > max_size:
            np.random.RandomState(random_seed).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:max_size])
        self._xflip = np.zeros(len(self._raw_idx), dtype=bool)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

        self.image_shape = self._check_images(np.unique(self._raw_idx))
        self.num_channels, self.height, self.width = self.image_shape
        self.resolution = max(self.height, self.width)
        gcd = math.gcd(self.height, self.width)
        self.aspect_ratio = (self.height // gcd, self.width // gcd)
        self._check_shape_options(resolution, square)

        self._raw_labels = self._load_raw_labels() if use_labels else None
        if self._raw_labels is None:
            self._raw_labels = np.zeros([len(self._image_fnames), 0], dtype=np.float32)
        self.label_shape = list(self._raw_labels.shape[1:])
        self.label_dim = self.label_shape[0]
        self.has_labels = self.label_dim != 0

    def _check_images(self, raw_indices: np.ndarray) -> List[int]:
        """[C, H, W] shared by all images; the first file that differs or cannot be read is named."""
        first = self._source.describe(self._image_fnames[raw_indices[0]])
        shape = None
        for raw_idx in raw_indices:
            name = self._image_fnames[raw_idx]
            height, width, mode = read_header(self._source, name)
            if max(height, width) > MAX_SIDE:  # Before any pixel is decoded.
                raise dnnlib.util.UserError(f"{self._source.describe(name)}: image is {height}x{width} (HxW), "
                                            f"larger than {MAX_SIDE} pixels on a side; resize it with dataset_tool.py")
            if mode not in CHANNELS_BY_MODE:
                raise dnnlib.util.UserError(f"{self._source.describe(name)}: image mode {mode} is not supported "
                                            "(need RGB or L); convert the images with dataset_tool.py")
            this_shape = [CHANNELS_BY_MODE[mode], height, width]
            if shape is None:
                shape = this_shape
            elif this_shape != shape:
                raise dnnlib.util.UserError(
                    f"{self._source.describe(name)}: image is {height}x{width} {mode} (HxW) but {first} is "
                    f"{shape[1]}x{shape[2]} {'RGB' if shape[0] == 3 else 'L'}; all images must share one size "
                    "and channel count, resize them with dataset_tool.py")
        return shape

    def _check_shape_options(self, resolution: Optional[int], square: Optional[bool]) -> None:
        size = f"{self.height}x{self.width} (HxW)"
        problem = trainable_size_problem(self.height, self.width)
        if problem is not None:
            raise dnnlib.util.UserError(f"{self._path}: images are {size}, but {problem} (e.g. 1024x512); "
                                        "resize them with dataset_tool.py")
        if resolution is not None and resolution != self.resolution:
            raise dnnlib.util.UserError(f"{self._path}: images are {size}, not resolution {resolution} "
                                        "on the larger side; pick the matching dataset or resolution")
        if square is not None and self.aspect_ratio != ((1, 1) if square else (2, 1)):
            raise dnnlib.util.UserError(f"{self._path}: images are {size} but square={square} asks for "
                                        f"{'H == W' if square else 'H == 2W'}; pick the matching dataset")

    def _load_raw_labels(self) -> Optional[np.ndarray]:
        labels = read_labels_json(self._source)
        if labels is None:
            return None
        where = self._source.describe(LABELS_FILE)
        missing = [name for name in self._image_fnames if name not in labels]
        if missing:
            raise dnnlib.util.UserError(f"{where}: no label for {missing[0]} ({len(missing)} images without "
                                        "one); label every image or train without labels")
        return labels_to_array([labels[name] for name in self._image_fnames], where)

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        name = self._image_fnames[raw_idx]
        with open_image(self._source, name) as img:
            image = np.array(img)  # Decodes the pixels.
        image = image[:, :, np.newaxis] if image.ndim == 2 else image
        image = image.transpose(2, 0, 1)  # HWC -> CHW
        if list(image.shape) != self.image_shape or image.dtype != np.uint8:
            raise dnnlib.util.UserError(f"{self._source.describe(name)}: decoded as {list(image.shape)} "
                                        f"{image.dtype}, expected {self.image_shape} uint8; was it replaced?")
        return image

    def __len__(self) -> int:
        return len(self._raw_idx)

    def __getitem__(self, idx: int) -> tuple:
        image = self._load_raw_image(self._raw_idx[idx])
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), self.get_label(idx)

    def get_label(self, idx: int) -> np.ndarray:
        return self._raw_labels[self._raw_idx[idx]].copy()

    def get_details(self, idx: int) -> dnnlib.EasyDict:
        return dnnlib.EasyDict(raw_idx=int(self._raw_idx[idx]), xflip=bool(self._xflip[idx]),
                               raw_label=self._raw_labels[self._raw_idx[idx]].copy())

    def close(self) -> None:
        self._source.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # Interpreter shutdown may have torn down zipfile already.
            pass


# ----------------------------------------------------------------------------
# Dataset options read from a checkpoint, and the one way to build a dataset from options.

def _option_checks():
    """Key -> (check, what it must be) of the options ImageFolderDataset takes."""
    def is_int(value, low, high):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high
    return {
        "path": (lambda v: isinstance(v, str) and 0 < len(v) <= 4096 and "\0" not in v, "a path"),
        "resolution": (lambda v: v is None or is_int(v, MIN_SIDE, MAX_SIDE) and is_power_of_two(int(v)),
                       f"a power of two from {MIN_SIDE} to {MAX_SIDE}, or null"),
        "use_labels": (lambda v: isinstance(v, bool), "true or false"),
        "max_size": (lambda v: v is None or is_int(v, 0, 2 ** 40), "a non-negative integer, or null"),
        "xflip": (lambda v: isinstance(v, bool), "true or false"),
        "random_seed": (lambda v: is_int(v, 0, 2 ** 32 - 1), "an integer from 0 to 2**32-1"),
        "square": (lambda v: v is None or isinstance(v, bool), "true, false or null"),
    }


def check_dataset_kwargs(kwargs, where: str) -> dnnlib.EasyDict:
    """A clean copy of dataset options: class_name (if any) must be ImageFolderDataset, every known key of the
    right type and range; keys ImageFolderDataset does not take are dropped. UserError naming `where` otherwise."""
    try:
        kwargs = plain_data.plain_copy(kwargs, where, allowed_class_names=[CLASS_NAME], max_items=10_000)
    except plain_data.PlainDataError as err:
        raise dnnlib.util.UserError(str(err)) from None
    if not isinstance(kwargs, dict):
        raise dnnlib.util.UserError(f"{where}: the dataset options are not a dict")
    clean = dnnlib.EasyDict(class_name=CLASS_NAME)
    checks = _option_checks()
    params = inspect.signature(ImageFolderDataset.__init__).parameters.values()
    accepted = [p.name for p in params if p.name != "self" and p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD]
    for key in accepted:
        if key not in kwargs:
            continue
        check, expected = checks.get(key, (lambda v: v is None or isinstance(v, (bool, int, float, str)),
                                           "a plain value"))
        if not check(kwargs[key]):
            raise dnnlib.util.UserError(f"{where}: dataset option {key} must be {expected}")
        clean[key] = kwargs[key]
    if "path" not in clean:
        raise dnnlib.util.UserError(f"{where}: the dataset options name no path")
    return clean


def dataset_kwargs_from_checkpoint(kwargs, where: str) -> dnnlib.EasyDict:
    """Dataset options recorded in a checkpoint (its training_set_kwargs), checked (see check_dataset_kwargs)."""
    return check_dataset_kwargs(kwargs, f"{where} training_set_kwargs")


def open_dataset(dataset_kwargs, where: str = "dataset options") -> ImageFolderDataset:
    """ImageFolderDataset from options such as training_set_kwargs, checked first; no class is looked up by name."""
    kwargs = check_dataset_kwargs(dataset_kwargs, where)
    del kwargs["class_name"]
    return ImageFolderDataset(**kwargs)
