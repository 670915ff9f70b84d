"""generate.py / sg2-generate: images from a pretrained network, one PNG per seed or one contact sheet.

Examples:
  python generate.py --network=SHHQ-1.0_sg2_1024.pkl --seeds=0-9 --trunc=0.7 --outdir=out
  python generate.py --network=run/network-snapshot-000100.pkl --seeds=0-31 --grid=4x8 --outdir=out
  python generate.py --network="https://drive.google.com/file/d/<ID>/view" --seeds=0-3 --outdir=out
  python generate.py --network=SHHQ-1.0_sg2_512.pkl --projected-w=out/projected_w.npz --outdir=out
  python generate.py --network=shhq-1.0-512 --seeds=0-3 --outdir=out    # a named release, downloaded once
  python generate.py --list-networks                                     # the names, links and recorded SHA-256
"""
import os

import click
import torch

import dnnlib
from dnnlib.image_grid import check_grid, make_grid, save_png
from dnnlib.util import UserError
from latent import space
from latent.generation import generate_images, render_projected
from torch_utils import cpu_tuning, distributed
from training.checkpoint import releases
from training.checkpoint.load import load_network

from . import outputs
from .options import flag, network, shared
from .runner import run

# StyleGAN-Human's generate.py picks the network family with --version; this package runs version 2 only.
OTHER_VERSIONS = {1: "StyleGAN1 (TensorFlow)", 3: "StyleGAN3"}


def _list_networks(ctx, param, value):
    """--list-networks: print the named releases and stop (like --help, before the required options are checked)."""
    if value and not ctx.resilient_parsing:
        click.echo("Named networks (--network=NAME in every tool; downloaded once, SHA-256 recorded on the first "
                   "download and checked on every later use):")
        for line in releases.describe_releases():
            click.echo("  " + line)
        ctx.exit(0)


def _check_version(ctx, param, value):
    if value is not None and value != 2:
        family = OTHER_VERSIONS.get(value, f"version {value}")
        raise click.BadParameter(f"{value}: {family} networks are not supported; this package runs StyleGAN2 "
                                 "networks (--version 2)")
    return value


def seed_outputs(outdir, seeds, grid, save_w):
    """The files a seeds run writes: grid.png or seed%04d.png each, and seed%04d.npz each with --save-w."""
    names = ["grid.png"] if grid is not None else [f"seed{seed:04d}.png" for seed in seeds]
    names += [f"seed{seed:04d}.npz" for seed in seeds] if save_w else []
    return [os.path.join(outdir, name) for name in names]


@click.command()
@network()
@shared("--seeds")
@click.option("--projected-w", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Render saved latents (projected_w.npz, .npy, .pt) instead of seeds")
@flag("--save-w", help="Also write each seed's ws as seed%04d.npz (key w)")
@shared("--trunc")
@click.option("--trunc-cutoff", "truncation_cutoff", type=click.IntRange(min=0), default=None,
              help="Truncate only the first N ws (default: all)")
@shared("--noise-mode")
@shared("--class")
@shared("--outdir")
@click.option("--batch", "batch_size", type=click.IntRange(1, 1024), default=None,
              help="Images per forward pass  [default: the fastest per image on the device: 1 on the CPU, 16 on "
                   "CUDA]")
@shared("--device")
@shared("--dtype")
@shared("--grid", note="one file per seed", detail="one contact sheet grid.png instead of one file per seed")
@shared("--force")
@shared("--verbose")
@shared("--progress")
@click.option("--list-networks", is_flag=True, is_eager=True, expose_value=False, callback=_list_networks,
              help="List the named releases (shhq-1.0-512, shhq-1.0-1024) and exit")
@click.option("--version", type=int, hidden=True, expose_value=False, callback=_check_version,
              help="StyleGAN-Human's network version: only 2 (StyleGAN2)")
def main(network_pkl, sha256, seeds, projected_w, save_w, truncation_psi, truncation_cutoff, noise_mode, class_idx,
         outdir, batch_size, device_name, dtype, grid, force):
    """Generate images with a pretrained StyleGAN2 network, one PNG per seed (seed%04d.png)."""
    device = distributed.resolve_device(device_name)
    if device.type == "cpu":
        cpu_tuning.reuse_freed_memory()
    if (seeds is None) == (projected_w is None):
        raise UserError("--seeds or --projected-w: give exactly one of them")
    if grid is not None and seeds is not None and grid[0] * grid[1] < len(seeds):
        raise UserError(f"--grid: {grid[0]}x{grid[1]} holds {grid[0] * grid[1]} images, but {len(seeds)} seeds "
                        f"were given")
    if seeds is not None:
        outputs.check_new(seed_outputs(outdir, seeds, grid, save_w), force)

    print(f'Loading network from "{network_pkl}"...')
    G = load_network(network_pkl, key="G_ema", device=device, sha256=sha256)
    if grid is not None:
        check_grid(*grid, G.img_height, G.img_width)
    if G.c_dim == 0 and class_idx is not None:
        print("warning: --class is ignored for an unconditional network")
        class_idx = None
    warning = cpu_tuning.bf16_warning(device) if dtype != torch.float32 else None
    if warning:
        print(warning)

    if projected_w is not None:
        _write_projected(G, projected_w, noise_mode, outdir, grid, dtype, force)
        return
    dnnlib.util.make_output_dir(outdir, "--outdir")
    images = []
    for seed, pixels in generate_images(G, seeds, truncation_psi, truncation_cutoff, noise_mode, class_idx,
                                        batch_size, device, progress=True, dtype=dtype):
        if grid is None:
            save_png(pixels, os.path.join(outdir, f"seed{seed:04d}.png"))
        else:
            images.append(pixels)
        if save_w:
            ws = space.seeds_to_ws(G, [seed], truncation_psi, truncation_cutoff, class_idx, device)
            space.save_latents(os.path.join(outdir, f"seed{seed:04d}.npz"), ws)
    if grid is not None:
        save_png(make_grid(images, *grid), os.path.join(outdir, "grid.png"))
        print(f"Wrote a {grid[0]}x{grid[1]} grid of {len(seeds)} image(s) to {os.path.join(outdir, 'grid.png')}")
    else:
        print(f"Wrote {len(seeds)} image(s) to {outdir}")


def _write_projected(G, projected_w, noise_mode, outdir, grid, dtype, force):
    """proj00.png, proj01.png, ... (the original tool's names), or grid.png, from a latent file."""
    ws, _ = space.load_latents(projected_w, G)  # The count first: the outputs are checked before any work.
    if grid is not None and grid[0] * grid[1] < len(ws):
        raise UserError(f"--grid: {grid[0]}x{grid[1]} holds {grid[0] * grid[1]} images, but {projected_w} holds "
                        f"{len(ws)} latents")
    names = ["grid.png"] if grid is not None else [f"proj{idx:02d}.png" for idx in range(len(ws))]
    outputs.check_new([os.path.join(outdir, name) for name in names], force)
    images = render_projected(G, projected_w, noise_mode, dtype)
    dnnlib.util.make_output_dir(outdir, "--outdir")  # only once the file is read and checked
    if grid is None:
        for name, pixels in zip(names, images):
            save_png(pixels, os.path.join(outdir, name))
        print(f"Wrote {len(images)} image(s) from {projected_w} to {outdir}")
    else:
        save_png(make_grid(images, *grid), os.path.join(outdir, "grid.png"))
        print(f"Wrote a {grid[0]}x{grid[1]} grid of {len(images)} image(s) from {projected_w} to "
              f"{os.path.join(outdir, 'grid.png')}")


def cli() -> None:
    """Entry point of `python generate.py` and the sg2-generate console script."""
    run(main)
