"""The snapshots of a run folder: their names, which of them are complete, and which to keep (--keep-snapshots).

Names carry the exact image count, so two snapshots never share one: `network-snapshot-000400.pkl` is kimg
400 exactly, `network-snapshot-000000_200.pkl` kimg 0.2 (the 200 images past kimg 0). A short run with
`--tick=0.2` no longer writes kimg 0 again and again, and the names sort as their image counts do. The
fakes grids follow the same rule (`fakes000000_200.png`).

Retention (`prune`) runs only after a new snapshot is complete on disk (written to a temporary file,
flushed, renamed, and the folder synced), and removes files one at a time with an atomic unlink, so a run
killed in the middle of it still has every snapshot it meant to keep.
"""
import json
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

SNAPSHOT_PATTERN = re.compile(r"network-snapshot-(\d+)(?:_(\d{3}))?\.pkl")
PICKLE_STOP = b"."  # Every pickle ends with the STOP opcode.


def kimg_tag(nimg: int) -> str:
    """'000400' for exactly 400 kimg, '000000_200' for 200 images (kimg 0.2)."""
    whole, rest = divmod(int(nimg), 1000)
    return f"{whole:06d}" if rest == 0 else f"{whole:06d}_{rest:03d}"


def snapshot_name(nimg: int) -> str:
    return f"network-snapshot-{kimg_tag(nimg)}.pkl"


def grid_name(nimg: int) -> str:
    """The fakes grid written at `nimg` images."""
    return f"fakes{kimg_tag(nimg)}.png"


def snapshot_nimg(name: str) -> Optional[int]:
    """The image count a snapshot file name stands for (older whole-kimg names: kimg * 1000), else None."""
    match = SNAPSHOT_PATTERN.fullmatch(os.path.basename(name))
    if match is None:
        return None
    return int(match.group(1)) * 1000 + int(match.group(2) or 0)


def is_complete(path: str) -> bool:
    """A whole snapshot file: the final name (writers rename a finished temporary file), and a pickle's last byte."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) == PICKLE_STOP
    except OSError:
        return False


def complete_snapshots(run_dir: str) -> List[Tuple[int, str]]:
    """[(nimg, path)] of the run folder's complete snapshots, oldest first."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return []
    found = []
    for name in names:
        nimg = snapshot_nimg(name)
        path = os.path.join(run_dir, name)
        if nimg is not None and is_complete(path):
            found.append((nimg, os.path.getmtime(path), path))
    return [(nimg, path) for nimg, _mtime, path in sorted(found)]


def latest_snapshot(run_dir: str) -> Optional[str]:
    """The newest complete snapshot of a run folder, or None."""
    found = complete_snapshots(run_dir)
    return found[-1][1] if found else None


# ----------------------------------------------------------------------------
# Retention.


def best_snapshot(run_dir: str, metric: str, result_key: str, lower_is_better: bool) -> Optional[str]:
    """The snapshot with the best `result_key` in <run_dir>/metric-<metric>.jsonl (among those still there)."""
    path = os.path.join(run_dir, f"metric-{metric}.jsonl")
    if not os.path.isfile(path):
        return None
    best = None
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
                value, name = float(entry["results"][result_key]), str(entry["snapshot_pkl"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill, or another metric's
            snapshot = os.path.join(run_dir, os.path.basename(name))
            better = best is None or (value < best[0] if lower_is_better else value > best[0])
            if better and os.path.isfile(snapshot):
                best = (value, snapshot)
    return None if best is None else best[1]


def snapshots_to_delete(snapshots: Sequence[Tuple[int, str]], keep: int, keep_every_kimg: Optional[float] = None,
                        best: Optional[str] = None) -> List[str]:
    """The paths that retention removes, oldest first: all but the newest `keep`, the oldest snapshot of each
    `keep_every_kimg` interval, and `best`. `snapshots` is [(nimg, path)] oldest first."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    kept = {path for _nimg, path in snapshots[-keep:]}
    if best is not None:
        kept.add(best)
    if keep_every_kimg:
        first_of_interval: Dict[int, str] = {}
        for nimg, path in snapshots:
            first_of_interval.setdefault(int(nimg // (keep_every_kimg * 1000)), path)
        kept.update(first_of_interval.values())
    return [path for _nimg, path in snapshots if path not in kept]


def sync_folder(folder: str) -> None:
    """Make the renames in `folder` durable (POSIX; elsewhere a no-op)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def prune(run_dir: str, keep: int, keep_every_kimg: Optional[float] = None, best: Optional[str] = None,
          log: Callable = print, remove: Optional[Callable] = None) -> List[str]:
    """Delete the snapshots retention does not keep (after the newest is on disk); returns the paths removed.
    `remove` deletes one file (default os.remove, looked up at the call)."""
    remove = remove or os.remove
    sync_folder(run_dir)
    removed = []
    for path in snapshots_to_delete(complete_snapshots(run_dir), keep, keep_every_kimg, best):
        try:
            remove(path)
        except FileNotFoundError:  # removed meanwhile (by hand, or by another run's retention)
            continue
        removed.append(path)
    if removed:
        log(f"Removed {len(removed)} older snapshot(s) (--keep-snapshots={keep}): "
            + ", ".join(os.path.basename(p) for p in removed))
    return removed
