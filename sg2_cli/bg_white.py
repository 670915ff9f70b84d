"""bg_white.py / sg2-bg-white: every person of a folder onto a white background, using the person
segmentation mask beside it.

SHHQ ships raw photos and person masks as two folders of files with the same stem. A mask pixel is
"person" when its value (the brightest colour channel, so coloured part labels count too) is above
a threshold: 0 for lossless masks (binary 0/1 or 0/255 masks and label maps), 127 for JPEG masks,
whose compression noise would otherwise grow a halo. The mask edge is softened with a Gaussian blur
so the cut-out does not look jagged. Needs numpy, scipy and pillow only (no torch).

    python bg_white.py --images=~/SHHQ/images --masks=~/SHHQ/masks --outdir=~/SHHQ/white
"""
import os
from typing import Dict, List, Optional, Tuple

import click
import numpy as np
import PIL.Image
import scipy.ndimage
import tqdm

import dnnlib
from dnnlib import image_files
from dnnlib.image_grid import save_png

from . import outputs
from .options import Number, shared
from .runner import run

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
MAX_FEATHER = 100.0  # Pixels; the blur kernel spans 8 sigma, so this bounds its cost.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def files_by_stem(folder: str) -> Dict[str, str]:
    """{file stem: file name} of the images directly in `folder`; two files with one stem are an error."""
    if not os.path.isdir(folder):
        raise dnnlib.util.UserError(f"{folder}: no such folder")
    found = {}
    for fname in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(fname)
        if ext.lower() not in IMAGE_EXTENSIONS or not os.path.isfile(os.path.join(folder, fname)):
            continue
        if stem in found:
            raise dnnlib.util.UserError(f"{os.path.join(folder, fname)}: same name as {found[stem]}; "
                                        "keep one file per stem")
        found[stem] = fname
    return found


def open_file(path: str):
    """Context manager: the PIL image at `path`, opened as its extension's format with the limits of every image
    read (dnnlib/image_files.py: bounded header, size and decoding); errors name the file."""
    return image_files.open_user_image(path)


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) from the header alone; an unreadable file is an error naming it."""
    height, width, _mode = image_files.read_header(lambda: image_files.open_regular_file(path, path), path, path,
                                                   os.path.getsize(path))
    return width, height


def load_mask(path: str, threshold: Optional[int] = None) -> np.ndarray:
    """Boolean [H, W] person mask; threshold None = 127 for JPEG masks, 0 for lossless ones."""
    if threshold is None:
        threshold = 127 if path.lower().endswith(LOSSY_EXTENSIONS) else 0
    with open_file(path) as img:
        if img.mode in ("I", "I;16", "F"):  # Wide integer/float label maps: use the values as they are.
            values = np.asarray(img)
        else:  # Gray, palette and coloured label maps: black is background.
            values = np.asarray(img.convert("RGB")).max(axis=2)
    return values > threshold


def photo_rgb(img: PIL.Image.Image, path: str) -> np.ndarray:
    """uint8 [H, W, 3] of a photo; 16-bit grayscale is scaled to 8 bits (PIL's convert would clip it to white)."""
    if img.mode in SIXTEEN_BIT_MODES:
        gray = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, np.newaxis], 3, axis=2)
    if img.mode in ("I", "F"):
        raise dnnlib.util.UserError(f"{path}: a {img.mode} (32-bit) photo; convert it to 8 or 16 bits per channel")
    return np.asarray(img.convert("RGB"))


def check_options(outdir: str, feather: float) -> None:
    """--feather in range and --outdir a folder (or creatable), before any work is done."""
    if not 0 <= feather <= MAX_FEATHER:  # NaN fails too.
        raise dnnlib.util.UserError(f"--feather: {feather} is not from 0 to {MAX_FEATHER:g} pixels")
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise dnnlib.util.UserError(f"--outdir: {outdir} is a file, not a folder; choose another --outdir")


# Feathered matte: the binary person mask blurred by a Gaussian, so edges blend instead of aliasing.
def soft_alpha(mask: np.ndarray, feather: float) -> np.ndarray:
    """Float32 opacity in [0, 1]: the mask blurred by a Gaussian of std `feather` pixels (0 = hard edge)."""
    alpha = mask.astype(np.float32)
    if feather > 0:
        alpha = scipy.ndimage.gaussian_filter(alpha, sigma=feather, mode="nearest")
    return np.clip(alpha, 0, 1)


# Alpha compositing, the "over" operator (Porter & Duff 1984), onto white as in the SHHQ release.
def composite_on_white(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: alpha * image + (1 - alpha) * white (alpha compositing, 'over' operator)."""
    alpha = alpha[:, :, np.newaxis]
    out = alpha * image.astype(np.float32) + (1 - alpha) * 255
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def plan_pairs(images_dir: str, masks_dir: str, outdir: str, force: bool) -> Tuple[List[tuple], List[str]]:
    """([(image path, mask path, output path)], [image names without a mask]), all checked before writing."""
    images, masks = files_by_stem(images_dir), files_by_stem(masks_dir)
    if os.path.realpath(outdir) in (os.path.realpath(images_dir), os.path.realpath(masks_dir)):
        raise dnnlib.util.UserError(f"--outdir: {outdir} would overwrite the inputs; choose another folder")
    pairs, missing = [], []
    for stem, fname in images.items():
        if stem not in masks:
            missing.append(fname)
            continue
        image_path, mask_path = os.path.join(images_dir, fname), os.path.join(masks_dir, masks[stem])
        image_wh, mask_wh = image_size(image_path), image_size(mask_path)
        if image_wh != mask_wh:  # Resizing would hide a mask that belongs to another photo.
            raise dnnlib.util.UserError(f"{mask_path}: mask is {mask_wh[1]}x{mask_wh[0]} (HxW) but {image_path} is "
                                        f"{image_wh[1]}x{image_wh[0]}; masks must match their image's size")
        pairs.append((image_path, mask_path, os.path.join(outdir, stem + ".png")))
    outputs.check_new([out for _image, _mask, out in pairs], force)
    return pairs, missing


def whiten_folder(images_dir: str, masks_dir: str, outdir: str, feather: float = 2.0, threshold: int = None,
                  force: bool = False, progress: bool = True) -> Tuple[List[str], List[str]]:
    """Write <outdir>/<stem>.png for every image with a mask; returns (written paths, skipped image names)."""
    check_options(outdir, feather)
    pairs, missing = plan_pairs(images_dir, masks_dir, outdir, force)
    dnnlib.util.make_output_dir(outdir, "--outdir")
    written = []
    for image_path, mask_path, out_path in tqdm.tqdm(pairs, desc="bg_white", unit="img", disable=not progress):
        with open_file(image_path) as img:  # Decoding errors (e.g. truncated after a valid header) name the file.
            image = photo_rgb(img, image_path)
        mask = load_mask(mask_path, threshold)
        out = composite_on_white(image, soft_alpha(mask, feather))
        save_png(out, out_path)  # PNG: no second round of JPEG loss; written atomically.
        written.append(out_path)
    return written, missing


@click.command()
@click.option("--images", "--raw_img_dir", "images_dir", required=True, metavar="DIR", help="Folder of photos (png/jpg)")
@click.option("--masks", "--raw_seg_dir", "masks_dir", required=True, metavar="DIR",
              help="Folder of person masks, same file stems (png/jpg)")
@shared("--outdir", detail="<stem>.png results go there")
@click.option("--feather", type=Number(0, MAX_FEATHER), default=2.0, show_default=True,
              help="Std of the Gaussian that softens the mask edge, in pixels (0 = hard edge)")
@click.option("--threshold", type=click.IntRange(0, 1 << 32),
              help="Mask values above this are person  [default: 0, JPEG masks 127]")
@shared("--force")
@shared("--verbose")
def main(images_dir: str, masks_dir: str, outdir: str, feather: float, threshold: Optional[int],
         force: bool) -> None:
    """Composite each person onto white using its segmentation mask; images without a mask are skipped."""
    written, missing = whiten_folder(images_dir, masks_dir, outdir, feather, threshold, force)
    click.echo(f"Wrote {len(written)} images to {outdir}")
    if missing:
        click.echo(f"Skipped {len(missing)} images without a mask in {masks_dir}: {', '.join(missing)}")


def cli() -> None:
    """Entry point of `python bg_white.py` and the sg2-bg-white console script."""
    run(main)
