"""dataset_tool.py / sg2-dataset-tool: a training dataset from a folder or zip of images (resize, optional
center crop, labels carried over).

The output (a zip, or a folder) holds `00000/img00000000.png`, ... (1000 images per folder) and a
`dataset.json` with the labels under the new names; `training.dataset.ImageFolderDataset` reads it.

    python dataset_tool.py --source=~/SHHQ-1.0/no_segment --out=~/datasets/shhq-512x256.zip --height=512 --width=256

--dest (stylegan2-ada-pytorch's name) is an old spelling of --out and keeps working.
"""
import contextlib
import io
import json
import os
import zipfile
from typing import List, Optional

import click
import PIL.Image
import tqdm

import dnnlib
from training.dataset import (LABELS_FILE, ImageSource, is_image_name, labels_to_array, open_image, read_header,
                              read_labels_json, trainable_size_problem)

from . import outputs
from .options import shared
from .runner import run

TRANSFORMS = ("none", "center-crop")
GRAYSCALE_MODES = ("1", "L", "LA")
READABLE_MODES = GRAYSCALE_MODES + ("P", "PA", "RGB", "RGBA", "CMYK", "YCbCr")  # 8-bit modes we can flatten


def output_name(idx: int) -> str:
    """Archive name of the idx-th image: 1000 images per folder keeps folders listable."""
    return f"{idx // 1000:05d}/img{idx:08d}.png"


def center_crop_box(height: int, width: int, target_height: int, target_width: int) -> tuple:
    """(left, upper, right, lower) of the largest centred window with the target's aspect ratio."""
    if height * target_width > width * target_height:  # Source too tall: cut top and bottom.
        crop_height, crop_width = round(width * target_height / target_width), width
    else:  # Source too wide (or exact): cut left and right.
        crop_height, crop_width = height, round(height * target_width / target_height)
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return left, top, left + crop_width, top + crop_height


def flatten_image(img: PIL.Image.Image, mode: str) -> PIL.Image.Image:
    """Convert to 'RGB' or 'L'; transparent pixels become white (the SHHQ background) instead of black."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        white = PIL.Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = PIL.Image.alpha_composite(white, img.convert("RGBA"))
    return img.convert(mode)


def convert_image(img: PIL.Image.Image, height: int, width: int, transform: str, mode: str) -> PIL.Image.Image:
    """One source image to the target mode and size: optional center crop, then Lanczos resampling."""
    img = flatten_image(img, mode)
    if transform == "center-crop":
        img = img.crop(center_crop_box(img.height, img.width, height, width))
    if img.size != (width, height):
        img = img.resize((width, height), PIL.Image.LANCZOS)
    return img


def plan_output(source: ImageSource, names: List[str], height: Optional[int], width: Optional[int],
                transform: str) -> tuple:
    """Check every image header before anything is written; returns (height, width, mode) of the output."""
    if (height is None) != (width is None):
        raise dnnlib.util.UserError("--height/--width: give both, or neither to keep the source size")
    headers = {name: read_header(source, name) for name in names}
    keep_size = height is None
    if keep_size:
        height, width = headers[names[0]][:2]
    for name, (src_height, src_width, src_mode) in headers.items():
        where = source.describe(name)
        if src_mode not in READABLE_MODES:
            raise dnnlib.util.UserError(f"{where}: image mode {src_mode} is not supported (need 8-bit "
                                        "grayscale, RGB or RGBA); convert or remove the file")
        if keep_size and (src_height, src_width) != (height, width):
            raise dnnlib.util.UserError(f"{where}: image is {src_height}x{src_width} (HxW) but "
                                        f"{source.describe(names[0])} is {height}x{width}; "
                                        "give --height and --width to resize them all")
        if transform == "none" and src_height * width != src_width * height:
            raise dnnlib.util.UserError(f"{where}: image is {src_height}x{src_width} (HxW), not the "
                                        f"{height}x{width} aspect ratio; add --transform=center-crop")
    problem = trainable_size_problem(height, width)
    if problem is not None:
        raise dnnlib.util.UserError(f"--height/--width: {height}x{width} (HxW) is not a power-of-two size "
                                    f"the networks can train on ({problem}); give e.g. --height=512 --width=256")
    all_gray = all(mode in GRAYSCALE_MODES for _h, _w, mode in headers.values())
    return height, width, "L" if all_gray else "RGB"


def carried_labels(source: ImageSource, names: List[str]) -> Optional[list]:
    """Labels of the chosen images, in order, from the source's dataset.json (None if it has none)."""
    labels = read_labels_json(source)
    if labels is None:
        return None
    missing = [name for name in names if name not in labels]
    if missing:
        raise dnnlib.util.UserError(f"{source.describe(LABELS_FILE)}: no label for {missing[0]} "
                                    f"({len(missing)} images without one); label every image or remove the file")
    chosen = [labels[name] for name in names]
    labels_to_array(chosen, source.describe(LABELS_FILE))  # Refuse what training would refuse, before writing.
    return chosen


def claim_dest(dest: str) -> None:
    """Create `dest` as an empty placeholder, atomically (O_EXCL / mkdir): of two runs, one wins, the other stops."""
    is_zip = dest.lower().endswith(".zip")
    try:
        if is_zip:
            os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        else:
            os.mkdir(dest)
    except FileExistsError:
        raise dnnlib.util.UserError(f"{dest}: already exists; choose another --out or pass --force to replace "
                                    "it") from None
    except (NotADirectoryError, PermissionError) as err:
        raise dnnlib.util.UserError(f"--out: cannot create {dest} ({err.strerror}); choose another --out") from None


def release_dest(dest: str) -> None:
    """Remove the placeholder of claim_dest (only if it is still the empty placeholder)."""
    try:
        if os.path.isdir(dest):
            os.rmdir(dest)  # Fails, harmlessly, if anything was put there.
        elif os.path.getsize(dest) == 0:
            os.remove(dest)
    except OSError:
        pass


@contextlib.contextmanager
def dataset_writer(dest: str):
    """Yields write(name, data) into a temporary zip or folder beside `dest` (dnnlib.util.atomic_output); when the
    block ends normally it is renamed over the placeholder made by claim_dest (or, with --force, over an older zip),
    else removed. Files get the user's umask."""
    is_zip = dest.lower().endswith(".zip")
    with dnnlib.util.atomic_output(dest, suffix=".partial", folder=not is_zip) as tmp:
        if not is_zip:
            def write(name: str, data: bytes) -> None:
                os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(data)
            yield write
            return
        archive = zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED)  # PNG data is compressed already.
        try:
            yield archive.writestr
        except BaseException:
            with contextlib.suppress(Exception):  # The disk may be full: closing writes, and may fail too.
                archive.close()
            raise
        archive.close()


def convert_dataset(source_path: str, dest: str, height: int = None, width: int = None, transform: str = "none",
                    max_images: int = None, progress: bool = True, force: bool = False) -> int:
    """Write the dataset (a zip if `dest` ends in .zip, else a folder); returns the number of images.

    An existing `dest` is refused, or with `force` replaced when it is a file; a folder is never replaced.
    Nothing is left behind by a failure, Ctrl-C or SIGTERM (in the main thread): no temporary file, no
    claimed but empty `dest`, and an older zip as it was.
    """
    if transform not in TRANSFORMS:
        raise dnnlib.util.UserError(f"--transform: {transform!r} is not one of {', '.join(TRANSFORMS)}")
    outputs.check_new([dest], force, "--out")
    replace = os.path.lexists(dest)
    if replace and not dest.lower().endswith(".zip"):
        raise dnnlib.util.UserError(f"{dest}: is a file, and a dataset folder cannot replace it; choose another --out")
    source = ImageSource(source_path)
    try:
        names = [name for name in source.names if is_image_name(name)][:max_images]
        if not names:
            raise dnnlib.util.UserError(f"{source_path}: no PNG or JPEG images found")
        height, width, mode = plan_output(source, names, height, width, transform)
        labels = carried_labels(source, names)
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        with dnnlib.util.sigterm_raises():
            if not replace:
                claim_dest(dest)
            try:
                write_dataset(source, names, labels, dest, height, width, transform, mode, progress)
            except BaseException:  # Ctrl-C and SIGTERM included: leave no claimed, empty dest behind.
                if not replace:
                    release_dest(dest)
                raise
    finally:
        source.close()
    return len(names)


def write_dataset(source: ImageSource, names: List[str], labels: Optional[list], dest: str, height: int, width: int,
                  transform: str, mode: str, progress: bool) -> None:
    """Convert every image and write them with dataset.json into `dest` (through dataset_writer)."""
    with dataset_writer(dest) as write:
        for idx, name in enumerate(tqdm.tqdm(names, desc=os.path.basename(dest), unit="img", disable=not progress)):
            with open_image(source, name) as img:  # Errors (e.g. truncated after a valid header) name the file.
                out = convert_image(img, height, width, transform, mode)
            buffer = io.BytesIO()
            out.save(buffer, format="png")
            write(output_name(idx), buffer.getvalue())
        new_labels = None if labels is None else [[output_name(i), label] for i, label in enumerate(labels)]
        write(LABELS_FILE, json.dumps({"labels": new_labels}).encode("utf-8"))


@click.command()
@click.option("--source", required=True, metavar="PATH",
              help="Folder or zip of PNG/JPEG images; its dataset.json labels are kept")
@shared("--out", old=("--dest",), detail="the dataset: a zip (name ends in .zip) or a folder")
@click.option("--height", type=click.IntRange(min=1),
              help="Output height in pixels, a power of two  [default: source size]")
@click.option("--width", type=click.IntRange(min=1),
              help="Output width in pixels, a power of two  [default: source size]")
@click.option("--transform", type=click.Choice(TRANSFORMS), default="none", show_default=True,
              help="center-crop: cut sources of another aspect ratio to the target's before resizing")
@click.option("--max-images", type=click.IntRange(min=1), help="Use only the first N images (by path)")
@shared("--force", detail="a zip only; a folder is never replaced")
@shared("--verbose")
def main(source: str, out_path: str, height: Optional[int], width: Optional[int], transform: str,
         max_images: Optional[int], force: bool) -> None:
    """Build a training dataset (PNG images + dataset.json) from a folder or zip of images.

    Sizes are HEIGHT x WIDTH: SHHQ at 1024x512 becomes 512x256 with --height=512 --width=256.
    """
    count = convert_dataset(os.path.expanduser(source), os.path.expanduser(out_path), height, width, transform,
                            max_images, force=force)
    click.echo(f"Wrote {count} images to {out_path}")


def cli() -> None:
    """Entry point of `python dataset_tool.py` and the sg2-dataset-tool console script."""
    run(main)
