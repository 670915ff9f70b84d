"""How far bf16 synthesis is from fp32, in 8-bit levels (LSB) of the images generate.py writes, and PSNR.

    python benchmarks/bf16_diff.py --network=run/network-snapshot-000010.pkl --seeds=0-63
    python benchmarks/bf16_diff.py --seeds=0-3          # the randomly initialised SHHQ 512x256 config

Both images come from the same z and noise (noise_mode='const'); the difference is the rounding of bf16 alone.
"""

import os
import sys

import click
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import legacy  # noqa: E402
from benchmarks.generator_speed import shhq_generator  # noqa: E402
from latent.generation import generate_images  # noqa: E402
from sg2_cli.options import network, shared  # noqa: E402


def image_difference(G, seeds, batch_size=8, truncation_psi=1.0):
    """(max LSB, mean LSB, PSNR in dB, share of pixels that differ) of bf16 vs fp32 uint8 images."""
    fp32 = dict(generate_images(G, seeds, truncation_psi, batch_size=batch_size))
    bf16 = dict(generate_images(G, seeds, truncation_psi, batch_size=batch_size, dtype=torch.bfloat16))
    diff = np.stack([fp32[s].astype(np.int32) - bf16[s].astype(np.int32) for s in seeds])
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)
    return int(np.abs(diff).max()), float(np.abs(diff).mean()), psnr, float((diff != 0).mean())


@click.command()
@network(required=False)
@shared("--seeds", default="0-15", show_default=True)
@shared("--trunc")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=8, show_default=True)
def main(network_pkl, sha256, seeds, truncation_psi, batch_size):
    """Print the bf16-vs-fp32 image difference of a generator."""
    G = legacy.load_network(network_pkl, sha256=sha256) if network_pkl else shhq_generator(512)
    worst, mean, psnr, share = image_difference(G, seeds, batch_size, truncation_psi)
    what = network_pkl or "random SHHQ 512x256 generator"
    print(f"{what}, {len(seeds)} seeds, {G.img_height}x{G.img_width}: bf16 vs fp32 max {worst} LSB, "
          f"mean {mean:.3f} LSB, PSNR {psnr:.1f} dB, {share * 100:.1f}% of values differ")


if __name__ == "__main__":
    main()
