"""Metrics end to end: the fixture generator, a small 64x32 zip and a TorchScript stand-in detector."""
import io
import json
import os
import pickle
import tempfile
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
import legacy
from helpers import quick_every
from metrics import detectors, metric_main, metric_utils
from metrics import stand_in_detector
from training import dataset as dataset_module

DATASET_CLASS = "training.dataset.ImageFolderDataset"
NUM_REAL = 48


def load_fixture_generator(compat_dir):
    with open(os.path.join(compat_dir, "tiny_64x32.pkl"), "rb") as f:
        return legacy.load_network_pkl(f)["G_ema"]


def write_zip(path, num_images, seed=0):
    """Smooth random 64x32 RGB images (blurred noise, so the detectors see some structure)."""
    rnd = np.random.RandomState(seed)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(num_images):
            small = rnd.rand(8, 4, 3) * 255
            img = PIL.Image.fromarray(small.astype(np.uint8)).resize((32, 64), PIL.Image.BILINEAR)
            buf = io.BytesIO()
            img.save(buf, format="png")
            zf.writestr(f"{i // 100:05d}/img{i:08d}.png", buf.getvalue())
    return str(path)


@pytest.fixture(scope="module")
def G(compat_dir):
    return load_fixture_generator(compat_dir)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    return dnnlib.EasyDict(
        data=write_zip(root / "data.zip", NUM_REAL),
        # Fewer features than images keeps the covariances regular (a singular sqrtm is slow and inexact).
        detector=stand_in_detector.save_stand_in_detector(str(root / "standin16.pt"), num_features=16),
        detector24=stand_in_detector.save_stand_in_detector(str(root / "standin24.pt"), num_features=24, seed=1),
    )


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    for kind in detectors.DETECTORS.values():
        monkeypatch.delenv(kind.env, raising=False)


def options(G, files, detector=None, **kwargs):
    detector = detector or files.detector
    opts = dict(G=G, dataset_kwargs=dict(class_name=DATASET_CLASS, path=files.data), device="cpu",
                detectors=dict(inception=detector, vgg16=detector), max_gen=32, batch_size=16, batch_gen=16)
    opts.update(kwargs)
    return opts


# ----------------------------------------------------------------------------
# Every metric runs and reports under its original result names.

EXPECTED_KEYS = {
    "fid50k_full": ["fid50k_full"],
    "kid50k_full": ["kid50k_full"],
    "pr50k3_full": ["pr50k3_full_precision", "pr50k3_full_recall"],
    "is50k": ["is50k_mean", "is50k_std"],
    "ppl2_wend": ["ppl2_wend"],
    "fid50k": ["fid50k"],
    "kid50k": ["kid50k"],
    "pr50k3": ["pr50k3_precision", "pr50k3_recall"],
}


@pytest.mark.parametrize("metric", quick_every(list(EXPECTED_KEYS), 8))
def test_each_metric_runs_end_to_end(G, files, metric):
    result = metric_main.calc_metric(metric, **options(G, files))
    assert sorted(result.results) == sorted(EXPECTED_KEYS[metric])
    assert all(np.isfinite(v) for v in result.results.values())
    assert result.metric == metric and result.num_gpus == 1 and result.max_gen == 32
    values = list(result.results.values())
    if metric.startswith("fid"):
        assert values[0] > 0
    if metric.startswith("pr"):
        assert all(0 <= v <= 1 for v in values)
    if metric == "is50k":
        assert result.results.is50k_mean >= 1
    if metric == "ppl2_wend":
        assert values[0] > 0


def test_cropped_ppl_variants_refuse_non_square_images(G, files):
    with pytest.raises(dnnlib.util.UserError, match="square"):
        metric_main.calc_metric("ppl_wend", **options(G, files, max_gen=4))


def test_unknown_metric_is_a_user_error(G, files):
    with pytest.raises(dnnlib.util.UserError, match="fid50k_full"):
        metric_main.calc_metric("fid1k", **options(G, files))


# ----------------------------------------------------------------------------
# The real and generated paths agree: a "generator" replaying the dataset scores FID 0, precision/recall 1.


class ReplayGenerator(torch.nn.Module):
    """Returns the dataset's images in order, mapped to [-1, 1] so that the uint8 conversion restores them."""

    def __init__(self, images):
        super().__init__()
        self.register_buffer("images", torch.as_tensor(images))
        self.z_dim, self.c_dim, self.img_resolution, self.next = 8, 0, images.shape[2], 0

    def forward(self, z, c, **_kwargs):
        batch = self.images[self.next: self.next + len(z)].to(torch.float32)
        self.next += len(z)
        return (batch + 0.5 - 128) / 127.5


def test_dataset_against_itself_gives_fid_zero_and_full_precision_recall(files):
    dataset = dnnlib.util.construct_class_by_name(class_name=DATASET_CLASS, path=files.data)
    images = np.stack([dataset[i][0] for i in range(len(dataset))])
    replay = ReplayGenerator(images)
    opts = options(replay, files, max_gen=len(dataset))
    fid = metric_main.calc_metric("fid50k_full", **opts).results.fid50k_full
    real_stats = metric_utils.compute_feature_stats_for_dataset(
        metric_utils.MetricOptions(**opts), "inception", dict(return_features=True), capture_mean_cov=True)
    assert abs(fid) < 1e-9 * np.trace(real_stats.get_mean_cov()[1])
    pr = metric_main.calc_metric("pr50k3_full", **opts).results
    assert (pr.pr50k3_full_precision, pr.pr50k3_full_recall) == (1.0, 1.0)


# ----------------------------------------------------------------------------
# Caching, determinism, batch-size independence.


@pytest.mark.slow
def test_real_statistics_are_cached_on_disk(G, files, monkeypatch):
    reads = []
    original = dataset_module.ImageFolderDataset.__getitem__
    monkeypatch.setattr(dataset_module.ImageFolderDataset, "__getitem__",
                        lambda self, idx: (reads.append(idx), original(self, idx))[1])
    opts = options(G, files, max_gen=24, G_kwargs=dict(noise_mode="const"))
    first = metric_main.calc_metric("fid50k_full", **opts).results.fid50k_full
    assert len(reads) == NUM_REAL
    cache_files = os.listdir(dnnlib.util.make_cache_dir_path("gan-metrics"))
    assert len(cache_files) == 1 and cache_files[0].startswith("data-inception-")

    reads.clear()
    assert metric_main.calc_metric("fid50k_full", **opts).results.fid50k_full == first
    assert reads == []  # the second run read no real image

    st = os.stat(files.data)
    os.utime(files.data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a changed dataset is read again
    assert metric_main.calc_metric("fid50k_full", **opts).results.fid50k_full == pytest.approx(first, rel=1e-12)
    assert len(reads) == NUM_REAL


@pytest.mark.slow
def test_results_do_not_depend_on_batch_size(G, files):
    results = []
    for batch_size, batch_gen in [(8, 4), (16, 16), (24, 8)]:
        opts = options(G, files, max_gen=40, batch_size=batch_size, batch_gen=batch_gen, cache=False,
                       G_kwargs=dict(noise_mode="const"))
        results.append(metric_main.calc_metric("fid50k_full", **opts).results.fid50k_full)
    # Same latents and images whatever the batching; only the detector's matrix product rounds by its batch size.
    assert results[1] == pytest.approx(results[0], rel=1e-4)
    assert results[2] == pytest.approx(results[0], rel=1e-4)


class OneAtATime(torch.nn.Module):
    """The generator called one image at a time in the original form (fused modulated convolution, NCHW)."""

    def __init__(self, G):
        super().__init__()
        self.G = G
        self.z_dim, self.c_dim, self.img_resolution = G.z_dim, G.c_dim, G.img_resolution

    def forward(self, z, c, **kwargs):
        return torch.cat([self.G(z[i:i + 1], c[i:i + 1], fused_modconv=True, channels_last=False, **kwargs)
                          for i in range(len(z))])


@pytest.mark.slow
def test_fid_is_exactly_that_of_the_original_form_one_image_at_a_time(G, files):
    # On the CPU the generator computes every image as the original form does at batch 1, whatever batch_gen,
    # so FID (here degenerate: 16 images, covariances of rank below the 16 features) is exactly that value.
    results = []
    for generator, batch_gen in [(OneAtATime(G), 1), (G, 1), (G, 4), (G, 16)]:
        opts = options(generator, files, max_gen=16, batch_gen=batch_gen, cache=False, G_kwargs=dict(noise_mode="const"))
        results.append(metric_main.calc_metric("fid50k_full", **opts).results.fid50k_full)
    assert results[1:] == [results[0]] * 3


@pytest.mark.slow
def test_generated_images_follow_the_seed_and_leave_the_global_rng_alone(G, files):
    def generated(seed):
        opts = metric_utils.MetricOptions(**options(G, files, seed=seed, max_gen=8))
        return metric_utils.compute_feature_stats_for_generator(opts, "inception", dict(return_features=True),
                                                                max_items=8, capture_all=True).get_all()
    rng_before = torch.random.get_rng_state()
    a, b, c = generated(0), generated(0), generated(1)
    assert torch.equal(rng_before, torch.random.get_rng_state())
    np.testing.assert_array_equal(a, b)  # noise_mode='random' too is drawn from the seed
    assert not np.allclose(a, c)


# ----------------------------------------------------------------------------
# Several processes (gloo on the CPU) split the images and get the single-process numbers.


def _distributed_worker(rank, init_file, out_dir, network_pkl, opts_kwargs):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        with open(network_pkl, "rb") as f:
            G = pickle_free_load(f)
        kwargs = dict(opts_kwargs, G=G, num_gpus=2, rank=rank)
        opts = metric_utils.MetricOptions(**kwargs)
        detector_kwargs = dict(return_features=True)
        real = metric_utils.compute_feature_stats_for_dataset(opts, "inception", detector_kwargs, capture_all=True)
        gen = metric_utils.compute_feature_stats_for_generator(opts, "inception", detector_kwargs, max_items=20,
                                                               capture_all=True)
        fid = metric_main.calc_metric("fid50k_full", **kwargs).results.fid50k_full
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"), real=real.get_all(), gen=gen.get_all(), fid=fid)
    finally:
        torch.distributed.destroy_process_group()


def pickle_free_load(f):
    return legacy.load_network_pkl(f)["G_ema"]


@pytest.mark.slow
def test_two_processes_split_the_work_and_match_one_process(G, files, compat_dir, tmp_path):
    opts_kwargs = options(None, files, max_gen=20, batch_size=8, batch_gen=8, cache=False,
                          G_kwargs=dict(noise_mode="const"))
    del opts_kwargs["G"]
    with tempfile.TemporaryDirectory() as temp_dir:
        torch.multiprocessing.spawn(_distributed_worker, nprocs=2, args=(
            os.path.join(temp_dir, "init"), str(tmp_path), os.path.join(compat_dir, "tiny_64x32.pkl"), opts_kwargs))
    rank0, rank1 = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")

    single = metric_utils.MetricOptions(G=G, **opts_kwargs)
    real = metric_utils.compute_feature_stats_for_dataset(single, "inception", dict(return_features=True),
                                                          capture_all=True)
    gen = metric_utils.compute_feature_stats_for_generator(single, "inception", dict(return_features=True),
                                                           max_items=20, capture_all=True)
    np.testing.assert_allclose(rank0["real"], real.get_all(), rtol=1e-5, atol=1e-6)  # same order, nothing twice
    # Generated: the same images; the detector's matrix product rounds by how many rows each rank's batch has.
    np.testing.assert_allclose(rank0["gen"], gen.get_all(), rtol=1e-3, atol=1e-3)
    fid = metric_main.calc_metric("fid50k_full", G=G, **opts_kwargs).results.fid50k_full
    assert float(rank0["fid"]) == pytest.approx(fid, rel=1e-3)
    assert float(rank1["fid"]) == float(rank0["fid"])  # rank 0 shares its result


# ----------------------------------------------------------------------------
# Detector loading: sources, errors, safety.


def loopback_url(monkeypatch):
    """Point the standard Inception URL at a closed local port: a download that fails at once, as offline."""
    url = "http://127.0.0.1:9/metrics/inception-2015-12-05.pt"
    monkeypatch.setitem(detectors.DETECTORS["inception"], "url", url)
    monkeypatch.setattr(dnnlib.download.time, "sleep", lambda _seconds: None)  # skip the retry back-off
    return url


def test_missing_detector_without_network_says_where_to_put_it(monkeypatch):
    url = loopback_url(monkeypatch)
    opts = metric_utils.MetricOptions(device="cpu")
    with pytest.raises(dnnlib.util.UserError) as err:
        detectors.get_feature_detector(opts, "inception")
    message = str(err.value)
    assert dnnlib.util.url_cache_path(url) in message
    assert "--detector=PATH" in message and "SG2_INCEPTION_DETECTOR=PATH" in message
    assert "\n" not in message


def test_detector_placed_at_the_cache_path_is_used_offline(files, monkeypatch):
    url = loopback_url(monkeypatch)
    cache_path = dnnlib.util.url_cache_path(url)
    os.makedirs(os.path.dirname(cache_path), exist_ok=True)
    with open(files.detector, "rb") as src, open(cache_path, "wb") as dst:
        dst.write(src.read())
    detector = detectors.get_feature_detector(metric_utils.MetricOptions(device="cpu"), "inception")
    assert detector(torch.zeros([2, 3, 64, 32], dtype=torch.uint8), return_features=True).shape == (2, 16)


def test_option_overrides_environment_variable(files, monkeypatch, tmp_path):
    monkeypatch.setenv("SG2_VGG16_DETECTOR", files.detector24)
    assert detectors.detector_spec(metric_utils.MetricOptions(device="cpu"), "vgg16")[0] == files.detector24
    opts = metric_utils.MetricOptions(device="cpu", detectors=dict(vgg16=files.detector))
    assert detectors.detector_spec(opts, "vgg16") == (files.detector, "--vgg16")
    missing = str(tmp_path / "nowhere.pt")
    with pytest.raises(dnnlib.util.UserError, match="--vgg16.*nowhere.pt"):
        detectors.get_feature_detector(metric_utils.MetricOptions(device="cpu", detectors=dict(vgg16=missing)),
                                       "vgg16")


def test_a_new_detector_is_one_entry_of_the_table(files, monkeypatch):
    # A kind with its own loader: its environment variable (open_detector, as the projector and the app load) and
    # its option (the metrics' get_feature_detector) both reach that loader.
    loaded = []

    def load_toy(path, device):
        loaded.append(path)
        return detectors.load_torchscript(path, device)

    monkeypatch.setitem(detectors.DETECTORS, "toy", dnnlib.EasyDict(
        title="Toy", url="http://127.0.0.1:9/toy.pt", option="--toy", env="SG2_TOY_DETECTOR",
        file_format="TorchScript", load=load_toy))
    monkeypatch.setenv("SG2_TOY_DETECTOR", files.detector)
    images = torch.zeros([2, 3, 64, 32], dtype=torch.uint8)
    assert detectors.open_detector("toy")(images, return_features=True).shape == (2, 16)
    opts = metric_utils.MetricOptions(device="cpu", detectors=dict(toy=files.detector24))
    assert detectors.get_feature_detector(opts, "toy")(images, return_features=True).shape == (2, 24)
    assert loaded == [files.detector, files.detector24]


class _Sentinel:
    """Unpickling this creates a folder: proof that a file was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


@pytest.mark.parametrize("name", ["detector.pkl", "detector.pt"])
def test_pickled_detectors_are_never_unpickled(tmp_path, name):
    sentinel = str(tmp_path / "unpickled")
    with open(tmp_path / name, "wb") as f:
        pickle.dump(_Sentinel(sentinel), f)
    with pytest.raises(dnnlib.util.UserError, match="--detector"):
        detectors.get_feature_detector(
            metric_utils.MetricOptions(device="cpu", detectors=dict(inception=str(tmp_path / name))), "inception")
    assert not os.path.exists(sentinel)


# ----------------------------------------------------------------------------
# Reporting.


def test_report_metric_prints_and_appends_jsonl(tmp_path, capsys):
    run_dir = tmp_path / "00000-run"
    run_dir.mkdir()
    result = dnnlib.EasyDict(results=dict(fid50k_full=3.5), metric="fid50k_full", total_time=1.0,
                             total_time_str="1s", num_gpus=1)
    for _ in range(2):
        metric_main.report_metric(result, run_dir=str(run_dir),
                                  snapshot_pkl=str(run_dir / "network-snapshot-000000.pkl"))
    lines = (run_dir / "metric-fid50k_full.jsonl").read_text().splitlines()
    printed = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and printed == lines
    entry = json.loads(lines[0])
    assert entry["snapshot_pkl"] == "network-snapshot-000000.pkl"
    assert entry["results"] == {"fid50k_full": 3.5}
    assert {"metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl", "timestamp"} <= set(entry)
