"""Contact sheets: tiling images into one PNG, and the ROWSxCOLS option syntax the commands share."""
import re

import numpy as np
import PIL.Image

from .util import atomic_write


def parse_grid(text):
    """'4x8' -> (4, 8): rows, columns."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ValueError(f"'{text}' is not of the form ROWSxCOLS, e.g. 4x8")
    return int(match.group(1)), int(match.group(2))


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
