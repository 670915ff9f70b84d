"""FID without the dataset: statistics exported once give exactly the numbers the dataset gives."""
import hashlib
import json
import os

import numpy as np
import pytest

import dnnlib
from metrics import evaluate
from metrics import metric_main
from metrics import reference_stats
from metrics import stand_in_detector
from test_metrics_pipeline import load_fixture_generator, write_zip
from test_metrics_pipeline import private_cache  # noqa: F401 (autouse: a private cache, no detector env vars)

DATASET_CLASS = "training.dataset.ImageFolderDataset"


@pytest.fixture(scope="module")
def files(tmp_path_factory, compat_dir):
    root = tmp_path_factory.mktemp("reference_stats")
    return dnnlib.EasyDict(
        root=root,
        network=os.path.join(compat_dir, "tiny_64x32.pkl"),
        data=write_zip(root / "data.zip", 40),
        # Fewer features than images keeps the covariances regular; a second seed is "another detector".
        detector=stand_in_detector.save_stand_in_detector(str(root / "standin.pt"), num_features=16),
        other_detector=stand_in_detector.save_stand_in_detector(str(root / "other.pt"), num_features=16, seed=1),
    )


def calc_metrics(args, capsys):
    """Run calc_metrics.py in this process; the JSON lines it printed."""
    from sg2_cli import calc_metrics
    capsys.readouterr()
    calc_metrics.main.main(args, standalone_mode=False)
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def stats_file(files):
    path = files.root / "stats.npz"
    summary = evaluate.export_reference_stats(files.data, path, with_features=True, verbose=False,
                                              detectors=dict(inception=files.detector, vgg16=files.detector))
    assert summary["features"] == ["inception_features", "vgg16_features"]
    return str(path)


def test_exported_file_holds_the_documented_arrays(stats_file, files):
    with np.load(stats_file, allow_pickle=False) as npz:
        assert npz["mu"].dtype == np.float64 and npz["mu"].shape == (16,)
        assert npz["sigma"].dtype == np.float64 and npz["sigma"].shape == (16, 16)
        assert int(npz["num_images"]) == 40 and bool(npz["xflip"]) is False
        assert list(npz["image_shape"]) == [3, 64, 32]
        with open(files.detector, "rb") as f:
            assert str(npz["detector_sha256"]) == hashlib.sha256(f.read()).hexdigest()
        assert str(npz["package_version"]) == dnnlib.util.package_version()
        features = npz["inception_features"]
        assert features.shape == (40, 16) and npz["vgg16_features"].shape == (40, 16)
        # mu and sigma are the (population) mean and covariance of the stored features: a second computation.
        np.testing.assert_allclose(npz["mu"], features.astype(np.float64).mean(0), rtol=1e-10)
        np.testing.assert_allclose(npz["sigma"], np.cov(features.astype(np.float64), rowvar=False, bias=True),
                                   atol=1e-9)


@pytest.mark.slow
def test_fid_kid_pr_with_ref_stats_equal_those_with_data(files, stats_file, capsys, one_torch_thread):
    common = [f"--network={files.network}", f"--detector={files.detector}", f"--vgg16={files.detector}",
              "--device=cpu", "--num-gen=24", "--metrics=fid50k_full,kid50k_full,pr50k3_full"]
    with_data = calc_metrics(common + [f"--data={files.data}"], capsys)
    with_file = calc_metrics(common + [f"--ref-stats={stats_file}"], capsys)
    assert [entry["metric"] for entry in with_file] == ["fid50k_full", "kid50k_full", "pr50k3_full"]
    for a, b in zip(with_data, with_file):
        assert a["results"] == b["results"]  # the same floats, not merely close
    assert with_file[0]["results"]["fid50k_full"] > 0


@pytest.mark.slow
def test_cli_export_then_file_from_another_detector_is_refused(files, tmp_path, capsys):
    out = tmp_path / "cli_stats.npz"
    (summary,) = calc_metrics([f"--export-stats={out}", f"--data={files.data}", f"--detector={files.detector}",
                               "--device=cpu"], capsys)
    assert summary["num_images"] == 40 and summary["features"] == [] and out.is_file()
    with pytest.raises(dnnlib.util.UserError) as info:
        calc_metrics([f"--network={files.network}", f"--ref-stats={out}", f"--detector={files.other_detector}",
                      "--device=cpu", "--num-gen=4"], capsys)
    message = str(info.value)
    digest_a = dnnlib.download.file_sha256(files.detector)
    digest_b = dnnlib.download.file_sha256(files.other_detector)
    assert message.startswith(f"--ref-stats: {out} was made with a detector of SHA-256")
    assert "this run's Inception-v3 detector" in message
    assert digest_a in message and digest_b in message  # both values named
    with pytest.raises(dnnlib.util.UserError, match="KID and precision/recall need the features.*--with-features"):
        calc_metrics([f"--network={files.network}", f"--ref-stats={out}", f"--detector={files.detector}",
                      "--device=cpu", "--num-gen=4", "--metrics=kid50k_full"], capsys)


def _options(files, stats_file, G, **kwargs):
    opts = dict(G=G, dataset_kwargs={}, device="cpu", ref_stats=stats_file, max_gen=4, batch_size=16,
                detectors=dict(inception=files.detector, vgg16=files.detector))
    opts.update(kwargs)
    return opts


def _edited_copy(stats_file, tmp_path, **changes):
    with np.load(stats_file, allow_pickle=False) as npz:
        arrays = dict(npz)
    arrays.update(changes)
    path = str(tmp_path / "edited.npz")
    np.savez(path, **arrays)
    return path


def test_image_size_and_flip_mismatches_name_both_values(files, stats_file, compat_dir, tmp_path, one_torch_thread):
    G = load_fixture_generator(compat_dir)
    other_size = _edited_copy(stats_file, tmp_path, image_shape=np.array([3, 128, 64]))
    with pytest.raises(dnnlib.util.UserError, match=r"\[3, 128, 64\] \(CxHxW\) images, but the network makes "
                                                    r"\[3, 64, 32\]"):
        metric_main.calc_metric("fid50k_full", **_options(files, other_size, G))
    flipped = _edited_copy(stats_file, tmp_path, xflip=np.bool_(True))
    with pytest.raises(dnnlib.util.UserError, match="xflip=True, but this metric needs xflip=False"):
        metric_main.calc_metric("fid50k_full", **_options(files, flipped, G))
    with pytest.raises(dnnlib.util.UserError, match="first 4 real images.*holds the statistics of 40"):
        metric_main.calc_metric("fid50k", **_options(files, stats_file, G, max_real=4))


def test_training_loop_metric_with_ref_stats_equals_the_dataset(files, stats_file, compat_dir, tmp_path,
                                                                one_torch_thread):
    """What training/training_loop.py calls: the training set's kwargs, plus metric_kwargs.ref_stats.

    The file stands in for the real images: with it, FID equals the dataset's. A second file of the same
    dataset whose mean is moved must move the result, so a loop that ignored ref_stats (and measured against
    the training set instead) fails. The training set must be the file's own: another one is refused, since
    statistics files record their dataset.
    """
    G = load_fixture_generator(compat_dir)
    kwargs = dict(G=G, device="cpu", max_gen=24, detectors=dict(inception=files.detector))
    # More generated images than features: a regular covariance. Default batch size, as in training.
    training_set_kwargs = dict(class_name=DATASET_CLASS, path=files.data, use_labels=False, xflip=True, max_size=40)

    def fid(**extra):
        return metric_main.calc_metric("fid50k_full", dataset_kwargs=training_set_kwargs, **kwargs, **extra).results

    with np.load(stats_file, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    moved_file = str(tmp_path / "moved.npz")
    np.savez(moved_file, **dict(arrays, mu=arrays["mu"] + 0.5))
    with_data = fid()
    assert fid(ref_stats=stats_file) == with_data
    assert fid(ref_stats=moved_file) != with_data  # the file, not the training set, is what the metric measured


def test_train_option_reaches_the_metric_kwargs(files, stats_file):
    from training import presets
    from helpers_training import tiny_options
    from metrics.snapshot_metrics import SnapshotMetrics
    c, _ = presets.make_training_options(snapshot_metrics=SnapshotMetrics(),
                                         **tiny_options(files.data, metrics="fid50k_full", ref_stats=stats_file))
    assert c.metric_kwargs.ref_stats == os.path.abspath(stats_file)
    with pytest.raises(dnnlib.util.UserError, match="^--ref-stats: .*missing.npz: no such file"):
        presets.make_training_options(snapshot_metrics=SnapshotMetrics(),
                                      **tiny_options(files.data, ref_stats=str(files.root / "missing.npz")))


@pytest.mark.parametrize("edit,message", [
    (dict(sigma=np.zeros([16, 15])), r"array 'sigma' is float64 \[16, 15\]"),
    (dict(mu=np.zeros([16], dtype=np.float32)), "array 'mu' is float32"),
    (dict(inception_features=np.zeros([39, 16], dtype=np.float32)), "array 'inception_features'"),
    (dict(xflip=np.array([1, 2])), "'xflip' is not a single"),
    (dict(format_version=np.int64(7)), "format_version 7; this package reads up to 2"),
])
def test_damaged_files_are_refused(stats_file, tmp_path, edit, message):
    with pytest.raises(dnnlib.util.UserError, match=message):
        reference_stats.load_reference_stats(_edited_copy(stats_file, tmp_path, **edit))


def test_not_a_stats_file(tmp_path, files):
    with pytest.raises(dnnlib.util.UserError, match="not a readable .npz"):
        reference_stats.resolve(files.network)  # a pickle: never loaded
    plain = tmp_path / "other.npz"
    np.savez(plain, mu=np.zeros(3))
    with pytest.raises(dnnlib.util.UserError, match="lacks sigma, num_images"):
        reference_stats.resolve(str(plain))


def test_conditional_network_needs_labels_in_the_file(stats_file):
    ref = reference_stats.load_reference_stats(stats_file)
    with pytest.raises(dnnlib.util.UserError, match=r"has no labels, but the network is conditional \(c_dim=3\)"):
        reference_stats.label_table(ref, 3)
    table = reference_stats.label_table(ref, 0)
    assert len(table) == 40 and table.get_label(5).shape == (0,)


def test_cli_option_combinations(files, capsys):
    with pytest.raises(dnnlib.util.UserError, match="--network: missing"):
        calc_metrics([f"--data={files.data}"], capsys)
    with pytest.raises(dnnlib.util.UserError, match="--ref-stats: stands in for --data"):
        calc_metrics([f"--network={files.network}", f"--data={files.data}", "--ref-stats=x.npz"], capsys)
    with pytest.raises(dnnlib.util.UserError, match="--export-stats: needs --data"):
        calc_metrics(["--export-stats=x.npz"], capsys)
    with pytest.raises(dnnlib.util.UserError, match="--export-stats: describes --data alone; drop --network"):
        calc_metrics(["--export-stats=x.npz", f"--data={files.data}", f"--network={files.network}"], capsys)


def test_conditional_network_draws_the_files_labels(stats_file, tmp_path):
    labels = np.eye(2, dtype=np.float32)[np.arange(40) % 2]
    ref = reference_stats.load_reference_stats(_edited_copy(stats_file, tmp_path, labels=labels))
    table = reference_stats.label_table(ref, 2)
    assert len(table) == 40 and np.array_equal(table.get_label(3), [0, 1])
    with pytest.raises(dnnlib.util.UserError, match="labels of width 2, but the network takes c_dim=5"):
        reference_stats.label_table(ref, 5)


def _hand_made_copy(stats_file, tmp_path, **members):
    """The stats file's arrays as stored members of a zip written by hand, with `members` (hostile_files' member
    tuples) replacing or adding some: what a damaged or hostile file can declare without holding it."""
    import hostile_files as hf
    with np.load(stats_file, allow_pickle=False) as npz:
        stored = {f"{key}.npy": hf.stored(hf.npy_bytes(npz[key])) for key in npz.files}
    stored.update({f"{key}.npy": member for key, member in members.items()})
    return hf.write_zip(tmp_path / "hand-made.npz", stored)


def test_hostile_headers_are_refused_before_numpy_allocates(stats_file, tmp_path):
    import hostile_files as hf
    # 80 TB of image_shape declared in a 128-byte member: numpy's own reader raised MemoryError here.
    huge = _hand_made_copy(stats_file, tmp_path, image_shape=hf.stored(hf.npy_header([10 ** 13], "<i8")))
    with pytest.raises(dnnlib.util.UserError, match=r"array 'image_shape'\): declares \[10000000000000\] int64 "
                                                    r"values \(80000000000000 bytes\) but holds 0 bytes"):
        reference_stats.load_reference_stats(huge)
    # 64 MiB of features from a 64 KB deflate stream: refused from the zip's listing, before anything expands.
    bomb = _hand_made_copy(stats_file, tmp_path, inception_features=hf.deflated_zeros(
        64, prefix=hf.npy_header([1 << 20, 16])))
    assert os.path.getsize(bomb) * reference_stats.MAX_EXPANSION + (1 << 20) < 64 << 20
    with pytest.raises(dnnlib.util.UserError, match=r"would expand to \d+ bytes from \d+; not a reference"):
        reference_stats.load_reference_stats(bomb)
    # The same members stored as they are load as the original does.
    same = _hand_made_copy(stats_file, tmp_path)
    assert reference_stats.load_reference_stats(same).num_images == 40


def test_a_listing_of_too_many_members_is_refused_unread(stats_file, tmp_path):
    import hostile_files as hf
    from dnnlib import array_files
    extra = {f"pad{i}": hf.stored(b"") for i in range(array_files.MAX_ZIP_ENTRIES)}
    path = _hand_made_copy(stats_file, tmp_path, **extra)
    with pytest.raises(dnnlib.util.UserError, match=r"listing 100\d\d members .*; not a reference statistics file"):
        reference_stats.load_reference_stats(path)
