"""Writing frames to a video file: mp4 (H.264) through imageio and imageio-ffmpeg, GIF as the fallback.

imageio is the optional extra `pip install .[video]`; it is imported only when an mp4 is written or a video
read. Without imageio-ffmpeg (whose wheel ships an ffmpeg binary) the frames go to a GIF beside the requested
path instead. mp4 frames stream to ffmpeg; a GIF is kept in memory until it is closed, and Pillow merges
identical consecutive GIF frames into one longer frame (the playing time is kept, the frame count drops).
"""
import os
import warnings
from typing import Iterable, List, Tuple

import numpy as np
import PIL.Image

import dnnlib
from dnnlib.util import UserError

INSTALL_HINT = "pip install .[video]"
MAX_FRAMES = 100_000         # About 28 minutes at 60 fps.
MAX_FRAME_PIXELS = 1 << 26   # 8192 x 8192, beyond what H.264 encoders take.


def check_video(num_frames: int, height: int, width: int, option: str) -> None:
    """Refuse a video of more than MAX_FRAMES frames or frames over MAX_FRAME_PIXELS, before any work."""
    if num_frames > MAX_FRAMES:
        raise UserError(f"{option}: {num_frames} frames; a video may have at most {MAX_FRAMES}")
    if height * width > MAX_FRAME_PIXELS:
        raise UserError(f"{option}: frames of {height}x{width} pixels; at most {MAX_FRAME_PIXELS} pixels a frame")


def _even(frame):
    """H.264 in yuv420p needs even sides: repeat the last row/column where a side is odd."""
    if frame.shape[0] % 2:
        frame = np.concatenate([frame, frame[-1:]], axis=0)
    if frame.shape[1] % 2:
        frame = np.concatenate([frame, frame[:, -1:]], axis=1)
    return frame


def _rgb(frame):
    frame = np.asarray(frame, dtype=np.uint8)
    return np.repeat(frame, 3, axis=2) if frame.ndim == 3 and frame.shape[2] == 1 else frame


def _ffmpeg_available():
    try:
        import imageio_ffmpeg  # here: an optional extra (pip install .[video])
        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except (ImportError, RuntimeError):
        return False


def mp4_complete(path):
    """Whether an mp4 file holds whole top-level boxes, a 'moov' among them (ffmpeg writes it last): ffmpeg's exit
    status is not reported through imageio, and a full disk leaves a file cut short."""
    size = os.path.getsize(path)
    found, offset = set(), 0
    with open(path, "rb") as f:
        while offset < size:
            f.seek(offset)
            header = f.read(16)
            if len(header) < 8:
                return False
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if length == 1 and len(header) == 16:
                length = int.from_bytes(header[8:16], "big")
            elif length == 0:
                length = size - offset
            if length < 8 or offset + length > size:
                return False
            found.add(kind)
            offset += length
    return b"moov" in found


class VideoWriter:
    """`with VideoWriter(path, fps) as out: out.append(frame)`; the file appears complete on close, or not at all.

    `path` ends in .mp4 or .gif; an .mp4 without imageio-ffmpeg becomes a .gif (see `self.path`) with a warning.
    """

    def __init__(self, path, fps=30, bitrate="16M"):
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".mp4", ".gif"):
            raise UserError(f"{path}: unknown video type '{ext}'; use .mp4 or .gif")
        if ext == ".mp4" and not _ffmpeg_available():
            gif = os.path.splitext(path)[0] + ".gif"
            warnings.warn(f"imageio-ffmpeg is not installed ({INSTALL_HINT}); writing {gif} instead of {path}")
            path, ext = gif, ".gif"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path, self.fps, self.count = path, fps, 0
        self._gif_frames = [] if ext == ".gif" else None
        self._tmp = self._mp4 = None
        if ext == ".mp4":
            self._open_mp4(bitrate)

    def _open_mp4(self, bitrate):
        try:
            import imageio  # here: an optional extra (pip install .[video])
        except ImportError:
            raise UserError(f"{self.path}: writing video needs imageio; {INSTALL_HINT}") from None
        # ffmpeg writes to a file name: a hidden temporary one beside the target (dnnlib.util.atomic_output),
        # renamed on close, removed on failure.
        self._output = dnnlib.util.atomic_output(self.path, suffix=".mp4")
        self._tmp = self._output.__enter__()
        try:
            self._mp4 = imageio.get_writer(self._tmp, format="FFMPEG", mode="I", fps=self.fps, codec="libx264",
                                           bitrate=bitrate, pixelformat="yuv420p", macro_block_size=1,
                                           ffmpeg_log_level="error")
        except BaseException as err:
            self._output.__exit__(type(err), err, err.__traceback__)
            raise

    def append(self, frame):
        frame = _rgb(frame)
        if self._mp4 is not None:
            self._mp4.append_data(_even(frame))
        else:
            self._gif_frames.append(PIL.Image.fromarray(frame))
        self.count += 1

    def close(self, keep=True):
        """Finish the file (keep=True) or drop it; an mp4's temporary file is gone either way."""
        if self._mp4 is not None:
            self._close_mp4(keep and self.count > 0)
        elif keep and self._gif_frames:
            first, rest = self._gif_frames[0], self._gif_frames[1:]
            duration_ms = max(int(round(1000 / self.fps)), 20)  # browsers play delays under 20 ms slowly
            dnnlib.util.atomic_write(self.path, lambda f: first.save(f, format="GIF", save_all=True, append_images=rest,
                                                                     duration=duration_ms, loop=0))
        if keep and not self.count:
            raise UserError(f"{self.path}: no frames to write")

    def _close_mp4(self, keep):
        """Stop ffmpeg, then rename its file over the target (keep, and complete) or remove it (atomic_output)."""
        writer, self._mp4 = self._mp4, None
        try:
            writer.close()  # ffmpeg may already be gone (e.g. Ctrl-C reached it too): then this raises
            if keep and not mp4_complete(self._tmp):
                raise UserError(f"{self.path}: ffmpeg did not finish the video (is the disk full?); nothing was "
                                "written")
        except BaseException as err:
            self._output.__exit__(type(err), err, err.__traceback__)
            raise
        if keep:
            self._output.__exit__(None, None, None)
        else:
            self._output.__exit__(UserError, UserError(f"{self.path}: not written"), None)  # removes the file

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(keep=exc_type is None)


def write_video(path: str, frames: Iterable[np.ndarray], fps: int = 30, bitrate: str = "16M") -> Tuple[str, int]:
    """Write HWC uint8 frames (any iterable) to `path` (.mp4 or .gif); returns (path written, frame count)."""
    with VideoWriter(path, fps, bitrate) as out:
        for frame in frames:
            out.append(frame)
    return out.path, out.count


def read_video(path: str) -> List[np.ndarray]:
    """All frames of a video as HWC uint8 arrays (for checks and tests); needs imageio."""
    try:
        import imageio.v3 as iio  # here: an optional extra (pip install .[video])
    except ImportError:
        raise UserError(f"{path}: reading video needs imageio; {INSTALL_HINT}") from None
    return [np.asarray(frame) for frame in iio.imiter(path)]
