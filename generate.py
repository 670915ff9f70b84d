"""Generate images from a trained network pickle.

Examples:
  python generate.py --network=SHHQ-1.0_sg2_1024.pkl --seeds=0-9 --trunc=0.7 --outdir=out
  python generate.py --network=run/network-snapshot-000100.pkl --seeds=0-31 --grid=4x8 --outdir=out
"""
import os
import re

import click
import numpy as np
import torch
from tqdm import tqdm

import dnnlib
import legacy
from dnnlib.image_grid import make_grid, parse_grid, save_png  # noqa: F401 (parse_grid: public here too)
from dnnlib.util import UserError
from torch_utils import cpu_tuning


def parse_range(text):
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    if isinstance(text, list):
        return text
    values = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if hi < lo:
                raise ValueError(f"range '{part}' runs backwards")
            values.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            values.append(int(part))
        else:
            raise ValueError(f"'{part}' is not a number or a range like 0-9")
    return values


def seed_to_z(seed, z_dim):
    """The latent of a seed, as every tool of the ecosystem computes it."""
    return np.random.RandomState(seed).randn(1, z_dim)


def to_uint8(img):
    """NCHW float in [-1, 1] -> NHWC uint8, the ecosystem's conversion."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def class_label(G, class_idx, device):
    """One-hot label row for conditional networks; an empty row for unconditional ones."""
    label = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim == 0:
        return label
    if class_idx is None:
        raise UserError("--class: this network is conditional; pass a class index with --class")
    if not 0 <= class_idx < G.c_dim:
        raise UserError(f"--class: {class_idx} is out of range; this network has classes 0-{G.c_dim - 1}")
    label[:, class_idx] = 1
    return label


DTYPES = {"fp32": None, "bf16": torch.bfloat16}  # None: the networks' own precision (float32 on the CPU)


def dtype_kwargs(dtype):
    """Synthesis keyword arguments for --dtype; empty for fp32, so any generator (also foreign code) runs as before."""
    return {} if DTYPES[dtype] is None else dict(dtype=DTYPES[dtype])


@torch.no_grad()
def generate_images(G, seeds, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const", class_idx=None,
                    batch_size=16, device=torch.device("cpu"), progress=False, dtype="fp32"):
    """Yield (seed, HWC uint8 numpy image) for each seed, computed in batches; dtype='bf16': bfloat16 synthesis."""
    label = class_label(G, class_idx, device)
    synthesis_kwargs = dtype_kwargs(dtype)
    batches = [seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)]
    with tqdm(total=len(seeds), unit="img", disable=not progress) as bar:
        for batch in batches:
            z = torch.from_numpy(np.concatenate([seed_to_z(seed, G.z_dim) for seed in batch])).to(device)
            img = G(z, label.repeat([len(batch), 1]), truncation_psi=truncation_psi,
                    truncation_cutoff=truncation_cutoff, noise_mode=noise_mode, **synthesis_kwargs)
            for seed, pixels in zip(batch, to_uint8(img).cpu().numpy()):
                yield seed, pixels
            bar.update(len(batch))


def resolve_device(name):
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: '{name}' is not a device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device: '{name}' asked for, but no CUDA GPU is available; use --device=cpu")
    return device


def _parse_seeds(ctx, param, value):
    try:
        return parse_range(value)
    except ValueError as err:
        raise click.BadParameter(str(err))


def _parse_grid(ctx, param, value):
    try:
        return None if value is None else parse_grid(value)
    except ValueError as err:
        raise click.BadParameter(str(err))


@click.command()
@click.option("--network", "network_pkl", help="Network pickle path or URL", required=True, metavar="PATH|URL")
@click.option("--seeds", callback=_parse_seeds, help="Seeds, e.g. 0-9,42", required=True)
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi")
@click.option("--trunc-cutoff", "truncation_cutoff", type=click.IntRange(min=0), default=None,
              help="Truncate only the first N ws (default: all)")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Noise inputs: the stored constants, fresh random noise, or none")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None,
              help="Class label (conditional networks only)")
@click.option("--outdir", type=click.Path(file_okay=False), required=True, help="Where to save the output images")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per forward pass")
@click.option("--device", "device_name", default=None, help="cpu, cuda or cuda:N  [default: cuda if available]")
@click.option("--dtype", type=click.Choice(list(DTYPES)), default="fp32", show_default=True,
              help="Synthesis precision: bf16 is faster on CPUs with AMX or AVX512_BF16 (images differ slightly)")
@click.option("--grid", callback=_parse_grid, default=None, metavar="ROWSxCOLS",
              help="Write one contact sheet grid.png instead of one file per seed")
@click.option("--verbose", is_flag=True, help="Show full tracebacks on errors")
def main(network_pkl, seeds, truncation_psi, truncation_cutoff, noise_mode, class_idx, outdir, batch_size,
         device_name, dtype, grid, verbose):
    """Generate images with a pretrained StyleGAN2 network, one PNG per seed (seed%04d.png)."""
    device = resolve_device(device_name)
    if device.type == "cpu":
        cpu_tuning.reuse_freed_memory()
    if grid is not None and grid[0] * grid[1] < len(seeds):
        raise UserError(f"--grid: {grid[0]}x{grid[1]} holds {grid[0] * grid[1]} images, but {len(seeds)} seeds "
                        f"were given")

    print(f'Loading network from "{network_pkl}"...')
    G = legacy.load_network(network_pkl, key="G_ema", device=device)
    if G.c_dim == 0 and class_idx is not None:
        print("warning: --class is ignored for an unconditional network")
        class_idx = None

    warning = cpu_tuning.bf16_warning(device) if dtype == "bf16" else None
    if warning:
        print(warning)

    os.makedirs(outdir, exist_ok=True)
    images = []
    for seed, pixels in generate_images(G, seeds, truncation_psi, truncation_cutoff, noise_mode, class_idx,
                                        batch_size, device, progress=True, dtype=dtype):
        if grid is None:
            save_png(pixels, os.path.join(outdir, f"seed{seed:04d}.png"))
        else:
            images.append(pixels)
    if grid is not None:
        save_png(make_grid(images, *grid), os.path.join(outdir, "grid.png"))
    print(f"Wrote {len(seeds)} image(s) to {outdir}")


if __name__ == "__main__":
    dnnlib.cli.run(main)
