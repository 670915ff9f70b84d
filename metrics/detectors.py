"""The feature detectors of the metrics, the projector and the web app: where each file comes from (the standard
URL, downloaded once into the cache; an option or an environment variable naming a local copy or a stand-in),
loading it, and running it.

A new detector is one entry of DETECTORS: its title, standard URL, option and environment variable, and the
function that loads its file (load_torchscript for the TorchScript files of the StyleGAN2-ADA metrics).
"""
import os
import warnings

import torch

import dnnlib

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
    ),
    "vgg16": dnnlib.EasyDict(
        title="VGG16",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
        option="--vgg16",
        env="SG2_VGG16_DETECTOR",
        file_format="TorchScript",
        load=load_torchscript,
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
    """Load the detector file `spec` (path or URL) of `kind` with its loader. Pickled detectors are refused:
    unpickling a file can run arbitrary code."""
    info = DETECTORS[kind]
    where = named_by or f"{info.title} detector"
    how_to = f"pass {info.option}=PATH or set {info.env}=PATH to a local copy of {os.path.basename(info.url)}"
    if spec.lower().endswith(".pkl"):
        raise dnnlib.util.UserError(f"{where}: {spec} is a pickle, which is not loaded because unpickling can run "
                                    f"arbitrary code; use the {info.file_format} file {info.url}")
    try:
        path = dnnlib.util.open_url(spec, num_attempts=3, verbose=verbose, return_filename=True)
    except (dnnlib.util.UserError, OSError) as err:
        if spec == info.url:
            raise dnnlib.util.UserError(
                f"{where}: cannot download {spec}; without network access put the file at "
                f"{dnnlib.util.url_cache_path(spec)}, or {how_to} [{err}]") from err
        raise dnnlib.util.UserError(f"{where}: cannot open {spec} ({err}); {how_to}") from err
    try:
        module = info.load(path, device)
    except Exception as err:  # torch reports a wrong file format as RuntimeError, ValueError or zip errors
        raise dnnlib.util.UserError(f"{where}: {spec} is not a {info.file_format} detector ({type(err).__name__}); "
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


def run_detector(detector, images, detector_kwargs):
    """Grayscale images are repeated to RGB, as the detectors expect three channels."""
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    return detector(images, **detector_kwargs)
