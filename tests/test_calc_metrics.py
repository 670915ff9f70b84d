"""calc_metrics.py: the command line, run folders, dataset options and one-line errors."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import dnnlib
from metrics import evaluate
from metrics import stand_in_detector
from test_metrics_pipeline import load_fixture_generator, write_zip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_KEYS = {"results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl", "timestamp"}


def metric_files(root, compat_dir, num_images, num_features):
    """The reference network, a zip of `num_images` real images and a stand-in detector, under `root`."""
    return dnnlib.EasyDict(
        network=os.path.join(compat_dir, "tiny_64x32.pkl"),
        data=write_zip(root / "data.zip", num_images),
        detector=stand_in_detector.save_stand_in_detector(str(root / "standin.pt"), num_features=num_features),
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory, compat_dir):
    # 16 features: more images than features keeps the covariances regular and the matrix square root fast.
    return metric_files(tmp_path_factory.mktemp("calc_metrics"), compat_dir, 40, 16)


def run_cli(args, tmp_path):
    env = dict(os.environ, DNNLIB_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=ROOT)
    env.pop("SG2_VERBOSE", None)
    return subprocess.run([sys.executable, os.path.join(ROOT, "calc_metrics.py")] + args, env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_prints_one_json_line_per_metric_on_cpu(files, tmp_path):
    proc = run_cli(["--metrics=fid50k_full", f"--network={files.network}", f"--data={files.data}",
                    f"--detector={files.detector}", "--device=cpu", "--num-gen=32"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert RESULT_KEYS <= set(entry)
    assert entry["metric"] == "fid50k_full" and entry["num_gpus"] == 1 and entry["max_gen"] == 32
    assert entry["results"]["fid50k_full"] > 0
    assert entry["snapshot_pkl"] == files.network  # not in a run folder: the path as given


@pytest.mark.slow
def test_cli_errors_are_one_line_without_traceback(files, tmp_path):
    proc = run_cli(["--metrics=fid50k_full", f"--network={files.network}", f"--data={files.data}",
                    f"--detector={tmp_path / 'nowhere.pt'}", "--device=cpu", "--num-gen=8"], tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: --detector") and "nowhere.pt" in last and "SG2_INCEPTION_DETECTOR" in last
    assert proc.stdout == ""


@pytest.mark.slow
def test_cli_in_a_run_folder_appends_jsonl_using_two_processes(files, tmp_path, monkeypatch, capfd):
    from sg2_cli import calc_metrics
    run_dir = tmp_path / "00000-shhq"
    run_dir.mkdir()
    snapshot = run_dir / "network-snapshot-000000.pkl"
    shutil.copyfile(files.network, snapshot)
    (run_dir / "training_options.json").write_text("{}")
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    calc_metrics.main.main([
        "--metrics=fid50k_full,is50k", f"--network={snapshot}", f"--data={files.data}", f"--detector={files.detector}",
        "--device=cpu", "--gpus=2", "--num-gen=16"], standalone_mode=False)
    printed = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert [entry["metric"] for entry in printed] == ["fid50k_full", "is50k"]
    for entry in printed:
        assert entry["num_gpus"] == 2 and entry["snapshot_pkl"] == "network-snapshot-000000.pkl"
        recorded = (run_dir / f"metric-{entry['metric']}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in recorded] == [entry]


def test_unknown_metric_lists_the_valid_ones(files):
    from sg2_cli import calc_metrics
    with pytest.raises(dnnlib.util.UserError, match="--metrics: unknown metric fid1k; choose from .*fid50k_full"):
        calc_metrics.main.main(["--metrics=fid1k", f"--network={files.network}"], standalone_mode=False)


def test_dataset_options_come_from_data_or_the_snapshot(files, compat_dir):
    G = load_fixture_generator(compat_dir)
    recorded = dict(class_name=evaluate.DATASET_CLASS, path=files.data, xflip=True, max_size=None)
    network_dict = dict(G_ema=G, training_set_kwargs=recorded)
    from_snapshot = evaluate.dataset_kwargs_for(network_dict)
    assert (from_snapshot.path, from_snapshot.xflip, from_snapshot.resolution, from_snapshot.use_labels) == \
        (files.data, True, 64, False)
    assert evaluate.dataset_kwargs_for(network_dict, mirror=False).xflip is False
    given = evaluate.dataset_kwargs_for(network_dict, data="other.zip")
    assert given.path == "other.zip" and "xflip" not in given
    with pytest.raises(dnnlib.util.UserError, match="--data"):
        evaluate.dataset_kwargs_for(dict(G_ema=G, training_set_kwargs=dict(recorded, path="/nowhere/shhq.zip")))
    with pytest.raises(dnnlib.util.UserError, match="--data"):
        evaluate.dataset_kwargs_for(dict(G_ema=G, training_set_kwargs=None))


def test_run_folder_detection(tmp_path):
    snapshot = tmp_path / "network-snapshot-000000.pkl"
    snapshot.write_bytes(b"")
    assert evaluate.find_run_dir(str(snapshot)) is None
    (tmp_path / "training_options.json").write_text("{}")
    assert evaluate.find_run_dir(str(snapshot)) == str(tmp_path)
    assert evaluate.find_run_dir("https://example.com/network-snapshot-000000.pkl") is None
