"""The CPU demo (`make demo`): draw a small figure dataset, train on it for a few minutes, generate from the result.

Steps, each a command a user could type:
  1. scripts/make_demo_data.py draws 64x32 synthetic figures into <outdir>/figures-64x32.zip (no download);
  2. train.py trains a thin StyleGAN2 on the CPU, stopping at --kimg or after --minutes, whichever is first,
     and writes reals.png, fakes_init.png and fakesNNNNNN.png grids into its run folder;
  3. generate.py draws images from the last snapshot into <run folder>/generated/.
"""
import glob
import os
import shutil
import subprocess
import sys
import time

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import dnnlib  # noqa: E402
from sg2_cli import runner  # noqa: E402
from sg2_cli.options import shared  # noqa: E402

# Thin networks: two CPU processes (one thread each, gloo; two threads in one process stall each other on a
# busy machine) with 16 images each per step. channel_base 1024 and batch 32 train about twice as many
# kimg per minute as the earlier 2048 / 16 (benchmarks/RESULTS.md), and figure shapes appear after ~16 kimg.
TRAIN_ARGS = ["--cfg=auto", "--batch=32", "--cbase=1024", "--cmax=64", "--map=2", "--gamma=1", "--mirror=1",
              "--aug=noaug", "--metrics=none", "--workers=1", "--tick=1", "--snap=4", "--grid=4x16"]


def run(cmd, env, quiet=False, cwd=ROOT):
    print("\n$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL if quiet else None)


def newest(pattern):
    paths = glob.glob(pattern)
    return max(paths, key=os.path.getmtime) if paths else None


def demo_env(threads=1):
    """A CPU run even where there is a GPU (CUDA_VISIBLE_DEVICES=""), so that the demo behaves the same everywhere."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="")


def make_data(dest, env):
    run([sys.executable, os.path.join("scripts", "make_demo_data.py"), f"--out={dest}", "--num=2000", "--seed=0"],
        env)


def default_procs():
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def train(runs, data, kimg, minutes, env, procs=None, quiet=False, cwd=ROOT):
    """train.py with the demo options; stops at kimg or after `minutes`, whichever is first. `cwd`: the checkout
    whose train.py runs (benchmarks/cpu.py compares an earlier one)."""
    procs = procs or default_procs()
    run([sys.executable, "train.py", f"--outdir={runs}", f"--data={data}", f"--gpus={procs}", f"--kimg={kimg:g}",
         f"--max-minutes={minutes:g}", *TRAIN_ARGS], env, quiet=quiet, cwd=cwd)


@click.command()
@shared("--outdir", required=False, default=os.path.join(ROOT, "demo-runs"), show_default=True,
        detail="the dataset and the run folders")
@click.option("--kimg", help="Training length in thousands of images", type=float, default=24, show_default=True)
@click.option("--minutes", help="Stop training after this many minutes at the latest", type=float, default=9.5,
              show_default=True)
@click.option("--procs", help="Training processes  [default: 2 where there are 2 cores or more]", type=int,
              default=None)
@click.option("--threads", help="CPU threads per process (tiny networks run best on one)", type=int, default=1,
              show_default=True)
@click.option("--copy-to", help="Also copy the last fakes grid here (e.g. docs/images/demo.png)", metavar="PNG")
def main(outdir, kimg, minutes, procs, threads, copy_to):
    """Train StyleGAN2 on synthetic figures on the CPU and generate images from the result."""
    start = time.time()
    env = demo_env(threads)
    os.makedirs(outdir, exist_ok=True)

    data = os.path.join(outdir, "figures-64x32.zip")
    if not os.path.exists(data):
        make_data(data, env)

    runs = os.path.join(outdir, "runs")
    train(runs, data, kimg, minutes, env, procs=procs)
    run_dir = newest(os.path.join(runs, "*"))
    snapshot = newest(os.path.join(run_dir, "network-snapshot-*.pkl"))
    grids = sorted(glob.glob(os.path.join(run_dir, "fakes[0-9]*.png")))  # fakesKKKKKK[_III].png sort as image counts
    if snapshot is None or not grids:
        raise dnnlib.util.UserError(f"{run_dir}: training wrote no snapshot or grid; see its log.txt")

    generated = os.path.join(run_dir, "generated")
    run([sys.executable, "generate.py", f"--network={snapshot}", "--seeds=0-31", "--grid=4x8", f"--outdir={generated}",
         "--device=cpu"], env)

    if copy_to:
        shutil.copyfile(grids[-1], copy_to)
    print(f"\nDemo finished in {dnnlib.util.format_time(time.time() - start)}.")
    print(f"  training grids:   {run_dir}/reals.png, fakes_init.png, {os.path.basename(grids[-1])}")
    print(f"  last snapshot:    {snapshot}")
    print(f"  generated images: {generated}/grid.png")


if __name__ == "__main__":
    runner.run(main)
