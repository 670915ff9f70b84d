"""The feature detectors of the metrics, the projector and the web app: where each file comes from (the standard
URL, downloaded once into the cache; an option or an environment variable naming a local copy or a stand-in),
loading it, and running it.

A new detector is one entry of DETECTORS: its title, standard URL, option and environment variable, file
format, and the function that loads its file (load_torchscript for the TorchScript files of the StyleGAN2-ADA
metrics, dinov2.load_dinov2_detector for DINOv2's state dict). Optional fields: `sha256`, the digest a download
of the standard URL must have; `input_size`, the (H, W) that `--resize=clean` resizes to (no clean mode without
it); `weights_only`, set where the loader reads tensors only, so that a file named .pkl is not refused.
"""
import os
import warnings

import torch

import dnnlib
from . import dinov2
from . import image_resize

# ----------------------------------------------------------------------------
# Detectors: the standard files, and the option / environment variable that point at a local copy.


def load_torchscript(path, device):
    """A TorchScript file, as the metric detectors of StyleGAN2-ADA are stored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch calls TorchScript deprecated; the files are TorchScript
        return torch.jit.load(path, map_location=device)


DETECTORS = {
    "inception": dnnlib.EasyDict(
        title="Inception-v3",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
        option="--detector",
        env="SG2_INCEPTION_DETECTOR",
        file_format="TorchScript",
        load=load_torchscript,
        input_size=(299, 299),  # (H, W) --resize=clean resizes to
    ),
    "vgg16": dnnlib.EasyDict(
        title="VGG16",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
        option="--vgg16",
        env="SG2_VGG16_DETECTOR",
        file_format="TorchScript",
        load=load_torchscript,
        input_size=None,  # no clean mode: the published VGG16 metrics resize inside the file
    ),
    "dinov2": dnnlib.EasyDict(
        title="DINOv2 ViT-L/14",
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
        sha256=None,  # the publisher gives no digest to pin; --dinov2=URL#sha256=HEX checks one you trust
        option="--dinov2",
        env="SG2_DINOV2_DETECTOR",
        file_format="weights-only state dict",
        load=dinov2.load_dinov2_detector,  # the ViT is this package's own (metrics/dinov2.py)
        input_size=dinov2.INPUT_SIZE,
        weights_only=True,  # torch.load(weights_only=True): no code runs, whatever the file is named
    ),
}

# ----------------------------------------------------------------------------
# Detector loading.

_detector_cache = dict()  # (spec, device) -> loaded detector module


def choose_spec(kind, explicit=None):
    """(path or URL, where it was named): `explicit` (the option's value), then the environment variable, then the
    standard URL."""
    info = DETECTORS[kind]
    if explicit:
        return str(explicit), info.option
    if os.environ.get(info.env):
        return os.environ[info.env], f"${info.env}"
    return info.url, None


def detector_spec(opts, kind):
    """choose_spec for the metrics: the explicit choice is opts.detectors[kind] (MetricOptions)."""
    return choose_spec(kind, opts.detectors.get(kind))


def detector_identity(spec):
    """What the real-data cache is keyed by: the URL, or a local file's path, size and modification time."""
    path = spec[len("file://"):] if spec.startswith("file://") else spec
    if dnnlib.util.is_url(spec) or not os.path.isfile(path):
        return spec
    st = os.stat(path)
    return dict(path=os.path.abspath(path), size=st.st_size, mtime_ns=st.st_mtime_ns)


def load_detector(spec, kind, named_by=None, device="cpu", verbose=False):
    """Load the detector file `spec` (path or URL) of `kind` with its loader. Pickled detectors are refused
    (unpickling a file can run arbitrary code) unless the loader reads weights only."""
    info = DETECTORS[kind]
    where = named_by or f"{info.title} detector"
    how_to = f"pass {info.option}=PATH or set {info.env}=PATH to a local copy of {os.path.basename(info.url)}"
    if spec.lower().endswith(".pkl") and not info.get("weights_only"):
        raise dnnlib.util.UserError(f"{where}: {spec} is a pickle, which is not loaded because unpickling can run "
                                    f"arbitrary code; use the {info.file_format} file {info.url}")
    try:
        path = dnnlib.util.open_url(spec, num_attempts=3, verbose=verbose, return_filename=True,
                                    sha256=info.get("sha256") if spec == info.url else None)
    except (dnnlib.util.UserError, OSError) as err:
        if spec == info.url:
            raise dnnlib.util.UserError(
                f"{where}: cannot download {spec}; without network access put the file at "
                f"{dnnlib.util.url_cache_path(spec)}, or {how_to} [{err}]") from err
        raise dnnlib.util.UserError(f"{where}: cannot open {spec} ({err}); {how_to}") from err
    try:
        module = info.load(path, device)
    except Exception as err:  # torch reports a wrong file format as RuntimeError, ValueError or zip errors
        detail = str(err) if isinstance(err, dnnlib.util.UserError) else type(err).__name__  # the loader's own words
        raise dnnlib.util.UserError(f"{where}: {spec} is not a {info.file_format} detector ({detail}); "
                                    f"use {os.path.basename(info.url)}, or {how_to}") from err
    return module.eval()


def open_detector(kind, explicit=None, device="cpu", verbose=False):
    """The detector of `kind` from `explicit` (an option's path or URL), its environment variable or its standard
    URL, loaded: what the projector and the web app use (the metrics share theirs through get_feature_detector)."""
    spec, named_by = choose_spec(kind, explicit)
    return load_detector(spec, kind, named_by, device, verbose=verbose)


def get_feature_detector(opts, kind):
    """The detector of `kind` on opts.device, loaded once per process; rank 0 downloads before the others read."""
    spec, named_by = detector_spec(opts, kind)
    key = (spec, str(opts.device))
    if key not in _detector_cache:
        distributed = opts.num_gpus > 1 and torch.distributed.is_initialized()
        if distributed and opts.rank != 0:
            torch.distributed.barrier()
        _detector_cache[key] = load_detector(spec, kind, named_by, opts.device, verbose=opts.verbose and opts.rank == 0)
        if distributed and opts.rank == 0:
            torch.distributed.barrier()
    return _detector_cache[key]


_detector_sha256 = dict()  # (path, size, mtime_ns) -> hex digest


def detector_sha256(opts, kind):
    """SHA-256 of the detector file of `kind` this run uses: what reference statistics files record."""
    get_feature_detector(opts, kind)  # fetched, and checked to be a detector, first
    spec, _ = detector_spec(opts, kind)
    path = dnnlib.util.open_url(spec, num_attempts=3, verbose=False, return_filename=True)
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _detector_sha256:
        _detector_sha256[key] = dnnlib.download.file_sha256(path)
    return _detector_sha256[key]


def detector_images(opts, kind, images):
    """The images the detector of `kind` is called with under opts.resize (metrics/image_resize.py)."""
    info = DETECTORS[kind]
    return image_resize.detector_input(images, info.get("input_size"), opts.resize, info.title)


def run_detector(detector, images, detector_kwargs):
    """Grayscale images are repeated to RGB, as the detectors expect three channels."""
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    return detector(images, **detector_kwargs)
