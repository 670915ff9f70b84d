"""Draw a synthetic dataset of simple human-like figures (head, torso, arms, legs) for the CPU demo.

Each image is one standing figure with random clothing colours, skin tone, pose and position on a
light background, at 64x32 (height x width, the SHHQ 2:1 aspect). The output is a zip in the
layout `training.dataset.ImageFolderDataset` reads (`00000/img00000000.png`, ...). The same seed
always gives the same images, so the demo is reproducible without any download.
"""
import io
import os
import sys
import zipfile

import click
import numpy as np
import PIL.Image
import PIL.ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # Run from anywhere.
import dnnlib  # noqa: E402
from sg2_cli import outputs, runner  # noqa: E402
from sg2_cli.options import shared  # noqa: E402

SUPERSAMPLE = 4  # Figures are drawn at 4x and downsampled, which anti-aliases the edges.

SKIN_TONES = [(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 30)]
HAIR_COLOURS = [(20, 20, 20), (60, 40, 20), (110, 70, 30), (200, 160, 80), (140, 40, 20), (90, 90, 90)]


def random_clothing_colour(rnd: np.random.RandomState, dark: bool) -> tuple:
    """A saturated colour (shirts) or a darker one (trousers), so the figure stands out from the background."""
    hue = rnd.uniform(0, 360)
    sat = rnd.uniform(0.5, 1.0)
    val = rnd.uniform(0.25, 0.55) if dark else rnd.uniform(0.55, 0.95)
    rgb = PIL.Image.new("HSV", (1, 1), (int(hue / 360 * 255), int(sat * 255), int(val * 255))).convert("RGB")
    return rgb.getpixel((0, 0))


def limb_end(start: tuple, length: float, angle_deg: float) -> tuple:
    """End point of a limb hanging from `start`; angle 0 points straight down, positive to the image right."""
    angle = np.radians(angle_deg)
    return (start[0] + length * np.sin(angle), start[1] + length * np.cos(angle))


def draw_limb(draw: PIL.ImageDraw.ImageDraw, points: list, width: float, colour: tuple) -> None:
    """A limb as thick joined segments with rounded joints and ends."""
    width = max(int(round(width)), 1)
    draw.line([tuple(p) for p in points], fill=colour, width=width, joint="curve")
    for x, y in (points[0], points[-1]):
        r = width / 2
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def draw_figure(rnd: np.random.RandomState, height: int = 64, width: int = 32) -> np.ndarray:
    """One figure as an HWC uint8 RGB array."""
    s = SUPERSAMPLE
    H, W = height * s, width * s
    background = tuple(int(v) for v in rnd.uniform(215, 250, size=3))
    img = PIL.Image.new("RGB", (W, H), background)
    draw = PIL.ImageDraw.Draw(img)

    # Body proportions relative to the figure height (about 7 heads tall, like a person).
    fig_h = rnd.uniform(0.78, 0.92) * H
    top = rnd.uniform(0.03 * H, H - fig_h - 0.02 * H)
    cx = W / 2 + rnd.uniform(-0.12, 0.12) * W
    head_r = fig_h / 13
    shoulder_y = top + 2.2 * head_r
    hip_y = top + fig_h * 0.52
    torso_w = fig_h * rnd.uniform(0.17, 0.22)
    limb_w = fig_h * 0.06
    leg_len = top + fig_h - hip_y
    arm_len = fig_h * 0.36

    skin = SKIN_TONES[rnd.randint(len(SKIN_TONES))]
    hair = HAIR_COLOURS[rnd.randint(len(HAIR_COLOURS))]
    shirt = random_clothing_colour(rnd, dark=False)
    trousers = random_clothing_colour(rnd, dark=True)

    # Legs: from the hips, spread apart by a random stance.
    for side in (-1, 1):
        hip = (cx + side * torso_w * 0.25, hip_y)
        angle = side * rnd.uniform(0, 22)
        knee = limb_end(hip, leg_len * 0.5, angle)
        foot = limb_end(knee, leg_len * 0.5, angle + rnd.uniform(-8, 8))
        draw_limb(draw, [hip, knee, foot], limb_w * 1.25, trousers)

    # Torso: a rounded box from shoulders to hips.
    draw.rounded_rectangle([cx - torso_w / 2, shoulder_y, cx + torso_w / 2, hip_y + limb_w * 0.5],
                           radius=torso_w * 0.25, fill=shirt)

    # Arms: from the shoulders, anywhere from hanging down to raised, with a bent elbow.
    for side in (-1, 1):
        shoulder = (cx + side * (torso_w / 2 - limb_w * 0.3), shoulder_y + limb_w * 0.5)
        upper = side * rnd.uniform(8, 150)
        elbow = limb_end(shoulder, arm_len * 0.5, upper)
        hand = limb_end(elbow, arm_len * 0.5, upper + side * rnd.uniform(-30, 40))
        draw_limb(draw, [shoulder, elbow], limb_w, shirt)
        draw_limb(draw, [elbow, hand], limb_w * 0.85, skin)

    # Neck and head, with hair on top.
    draw.rectangle([cx - limb_w * 0.4, top + 1.6 * head_r, cx + limb_w * 0.4, shoulder_y + 1], fill=skin)
    head_c = (cx, top + head_r)
    draw.ellipse([head_c[0] - head_r, head_c[1] - head_r, head_c[0] + head_r, head_c[1] + head_r], fill=skin)
    hair_box = [head_c[0] - head_r * 1.05, head_c[1] - head_r * 1.1, head_c[0] + head_r * 1.05, head_c[1] + head_r * 0.6]
    draw.chord(hair_box, start=180, end=360, fill=hair)

    img = img.resize((width, height), PIL.Image.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def make_demo_dataset(dest: str, num_images: int = 2000, seed: int = 0, height: int = 64, width: int = 32,
                      force: bool = False) -> str:
    """Write `num_images` figures to the zip `dest` (an existing one only with `force`); returns `dest`."""
    outputs.check_new([dest], force, "--out")
    rnd = np.random.RandomState(seed)

    def write_zip(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            for idx in range(num_images):
                buf = io.BytesIO()
                PIL.Image.fromarray(draw_figure(rnd, height, width)).save(buf, format="png", compress_level=1)
                # Fixed timestamps keep the zip byte-identical for a given seed.
                info = zipfile.ZipInfo(f"{idx // 1000:05d}/img{idx:08d}.png", date_time=(2020, 1, 1, 0, 0, 0))
                zf.writestr(info, buf.getvalue())
            zf.writestr(zipfile.ZipInfo("dataset.json", date_time=(2020, 1, 1, 0, 0, 0)), '{"labels": null}')

    dnnlib.util.atomic_write(dest, write_zip)
    return dest


@click.command()
@shared("--out", old=("--dest",), detail="the dataset zip")
@click.option("--num", help="Number of images", type=click.IntRange(1, 1_000_000), default=2000, show_default=True)
@shared("--seed")
@click.option("--height", help="Image height", type=click.IntRange(8, 4096), default=64, show_default=True)
@click.option("--width", help="Image width", type=click.IntRange(4, 4096), default=32, show_default=True)
@shared("--force")
@shared("--verbose")
def main(out_path, num, seed, height, width, force):
    """Draw the synthetic figure dataset used by the CPU demo."""
    make_demo_dataset(out_path, num_images=num, seed=seed, height=height, width=width, force=force)
    print(f"Wrote {num} images of {height}x{width} to {out_path}")


if __name__ == "__main__":
    runner.run(main)
