"""Miscellaneous helpers: attribute dicts, user-facing errors, cached URL opening, object lookup by name."""
import contextlib
import hashlib
import importlib
import io
import os
import re
import shutil
import signal
import tempfile
import threading
import urllib.parse
import urllib.request
from typing import Any


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


class UserError(Exception):
    """A problem with the user's input (a file, an option): shown as one line, without a traceback.

    Control characters in the message (e.g. from a file or class name read from a file) are escaped,
    so a message cannot span lines, move the cursor or recolour the terminal.
    """

    def __init__(self, message: Any = "", *args: Any) -> None:
        super().__init__(escape_text(str(message)), *args)


# ----------------------------------------------------------------------------
# Formatting.

def escape_text(text: str, max_len: int = None) -> str:
    """`text` with every non-printable character (newlines, ANSI escapes, bidi overrides) written as
    a Python escape such as \\x1b; cut to `max_len` characters with '...' when given. Idempotent."""
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    if max_len is not None and len(text) > max_len:
        text = text[:max(max_len - 3, 0)] + "..."
    return text


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
    from . import download  # here: download imports this module
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
    from . import download
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


def atomic_write(path: str, write_fn) -> None:
    """Write a file through `write_fn(f)` into a temporary file beside it, then rename: readers never see half a file.

    See atomic_output; the data is flushed to disk before the rename.
    """
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_output(path: str, suffix: str = "", folder: bool = False):
    """Yield a temporary path beside `path` (a file, or an empty folder with folder=True) to write into.

    When the block ends normally the temporary is renamed over `path`; when it raises (SIGTERM included, see
    sigterm_raises) it is removed. So a failed or killed write leaves no partial file and an existing `path`
    untouched. `suffix` ends the temporary name (for writers that pick the format from it, e.g. '.mp4'). An
    OSError about the temporary (a full disk: ENOSPC, EFBIG) is raised naming `path`. The result gets the
    permissions of a plain open()/mkdir() under the user's umask (mkstemp alone would make it 0600).
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + ".tmp-"
    with sigterm_raises():
        try:
            os.makedirs(parent, exist_ok=True)
            if folder:
                tmp = tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=suffix)
            else:
                fd, tmp = tempfile.mkstemp(dir=parent, prefix=prefix, suffix=suffix)
                os.close(fd)
        except OSError as err:
            raise _naming(err, path, None) from None
        try:
            apply_umask(tmp)
            yield tmp
            os.replace(tmp, path)
        except BaseException as err:
            remove_quietly(tmp)
            if isinstance(err, OSError):
                raise _naming(err, path, tmp) from None
            raise


def _naming(err: OSError, path: str, tmp: Any) -> OSError:
    """`err` as an OSError about `path` when it names no file or the temporary one (write errors name none)."""
    if err.errno is None or err.filename not in (None, tmp):
        return err
    return OSError(err.errno, err.strerror, path)


def remove_quietly(path: str) -> None:
    """Remove a file or folder tree if it exists; errors are ignored (for cleanup on the way out of a failure)."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
    except OSError:
        pass


TERMINATING_SIGNALS = ("SIGTERM", "SIGHUP")  # signals whose default action kills a process without cleanup


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_raises():
    """While the block runs, SIGTERM and SIGHUP raise SystemExit(128 + signal) instead of killing the process,
    so `finally` and `except BaseException` clauses (temporary files, claimed destinations) run on the way out.

    Only signals left at their default action are changed, and only in the main thread: a handler someone
    installed (e.g. training's stop handler) or an ignored signal is kept. Nested blocks are fine.
    """
    changed = {}
    if threading.current_thread() is threading.main_thread():
        for name in TERMINATING_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
                changed[sig] = signal.signal(sig, _raise_exit)
    try:
        yield
    finally:
        for sig, handler in changed.items():
            signal.signal(sig, handler)


def package_version() -> str:
    """This package's version as installed (recorded in exported files), or 'unknown' when run from a bare checkout."""
    import importlib.metadata
    try:
        return importlib.metadata.version("stylegan-human-sg2")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------
# Output files and folders.

def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else by setting it back at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str) -> None:
    """Give a file made by mkstemp/mkdtemp (0600/0700) the mode open()/mkdir() would: 0666/0777 less the umask."""
    full = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, full & ~current_umask())


def make_output_dir(path: str, option: str = "--outdir") -> str:
    """Create the folder `path` (and its parents) if needed; a file in the way is a UserError naming `option`."""
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = path
        while blocker and not os.path.exists(blocker):
            blocker = os.path.dirname(blocker)
        raise UserError(f"{option}: {path} cannot be a folder, {blocker or path} is a file; "
                        f"choose another {option}") from None
    except PermissionError as err:
        raise UserError(f"{option}: cannot create {path} ({err.strerror}); choose another {option}") from None
    return path
