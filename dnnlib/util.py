"""Miscellaneous helpers: attribute dicts, cached URL opening, object lookup by name.

It also hands on, under the names the whole package uses (dnnlib.util.UserError, ...), the user-facing
errors (errors.py) and the writing of output files (output_files.py): modules below download.py, which
open_url calls.
"""
import hashlib
import importlib
import importlib.metadata
import io
import os
import re
import tempfile
import urllib.parse
import urllib.request
from typing import Any

from . import download
from .errors import UserError, escape_text  # noqa: F401
from .output_files import (apply_umask, atomic_output, atomic_write, current_umask, make_output_dir,  # noqa: F401
                           remove_quietly, sigterm_raises)


class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


# ----------------------------------------------------------------------------
# Formatting.

def format_time(seconds: float) -> str:
    """Human-readable duration, e.g. '1h 02m 03s'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m"


# ----------------------------------------------------------------------------
# Objects by name, as used by `*_kwargs.class_name` in options and checkpoints.

def get_obj_by_name(name: str) -> Any:
    """Resolve 'package.module.attr' to the object, importing the longest importable module prefix."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return obj
    return importlib.import_module(name)


def call_func_by_name(*args, func_name: str, **kwargs) -> Any:
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise TypeError(f"{func_name} is not callable")
    return func(*args, **kwargs)


def construct_class_by_name(*args, class_name: str, **kwargs) -> Any:
    return call_func_by_name(*args, func_name=class_name, **kwargs)


# ----------------------------------------------------------------------------
# Cache folders and URL opening.

def make_cache_dir_path(*paths: str) -> str:
    """Path inside the download cache: $DNNLIB_CACHE_DIR, else ~/.cache/dnnlib (or $XDG_CACHE_HOME/dnnlib)."""
    if "DNNLIB_CACHE_DIR" in os.environ:
        root = os.environ["DNNLIB_CACHE_DIR"]
    elif "XDG_CACHE_HOME" in os.environ:
        root = os.path.join(os.environ["XDG_CACHE_HOME"], "dnnlib")
    else:
        root = os.path.join(os.path.expanduser("~"), ".cache", "dnnlib")
    return os.path.join(root, *paths)


def is_url(obj: Any, allow_file_urls: bool = False) -> bool:
    if not isinstance(obj, str) or "://" not in obj:
        return False
    scheme = urllib.parse.urlparse(obj).scheme
    return scheme in ("http", "https", "hf") or (allow_file_urls and scheme == "file")


def _file_url_to_path(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    return urllib.request.url2pathname(parsed.netloc + parsed.path) if parsed.netloc else urllib.request.url2pathname(parsed.path)


def url_cache_path(url: str, cache_dir: str = None) -> str:
    """Where `open_url` keeps the download of `url`: <cache>/<md5 of url>_<file name>."""
    cache_dir = cache_dir or make_cache_dir_path("downloads")
    url_md5 = hashlib.md5(url.encode("utf-8")).hexdigest()
    name = re.sub(r"[^0-9A-Za-z._-]", "_", os.path.basename(urllib.parse.urlparse(url).path)) or "download"
    return os.path.join(cache_dir, f"{url_md5}_{name}")


def open_url(url: str, cache_dir: str = None, num_attempts: int = 10, verbose: bool = True,
             return_filename: bool = False, cache: bool = True, sha256: str = None) -> Any:
    """Open a local path, a file:// URL, an http(s) URL or a Hugging Face hf:// URL as a binary file object.

    http(s) downloads (Google Drive file links included) are kept in `cache_dir` (default:
    make_cache_dir_path('downloads')) under the URL's key and reused, so a file is fetched once; see
    dnnlib/download.py for streaming, resuming and the checks. `sha256` (or a '#sha256=HEX' URL
    fragment) is checked before the file is returned. A failed download raises UserError naming the
    URL and the cache path where the file can be placed by hand.
    """
    assert num_attempts >= 1
    if is_url(url, allow_file_urls=True):
        url, sha256 = download.split_sha256_fragment(url, sha256)
    else:
        sha256 = download.normalize_sha256(sha256)
    path = _local_or_hub_path(url)
    if path is not None:
        download.check_sha256(path, sha256, url)
        return path if return_filename else open(path, "rb")

    if not cache:
        if return_filename:
            raise ValueError("return_filename=True needs cache=True")
        with tempfile.TemporaryDirectory() as temp_dir:
            temp_file = download.download_file(url, os.path.join(temp_dir, "download"), sha256, num_attempts,
                                               verbose, hint=", or pass a local path instead")
            with open(temp_file, "rb") as f:
                return io.BytesIO(f.read())
    cache_file = url_cache_path(url, cache_dir)
    if not download.cached_file_usable(cache_file, url, sha256, verbose):
        download.download_file(url, cache_file, sha256, num_attempts, verbose,
                               hint=f"; download it by hand and place it at {cache_file}, or pass a local path instead")
    return cache_file if return_filename else open(cache_file, "rb")


def _local_or_hub_path(url: str) -> Any:
    """The file a path, file:// URL or Hugging Face URL names (None for other http(s) URLs)."""
    if download.parse_hub_url(url) is not None:
        return download.hub_download(url)
    if not is_url(url, allow_file_urls=True):
        path = os.path.expanduser(url)
        if not os.path.isfile(path):
            raise UserError(f"{url}: no such file")
        return path
    if url.startswith("file://"):
        path = _file_url_to_path(url)
        if not os.path.isfile(path):
            raise UserError(f"{url}: no such file ({path})")
        return path
    return None


def package_version() -> str:
    """This package's version as installed (recorded in exported files), or 'unknown' when run from a bare checkout."""
    try:
        return importlib.metadata.version("stylegan-human-sg2")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
