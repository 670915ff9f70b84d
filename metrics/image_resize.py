"""How images reach a detector's input size: `--resize=original` or `--resize=clean`.

- `original` (the default): what the published numbers used. The Inception-v3 TorchScript file resizes uint8
  images itself (bilinear); the DINOv2 detector resizes as EDM2 does (torch bicubic with antialiasing).
- `clean`: clean-fid's "clean" mode (Parmar et al. 2022, "On Aliased Resizing and Surprising Subtleties in GAN
  Evaluation"): each channel resized with PIL's bicubic filter in 32-bit float to the detector's input size,
  clipped to [0, 255] and never rounded back to uint8. The detector then gets its input size and leaves it as is.

Either way a 2:1 image is stretched to the square input, never cropped.
"""
import concurrent.futures
import os

import numpy as np
import PIL.Image
import torch

import dnnlib

RESIZE_MODES = ("original", "clean")


def check_resize_mode(mode, option="--resize"):
    if mode not in RESIZE_MODES:
        raise dnnlib.util.UserError(f"{option}: unknown mode {mode!r}; choose {' or '.join(RESIZE_MODES)}")
    return mode


MAX_THREADS = 8  # PIL releases the GIL while it resizes, so threads share the images out


def clean_resize(images, size):
    """uint8 (or float) NCHW images -> float32 NCHW of `size` (H, W): PIL bicubic per channel in float, clipped."""
    height, width = size
    pixels = images.detach().to("cpu", torch.float32).numpy()
    out = np.empty([pixels.shape[0], pixels.shape[1], height, width], dtype=np.float32)

    def resize_image(n):
        for c, channel in enumerate(pixels[n]):
            resized = PIL.Image.fromarray(channel).resize((width, height), resample=PIL.Image.BICUBIC)
            out[n, c] = np.asarray(resized)

    threads = max(1, min(MAX_THREADS, os.cpu_count() or 1, len(pixels)))
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(resize_image, range(len(pixels))))
    return torch.from_numpy(out.clip(0, 255)).to(images.device)


def detector_input(images, input_size, mode, detector_title="this detector"):
    """The images a detector is called with: as they are (`original`), or clean-resized to its `input_size`."""
    if mode == "original":
        return images
    if input_size is None:
        raise dnnlib.util.UserError(f"--resize={mode}: {detector_title} has no clean mode (it applies to "
                                    "Inception-v3 and DINOv2); compute its metrics with --resize=original")
    return clean_resize(images, input_size)
