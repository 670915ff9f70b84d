"""Editing with directions in W: compute SeFa directions from the weights, or apply a direction file.

Examples:
  python edit.py sefa --network=SHHQ-1.0_sg2_1024.pkl --layers=all --num=10 --output=sefa.npz
  python edit.py apply --network=SHHQ-1.0_sg2_1024.pkl --direction=sefa.npz:0 --seeds=0-3 \\
      --strengths=-3,-1.5,0,1.5,3 --layers=coarse --outdir=out
  python edit.py apply --network=out/pti_G.pkl --direction=upper_length.pt --latents=out/projected_w.npz \\
      --strengths=-4,-2,0,2,4 --video --outdir=out

A direction file is a [w_dim] or [1, w_dim] (or [K, w_dim] with FILE:INDEX) array or tensor in .npy, .npz or
.pt, loaded safely: plain arrays and tensors only, never pickled code. --layers takes ws indices and ranges
or the bands coarse (ws 0-3), middle (4-7), fine (8+), or all.
"""
import os

import click
from tqdm import tqdm

import dnnlib
import dnnlib.cli
import legacy
from dnnlib.image_grid import save_png
from dnnlib.util import UserError
from torch_utils.distributed import resolve_device
from latent import directions, space, video


def parse_floats(text):
    """'-3,-1.5,0' -> [-3.0, -1.5, 0.0]."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"'{text}' is not a comma-separated list of numbers") from None


def _layers(text, G):
    try:
        return space.parse_layers(text, G.num_ws)
    except ValueError as err:
        raise UserError(f"--layers: {err}") from None


def _load(network_pkl, device_name):
    device = resolve_device(device_name)
    print(f'Loading network from "{network_pkl}"...')
    return legacy.load_network(network_pkl, key="G_ema", device=device), device


@click.group()
def main():
    """Latent editing: `sefa` finds directions, `apply` uses one."""


@main.command()
@click.option("--network", "network_pkl", help="Network pickle path or URL", required=True, metavar="PATH|URL")
@click.option("--layers", default="all", show_default=True, help="Layers whose styles are factorised")
@click.option("--num", type=click.IntRange(min=1), default=10, show_default=True, help="Directions to keep")
@click.option("--output", type=click.Path(dir_okay=False), required=True, help="Direction file (.npz, .npy, .pt)")
@click.option("--verbose", is_flag=True, help="Show full tracebacks on errors")
def sefa(network_pkl, layers, num, output, verbose):
    """Closed-form directions (SeFa): the top eigenvectors of A^T A of the layers' style affines."""
    G, _ = _load(network_pkl, "cpu")
    layers = _layers(layers, G)
    found, eigenvalues = directions.sefa(G, layers, num)
    directions.save_directions(output, found, eigenvalues, layers)
    print("Eigenvalues: " + ", ".join(f"{v:.4g}" for v in eigenvalues.tolist()))
    print(f"Wrote {len(found)} direction(s) of layers {layers} to {output}")


@main.command()
@click.option("--network", "network_pkl", help="Network pickle path or URL", required=True, metavar="PATH|URL")
@click.option("--direction", "direction_spec", required=True, metavar="FILE[:INDEX]", help="Direction file")
@click.option("--seeds", callback=dnnlib.cli.parsed_by(space.parse_range), help="Seeds to edit, e.g. 0-3")
@click.option("--latents", "latent_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Saved latents to edit (projected_w.npz, --save-w output); repeatable")
@click.option("--strengths", callback=dnnlib.cli.parsed_by(parse_floats), default="-3,-1.5,0,1.5,3",
              show_default=True, help="Strengths of the strip")
@click.option("--layers", default="all", show_default=True, help="Layers the direction is added to")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi (seeds)")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Noise inputs")
@click.option("--video", "make_video", is_flag=True, help="Also write edit.mp4, sweeping the strength")
@click.option("--video-frames", type=click.IntRange(min=2), default=90, show_default=True, help="Frames of the video")
@click.option("--outdir", type=click.Path(file_okay=False), required=True, help="Where to write the strips")
@click.option("--device", "device_name", default=None, help="cpu, cuda or cuda:N  [default: cuda if available]")
@click.option("--verbose", is_flag=True, help="Show full tracebacks on errors")
def apply(network_pkl, direction_spec, seeds, latent_files, strengths, layers, truncation_psi, noise_mode,
          make_video, video_frames, outdir, device_name, verbose):
    """Write one strip per seed or latent: the image at each strength, side by side."""
    G, device = _load(network_pkl, device_name)
    direction = directions.load_direction(direction_spec, G.w_dim)
    layers = _layers(layers, G)
    items = space.latent_inputs(G, seeds, latent_files, truncation_psi, device)
    dnnlib.util.make_output_dir(outdir, "--outdir")
    for name, ws, noise in tqdm(items, unit="strip"):
        save_png(directions.edit_strip(G, ws, direction, strengths, layers, noise_mode, noise),
                 os.path.join(outdir, f"{name}.png"))
    print(f"Wrote {len(items)} strip(s) to {outdir}")
    if make_video:
        frames = directions.sweep_frames(G, [ws for _, ws, _ in items], direction, strengths, layers, video_frames,
                                         noise_mode, [noise for _, _, noise in items])
        path, count = video.write_video(os.path.join(outdir, "edit.mp4"), tqdm(frames, total=video_frames))
        print(f"Wrote {count} frames to {path}")


if __name__ == "__main__":
    dnnlib.cli.run(main)
