"""Opening image files that may be hostile: the format their extension names, bounded headers and decoding,
one-line errors.

One set of limits for every image read (the dataset reader in training/dataset.py, dataset_tool.py, bg_white.py,
the projector's target and the web app's uploads): a file is identified from at most HEADER_BYTES of it, may be
at most twice its raw pixels plus METADATA_BYTES long (so data appended to an image is refused before it is
read), and decodes within PIL's decompression-bomb limit (MAX_IMAGE_PIXELS, about 89 megapixels). Needs only PIL.
"""
import contextlib
import io
import os
import stat
import warnings
import zipfile
import zlib
from typing import IO, Callable, Optional

import PIL.Image

from .errors import UserError

# Camera JPEGs may carry several pictures (MPO); PIL opens those through the JPEG plugin's MPO variant.
FORMATS_BY_EXTENSION = {".png": ("PNG",), ".jpg": ("JPEG", "MPO"), ".jpeg": ("JPEG", "MPO")}
USER_IMAGE_FORMATS = ("PNG", "JPEG", "MPO")  # a user's photo with another name is tried as PNG or JPEG
# What PIL and zipfile raise for damaged data (bad chunks, truncation, a zip member's bad CRC).
READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)
HEADER_BYTES = 4 << 20       # bytes PIL may read to learn an image's format, size and mode (metadata included)
METADATA_BYTES = 4 << 20     # what a file may hold beyond twice its pixels (ICC profiles, EXIF, text chunks)
BYTES_PER_BAND = {"I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}  # other modes: one byte a band


class HeaderTooLong(Exception):
    """Raised by HeaderReader past its limit (not one of the errors PIL takes as 'try the next format')."""


class HeaderReader:
    """The first `limit` bytes of a stream as a seekable file, read once: what PIL needs to identify an image.

    Bytes are read from the stream only forward and kept, so trying other formats after a failure (for the
    error message) reads nothing twice, and a file whose header goes on and on stops at `limit`.
    """

    def __init__(self, stream: IO[bytes], limit: int = HEADER_BYTES):
        self.stream, self.limit = stream, limit
        self.data = bytearray()
        self.pos = 0
        self.at_end = False

    def _fill(self, end: int) -> None:
        while len(self.data) < end and not self.at_end:
            if len(self.data) >= self.limit:
                raise HeaderTooLong()
            chunk = self.stream.read(min(end, self.limit) - len(self.data))
            self.at_end = not chunk
            self.data += chunk

    def read(self, size: int = -1) -> bytes:
        end = self.pos + size if size is not None and size >= 0 else self.limit + 1
        self._fill(end)
        out = bytes(self.data[self.pos:end])
        self.pos += len(out)
        return out

    def readline(self, size: int = -1) -> bytes:
        end = self.pos + size if size is not None and size >= 0 else self.limit + 1
        while self.data.find(b"\n", self.pos, end) < 0 and len(self.data) < min(end, self.limit) and not self.at_end:
            self._fill(min(len(self.data) + 4096, end, self.limit))
        newline = self.data.find(b"\n", self.pos, end)
        return self.read((newline + 1 if newline >= 0 else end) - self.pos)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            self._fill(self.limit + 1)
            offset += len(self.data)
        elif whence == io.SEEK_CUR:
            offset += self.pos
        self.pos = max(0, offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def max_file_bytes(height: int, width: int, mode: str) -> int:
    """The most bytes an image file of this size and mode should take: twice its raw pixels (compressed formats
    stay below that even at their worst, and a second, MPO picture fits too) plus METADATA_BYTES."""
    try:
        bands = PIL.Image.getmodebands(mode)
    except (KeyError, ValueError):  # a mode PIL cannot describe: count it as four bands
        bands = 4
    raw = height * width * bands * BYTES_PER_BAND.get(mode, 1)
    return 2 * raw + METADATA_BYTES


def open_regular_file(path: str, where: str) -> IO[bytes]:
    """A binary file object of `path` when it is a regular file (a FIFO or device would block or never end)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{where}: not a regular file (a FIFO, device or socket); use an image file")
    return os.fdopen(fd, "rb")


def _actual_format(f: IO[bytes]) -> Optional[str]:
    """The format PIL finds in `f` (from its start) when it may try all of them (for the error message)."""
    try:
        f.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PIL.Image.open(f) as img:
                return img.format
    except Exception:  # Only an error message depends on this: anything unreadable is simply unknown.
        return None


def _identified(f: IO[bytes], formats, where: str) -> PIL.Image.Image:
    """PIL.Image.open(f) as one of `formats`; a file of another format is named in the error."""
    PIL.Image.init()
    openable = tuple(name for name in formats if name in PIL.Image.OPEN)  # PIL 10+ opens MPO through JPEG
    try:
        return PIL.Image.open(f, formats=openable)
    except PIL.UnidentifiedImageError:
        actual = _actual_format(f)
        expected = " or ".join(sorted({name for name in formats if name != "MPO"}))
        if actual is not None and actual not in formats:
            raise UserError(f"{where}: the file is a {actual} image, not {expected}; convert it or remove it") \
                from None
        raise UserError(f"{where}: not a readable image; replace or remove the file") from None


@contextlib.contextmanager
def _bounded_decoding(where: str):
    """PIL's decompression-bomb warning as an error, and PIL's and zipfile's errors as UserError naming `where`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            yield
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as err:
        raise UserError(f"{where}: image too large to decode safely ({err}); replace or remove the file") from None
    except HeaderTooLong:
        raise UserError(f"{where}: more than {HEADER_BYTES >> 20} MB before the image data begins; not a "
                        "plain image, replace or remove the file") from None
    except READ_ERRORS as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise UserError(f"{where}: not a readable image ({err}); replace or remove the file") from None


def formats_of(name: str, fallback=None):
    """The PIL formats the extension of `name` names (fallback for other names)."""
    return FORMATS_BY_EXTENSION.get(os.path.splitext(name)[1].lower(), fallback)


@contextlib.contextmanager
def open_image(open_file: Callable[[], IO[bytes]], name: str, where: str, formats=None):
    """The PIL image of the file `open_file()` returns, opened only as the format the extension of `name`
    names (or `formats`), within PIL's decompression-bomb limit (MAX_IMAGE_PIXELS). Any failure, while
    opening or while decoding in the `with` body, becomes a UserError naming `where`."""
    formats = formats or formats_of(name)
    with _bounded_decoding(where), open_file() as f, _identified(f, formats, where) as img:
        yield img


def read_header(open_file: Callable[[], IO[bytes]], name: str, where: str, size: Optional[int] = None,
                formats=None) -> tuple:
    """(height, width, PIL mode) of an image from at most HEADER_BYTES of its file (no pixel decoding). With the
    file's `size`, a file far larger than its image can take (max_file_bytes: appended data) is refused."""
    formats = formats or formats_of(name)
    with _bounded_decoding(where), open_file() as raw, _identified(HeaderReader(raw), formats, where) as img:
        height, width, mode = img.height, img.width, img.mode
    if size is not None and size > max_file_bytes(height, width, mode):
        raise UserError(f"{where}: {size} bytes for a {height}x{width} {mode} image, more than such an image "
                        f"takes ({max_file_bytes(height, width, mode)} at most); a damaged file or one with data "
                        "appended, replace or remove it")
    return height, width, mode


@contextlib.contextmanager
def open_user_image(path: str, where: Optional[str] = None):
    """A photo from the user (a projection target, an upload, bg_white's inputs) with the dataset's limits: a
    regular file, PNG or JPEG, header and size checked first (read_header), decoded within PIL's bomb limit."""
    where = where or path
    formats = formats_of(path, USER_IMAGE_FORMATS)
    read_header(lambda: open_regular_file(path, where), path, where, os.path.getsize(path), formats)
    with open_image(lambda: open_regular_file(path, where), path, where, formats) as img:
        yield img
