"""Contact sheets: tiling images into one PNG, and the ROWSxCOLS option syntax the commands share."""
import re

import numpy as np
import PIL.Image

from .errors import UserError
from .output_files import atomic_write

MAX_GRID_PIXELS = 1 << 28  # 16384 x 16384: about 0.8 GB of RGB, what one contact sheet may take.


def parse_grid(text):
    """'4x8' -> (4, 8): rows, columns."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ValueError(f"'{text}' is not of the form ROWSxCOLS, e.g. 4x8")
    return int(match.group(1)), int(match.group(2))


def check_grid(rows, cols, height, width, option="--grid"):
    """Refuse a grid of rows x cols images of height x width larger than MAX_GRID_PIXELS, before any work."""
    if rows * cols * height * width > MAX_GRID_PIXELS:
        raise UserError(f"{option}: {rows}x{cols} images of {height}x{width} would make a {rows * height}x"
                        f"{cols * width} image, more than {MAX_GRID_PIXELS} pixels; choose fewer rows or columns")


def make_grid(images, rows, cols):
    """Tile HWC uint8 images row by row into one image; unused cells stay black."""
    height, width, channels = images[0].shape
    grid = np.zeros([rows * height, cols * width, channels], dtype=np.uint8)
    for idx, pixels in enumerate(images):
        row, col = divmod(idx, cols)
        grid[row * height:(row + 1) * height, col * width:(col + 1) * width] = pixels
    return grid


def save_png(pixels, path):
    """Write an HWC uint8 image (1 or 3 channels) as PNG, atomically (an existing file is replaced whole or kept)."""
    image = PIL.Image.fromarray(pixels[:, :, 0], "L") if pixels.shape[2] == 1 else PIL.Image.fromarray(pixels, "RGB")
    atomic_write(path, lambda f: image.save(f, format="PNG"))
