"""FID without the dataset: real-image statistics made once (--export-stats), used in its place (--ref-stats).

A reference statistics file is an .npz (read with allow_pickle=False) holding:

| array | meaning |
| --- | --- |
| `mu`, `sigma` | float64 mean [F] and covariance [F, F] of the Inception-v3 features (the names other FID tools use) |
| `num_images` | how many real images (items: with x-flips, each image counts twice) |
| `detector_sha256`, `detector_name` | SHA-256 and file name of the Inception-v3 detector the features came from |
| `image_shape` | [C, H, W] of the real images |
| `xflip` | whether x-flipped copies were added |
| `resize` | how images reached the detectors' input size: `original` or `clean` (metrics/image_resize.py) |
| `dataset_name`, `dataset_fingerprint` | the dataset's file name, and SHA-256 of its image names and sizes |
| `package_version`, `format_version` | what wrote the file |
| `labels` | (optional) float32 [num_images, L], the class labels, for conditional networks |
| `inception_features` | (optional, --with-features) float32 [num_images, F], for KID |
| `vgg16_features`, `vgg16_sha256` | (optional, --with-features) VGG16 features and detector, for precision/recall |
| `dinov2_mu`, `dinov2_sigma`, `dinov2_sha256`, `dinov2_name` | (optional, --with-dinov2) DINOv2 statistics (covariance over N - 1, as EDM2) and detector |
| `dinov2_features` | (optional, --with-dinov2 --with-features) float32 [num_images, F], for precision/recall/density/coverage |

The statistics are exactly what the metrics compute from the dataset, so FID against the file equals
FID against the dataset. A file made with another detector, image size, flip setting, resize mode or
(when the metric also has the dataset, as in training) another dataset is refused, naming both values.
Files of format 1 (before `resize` and the dataset fields) count as `original` with no dataset check.
"""
import os
import struct
import zipfile

import numpy as np
import torch

import dnnlib
from dnnlib import array_files

FORMAT_VERSION = 2
MAX_FEATURES = 1 << 14          # bound on the feature width (Inception-v3: 2048, VGG16: 4096, DINOv2: 1024)
MAX_LABEL_DIM = 1 << 16
MAX_EXPANSION = 16              # a file's arrays, decompressed, against its size (np.savez stores them as they are)
SHA_KEYS = {"inception": "detector_sha256", "vgg16": "vgg16_sha256", "dinov2": "dinov2_sha256"}  # kind -> SHA-256
NAME_KEYS = {"inception": "detector_name", "vgg16": "vgg16_name", "dinov2": "dinov2_name"}  # kind -> file name
MEAN_COV_KEYS = {"inception": ("mu", "sigma"), "dinov2": ("dinov2_mu", "dinov2_sigma")}
COVARIANCE_DDOF = {"inception": 0, "dinov2": 1}  # the original FID divides by N, EDM2's FD-DINOv2 by N - 1
WITH_OPTION = {"vgg16": "--with-features", "dinov2": "--with-dinov2"}

# ----------------------------------------------------------------------------
# Writing.

def dataset_labels(dataset):
    """float32 [len, L] labels of every item, or None when the dataset has none."""
    if not dataset.has_labels:
        return None
    return np.stack([np.asarray(dataset.get_label(i), dtype=np.float32) for i in range(len(dataset))])


def save_reference_stats(path, mu, sigma, num_images, detector_sha256, image_shape, xflip, labels=None, extra=None,
                         resize="original", dataset_name="", dataset_fingerprint="", detector_name=""):
    """Write a reference statistics file atomically; `extra` holds the optional arrays. Returns a summary."""
    arrays = dict(mu=np.asarray(mu, dtype=np.float64), sigma=np.asarray(sigma, dtype=np.float64),
                  num_images=np.int64(num_images), detector_sha256=np.str_(detector_sha256),
                  detector_name=np.str_(detector_name), image_shape=np.array(image_shape, dtype=np.int64),
                  xflip=np.bool_(xflip), resize=np.str_(resize), dataset_name=np.str_(dataset_name),
                  dataset_fingerprint=np.str_(dataset_fingerprint),
                  package_version=np.str_(dnnlib.util.package_version()), format_version=np.int64(FORMAT_VERSION))
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.float32)
    arrays.update(extra or {})
    dnnlib.util.atomic_write(os.fspath(path), lambda f: np.savez(f, **arrays))
    return dict(path=os.fspath(path), num_images=int(num_images), image_shape=list(image_shape), xflip=bool(xflip),
                resize=resize, detectors=sorted(kind for kind, key in SHA_KEYS.items() if key in arrays),
                features=sorted(k for k in arrays if k.endswith("_features")))


# ----------------------------------------------------------------------------
# Reading, with shapes checked before any large array is read.

def _member_headers(path):
    """{key: (shape, dtype)} of every array in the file, from the headers alone, before numpy reads any of them.

    Bounded like the package's other array files (dnnlib/array_files.py): the zip listing, each header, the data
    each header declares against what its member holds, and what the whole file may expand to.
    """
    where = f"--ref-stats: {path}"
    with open(path, "rb") as f, array_files.open_zip(f, where, "a reference statistics file") as archive:
        members = [info for info in archive.infolist() if info.filename.endswith(".npy")]
        expanded, stored = sum(info.file_size for info in members), os.path.getsize(path)
        if expanded > MAX_EXPANSION * stored + (1 << 20):
            raise dnnlib.util.UserError(f"{where}: its arrays would expand to {expanded} bytes from {stored}; "
                                        "not a reference statistics file (those are written uncompressed)")
        headers = dict()
        for info in members:
            key = info.filename[:-len(".npy")]
            with archive.open(info) as member:
                shape, _fortran_order, dtype = array_files.read_npy_header(
                    member, info.file_size, f"{where} (array '{key}')", plain_numbers=False)
            headers[key] = (shape, dtype)
    return headers


_REQUIRED = ("mu", "sigma", "num_images", "detector_sha256", "image_shape", "xflip", "format_version")


def _check_layout(headers, npz, path):
    """Refuse a file whose arrays are missing, of the wrong kind or implausibly large, before reading them."""
    names = set(headers)
    missing = [key for key in _REQUIRED if key not in names]
    if missing:
        raise dnnlib.util.UserError(f"--ref-stats: {path} is not a reference statistics file (lacks "
                                    f"{', '.join(missing)}); write one with calc_metrics.py --export-stats")
    num_images = int(npz["num_images"]) if headers["num_images"] == ((), np.dtype("i8")) else -1
    expected = dict()
    for mu_key, sigma_key in MEAN_COV_KEYS.values():
        if mu_key in names or sigma_key in names:
            mu_shape = headers[mu_key][0] if mu_key in names else ()
            width = mu_shape[0] if len(mu_shape) == 1 else -1
            expected.update({mu_key: ((width,), "f8"), sigma_key: ((width, width), "f8")})
    for key in ("labels", "inception_features", "vgg16_features", "dinov2_features"):
        if key in names:
            shape = headers[key][0]
            expected[key] = ((num_images, shape[1] if len(shape) == 2 else -1), "f4")
    for key, (shape, dtype) in expected.items():
        limit = MAX_LABEL_DIM if key == "labels" else MAX_FEATURES
        if key not in headers:
            raise dnnlib.util.UserError(f"--ref-stats: {path}: array '{key}' is missing; the file is damaged")
        if headers[key] != (shape, np.dtype(dtype)) or num_images < 2 or not 0 < shape[-1] <= limit:
            got_shape, got_dtype = headers[key]
            raise dnnlib.util.UserError(f"--ref-stats: {path}: array '{key}' is {got_dtype} {list(got_shape)}, "
                                        f"which does not fit {num_images} images; the file is damaged")


def _scalar(npz, key, kind, path):
    value = npz[key]
    if value.shape != () or value.dtype.kind != kind:
        raise dnnlib.util.UserError(f"--ref-stats: {path}: '{key}' is not a single {kind!r} value; the file is damaged")
    return value.item()


def load_reference_stats(path):
    """The small fields of a reference statistics file (an EasyDict); large arrays are read later by key."""
    try:
        headers = _member_headers(path)
        with np.load(path, allow_pickle=False) as npz:
            _check_layout(headers, npz, path)
            ref = dnnlib.EasyDict(path=path, files=set(npz.files),
                                  num_images=_scalar(npz, "num_images", "i", path),
                                  detector_sha256=_scalar(npz, "detector_sha256", "U", path),
                                  xflip=_scalar(npz, "xflip", "b", path),
                                  format_version=_scalar(npz, "format_version", "i", path),
                                  image_shape=[int(v) for v in npz["image_shape"]])
            for key in ("vgg16_sha256", "dinov2_sha256", "resize", "dataset_name", "dataset_fingerprint",
                        *NAME_KEYS.values()):
                if key in npz.files:
                    ref[key] = _scalar(npz, key, "U", path)
            if "dinov2_sha256" in ref and "dinov2_mu" not in npz.files:
                raise dnnlib.util.UserError(f"--ref-stats: {path}: has dinov2_sha256 but no dinov2_mu; damaged")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, struct.error) as err:  # not a zip, or damaged
        raise dnnlib.util.UserError(f"--ref-stats: {path} is not a readable .npz file ({err})") from None
    if ref.format_version > FORMAT_VERSION:
        raise dnnlib.util.UserError(f"--ref-stats: {path} has format_version {ref.format_version}; this package "
                                    f"reads up to {FORMAT_VERSION}, update it")
    if len(ref.image_shape) != 3:
        raise dnnlib.util.UserError(f"--ref-stats: {path}: image_shape {ref.image_shape} is not [C, H, W]")
    ref.setdefault("resize", "original")  # format 1 files were all made with the original resizing
    if ref.resize not in ("original", "clean"):
        raise dnnlib.util.UserError(f"--ref-stats: {path}: resize {ref.resize!r} is not original or clean")
    return ref


def read_array(ref, key):
    with np.load(ref.path, allow_pickle=False) as npz:
        return npz[key]


def resolve(spec):
    """A --ref-stats path or URL -> a checked local path (downloaded once, like networks)."""
    try:
        path = dnnlib.util.open_url(spec, return_filename=True)
    except dnnlib.util.UserError as err:
        raise dnnlib.util.UserError(f"--ref-stats: {err}") from None
    path = os.path.abspath(path)
    cached_reference_stats(path)  # checked now; the metrics in this process reuse what was read
    return path


# ----------------------------------------------------------------------------
# Standing in for the dataset.

def generator_image_shape(G):
    return [int(G.img_channels), int(getattr(G, "img_height", G.img_resolution)),
            int(getattr(G, "img_width", G.img_resolution))]


def check_compatible(ref, kind, detector_sha256, detector_name, xflip, image_shape=None, resize="original",
                     dataset=None):
    """Refuse a file made with another detector, flip setting, image size, resize mode or dataset than this metric
    run uses. `dataset` is (path, fingerprint) of the real images when the run has them (training), else None."""
    where = f"--ref-stats: {ref.path}"
    theirs = ref.get(SHA_KEYS[kind])
    if theirs is None and kind != "inception":
        raise dnnlib.util.UserError(f"{where} holds no {kind} statistics; this metric needs them: write the file "
                                    f"with calc_metrics.py --export-stats {WITH_OPTION[kind]}")
    if theirs != detector_sha256:
        their_name = f" ({ref[NAME_KEYS[kind]]})" if ref.get(NAME_KEYS[kind]) else ""
        raise dnnlib.util.UserError(f"{where} was made with a detector of SHA-256 {theirs}{their_name}, but this "
                                    f"run's {detector_name} has SHA-256 {detector_sha256}; use the same detector file")
    if kind != "vgg16" and ref.resize != resize:  # VGG16 always resizes inside its file
        raise dnnlib.util.UserError(f"{where} holds statistics of --resize={ref.resize}, but this run uses "
                                    f"--resize={resize}; export statistics with --resize={resize}")
    if dataset is not None and ref.get("dataset_fingerprint") and ref.dataset_fingerprint != dataset[1]:
        raise dnnlib.util.UserError(f"{where} describes dataset '{ref.get('dataset_name')}' (fingerprint "
                                    f"{ref.dataset_fingerprint[:16]}), but the real images here are {dataset[0]} "
                                    f"(fingerprint {dataset[1][:16]}); use statistics of this dataset")
    if ref.xflip != bool(xflip):
        raise dnnlib.util.UserError(f"{where} holds statistics with xflip={ref.xflip}, but this metric needs "
                                    f"xflip={bool(xflip)}; export statistics with --mirror={int(bool(xflip))}")
    if image_shape is not None and list(image_shape) != ref.image_shape:
        raise dnnlib.util.UserError(f"{where} holds statistics of {ref.image_shape} (CxHxW) images, but the network "
                                    f"makes {list(image_shape)}; use statistics of matching images")


class FileStats:
    """What metric_utils.FeatureStats offers the metrics, served from a reference statistics file."""

    def __init__(self, ref, kind, max_items):
        self.ref = ref
        self.kind = kind
        self.num_items = ref.num_images if max_items is None else min(ref.num_images, max_items)

    def get_mean_cov(self, ddof=0):
        if self.num_items != self.ref.num_images:
            raise dnnlib.util.UserError(
                f"--ref-stats: this metric uses the first {self.num_items} real images, but {self.ref.path} holds "
                f"the statistics of {self.ref.num_images}; use the *_full metric with this file")
        assert ddof == COVARIANCE_DDOF[self.kind], "the file holds the covariance its metric uses"
        mu_key, sigma_key = MEAN_COV_KEYS[self.kind]
        return read_array(self.ref, mu_key), read_array(self.ref, sigma_key)

    def get_all(self):
        key = f"{self.kind}_features"
        if key not in self.ref.files:
            raise dnnlib.util.UserError(
                f"--ref-stats: {self.ref.path} holds the mean and covariance only; KID and precision/recall need "
                "the features: write the file with calc_metrics.py --export-stats --with-features")
        return read_array(self.ref, key)[:self.num_items]

    def get_all_torch(self):
        return torch.from_numpy(self.get_all())


_loaded = dict()  # path -> (size, mtime_ns, ref)


def cached_reference_stats(path):
    st = os.stat(path)
    entry = _loaded.get(path)
    if entry is None or entry[:2] != (st.st_size, st.st_mtime_ns):
        entry = _loaded[path] = (st.st_size, st.st_mtime_ns, load_reference_stats(path))
    return entry[2]


class LabelTable:
    """Where generated images draw their labels when there is no dataset: the file's labels, or empty ones."""

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def get_label(self, idx):
        return self.labels[idx].copy()


def label_table(ref, c_dim):
    """Labels for the generator, as the dataset would give them (same count, same order)."""
    if c_dim == 0:
        return LabelTable(np.zeros([ref.num_images, 0], dtype=np.float32))
    if "labels" not in ref.files:
        raise dnnlib.util.UserError(f"--ref-stats: {ref.path} has no labels, but the network is conditional "
                                    f"(c_dim={c_dim}); export statistics of a dataset with labels")
    labels = read_array(ref, "labels")
    if labels.shape[1] != c_dim:
        raise dnnlib.util.UserError(f"--ref-stats: {ref.path} has labels of width {labels.shape[1]}, but the network "
                                    f"takes c_dim={c_dim}")
    return LabelTable(labels)


def dataset_kwargs_without_data(network_dict, mirror=None):
    """dataset_kwargs for metrics against a reference file: no dataset, only the flip setting the metrics check
    (--mirror, else the snapshot's training set, else none)."""
    tsk = network_dict.get("training_set_kwargs") or {}
    xflip = bool(mirror) if mirror is not None else bool(tsk.get("xflip", False))
    return dnnlib.EasyDict(xflip=xflip)
