"""The tools' one overwrite policy: an output that exists already is replaced only with --force.

Every tool lists what it will write and checks the list before any work starts, so a refusal costs
nothing and leaves the folder as it was. Folders are never replaced or emptied, even with --force.
"""
import os
from typing import Iterable

from dnnlib.util import UserError


def check_new(paths: Iterable[str], force: bool, option: str = "--outdir") -> None:
    """Refuse (one line naming the first and the count) when any of `paths` exists and `force` is not set;
    a folder where a file is to go is refused either way."""
    paths = [os.fspath(p) for p in paths]
    folders = [p for p in paths if os.path.isdir(p)]
    if folders:
        raise UserError(f"{folders[0]}: is a folder; choose another {option} (--force replaces files only)")
    existing = [p for p in paths if os.path.lexists(p)]
    if existing and not force:
        more = f" ({len(existing)} outputs in all)" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]}: already exists{more}; choose another {option} or pass --force to "
                        f"replace it")
