"""ImageFolderDataset: folder/zip equivalence, order, labels, xflip, subsets, aspect ratio, errors, workers."""
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

import dnnlib
from helpers import write_image_folder
from training.dataset import ImageFolderDataset

H, W = 16, 8  # 2:1 like SHHQ, tiny for speed


def random_images(names, shape=(H, W, 3), seed=0):
    rng = np.random.RandomState(seed)
    return {name: rng.randint(0, 256, size=shape, dtype=np.uint8) for name in names}


def zip_folder(folder, zip_path):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for root, _dirs, fnames in os.walk(folder):
            for fname in fnames:
                path = os.path.join(root, fname)
                archive.write(path, os.path.relpath(path, folder).replace(os.sep, "/"))
    return zip_path


def make_dataset(tmp_path, images, labels=None, name="data"):
    return write_image_folder(str(tmp_path / name), images, labels)


def chw(array):
    return array.transpose(2, 0, 1) if array.ndim == 3 else array[np.newaxis]


# Names whose creation order, numeric order and path order all differ.
NAMES = ["b/1.png", "a/2.png", "a/10.png", "c.png"]
SORTED = ["a/10.png", "a/2.png", "b/1.png", "c.png"]


def test_folder_and_zip_give_same_images_in_path_order(tmp_path):
    images = random_images(NAMES)
    folder = make_dataset(tmp_path, images)
    archive = zip_folder(folder, str(tmp_path / "data.zip"))
    for path in (folder, archive):
        ds = ImageFolderDataset(path)
        assert len(ds) == len(NAMES) and ds.name == "data"
        for i, name in enumerate(SORTED):
            image, label = ds[i]
            assert image.dtype == np.uint8 and image.shape == (3, H, W)
            np.testing.assert_array_equal(image, chw(images[name]))
            assert label.shape == (0,)
        ds.close()


def test_attributes_of_a_2_to_1_dataset(tmp_path):
    ds = ImageFolderDataset(make_dataset(tmp_path, random_images(["x.png"], shape=(32, 16, 3))))
    assert ds.image_shape == [3, 32, 16] and ds.num_channels == 3
    assert (ds.height, ds.width, ds.resolution, ds.aspect_ratio) == (32, 16, 32, (2, 1))
    assert not ds.has_labels and ds.label_shape == [0] and ds.label_dim == 0
    ImageFolderDataset(ds._path, resolution=32, square=False)  # consistent options are accepted


def test_wide_and_square_aspect_ratios(tmp_path):
    wide = ImageFolderDataset(make_dataset(tmp_path, random_images(["x.png"], shape=(8, 32, 3)), name="w"))
    assert (wide.aspect_ratio, wide.resolution) == ((1, 4), 32)
    square = ImageFolderDataset(make_dataset(tmp_path, random_images(["x.png"], shape=(8, 8, 3)), name="s"),
                                square=True)
    assert square.aspect_ratio == (1, 1)


@pytest.mark.parametrize("kwargs", [dict(square=True), dict(resolution=16)])
def test_inconsistent_shape_options_name_the_dataset(tmp_path, kwargs):
    folder = make_dataset(tmp_path, random_images(["x.png"], shape=(32, 16, 3)))
    with pytest.raises(dnnlib.util.UserError, match=folder):
        ImageFolderDataset(folder, **kwargs)


def test_legacy_square_false_rejects_square_images(tmp_path):
    folder = make_dataset(tmp_path, random_images(["x.png"], shape=(16, 16, 3)))
    with pytest.raises(dnnlib.util.UserError, match="H == 2W"):
        ImageFolderDataset(folder, square=False)


def test_non_power_of_two_size_is_refused(tmp_path):
    folder = make_dataset(tmp_path, random_images(["x.png"], shape=(24, 12, 3)))
    with pytest.raises(dnnlib.util.UserError, match="powers of two"):
        ImageFolderDataset(folder)


def test_grayscale_and_jpeg(tmp_path):
    gray = random_images(["g.png"], shape=(H, W))
    ds = ImageFolderDataset(make_dataset(tmp_path, gray, name="gray"))
    assert ds.image_shape == [1, H, W]
    np.testing.assert_array_equal(ds[0][0], chw(gray["g.png"]))

    flat = {"p.jpg": np.full((H, W, 3), [200, 40, 90], dtype=np.uint8)}  # JPEG is lossy; flat colour survives
    ds = ImageFolderDataset(make_dataset(tmp_path, flat, name="jpeg"))
    assert ds.image_shape == [3, H, W]
    assert np.abs(ds[0][0].astype(int) - chw(flat["p.jpg"])).max() <= 3


def test_integer_labels_become_one_hot(tmp_path):
    labels = [["b/1.png", 2], ["a/2.png", 0], ["a/10.png", 4], ["c.png", 0]]
    folder = make_dataset(tmp_path, random_images(NAMES), labels)
    ds = ImageFolderDataset(folder, use_labels=True)
    assert ds.has_labels and ds.label_shape == [5] and ds.label_dim == 5
    by_name = dict(labels)
    for i, name in enumerate(SORTED):
        label = ds[i][1]
        assert label.dtype == np.float32
        np.testing.assert_array_equal(label, np.eye(5, dtype=np.float32)[by_name[name]])
        np.testing.assert_array_equal(ds.get_label(i), label)
    assert not ImageFolderDataset(folder).has_labels  # use_labels=False ignores dataset.json


def test_vector_labels_and_null_labels(tmp_path):
    vectors = {name: [float(i), -0.5 * i] for i, name in enumerate(NAMES)}
    folder = make_dataset(tmp_path, random_images(NAMES), [[n, v] for n, v in vectors.items()], name="vec")
    ds = ImageFolderDataset(folder, use_labels=True)
    assert ds.label_shape == [2]
    for i, name in enumerate(SORTED):
        np.testing.assert_array_equal(ds.get_label(i), np.float32(vectors[name]))
    ds = ImageFolderDataset(make_dataset(tmp_path, random_images(NAMES), None, name="null"), use_labels=True)
    assert not ds.has_labels and ds[0][1].shape == (0,)


def test_missing_label_names_the_image(tmp_path):
    folder = make_dataset(tmp_path, random_images(NAMES), [["a/2.png", 1]])
    with pytest.raises(dnnlib.util.UserError, match="a/10.png"):
        ImageFolderDataset(folder, use_labels=True)


def test_xflip_second_half_is_mirrored(tmp_path):
    images = random_images(NAMES)
    ds = ImageFolderDataset(make_dataset(tmp_path, images), xflip=True)
    n = len(NAMES)
    assert len(ds) == 2 * n
    for i, name in enumerate(SORTED):
        np.testing.assert_array_equal(ds[i][0], chw(images[name]))
        np.testing.assert_array_equal(ds[n + i][0], chw(images[name][:, ::-1]))
        assert not ds.get_details(i).xflip and ds.get_details(n + i).xflip
        assert ds.get_details(n + i).raw_idx == i


def test_max_size_is_a_deterministic_subset(tmp_path):
    names = [f"{i:03d}.png" for i in range(20)]
    images = random_images(names)
    folder = make_dataset(tmp_path, images)
    ds = ImageFolderDataset(folder, max_size=5, random_seed=3)
    raw = [ds.get_details(i).raw_idx for i in range(len(ds))]
    assert len(ds) == 5 and raw == sorted(set(raw))
    assert raw == [ImageFolderDataset(folder, max_size=5, random_seed=3).get_details(i).raw_idx for i in range(5)]
    seeds = {tuple(ImageFolderDataset(folder, max_size=5, random_seed=s).get_details(i).raw_idx
                   for i in range(5)) for s in range(4)}
    assert len(seeds) > 1  # the seed chooses the subset
    for i, r in enumerate(raw):
        np.testing.assert_array_equal(ds[i][0], chw(images[names[r]]))
    assert len(ImageFolderDataset(folder, max_size=50)) == 20
    assert len(ImageFolderDataset(folder, max_size=5, xflip=True)) == 10


def test_garbage_png_is_named_at_construction(tmp_path):
    folder = make_dataset(tmp_path, random_images(NAMES))
    with open(os.path.join(folder, "b", "1.png"), "wb") as f:
        f.write(os.urandom(200))
    with pytest.raises(dnnlib.util.UserError, match="b/1.png.*not a readable image"):
        ImageFolderDataset(folder)
    archive = zip_folder(folder, str(tmp_path / "data.zip"))
    with pytest.raises(dnnlib.util.UserError, match="data.zip/b/1.png"):
        ImageFolderDataset(archive)


def test_truncated_png_is_named(tmp_path):
    images = random_images(NAMES)
    folder = make_dataset(tmp_path, images)
    path = os.path.join(folder, "c.png")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])  # the header survives; the pixel data does not
    with pytest.raises(dnnlib.util.UserError, match="c.png"):
        ds = ImageFolderDataset(folder)
        for i in range(len(ds)):
            ds[i]


@pytest.mark.parametrize("odd", [np.zeros((H, 2 * W, 3), np.uint8), np.zeros((H, W), np.uint8),
                                 np.zeros((H, W, 4), np.uint8)], ids=["size", "channels", "rgba"])
def test_mismatched_image_is_named(tmp_path, odd):
    images = random_images(NAMES)
    images["b/1.png"] = odd
    with pytest.raises(dnnlib.util.UserError, match="b/1.png"):
        ImageFolderDataset(make_dataset(tmp_path, images))


def test_empty_and_missing_sources(tmp_path):
    os.makedirs(tmp_path / "empty")
    with pytest.raises(dnnlib.util.UserError, match="no images"):
        ImageFolderDataset(str(tmp_path / "empty"))
    with pytest.raises(dnnlib.util.UserError, match="no such"):
        ImageFolderDataset(str(tmp_path / "nope.zip"))


def test_each_process_opens_its_own_zip(tmp_path, monkeypatch):
    archive = zip_folder(make_dataset(tmp_path, random_images(NAMES)), str(tmp_path / "data.zip"))
    ds = ImageFolderDataset(archive)
    handle = ds._source._get_zip()
    assert ds._source._get_zip() is handle
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # as seen from a forked worker
    assert ds._source._get_zip() is not handle
    monkeypatch.undo()
    copy = pickle.loads(pickle.dumps(ds))  # as sent to a spawned worker
    assert copy._source._zip is None
    np.testing.assert_array_equal(copy[2][0], ds[2][0])


def test_dataloader_workers_match_single_process(tmp_path):
    names = [f"{i:02d}.png" for i in range(12)]
    archive = zip_folder(make_dataset(tmp_path, random_images(names)), str(tmp_path / "data.zip"))
    ds = ImageFolderDataset(archive, xflip=True)
    ds[0]  # the parent holds an open handle before the workers fork
    single = torch.cat([images for images, _labels in torch.utils.data.DataLoader(ds, batch_size=4)])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    multi = torch.cat([images for images, _labels in loader])
    assert single.shape == (24, 3, H, W)
    assert torch.equal(single, multi)
