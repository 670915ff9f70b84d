"""Generate images from a trained network pickle.

Examples:
  python generate.py --network=SHHQ-1.0_sg2_1024.pkl --seeds=0-9 --trunc=0.7 --outdir=out
  python generate.py --network=run/network-snapshot-000100.pkl --seeds=0-31 --grid=4x8 --outdir=out
  python generate.py --network="https://drive.google.com/file/d/<ID>/view" --seeds=0-3 --outdir=out
  python generate.py --network=SHHQ-1.0_sg2_512.pkl --projected-w=out/projected_w.npz --outdir=out
"""
import math
import os

import click
import numpy as np
import torch
from tqdm import tqdm

import dnnlib
import legacy
from dnnlib.image_grid import make_grid, parse_grid, save_png
from dnnlib.util import UserError
from latent import space
from latent.space import class_label, parse_range, seed_to_z, to_uint8  # noqa: F401 (public here too)
from torch_utils import distributed
from torch_utils import cpu_tuning
from training import networks


@torch.no_grad()
def generate_images(G, seeds, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const", class_idx=None,
                    batch_size=None, device=torch.device("cpu"), progress=False, dtype="fp32"):
    """Yield (seed, HWC uint8 numpy image) for each seed, computed in batches of batch_size (None: the device's
    networks.default_batch); dtype='bf16': bfloat16 synthesis."""
    batch_size = batch_size or networks.default_batch(device)
    label = class_label(G, class_idx, device)
    synthesis_kwargs = space.synthesis_kwargs(space.DTYPES[dtype])
    batches = [seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)]
    with tqdm(total=len(seeds), unit="img", disable=not progress) as bar:
        for batch in batches:
            z = torch.from_numpy(np.concatenate([seed_to_z(seed, G.z_dim) for seed in batch])).to(device)
            img = G(z, label.repeat([len(batch), 1]), truncation_psi=truncation_psi,
                    truncation_cutoff=truncation_cutoff, noise_mode=noise_mode, **synthesis_kwargs)
            for seed, pixels in zip(batch, to_uint8(img).cpu().numpy()):
                yield seed, pixels
            bar.update(len(batch))


def render_projected(G, path, noise_mode="const", dtype="fp32"):
    """HWC uint8 images of the latents in a saved file (projected_w.npz, --save-w output, .npy, .pt), in order."""
    ws, noise = space.load_latents(path, G)
    return space.synthesize(G, ws, noise_mode=noise_mode, noise=noise, dtype=space.DTYPES[dtype])


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
@click.option("--seeds", callback=dnnlib.cli.parsed_by(parse_range), help="Seeds, e.g. 0-9,42")
@click.option("--projected-w", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Render saved latents (projected_w.npz, .npy, .pt) instead of seeds")
@click.option("--save-w", is_flag=True, help="Also write each seed's ws as seed%04d.npz (key w)")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi")
@click.option("--trunc-cutoff", "truncation_cutoff", type=click.IntRange(min=0), default=None,
              help="Truncate only the first N ws (default: all)")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Noise inputs: the stored constants, fresh random noise, or none")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None,
              help="Class label (conditional networks only)")
@click.option("--outdir", type=click.Path(file_okay=False), required=True, help="Where to save the output images")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=None,
              help="Images per forward pass  [default: the fastest on the device: 1 on the CPU, 16 on CUDA]")
@click.option("--device", "device_name", default=None, help="cpu, cuda or cuda:N  [default: cuda if available]")
@click.option("--dtype", type=click.Choice(list(space.DTYPES)), default="fp32", show_default=True,
              help="Synthesis precision: bf16 is faster on CPUs with AMX or AVX512_BF16 (images differ slightly)")
@click.option("--grid", callback=dnnlib.cli.parsed_by(parse_grid), default=None, metavar="ROWSxCOLS",
              help="Write one contact sheet grid.png instead of one file per seed")
@click.option("--verbose", is_flag=True, help="Show full tracebacks on errors")
@click.option("--version", type=int, hidden=True, expose_value=False, callback=_check_version,
              help="StyleGAN-Human's network version: only 2 (StyleGAN2)")
def main(network_pkl, seeds, projected_w, save_w, truncation_psi, truncation_cutoff, noise_mode, class_idx, outdir,
         batch_size, device_name, dtype, grid, verbose, sha256):
    """Generate images with a pretrained StyleGAN2 network, one PNG per seed (seed%04d.png)."""
    device = distributed.resolve_device(device_name)
    if device.type == "cpu":
        cpu_tuning.reuse_freed_memory()
    if (seeds is None) == (projected_w is None):
        raise UserError("--seeds or --projected-w: give exactly one of them")
    if not math.isfinite(truncation_psi):
        raise UserError(f"--trunc: {truncation_psi} is not a finite number (e.g. 0.7, or 1 for no truncation)")
    if grid is not None and seeds is not None and grid[0] * grid[1] < len(seeds):
        raise UserError(f"--grid: {grid[0]}x{grid[1]} holds {grid[0] * grid[1]} images, but {len(seeds)} seeds "
                        f"were given")

    print(f'Loading network from "{network_pkl}"...')
    G = legacy.load_network(network_pkl, key="G_ema", device=device, sha256=sha256)
    if G.c_dim == 0 and class_idx is not None:
        print("warning: --class is ignored for an unconditional network")
        class_idx = None

    warning = cpu_tuning.bf16_warning(device) if dtype == "bf16" else None
    if warning:
        print(warning)

    dnnlib.util.make_output_dir(outdir, "--outdir")
    if projected_w is not None:
        _write_projected(G, projected_w, noise_mode, outdir, grid, dtype)
        return
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
    print(f"Wrote {len(seeds)} image(s) to {outdir}")


def _write_projected(G, projected_w, noise_mode, outdir, grid, dtype="fp32"):
    """proj00.png, proj01.png, ... (the original tool's names), or grid.png, from a latent file."""
    images = render_projected(G, projected_w, noise_mode, dtype)
    if grid is None:
        for idx, pixels in enumerate(images):
            save_png(pixels, os.path.join(outdir, f"proj{idx:02d}.png"))
    elif grid[0] * grid[1] < len(images):
        raise UserError(f"--grid: {grid[0]}x{grid[1]} holds {grid[0] * grid[1]} images, but {projected_w} holds "
                        f"{len(images)} latents")
    else:
        save_png(make_grid(images, *grid), os.path.join(outdir, "grid.png"))
    print(f"Wrote {len(images)} image(s) from {projected_w} to {outdir}")


if __name__ == "__main__":
    dnnlib.cli.run(main)
