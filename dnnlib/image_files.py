"""Opening image files that may be hostile: the format their extension names, bounded decoding, one-line errors.

Used by the dataset reader (training/dataset.py), dataset_tool.py and bg_white.py. Needs only PIL.
"""
import contextlib
import os
import warnings
import zipfile
import zlib
from typing import IO, Callable, Optional

import PIL.Image

from .util import UserError

# Camera JPEGs may carry several pictures (MPO); PIL opens those through the JPEG plugin's MPO variant.
FORMATS_BY_EXTENSION = {".png": ("PNG",), ".jpg": ("JPEG", "MPO"), ".jpeg": ("JPEG", "MPO")}
# What PIL and zipfile raise for damaged data (bad chunks, truncation, a zip member's bad CRC).
READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)


def _actual_format(open_file: Callable[[], IO[bytes]]) -> Optional[str]:
    """The format PIL finds when it may try all of them (for the error message); None if none fits."""
    try:
        with open_file() as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PIL.Image.open(f) as img:
                return img.format
    except Exception:  # Only an error message depends on this: anything unreadable is simply unknown.
        return None


@contextlib.contextmanager
def open_image(open_file: Callable[[], IO[bytes]], name: str, where: str):
    """The PIL image of the file `open_file()` returns, opened only as the format the extension of `name`
    names, within PIL's decompression-bomb limit (MAX_IMAGE_PIXELS). Any failure, while opening or while
    decoding in the `with` body, becomes a UserError naming `where`."""
    formats = FORMATS_BY_EXTENSION.get(os.path.splitext(name)[1].lower())
    try:
        with open_file() as f, warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(f, formats=formats) as img:
                yield img
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as err:
        raise UserError(f"{where}: image too large to decode safely ({err}); replace or remove the file") from None
    except PIL.UnidentifiedImageError:
        actual = _actual_format(open_file)
        if actual is not None and formats is not None and actual not in formats:
            raise UserError(f"{where}: the file is a {actual} image, not {formats[0]} as its name says; convert it "
                            "or remove it") from None
        raise UserError(f"{where}: not a readable image; replace or remove the file") from None
    except READ_ERRORS as err:
        raise UserError(f"{where}: not a readable image ({err}); replace or remove the file") from None
