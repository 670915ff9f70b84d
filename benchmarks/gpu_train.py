"""Training speed (sec/kimg) on one CUDA GPU for the SHHQ configs, through the public training path.

    python benchmarks/gpu_train.py --budget=300 --out=gpu_train.md

For each size (512x256, 1024x512) it writes a synthetic dataset (--images random smooth images at that size) into
a temporary folder, then trains with `--cfg=shhq --gpus=1` (the preset batch), `--metrics=none`, a short --kimg
and a small --tick, in this process, once per variant:
  fused      the CUDA kernels (the default);
  ref        SG2_OPS_IMPL=ref: every op on its PyTorch reference path;
  nhwc       --nhwc=1: channels_last in the fp16 layers;
  tf32       --allow-tf32=1: TF32 matmuls and convolutions;
  nhwc+tf32  both.
sec/kimg is the median of Timing/sec_per_kimg in stats.jsonl over the ticks after the first (which holds the
start-up: kernel loading, cuDNN autotuning). Runs that would not fit the remaining --budget are skipped and
say so. torch.compile is not a variant: the R1 and path-length regularisers need double backward, which
torch.compile does not support.
"""

import json
import os
import statistics
import sys
import tempfile
import time

import click
import numpy as np
import PIL.Image
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import dnnlib  # noqa: E402
from torch_utils.ops import _kernels  # noqa: E402
from sg2_cli import outputs  # noqa: E402
from sg2_cli.options import shared  # noqa: E402
from training import launch, presets  # noqa: E402

VARIANTS = {
    "fused": dict(env=None, opts=dict()),
    "ref": dict(env="ref", opts=dict()),
    "nhwc": dict(env=None, opts=dict(nhwc=True)),
    "tf32": dict(env=None, opts=dict(allow_tf32=True)),
    "nhwc+tf32": dict(env=None, opts=dict(nhwc=True, allow_tf32=True)),
}


def write_dataset(folder, height, count, seed=0):
    """`count` smooth random RGB images of height x height/2 (upsampled noise) as PNG files."""
    os.makedirs(folder, exist_ok=True)
    rnd = np.random.RandomState(seed)
    for i in range(count):
        small = (rnd.rand(8, 4, 3) * 255).astype(np.uint8)
        img = PIL.Image.fromarray(small).resize((height // 2, height), PIL.Image.BILINEAR)
        img.save(os.path.join(folder, f"img{i:05d}.png"))
    return folder


def sec_per_kimg(run_dir):
    """Median Timing/sec_per_kimg over the ticks after the first, and how many ticks that is."""
    with open(os.path.join(run_dir, "stats.jsonl")) as f:
        ticks = [json.loads(line) for line in f if line.strip()]
    values = [t["Timing/sec_per_kimg"]["mean"] for t in ticks[1:] if "Timing/sec_per_kimg" in t]
    return (statistics.median(values) if values else float("nan")), len(values)


def train_once(data, outdir, variant, kimg, tick, max_minutes, device="cuda"):
    """One short training run with a variant's options; returns (sec/kimg, measured ticks, wall seconds)."""
    spec = VARIANTS[variant]
    saved_env = os.environ.get(_kernels.ENV_IMPL)
    if spec["env"] is None:
        os.environ.pop(_kernels.ENV_IMPL, None)
    else:
        os.environ[_kernels.ENV_IMPL] = spec["env"]
    start = time.time()
    try:
        c, desc = presets.make_training_options(data=data, gpus=1, cfg="shhq", mirror=True, kimg=kimg, tick=tick,
                                                snap=10000, metrics="none", workers=3, max_minutes=max_minutes,
                                                device=device, **spec["opts"])
        launch.launch(c, outdir=outdir, desc=f"{desc}-{variant}")
    finally:
        if saved_env is None:
            os.environ.pop(_kernels.ENV_IMPL, None)
        else:
            os.environ[_kernels.ENV_IMPL] = saved_env
    run_dir = max((os.path.join(outdir, d) for d in os.listdir(outdir)), key=os.path.getmtime)
    value, ticks = sec_per_kimg(run_dir)
    return value, ticks, time.time() - start


def estimate_s(previous, kimg):
    """A run's expected wall time from an earlier run of the same size: start-up plus kimg at its speed."""
    if previous is None:
        return 0.0
    wall, value, measured_kimg = previous
    return max(wall - value * measured_kimg, 0) + value * kimg * 1.5  # 1.5: the reference path is slower


def run_all(sizes, variants, budget_s, kimg, tick, images, workdir, print_fn=print, device="cuda"):
    """Every (variant, size) that fits the budget, variants in the order given; returns Markdown rows."""
    deadline = time.time() + budget_s
    data = {height: write_dataset(os.path.join(workdir, f"data{height}"), height, images) for height in sizes}
    previous = {}  # height -> (wall s, sec/kimg, kimg measured) of its last run, for estimates
    rows = []
    for variant in variants:
        for height in sizes:
            left = deadline - time.time()
            if left < 30 or estimate_s(previous.get(height), kimg) > left:
                rows.append([f"{height}x{height // 2}", variant, "skipped (budget)", "", ""])
                print_fn(f"{height} {variant}: skipped, {left:.0f} s of the budget left", flush=True)
                continue
            value, ticks, wall = train_once(data[height], os.path.join(workdir, "runs"), variant, kimg, tick,
                                            max_minutes=max(left - 20, 10) / 60, device=device)
            previous[height] = (wall, value, ticks * tick)
            rows.append([f"{height}x{height // 2}", variant, f"{value:.2f}", ticks, f"{wall:.0f}"])
            print_fn(f"{height} {variant}: {value:.2f} sec/kimg over {ticks} ticks, {wall:.0f} s", flush=True)
    return sorted(rows, key=lambda row: int(row[0].split("x")[0]))


def markdown(rows, header_note):
    lines = [header_note, "", "| size | variant | sec/kimg | ticks measured | run s |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _list(ctx, param, value):
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command()
@click.option("--sizes", default="512,1024", callback=_list, show_default=True, help="Image heights (2:1 images)")
@click.option("--variants", default=",".join(VARIANTS), callback=_list, show_default=True)
@click.option("--budget", "budget_s", type=float, default=300, show_default=True, help="Seconds for all runs")
@click.option("--kimg", type=float, default=0.6, show_default=True, help="Training length of each run")
@click.option("--tick", type=float, default=0.15, show_default=True, help="kimg per tick (one sec/kimg sample)")
@click.option("--images", type=click.IntRange(min=8), default=96, show_default=True, help="Synthetic dataset size")
@shared("--out", param="out", type=click.Path(dir_okay=False), required=False, detail="also the Markdown table")
@shared("--force")
def main(sizes, variants, budget_s, kimg, tick, images, out, force):
    """Measure training sec/kimg for the SHHQ configs on one GPU: kernels vs reference, NHWC, TF32."""
    if not torch.cuda.is_available():
        raise click.ClickException("needs a CUDA GPU")
    outputs.check_new([out] if out else [], force, "--out")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise click.BadParameter(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}", param_hint="--variants")
    with tempfile.TemporaryDirectory() as workdir:
        rows = run_all([int(s) for s in sizes], variants, budget_s, kimg, tick, images, workdir)
    note = (f"Training sec/kimg, `--cfg=shhq --gpus=1` (preset batch), {torch.cuda.get_device_name()}, torch "
            f"{torch.__version__}, {time.strftime('%Y-%m-%d')}; median over the ticks after the first")
    text = markdown(rows, note)
    print(text)
    if out:
        dnnlib.util.atomic_write(out, lambda f: f.write((text + "\n").encode("utf-8")))


if __name__ == "__main__":
    main()
