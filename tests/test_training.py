"""Training loop: exact resume, learning on a simple dataset, SIGTERM snapshots, stopping on NaN losses."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import quick_every
from helpers_training import (ROOT, TINY_ARGS, assert_same_training_state, load, make_block_images, make_figures,
                              snapshots, state_tensors, tiny_options, train_in_process)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return make_figures(tmp_path_factory.mktemp("data") / "figures.zip")


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, figures):
    # Fixed augmentation puts random augmentations in the steps too; 18 steps cross both lazy regularisers.
    opts = tiny_options(figures, aug="fixed", p=0.5, augpipe="body")
    status, full = train_in_process(tmp_path / "a", kimg=0.072, **opts)
    assert status == 0
    _, first = train_in_process(tmp_path / "b", kimg=0.032, **opts)
    half = load(snapshots(first)[-1])
    assert half["progress"]["cur_nimg"] == 32
    _, resumed = train_in_process(tmp_path / "b", kimg=0.072, resume=snapshots(first)[-1], **opts)

    # At the resume point: the resumed run starts from the snapshot's state...
    log = open(os.path.join(resumed, "log.txt")).read()
    assert "Resumed at kimg 0.032 (tick 3, step 8)" in log

    # ...and after 10 more steps it equals the uninterrupted run, parameters, optimizers and counters.
    a, b = load(snapshots(full)[-1]), load(snapshots(resumed)[-1])
    assert a["progress"]["cur_nimg"] == b["progress"]["cur_nimg"] == 72
    assert a["progress"]["cur_tick"] == b["progress"]["cur_tick"]
    assert_same_training_state(a, b, keys=("G", "D", "G_ema", "augment_pipe"))
    # The weights did change during the resumed part (a run that learns nothing would also "match").
    th, tb = state_tensors(half), state_tensors(b)
    assert any(not torch.equal(th[name], tb[name]) for name in th)


def test_run_folder_contents(tmp_path, figures):
    status, run_dir = train_in_process(tmp_path, kimg=0.016, **tiny_options(figures))
    assert status == 0
    assert os.path.basename(run_dir).startswith("00000-figures-auto-gpus1-batch4-")
    names = set(os.listdir(run_dir))
    assert {"training_options.json", "log.txt", "stats.jsonl", "reals.png", "fakes_init.png"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert any(n.startswith("fakes0") and n.endswith(".png") for n in names)
    # 2:1 images in a grid of 2 rows and 4 columns.
    import PIL.Image
    assert PIL.Image.open(os.path.join(run_dir, "reals.png")).size == (4 * 16, 2 * 32)
    options = json.load(open(os.path.join(run_dir, "training_options.json")))
    assert options["G_kwargs"]["aspect_ratio"] == [2, 1]
    stats = [json.loads(line) for line in open(os.path.join(run_dir, "stats.jsonl"))]
    assert all(np.isfinite(s["Loss/G/loss"]["mean"]) for s in stats if "Loss/G/loss" in s)
    log = open(os.path.join(run_dir, "log.txt")).read()
    assert "tick 0" in log and "sec/kimg" in log
    data = load(snapshots(run_dir)[-1])
    assert data["G"].img_height == 32 and data["G"].img_width == 16
    assert data["training_set_kwargs"]["path"] == str(figures)


def read_grid(path, rows, cols):
    """The images of a grid PNG as [N, C, H, W] floats in [-1, 1]."""
    import PIL.Image
    grid = np.asarray(PIL.Image.open(path), dtype=np.float32) / 127.5 - 1
    height, width = grid.shape[0] // rows, grid.shape[1] // cols
    tiles = grid.reshape(rows, height, cols, width, 3).transpose(0, 2, 4, 1, 3)
    return torch.from_numpy(tiles.reshape(rows * cols, 3, height, width).copy())


@pytest.mark.slow
def test_training_moves_fakes_towards_data(tmp_path):
    # An orange field with a dark block: far from a fresh G's grey output, and learnable in 100 steps.
    from training.dataset import ImageFolderDataset
    data = make_block_images(tmp_path / "blocks.zip")
    dataset = ImageFolderDataset(data)
    reals = torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))])).float() / 127.5 - 1
    opts = tiny_options(data, tick=0.1, snap=100, grid=(4, 8), glr=0.005, dlr=0.005)
    _, run_dir = train_in_process(tmp_path / "runs", kimg=0.4, **opts)
    before = read_grid(os.path.join(run_dir, "fakes_init.png"), rows=4, cols=8)
    after = read_grid(os.path.join(run_dir, "fakes000000.png"), rows=4, cols=8)  # The final grid (kimg 0.4).

    def mean_image_distance(fakes):
        return float((fakes.mean(0) - reals.mean(0)).square().mean().sqrt())

    def mean_colour_distance(fakes):
        return float((fakes.mean([0, 2, 3]) - reals.mean([0, 2, 3])).abs().max())

    # Measured on the 2-core VM: after the 100 steps the mean image is 0.36x as far from the reals' mean as the
    # initial grid's, the mean colour 0.07x. The bounds 0.6 and 0.4 leave room for other CPUs' rounding (training
    # amplifies it) and fail a G that learned nothing (1.0x) or half as much.
    assert mean_image_distance(after) < 0.6 * mean_image_distance(before)
    assert mean_colour_distance(after) < 0.4 * mean_colour_distance(before)


def test_lazy_regularisation_scales_adam_as_the_paper_says(figures):
    # StyleGAN2 appendix B: a regulariser run every k steps; the shared Adam takes lr * c and betas ** c, c = k/(k+1).
    from training import presets, training_loop
    options, _ = presets.make_training_options(**tiny_options(figures))
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    phases = {phase.name: phase for phase in training_loop.build_phases(options, G, D)}
    assert list(phases) == ["Gmain", "Greg", "Dmain", "Dreg"]
    for name, k, opt_kwargs in [("G", 4, options.G_opt_kwargs), ("D", 16, options.D_opt_kwargs)]:
        assert (phases[name + "main"].interval, phases[name + "reg"].interval) == (1, k)
        assert phases[name + "main"].opt is phases[name + "reg"].opt
        defaults = phases[name + "main"].opt.defaults
        assert defaults["lr"] == pytest.approx(opt_kwargs.lr * k / (k + 1), rel=1e-12)
        assert list(defaults["betas"]) == pytest.approx([beta ** (k / (k + 1)) for beta in opt_kwargs.betas], rel=1e-12)


@pytest.mark.slow
def test_each_regulariser_runs_every_interval(tmp_path, figures, monkeypatch):
    # 17 steps: G's path length regulariser (every 4) runs at steps 0, 4, 8, 12 and 16, D's R1 (every 16) at 0 and 16.
    from training import loss as loss_module
    original = loss_module.StyleGAN2Loss.accumulate_gradients
    calls = []

    def counted(self, phase, *args, **kwargs):
        calls.append(phase)
        return original(self, phase, *args, **kwargs)
    monkeypatch.setattr(loss_module.StyleGAN2Loss, "accumulate_gradients", counted)
    train_in_process(tmp_path, kimg=0.068, **tiny_options(figures))
    chunks = calls.count("Gmain") // 17  # accumulate_gradients calls per phase and step
    assert chunks >= 1 and calls.count("Gmain") == calls.count("Dmain") == 17 * chunks
    assert (calls.count("Greg"), calls.count("Dreg")) == (5 * chunks, 2 * chunks)


@pytest.mark.slow
def test_sigterm_writes_snapshot_and_exits(tmp_path, figures):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), f"--outdir={tmp_path}", f"--data={figures}", "--kimg=1000",
           "--tick=0.016", "--snap=1000", *TINY_ARGS]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.time() + 120
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("tick 2"):
                break
            assert time.time() < deadline, "training did not reach tick 2"
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines) + rest
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "Stopped by SIGTERM" in output
    (run_dir,) = [os.path.join(tmp_path, n) for n in os.listdir(tmp_path)]
    data = load(snapshots(run_dir)[-1])
    stopped_at = float(output.split("Stopped by SIGTERM at kimg ")[1].split(";")[0])
    assert data["progress"]["cur_nimg"] == round(stopped_at * 1000) > 2 * 16
    assert data["G_ema"] is not None and all(torch.isfinite(p).all() for p in data["G"].parameters())


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_snapshot(tmp_path, figures, monkeypatch):
    from training import loss as loss_module
    from training.training_loop import NonFiniteLossError
    original = loss_module.StyleGAN2Loss.accumulate_gradients
    steps = []

    def poisoned(self, phase, real_img, *args, **kwargs):
        if phase == "Dmain":
            steps.append(phase)
        if len(steps) >= 12:  # From the 12th step on, D sees NaN images.
            real_img = real_img * float("nan")
        return original(self, phase, real_img, *args, **kwargs)

    monkeypatch.setattr(loss_module.StyleGAN2Loss, "accumulate_gradients", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"NaN or Inf in the step ending at kimg 0\.048"):
        train_in_process(tmp_path, kimg=1000, **tiny_options(figures))
    (run_dir,) = [os.path.join(tmp_path, n) for n in os.listdir(tmp_path)]
    paths = snapshots(run_dir)
    assert paths, "the snapshots written before the NaN must stay"
    for path in paths:
        data = load(path)
        for key in ("G", "D", "G_ema"):
            assert all(torch.isfinite(t).all() for t in data[key].parameters()), (path, key)
    # Snapshots come every tick (4 steps); the newest is from before the poisoned step 12.
    assert load(paths[-1])["progress"]["batch_idx"] == 9


@pytest.mark.slow
def test_metrics_after_each_snapshot(tmp_path, figures, monkeypatch):
    from metrics.stand_in_detector import save_stand_in_detector
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    detector = save_stand_in_detector(str(tmp_path / "standin.pt"), num_features=64)  # Small: a fast sqrtm.
    opts = tiny_options(figures, metrics="fid50k_full", detector=detector, metric_kwargs=dict(max_gen=64), snap=2)
    _, run_dir = train_in_process(tmp_path / "runs", kimg=0.036, **opts)
    lines = [json.loads(line) for line in open(os.path.join(run_dir, "metric-fid50k_full.jsonl"))]
    assert len(lines) == 2  # Snapshots at tick 0 and at the end (tick 2).
    assert all(line["metric"] == "fid50k_full" and np.isfinite(line["results"]["fid50k_full"]) for line in lines)
    assert lines[-1]["snapshot_pkl"] == os.path.basename(snapshots(run_dir)[-1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (mixed precision runs on CUDA only)")
def test_cuda_mixed_precision_training(tmp_path, figures):
    # FP16 in the top 4 resolutions with conv_clamp, channels-last, ADA with the 'body' pipeline.
    opts = tiny_options(figures, device="cuda", nhwc=True, aug="ada", augpipe="body", ada_kimg=1)
    status, run_dir = train_in_process(tmp_path, kimg=0.2, **opts)
    assert status == 0
    data = load(snapshots(run_dir)[-1])
    assert data["G"].synthesis.b32.use_fp16 and data["D"].b32.use_fp16  # The FP16 layers were in use.
    for key in ("G", "D", "G_ema"):
        assert all(torch.isfinite(t).all() for t in data[key].parameters()), key
    stats = [json.loads(line) for line in open(os.path.join(run_dir, "stats.jsonl"))]
    assert all(np.isfinite(s["Loss/G/loss"]["mean"]) and np.isfinite(s["Loss/D/loss"]["mean"])
               for s in stats if "Loss/D/loss" in s)
    assert "Progress/augment" in stats[-1]
    torch.testing.assert_close(data["augment_pipe"].p, torch.as_tensor(stats[-1]["Progress/augment"]["mean"]),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("stop", quick_every(["time limit", "abort"], 2))
def test_time_limit_and_abort_stop_at_a_tick_with_a_snapshot(tmp_path, figures, capsys, stop):
    # The loop's own stop conditions, checked once per tick (every 4 steps; the first tick ends with step 1).
    from training import presets, training_loop
    options, _ = presets.make_training_options(**tiny_options(figures, kimg=1000,
                                                              max_minutes=1e-9 if stop == "time limit" else None))
    abort_calls, progress = [], []

    def abort_fn():
        abort_calls.append(1)
        return len(abort_calls) >= 3  # At the third tick.

    result = training_loop.training_loop(options.replace(run_dir=str(tmp_path)), device=torch.device("cpu"),
                                         abort_fn=abort_fn if stop == "abort" else None,
                                         progress_fn=lambda kimg, total: progress.append(total))
    stop_nimg = 4 if stop == "time limit" else 36
    assert result["stopped_by"] == stop and result["cur_nimg"] == stop_nimg
    assert load(result["snapshot_pkl"])["progress"]["cur_nimg"] == stop_nimg
    assert os.path.exists(tmp_path / "fakes000000.png") and os.path.exists(tmp_path / "stats.jsonl")
    out = capsys.readouterr().out
    assert ("Time limit of 1e-09 minutes reached; stopping." in out) == (stop == "time limit")
    assert ("Aborting..." in out) == (stop == "abort")
    assert progress == [1000] * (2 if stop == "time limit" else 4)  # At the start and after each tick.
