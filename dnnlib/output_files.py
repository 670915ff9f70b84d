"""Writing output files and folders: atomically (a reader never sees half a file, a failed or killed write leaves
no temporary behind), with the permissions the user's umask gives, and output folders whose failures name the
option."""
import contextlib
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
from typing import Any

from .errors import UserError


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
    permissions of a plain open()/mkdir() under the user's umask (mkstemp alone would make it 0600). The first
    write into a folder in a process sweeps the temporaries killed writes left there (sweep_stale_temporaries).
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + ".tmp-"
    with sigterm_raises():
        try:
            os.makedirs(parent, exist_ok=True)
            sweep_stale_temporaries(parent)
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


STALE_TEMPORARY_SECONDS = 24 * 3600  # a temporary file nobody wrote to for a day was left by a killed process
# What atomic_output's temporaries are called: ".TARGET.tmp-" + mkstemp's 8 characters + the suffix, if any.
OUR_TEMPORARY = re.compile(r"\..+\.tmp-[a-z0-9_]{8}(\.[A-Za-z0-9]+)?")
_swept_folders = set()  # each folder is swept once a process: a tool may write thousands of files into one


def sweep_stale_temporaries(folder: str) -> None:
    """Remove the temporary files that writes killed without cleanup (SIGKILL, a power cut) left in `folder`.

    Only plain files named as atomic_output names its temporaries that no one has written to for
    STALE_TEMPORARY_SECONDS, so a write still going on elsewhere (another process, another host) is left alone.
    Temporary folders are kept: a folder's time does not change while a file inside it is written.
    """
    key = os.path.realpath(folder)
    if key in _swept_folders:
        return
    _swept_folders.add(key)
    cutoff = time.time() - STALE_TEMPORARY_SECONDS
    try:
        with os.scandir(folder) as scan:
            entries = [entry for entry in scan if OUR_TEMPORARY.fullmatch(entry.name)]
    except OSError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                os.remove(entry.path)
        except OSError:
            pass


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
