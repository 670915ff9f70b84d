"""The feature detectors of the metrics, the projector and the web app: where each file comes from (the standard
URL, downloaded once into the cache; an option or an environment variable naming a local copy or a stand-in),
loading it, and running it.
"""
import os
import warnings

import torch

import dnnlib

# ----------------------------------------------------------------------------
# Detectors: the standard files, and the option / environment variable that point at a local copy.

DETECTORS = {
    "inception": dnnlib.EasyDict(
        title="Inception-v3",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
        option="--detector",
        env="SG2_INCEPTION_DETECTOR",
    ),
    "vgg16": dnnlib.EasyDict(
        title="VGG16",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
        option="--vgg16",
        env="SG2_VGG16_DETECTOR",
    ),
}

# ----------------------------------------------------------------------------
# Detector loading.

_detector_cache = dict()  # (spec, device) -> loaded TorchScript module


def detector_spec(opts, kind):
    """(path or URL, where it was named): the explicit option, then the environment variable, then the standard URL."""
    info = DETECTORS[kind]
    if opts.detectors.get(kind):
        return str(opts.detectors[kind]), info.option
    if os.environ.get(info.env):
        return os.environ[info.env], f"${info.env}"
    return info.url, None


def detector_identity(spec):
    """What the real-data cache is keyed by: the URL, or a local file's path, size and modification time."""
    path = spec[len("file://"):] if spec.startswith("file://") else spec
    if dnnlib.util.is_url(spec) or not os.path.isfile(path):
        return spec
    st = os.stat(path)
    return dict(path=os.path.abspath(path), size=st.st_size, mtime_ns=st.st_mtime_ns)


def load_detector(spec, kind, named_by=None, device="cpu", verbose=False):
    """Load a TorchScript detector. Pickled detectors are refused: unpickling a file can run arbitrary code."""
    info = DETECTORS[kind]
    where = named_by or f"{info.title} detector"
    how_to = f"pass {info.option}=PATH or set {info.env}=PATH to a local copy of {os.path.basename(info.url)}"
    if spec.lower().endswith(".pkl"):
        raise dnnlib.util.UserError(f"{where}: {spec} is a pickle, which is not loaded because unpickling can run "
                                    f"arbitrary code; use the TorchScript file {info.url}")
    try:
        path = dnnlib.util.open_url(spec, num_attempts=3, verbose=verbose, return_filename=True)
    except (dnnlib.util.UserError, OSError) as err:
        if spec == info.url:
            raise dnnlib.util.UserError(
                f"{where}: cannot download {spec}; without network access put the file at "
                f"{dnnlib.util.url_cache_path(spec)}, or {how_to} [{err}]") from err
        raise dnnlib.util.UserError(f"{where}: cannot open {spec} ({err}); {how_to}") from err
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch calls TorchScript deprecated; the files are TorchScript
            module = torch.jit.load(path, map_location=device)
    except Exception as err:  # torch reports a wrong file format as RuntimeError, ValueError or zip errors
        raise dnnlib.util.UserError(f"{where}: {spec} is not a TorchScript detector ({type(err).__name__}); "
                                    f"use {os.path.basename(info.url)}, or {how_to}") from err
    return module.eval()


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


def run_detector(detector, images, detector_kwargs):
    """Grayscale images are repeated to RGB, as the detectors expect three channels."""
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    return detector(images, **detector_kwargs)
