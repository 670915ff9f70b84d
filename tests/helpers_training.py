"""Shared pieces of the training tests: a tiny figure dataset, tiny run options, reading snapshots back."""
import glob
import importlib.util
import os
import re

import torch

import legacy
from helpers import ROOT

# Thin networks at 32x16 keep a training step at tens of milliseconds on one CPU core.
# CPU even where CUDA exists: these tests check exact (CPU-deterministic) behaviour.
TINY_ARGS = ["--cfg=auto", "--batch=4", "--cbase=512", "--cmax=32", "--map=2", "--metrics=none", "--workers=0",
             "--grid=2x4", "--aug=noaug", "--device=cpu"]


def make_figures(path, num=64, seed=0, height=32, width=16):
    """The demo's synthetic figures (scripts/make_demo_data.py), small."""
    spec = importlib.util.spec_from_file_location("make_demo_data", os.path.join(ROOT, "scripts", "make_demo_data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_demo_dataset(str(path), num_images=num, seed=seed, height=height, width=width)


def make_block_images(path, num=64, seed=0):
    """32x16 images with a strong signal: an orange field with a dark blue block in the middle, plus noise."""
    import io
    import zipfile
    import numpy as np
    import PIL.Image
    rnd = np.random.RandomState(seed)
    with zipfile.ZipFile(path, "w") as zf:
        for idx in range(num):
            img = np.empty([32, 16, 3])
            img[:] = [230, 120, 30]
            img[8:26, 5:11] = [40, 40, 120]
            img += rnd.randn(*img.shape) * 12
            buf = io.BytesIO()
            PIL.Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="png")
            zf.writestr(f"img{idx:04d}.png", buf.getvalue())
    return str(path)


def tiny_options(data, **overrides):
    """make_training_options kwargs equivalent to TINY_ARGS."""
    opts = dict(data=str(data), cfg="auto", batch=4, cbase=512, cmax=32, map=2, metrics="none", workers=0,
                grid=(2, 4), aug="noaug", tick=0.016, snap=1, device="cpu")
    opts.update(overrides)
    return opts


def train_in_process(outdir, **opts):
    """One training run in this process through the same path as train.py; returns (exit status, run dir)."""
    from metrics.snapshot_metrics import SnapshotMetrics
    from training import launch, presets
    c, desc = presets.make_training_options(snapshot_metrics=SnapshotMetrics(), **opts)
    before = set(os.listdir(outdir)) if os.path.isdir(outdir) else set()
    status = launch.launch(c, outdir=str(outdir), desc=desc, snapshot_metrics=SnapshotMetrics())
    (run_name,) = set(os.listdir(outdir)) - before
    return status, os.path.join(str(outdir), run_name)


def snapshots(run_dir):
    """Snapshot paths of a run, oldest first."""
    paths = glob.glob(os.path.join(run_dir, "network-snapshot-*.pkl"))
    return sorted(paths, key=lambda p: (int(re.search(r"(\d+)\.pkl$", p).group(1)), os.path.getmtime(p)))


def load(path):
    with open(path, "rb") as f:
        return legacy.load_network_pkl(f)


def state_tensors(data, keys=("G", "D", "G_ema"), skip=()):
    """name -> tensor of every parameter and buffer of the networks in a snapshot."""
    out = {}
    for key in keys:
        for name, tensor in list(data[key].named_parameters()) + list(data[key].named_buffers()):
            if not any(s in name for s in skip):
                out[f"{key}.{name}"] = tensor.detach()
    return out


def assert_networks_bitwise_equal(a, b, keys=("G", "D", "G_ema", "augment_pipe")):
    """Every parameter and buffer of the snapshots' networks is the same, bit for bit."""
    ta, tb = state_tensors(a, keys=keys), state_tensors(b, keys=keys)
    assert ta.keys() == tb.keys()
    for name in ta:
        torch.testing.assert_close(ta[name], tb[name], rtol=0, atol=0, msg=name)


def flat_optimizer_state(state_dict):
    """'<param index>.<key>' -> tensor of an optimizer state_dict's per-parameter state."""
    return {f"{idx}.{key}": torch.as_tensor(value) for idx, entry in state_dict["state"].items()
            for key, value in entry.items()}


def assert_same_training_state(a, b, keys=("G", "D", "G_ema")):
    """Two snapshots hold bit-identical networks, optimizer states and path length means."""
    assert_networks_bitwise_equal(a, b, keys=keys)
    for opt in ("G_opt", "D_opt"):
        oa, ob = (flat_optimizer_state(x["progress"]["optimizers"][opt]) for x in (a, b))
        assert oa.keys() == ob.keys() and len(oa) > 0
        for name in oa:
            torch.testing.assert_close(oa[name], ob[name], rtol=0, atol=0, msg=f"{opt} {name}")
    torch.testing.assert_close(a["progress"]["pl_mean"], b["progress"]["pl_mean"], rtol=0, atol=0)
