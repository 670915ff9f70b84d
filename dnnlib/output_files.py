"""Writing output files and folders: atomically (a reader never sees half a file), with the permissions the
user's umask gives, and output folders whose failures name the option."""
import os
import tempfile

from .errors import UserError


def atomic_write(path: str, write_fn) -> None:
    """Write a file through `write_fn(f)` into a temporary file beside it, then rename: readers never see half a file.

    The file gets the permissions of a plain open() under the user's umask (mkstemp alone would make it 0600).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".tmp-")
    try:
        apply_umask(tmp)
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
