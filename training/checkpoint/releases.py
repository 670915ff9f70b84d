"""Named releases: `--network=shhq-1.0-512` (or `shhq-1.0-1024`) wherever a checkpoint is read.

The SHHQ dataset card (StyleGAN-Human) publishes its StyleGAN2 checkpoints as Google Drive files, with their
fid50k_full, but no hash. So the first download records the file's SHA-256 (trust on first use) in
$DNNLIB_CACHE_DIR/releases/<name>.sha256, and every later use checks the file against that record: a cached
file that changed, or a Drive file replaced by another, is refused instead of loaded. `--sha256` still checks
against a hash you got elsewhere. `generate.py --list-networks` lists the names, links and records.
"""
import collections
import os
from typing import List, Optional

from dnnlib import download
from dnnlib.util import UserError, atomic_write, make_cache_dir_path, open_url

Release = collections.namedtuple("Release", "file drive_id size fid")

RELEASES = {
    "shhq-1.0-1024": Release("SHHQ-1.0_sg2_1024.pkl", "1PuvE72xpc69Zq4y58dohuKbG9dFnnjEX", "1024x512", 3.56),
    "shhq-1.0-512": Release("SHHQ-1.0_sg2_512.pkl", "170t2FRWxR8_TG3_y0nVtDBogLPOClnyf", "512x256", 3.68),
}


def is_release(text) -> bool:
    return isinstance(text, str) and text.lower() in RELEASES


def release_url(name: str) -> str:
    """The Google Drive link of a release."""
    return f"https://drive.google.com/file/d/{RELEASES[name.lower()].drive_id}/view"


def record_path(name: str) -> str:
    """Where the SHA-256 of a release's first download is kept."""
    return make_cache_dir_path("releases", f"{name.lower()}.sha256")


def recorded_sha256(name: str) -> Optional[str]:
    """The recorded SHA-256 of a release, or None before its first download; a damaged record is an error."""
    path = record_path(name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return download.normalize_sha256(f.read().strip(), what=path)


def open_release(name: str, sha256: Optional[str] = None, verbose: bool = True):
    """The release's file, opened for reading: downloaded once into the cache, checked against `sha256` or the
    record of its first download (which it writes when there is none)."""
    name = name.lower()
    recorded = recorded_sha256(name)
    path = open_url(release_url(name), sha256=sha256 or recorded, verbose=verbose, return_filename=True)
    actual = recorded if recorded is not None and sha256 is None else download.file_sha256(path)
    if recorded is None:
        atomic_write(record_path(name), lambda f: f.write(actual.encode("ascii") + b"\n"))
        if verbose:
            print(f"{name}: first download, SHA-256 {actual}; recorded in {record_path(name)}, later uses are "
                  "checked against it")
    elif actual != recorded:
        raise UserError(f"{name}: SHA-256 is {actual}, but its first download was {recorded} ({record_path(name)}); "
                        "delete that record only if you trust the new file")
    return open(path, "rb")


def describe_releases() -> List[str]:
    """One line per release for --list-networks: name, file, size, published FID, link, recorded SHA-256."""
    lines = []
    for name, release in RELEASES.items():
        recorded = recorded_sha256(name)
        lines.append(f"{name:<14s} {release.file}  {release.size}  fid50k_full {release.fid}  {release_url(name)}  "
                     + (f"sha256 {recorded}" if recorded else "not downloaded yet"))
    return lines
