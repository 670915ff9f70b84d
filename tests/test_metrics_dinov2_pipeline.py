"""FD-DINOv2, PRDC and --resize=clean end to end: the fixture generator, a 64x32 zip, stand-in detectors
(the Inception stand-in and a thin DINOv2-shaped ViT loaded through the real path)."""
import json

import numpy as np
import pytest

import dnnlib
from metrics import detectors
from metrics import evaluate
from metrics import metric_main
from metrics import metric_utils
from metrics import stand_in_detector
from metrics.snapshot_metrics import SnapshotMetrics
from sg2_cli import calc_metrics as cli
from sg2_cli import train
from test_metrics_pipeline import DATASET_CLASS, ReplayGenerator, load_fixture_generator, write_zip
from test_metrics_pipeline import private_cache  # noqa: F401 (autouse: a private cache, no detector env vars)
from training import presets

NUM_REAL = 40


@pytest.fixture(scope="module")
def G(compat_dir):
    return load_fixture_generator(compat_dir)


@pytest.fixture(scope="module")
def files(tmp_path_factory, compat_dir):
    root = tmp_path_factory.mktemp("dinov2_metrics")
    return dnnlib.EasyDict(
        root=root,
        network=f"{compat_dir}/tiny_64x32.pkl",
        data=write_zip(root / "data.zip", NUM_REAL),
        other_data=write_zip(root / "other.zip", NUM_REAL + 1, seed=1),
        detector=stand_in_detector.save_stand_in_detector(str(root / "standin.pt"), num_features=16),
        dinov2=stand_in_detector.save_stand_in_dinov2(str(root / "dinov2.pth")),
    )


def detector_options(files):
    return [f"--detector={files.detector}", f"--vgg16={files.detector}", f"--dinov2={files.dinov2}", "--device=cpu"]


def calc_metrics(args, capsys):
    """Run calc_metrics.py in this process; the JSON lines it printed."""
    capsys.readouterr()
    cli.main.main(args, standalone_mode=False)
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def counting_generator_passes(monkeypatch):
    passes = []
    original = metric_utils.generated_feature_stats

    def counted(opts, requests, max_items):
        passes.append(sorted(request.detector for request in requests))
        return original(opts, requests, max_items)
    monkeypatch.setattr(metric_utils, "generated_feature_stats", counted)
    return passes


@pytest.mark.slow
def test_fd_dinov2_and_fid_with_clean_resizing_make_the_images_once(files, capsys, monkeypatch, one_torch_thread):
    passes = counting_generator_passes(monkeypatch)
    common = [f"--network={files.network}", f"--data={files.data}", "--num-gen=24", *detector_options(files)]
    together = calc_metrics(common + ["--metrics=fd_dinov2_50k_full,fid50k_full", "--resize=clean"], capsys)
    assert passes == [["dinov2", "inception"]]  # one pass of the generator fed both detectors
    assert [entry["metric"] for entry in together] == ["fd_dinov2_50k_full", "fid50k_full"]
    assert all(entry["resize"] == "clean" and entry["max_gen"] == 24 for entry in together)
    assert together[0]["results"]["fd_dinov2_50k_full"] > 0 and together[1]["results"]["fid50k_full"] > 0

    # Each metric alone sees the same images (every image depends on its index and the seed only).
    alone = [calc_metrics(common + [f"--metrics={entry['metric']}", "--resize=clean"], capsys)[0] for entry in together]
    assert [entry["results"] for entry in alone] == [entry["results"] for entry in together]
    assert len(passes) == 3
    original = calc_metrics(common + ["--metrics=fid50k_full"], capsys)[0]
    assert original["resize"] == "original" and original["results"] != together[1]["results"]


def test_resize_clean_is_refused_for_metrics_it_does_not_apply_to(files, capsys):
    with pytest.raises(dnnlib.util.UserError, match=r"^--resize=clean: applies to the Inception-v3 and DINOv2 "
                                                    r"metrics, not pr50k3_full, ppl2_wend"):
        calc_metrics([f"--network={files.network}", f"--data={files.data}", "--resize=clean",
                      "--metrics=fid50k_full,pr50k3_full,ppl2_wend", *detector_options(files)], capsys)


class _Recorded(Exception):
    pass


class RecordingGeneration:
    """Stands in for SharedGeneration: notes what a metric asks of generated images, then stops the metric."""

    def __init__(self):
        self.requests = []

    def stats_for(self, opts, request, max_items):
        self.requests.append((request, max_items))
        raise _Recorded()


@pytest.mark.parametrize("metric", sorted(metric_main.GENERATED_FEATURES))
def test_declared_generated_features_are_what_each_metric_asks_for(files, G, metric):
    recorder = RecordingGeneration()
    opts = dict(G=G, dataset_kwargs=dict(class_name=DATASET_CLASS, path=files.data), device="cpu",
                detectors=dict(inception=files.detector, vgg16=files.detector, dinov2=files.dinov2),
                shared_generation=recorder)
    with pytest.raises(_Recorded):
        metric_main.calc_metric(metric, **opts)
    assert recorder.requests == metric_main.GENERATED_FEATURES[metric]


class FirstDetector:
    """Stands in for detectors.get_feature_detector: notes the first detector a metric loads, then stops it."""

    def __init__(self):
        self.kinds = []

    def __call__(self, opts, kind):
        self.kinds.append(kind)
        raise _Recorded()


@pytest.mark.parametrize("metric", metric_main.list_valid_metrics())
def test_the_detector_pre_check_fetches_what_each_metric_loads(files, G, metric, monkeypatch):
    # train.py fetches metric_main.detectors_of(metric) before the run starts: it must be what the metric loads.
    recorder = FirstDetector()
    monkeypatch.setattr(metric_utils, "get_feature_detector", recorder)
    monkeypatch.setattr(detectors, "get_feature_detector", recorder)
    opts = dict(G=G, dataset_kwargs=dict(class_name=DATASET_CLASS, path=files.data), device="cpu", cache=False,
                detectors=dict(inception=files.detector, vgg16=files.detector, dinov2=files.dinov2))
    with pytest.raises(_Recorded):
        metric_main.calc_metric(metric, **opts)
    assert recorder.kinds == metric_main.detectors_of(metric)


@pytest.mark.slow
def test_dataset_against_itself_gives_fd_dinov2_zero_and_full_prdc(files):
    dataset = dnnlib.util.construct_class_by_name(class_name=DATASET_CLASS, path=files.data)
    images = np.stack([dataset[i][0] for i in range(len(dataset))])
    opts = dict(G=ReplayGenerator(images), dataset_kwargs=dict(class_name=DATASET_CLASS, path=files.data),
                device="cpu", detectors=dict(dinov2=files.dinov2), max_gen=len(dataset), batch_size=16, batch_gen=16)
    fd = metric_main.calc_metric("fd_dinov2_50k_full", **opts).results.fd_dinov2_50k_full
    real = metric_utils.compute_feature_stats_for_dataset(metric_utils.MetricOptions(**opts), "dinov2", {},
                                                          capture_mean_cov=True)
    assert abs(fd) < 1e-6 * np.trace(real.get_mean_cov(ddof=1)[1])
    opts["G"] = ReplayGenerator(images)
    results = metric_main.calc_metric("prdc_dinov2_50k_full", **opts).results
    assert [results[f"prdc_dinov2_50k_full_{name}"] for name in ("precision", "recall", "coverage")] == [1, 1, 1]


# ----------------------------------------------------------------------------
# Statistics files: DINOv2 statistics, the resize mode and the dataset are recorded and checked.


@pytest.fixture(scope="module")
def clean_stats(files):
    path = files.root / "clean_stats.npz"
    summary = evaluate.export_reference_stats(
        files.data, path, with_features=True, with_dinov2=True, resize="clean", verbose=False,
        detectors=dict(inception=files.detector, vgg16=files.detector, dinov2=files.dinov2))
    assert summary["detectors"] == ["dinov2", "inception", "vgg16"] and summary["resize"] == "clean"
    assert summary["features"] == ["dinov2_features", "inception_features", "vgg16_features"]
    return str(path)


def test_exported_file_records_resize_dataset_and_dinov2(files, clean_stats):
    with np.load(clean_stats, allow_pickle=False) as npz:
        assert str(npz["resize"]) == "clean" and str(npz["dataset_name"]) == "data.zip"
        assert str(npz["detector_name"]) == "standin.pt" and str(npz["dinov2_name"]) == "dinov2.pth"
        assert str(npz["dinov2_sha256"]) == dnnlib.download.file_sha256(files.dinov2)
        features = npz["dinov2_features"].astype(np.float64)
        assert features.shape == (NUM_REAL, 16)
        np.testing.assert_allclose(npz["dinov2_mu"], features.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(npz["dinov2_sigma"], np.cov(features, rowvar=False), rtol=1e-6, atol=1e-12)


@pytest.mark.slow
def test_dinov2_metrics_with_ref_stats_equal_those_with_data(files, clean_stats, capsys, one_torch_thread):
    common = [f"--network={files.network}", "--num-gen=24", "--resize=clean", *detector_options(files),
              "--metrics=fd_dinov2_50k_full,prdc_dinov2_50k_full,fid50k_full"]
    with_data = calc_metrics(common + [f"--data={files.data}"], capsys)
    with_file = calc_metrics(common + [f"--ref-stats={clean_stats}"], capsys)
    assert [a["results"] for a in with_data] == [b["results"] for b in with_file]  # the same floats


def test_resize_mode_and_dataset_mismatches_name_both(files, clean_stats, G):
    opts = dict(G=G, device="cpu", max_gen=4, ref_stats=clean_stats,
                detectors=dict(inception=files.detector, dinov2=files.dinov2))
    with pytest.raises(dnnlib.util.UserError, match=r"holds statistics of --resize=clean, but this run uses "
                                                    r"--resize=original; export statistics with --resize=original"):
        metric_main.calc_metric("fd_dinov2_50k_full", dataset_kwargs={}, **opts)
    other = dict(class_name=DATASET_CLASS, path=files.other_data)  # training: its dataset and the file disagree
    with pytest.raises(dnnlib.util.UserError) as info:
        metric_main.calc_metric("fid50k_full", dataset_kwargs=other, resize="clean", **opts)
    message = str(info.value)
    assert "describes dataset 'data.zip'" in message and files.other_data in message and "\n" not in message
    same = dict(class_name=DATASET_CLASS, path=files.data)
    assert metric_main.calc_metric("fid50k_full", dataset_kwargs=same, resize="clean", **opts).results.fid50k_full > 0


def test_file_without_dinov2_statistics_says_how_to_make_them(files, G, tmp_path):
    path = tmp_path / "inception_only.npz"
    evaluate.export_reference_stats(files.data, path, verbose=False, detectors=dict(inception=files.detector))
    with pytest.raises(dnnlib.util.UserError, match="holds no dinov2 statistics.*--export-stats --with-dinov2"):
        metric_main.calc_metric("fd_dinov2_50k_full", G=G, dataset_kwargs={}, device="cpu", max_gen=4,
                                ref_stats=str(path), detectors=dict(inception=files.detector, dinov2=files.dinov2))


# ----------------------------------------------------------------------------
# Training: train.py's --dinov2 reaches the metrics of each snapshot.


@pytest.mark.slow
def test_train_dinov2_option_reaches_the_snapshot_metrics(files, G, monkeypatch):
    monkeypatch.setenv("SG2_DINOV2_DETECTOR", str(files.root / "nowhere.pth"))  # the option must win over it
    command = train.main.make_context("train", [f"--data={files.data}", "--outdir=unused", "--metrics=fd_dinov2_10k",
                                                f"--dinov2={files.dinov2}"]).params
    assert command["dinov2"] == files.dinov2
    options, _ = presets.make_training_options(
        data=files.data, metrics="fd_dinov2_10k", dinov2=files.dinov2, metric_kwargs=dict(max_gen=8), workers=0,
        device="cpu", snapshot_metrics=SnapshotMetrics())
    assert options.metric_kwargs.detectors == dict(dinov2=files.dinov2)
    results = SnapshotMetrics().evaluate(G, "snapshot.pkl", options, rank=0, device="cpu", run_dir=None)
    direct = metric_main.calc_metric("fd_dinov2_10k", G=G, dataset_kwargs=options.training_set_kwargs,
                                     device="cpu", max_gen=8, detectors=dict(dinov2=files.dinov2))
    assert results == dict(direct.results) and np.isfinite(results["fd_dinov2_10k"])
