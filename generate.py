"""Generate images from a trained network pickle.

Examples:
  python generate.py --network=SHHQ-1.0_sg2_1024.pkl --seeds=0-9 --trunc=0.7 --outdir=out
  python generate.py --network=run/network-snapshot-000100.pkl --seeds=0-31 --grid=4x8 --outdir=out
  python generate.py --network="https://drive.google.com/file/d/<ID>/view" --seeds=0-3 --outdir=out
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
from torch_utils import distributed


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


@torch.no_grad()
def generate_images(G, seeds, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const", class_idx=None,
                    batch_size=16, device=torch.device("cpu"), progress=False):
    """Yield (seed, HWC uint8 numpy image) for each seed, computed in batches."""
    label = class_label(G, class_idx, device)
    batches = [seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)]
    with tqdm(total=len(seeds), unit="img", disable=not progress) as bar:
        for batch in batches:
            z = torch.from_numpy(np.concatenate([seed_to_z(seed, G.z_dim) for seed in batch])).to(device)
            img = G(z, label.repeat([len(batch), 1]), truncation_psi=truncation_psi,
                    truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)
            for seed, pixels in zip(batch, to_uint8(img).cpu().numpy()):
                yield seed, pixels
            bar.update(len(batch))


def _parse_seeds(ctx, param, value):
    try:
        return parse_range(value)
    except ValueError as err:
        raise click.BadParameter(str(err))


# StyleGAN-Human's generate.py picks the network family with --version; this package runs version 2 only.
OTHER_VERSIONS = {1: "StyleGAN1 (TensorFlow)", 3: "StyleGAN3"}


def _check_version(ctx, param, value):
    if value is not None and value != 2:
        family = OTHER_VERSIONS.get(value, f"version {value}")
        raise click.BadParameter(f"{value}: {family} networks are not supported; this package runs StyleGAN2 "
                                 "networks (--version 2)")
    return value


@click.command()
@click.option("--network", "network_pkl", help="Network .pkl or .safetensors: path, or URL (http(s), Google Drive "
              "link, hf://OWNER/REPO/FILE)", required=True, metavar="PATH|URL")
@click.option("--sha256", help="Expected SHA-256 of --network, checked before it is read", metavar="HEX")
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
@click.option("--grid", callback=dnnlib.cli.parse_grid_option, default=None, metavar="ROWSxCOLS",
              help="Write one contact sheet grid.png instead of one file per seed")
@click.option("--verbose", is_flag=True, help="Show full tracebacks on errors")
@click.option("--version", type=int, hidden=True, expose_value=False, callback=_check_version,
              help="StyleGAN-Human's network version: only 2 (StyleGAN2)")
@dnnlib.cli.unsupported_option("--projected-w", "stylegan2-ada-pytorch's generate.py",
                               "generate from seeds with --seeds")
def main(network_pkl, seeds, truncation_psi, truncation_cutoff, noise_mode, class_idx, outdir, batch_size,
         device_name, grid, verbose, sha256):
    """Generate images with a pretrained StyleGAN2 network, one PNG per seed (seed%04d.png)."""
    device = distributed.resolve_device(device_name)
    if grid is not None and grid[0] * grid[1] < len(seeds):
        raise UserError(f"--grid: {grid[0]}x{grid[1]} holds {grid[0] * grid[1]} images, but {len(seeds)} seeds "
                        f"were given")

    print(f'Loading network from "{network_pkl}"...')
    G = legacy.load_network(network_pkl, key="G_ema", device=device, sha256=sha256)
    if G.c_dim == 0 and class_idx is not None:
        print("warning: --class is ignored for an unconditional network")
        class_idx = None

    os.makedirs(outdir, exist_ok=True)
    images = []
    for seed, pixels in generate_images(G, seeds, truncation_psi, truncation_cutoff, noise_mode, class_idx,
                                        batch_size, device, progress=True):
        if grid is None:
            save_png(pixels, os.path.join(outdir, f"seed{seed:04d}.png"))
        else:
            images.append(pixels)
    if grid is not None:
        save_png(make_grid(images, *grid), os.path.join(outdir, "grid.png"))
    print(f"Wrote {len(seeds)} image(s) to {outdir}")


if __name__ == "__main__":
    dnnlib.cli.run(main)
