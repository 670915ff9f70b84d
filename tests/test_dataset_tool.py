"""dataset_tool.py: sizes, center crop, colour layout, labels, conversions, refusals, CLI."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dnnlib
from sg2_cli import dataset_tool
from helpers import write_image_folder
from training.dataset import ImageFolderDataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def two_colour(height, width, top=RED, bottom=BLUE):
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2], image[height // 2:] = top, bottom
    return image


def write_source(folder, images, labels=None):
    return write_image_folder(str(folder), images, labels)


def dominant(image_chw):
    """Colour of the mean pixel, for telling flat test images apart."""
    return tuple(int(round(v)) for v in image_chw.reshape(image_chw.shape[0], -1).mean(axis=1))


def test_resize_keeps_the_colour_layout(tmp_path):
    src = write_source(str(tmp_path / "src"), {"a.png": two_colour(64, 32)})
    dest = str(tmp_path / "out.zip")
    assert dataset_tool.convert_dataset(src, dest, height=32, width=16, progress=False) == 1
    with zipfile.ZipFile(dest) as archive:
        assert sorted(archive.namelist()) == ["00000/img00000000.png", "dataset.json"]
        assert json.loads(archive.read("dataset.json")) == {"labels": None}
    ds = ImageFolderDataset(dest)
    assert ds.image_shape == [3, 32, 16]
    image = ds[0][0]
    # Away from the seam (Lanczos rings there), the halves keep their colours.
    assert np.abs(image[:, :12].astype(int) - np.array(RED)[:, None, None]).max() <= 1
    assert np.abs(image[:, 20:].astype(int) - np.array(BLUE)[:, None, None]).max() <= 1


def test_center_crop_cuts_the_sides_of_a_square_source(tmp_path):
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, :] = GREEN                      # cut away: columns 0..9 and 30..39
    image[:20, 10:30], image[20:, 10:30] = RED, BLUE
    src = write_source(str(tmp_path / "src"), {"sq.png": image})
    dest = str(tmp_path / "out")
    dataset_tool.convert_dataset(src, dest, height=32, width=16, transform="center-crop", progress=False)
    out = np.asarray(PIL.Image.open(os.path.join(dest, "00000", "img00000000.png"))).astype(int)
    assert out.shape == (32, 16, 3)
    assert out[:, :, 1].max() <= 2  # no green survives the crop
    assert np.abs(out[:12] - RED).max() <= 2 and np.abs(out[20:] - BLUE).max() <= 2


@pytest.mark.parametrize("size, target, box", [
    ((40, 40), (32, 16), (10, 0, 30, 40)),    # square to 2:1: cut left and right
    ((100, 20), (2, 1), (0, 30, 20, 70)),     # 5:1 to 2:1: cut top and bottom
    ((64, 32), (32, 16), (0, 0, 32, 64)),     # same aspect: nothing cut
])
def test_center_crop_box(size, target, box):
    assert dataset_tool.center_crop_box(*size, *target) == box


def test_wrong_aspect_without_crop_names_the_file(tmp_path):
    src = write_source(str(tmp_path / "src"), {"a.png": two_colour(64, 32), "b.png": two_colour(40, 40)})
    dest = str(tmp_path / "out.zip")
    with pytest.raises(dnnlib.util.UserError, match="b.png.*center-crop"):
        dataset_tool.convert_dataset(src, dest, height=32, width=16, progress=False)
    assert not os.path.exists(dest)


def test_labels_are_carried_over_with_new_names(tmp_path):
    colours = {"c.png": (10, 10, 10), "a.png": (90, 90, 90), "b.png": (170, 170, 170)}
    images = {name: np.full((16, 8, 3), colour, np.uint8) for name, colour in colours.items()}
    src_labels = {"a.png": 2, "b.png": 0, "c.png": 1}
    src = write_source(str(tmp_path / "src"), images, [[n, l] for n, l in src_labels.items()])
    dest = str(tmp_path / "out.zip")
    dataset_tool.convert_dataset(src, dest, progress=False)
    with zipfile.ZipFile(dest) as archive:
        labels = json.loads(archive.read("dataset.json"))["labels"]
    assert [name for name, _label in labels] == [dataset_tool.output_name(i) for i in range(3)]
    ds = ImageFolderDataset(dest, use_labels=True)
    source_of = {colour: name for name, colour in colours.items()}
    for i in range(len(ds)):
        image, label = ds[i]
        name = source_of[dominant(image)]  # identify the source image by its colour
        assert labels[i][1] == src_labels[name] and int(np.argmax(label)) == src_labels[name]


def test_output_names_roll_over_every_thousand():
    assert dataset_tool.output_name(999) == "00000/img00000999.png"
    assert dataset_tool.output_name(1000) == "00001/img00001000.png"


def test_zip_source_max_images_and_grayscale(tmp_path):
    rng = np.random.RandomState(0)
    grays = {f"{i}.png": rng.randint(0, 256, (8, 8), dtype=np.uint8) for i in range(4)}
    folder = write_source(str(tmp_path / "src"), grays)
    src_zip = str(tmp_path / "src.zip")
    with zipfile.ZipFile(src_zip, "w") as archive:
        for name in grays:
            archive.write(os.path.join(folder, name), name)
    dest = str(tmp_path / "out.zip")
    assert dataset_tool.convert_dataset(src_zip, dest, max_images=3, progress=False) == 3
    ds = ImageFolderDataset(dest)
    assert len(ds) == 3 and ds.image_shape == [1, 8, 8]
    for i in range(3):  # first three by path, unchanged when no resize is asked
        np.testing.assert_array_equal(ds[i][0][0], grays[f"{i}.png"])


def test_mixed_gray_and_rgba_become_rgb_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3], rgba[:4, :, 3], rgba[4:, :, 3] = (0, 0, 200), 255, 0  # bottom half fully transparent
    src = write_source(str(tmp_path / "src"), {"a.png": np.full((8, 8), 30, np.uint8), "b.png": rgba})
    dest = str(tmp_path / "out.zip")
    dataset_tool.convert_dataset(src, dest, progress=False)
    ds = ImageFolderDataset(dest)
    assert ds.image_shape == [3, 8, 8]
    assert (ds[0][0] == 30).all()
    np.testing.assert_array_equal(ds[1][0][:, :4], np.broadcast_to(np.array([0, 0, 200])[:, None, None], (3, 4, 8)))
    assert (ds[1][0][:, 4:] == 255).all()


def test_refuses_to_overwrite(tmp_path):
    src = write_source(str(tmp_path / "src"), {"a.png": two_colour(16, 8)})
    dest = tmp_path / "out.zip"
    dest.write_bytes(b"precious")
    with pytest.raises(dnnlib.util.UserError, match="already exists"):
        dataset_tool.convert_dataset(src, str(dest), progress=False)
    assert dest.read_bytes() == b"precious"


def test_bad_sizes_are_refused(tmp_path):
    src = write_source(str(tmp_path / "src"), {"a.png": two_colour(16, 8), "b.png": two_colour(32, 16)})
    with pytest.raises(dnnlib.util.UserError, match="both"):
        dataset_tool.convert_dataset(src, str(tmp_path / "o1"), height=16, progress=False)
    with pytest.raises(dnnlib.util.UserError, match="power-of-two"):
        dataset_tool.convert_dataset(src, str(tmp_path / "o2"), height=24, width=12, progress=False)
    with pytest.raises(dnnlib.util.UserError, match="b.png.*--height"):  # mixed sizes need a target size
        dataset_tool.convert_dataset(src, str(tmp_path / "o3"), progress=False)


def test_corrupt_image_leaves_no_output(tmp_path):
    src = write_source(str(tmp_path / "src"), {"a.png": two_colour(16, 8), "b.png": two_colour(16, 8)})
    path = os.path.join(src, "b.png")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])  # valid header, missing pixels
    with pytest.raises(dnnlib.util.UserError, match="b.png"):
        dataset_tool.convert_dataset(src, str(tmp_path / "out.zip"), progress=False)
    assert sorted(os.listdir(tmp_path)) == ["src"]  # no dest, no temporary leftovers


@pytest.mark.slow
def test_cli(tmp_path):
    src = write_source(str(tmp_path / "src"), {"a.png": two_colour(64, 32)})
    dest = str(tmp_path / "out.zip")
    result = CliRunner().invoke(dataset_tool.main, ["--source", src, "--dest", dest, "--height=32", "--width=16"])
    assert result.exit_code == 0, result.output
    assert ImageFolderDataset(dest).image_shape == [3, 32, 16]
    # The script itself: a user error is one line on stderr and exit status 1.
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "dataset_tool.py"), "--source", src, "--dest", dest],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr
