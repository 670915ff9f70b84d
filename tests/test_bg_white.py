"""bg_white.py: compositing onto white with a feathered mask, mask reading, skips, refusals, CLI."""
import os

import numpy as np
import PIL.Image
import pytest
import scipy.ndimage
from click.testing import CliRunner

from sg2_cli import bg_white
import dnnlib

H, W = 64, 32
BOX = (slice(16, 48), slice(8, 24))  # the "person": rows 16..47, columns 8..23


def photo(seed=0):
    return np.random.RandomState(seed).randint(0, 200, (H, W, 3), dtype=np.uint8)  # never white itself


def box_mask(value=255):
    mask = np.zeros((H, W), np.uint8)
    mask[BOX] = value
    return mask


def save(folder, name, array):
    os.makedirs(folder, exist_ok=True)
    PIL.Image.fromarray(array).save(os.path.join(folder, name))


def test_outside_white_inside_unchanged_edge_between(tmp_path):
    images, masks, out = str(tmp_path / "img"), str(tmp_path / "mask"), str(tmp_path / "out")
    src = photo()
    save(images, "p.jpg", src)
    save(masks, "p.png", box_mask())
    src = np.asarray(PIL.Image.open(os.path.join(images, "p.jpg")))  # what JPEG decoding gives back
    written, skipped = bg_white.whiten_folder(images, masks, out, feather=1.0, progress=False)
    assert written == [os.path.join(out, "p.png")] and skipped == []
    result = np.asarray(PIL.Image.open(written[0])).astype(int)

    person = box_mask() > 0
    # Distance of each pixel from the mask edge: past 4 sigma (the blur's reach) nothing mixes.
    square = np.ones((3, 3), bool)  # the blur is separable, so its reach is a square
    far_inside = scipy.ndimage.binary_erosion(person, square, iterations=5)
    far_outside = ~scipy.ndimage.binary_dilation(person, square, iterations=5)
    assert far_inside.any() and far_outside.any()
    np.testing.assert_array_equal(result[far_inside], src[far_inside])
    assert (result[far_outside] == 255).all()
    edge = person & ~scipy.ndimage.binary_erosion(person)  # innermost ring of the person
    assert ((result[edge] > src[edge]) & (result[edge] < 255)).all()
    ring = ~person & scipy.ndimage.binary_dilation(person)  # first background ring
    assert (result[ring] < 255).any()


def test_hard_edge_is_a_plain_select():
    src, mask = photo(1), box_mask() > 0
    out = bg_white.composite_on_white(src, bg_white.soft_alpha(mask, 0))
    np.testing.assert_array_equal(out, np.where(mask[:, :, None], src, 255))


def test_soft_alpha_is_the_blurred_mask_against_a_direct_convolution():
    mask = box_mask() > 0
    sigma, radius = 1.0, 4
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(mask.astype(np.float64), radius, mode="edge")
    rows = np.stack([np.convolve(r, taps, mode="valid") for r in padded])
    expected = np.stack([np.convolve(c, taps, mode="valid") for c in rows.T]).T
    np.testing.assert_allclose(bg_white.soft_alpha(mask, sigma), expected, atol=1e-6)


def test_mask_formats(tmp_path):
    person = box_mask() > 0
    labels = np.zeros((H, W, 3), np.uint8)
    labels[16:32, 8:24], labels[32:48, 8:24] = (128, 0, 0), (0, 0, 64)  # coloured part labels
    cases = {"binary01.png": box_mask(1), "gray.png": box_mask(255), "parts.png": labels}
    for name, array in cases.items():
        save(str(tmp_path), name, array)
        np.testing.assert_array_equal(bg_white.load_mask(os.path.join(tmp_path, name)), person, err_msg=name)
    noisy = box_mask(255)
    noisy[~person] = 6  # what JPEG leaves in the background
    save(str(tmp_path), "noisy.png", noisy)
    np.testing.assert_array_equal(bg_white.load_mask(os.path.join(tmp_path, "noisy.png"), threshold=127), person)


def test_missing_masks_are_skipped_and_reported(tmp_path):
    images, masks, out = str(tmp_path / "img"), str(tmp_path / "mask"), str(tmp_path / "out")
    for i, name in enumerate(["a.png", "b.png", "c.jpg"]):
        save(images, name, photo(i))
    save(masks, "a.png", box_mask())
    result = CliRunner().invoke(bg_white.main, ["--images", images, "--masks", masks, "--outdir", out])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["a.png"]
    assert "Wrote 1 images" in result.output
    assert "Skipped 2 images without a mask" in result.output and "b.png, c.jpg" in result.output


def test_size_mismatch_names_the_mask(tmp_path):
    images, masks = str(tmp_path / "img"), str(tmp_path / "mask")
    save(images, "a.png", photo())
    save(masks, "a.png", np.zeros((H // 2, W // 2), np.uint8))
    with pytest.raises(dnnlib.util.UserError, match="mask/a.png.*32x16"):
        bg_white.whiten_folder(images, masks, str(tmp_path / "out"), progress=False)
    assert not os.path.exists(tmp_path / "out")


def test_refuses_to_overwrite_unless_forced(tmp_path):
    images, masks, out = str(tmp_path / "img"), str(tmp_path / "mask"), str(tmp_path / "out")
    save(images, "a.png", photo())
    save(masks, "a.png", box_mask())
    save(out, "a.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(dnnlib.util.UserError, match="--force"):
        bg_white.whiten_folder(images, masks, out, progress=False)
    assert PIL.Image.open(os.path.join(out, "a.png")).size == (2, 2)
    bg_white.whiten_folder(images, masks, out, force=True, progress=False)
    assert PIL.Image.open(os.path.join(out, "a.png")).size == (W, H)
    with pytest.raises(dnnlib.util.UserError, match="overwrite the inputs"):
        bg_white.whiten_folder(images, masks, images, force=True, progress=False)


def test_two_images_with_one_stem_are_refused(tmp_path):
    images = str(tmp_path / "img")
    save(images, "a.png", photo())
    save(images, "a.jpg", photo())
    with pytest.raises(dnnlib.util.UserError, match="a.png"):
        bg_white.whiten_folder(images, images, str(tmp_path / "out"), progress=False)
