"""Interpolation videos: loops through seeds or saved latents, one loop or a grid of them, at the network's aspect.

Examples:
  python gen_video.py --network=SHHQ-1.0_sg2_512.pkl --seeds=0-31 --grid=2x4 --output=lerp.mp4
  python gen_video.py --network=SHHQ-1.0_sg2_1024.pkl --seeds=1-8 --kind=slerp --w-frames=60 --output=loop.mp4
  python gen_video.py --network=pti_G.pkl --latents=a/projected_w.npz --latents=out/seed0003.npz --output=two.mp4

Frames: num_keyframes * w_frames; each cell of the ROWSxCOLS grid loops through its own keyframes
(seeds or latents taken in order, cell by cell, repeated as needed), back to its first.
Noise maps stored in latent files are not used (they cannot be interpolated); the network's own are.
"""
import click
import torch
from tqdm import tqdm

import dnnlib
import dnnlib.cli
import legacy
from dnnlib.image_grid import parse_grid
from torch_utils.distributed import resolve_device
from latent import interpolation, space, video


@click.command()
@click.option("--network", "network_pkl", help="Network pickle path or URL", required=True, metavar="PATH|URL")
@click.option("--seeds", callback=dnnlib.cli.parsed_by(space.parse_range), help="Keyframe seeds, e.g. 0-31")
@click.option("--latents", "latent_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Keyframe latent file (projected_w.npz, generate.py --save-w output); repeatable")
@click.option("--grid", callback=dnnlib.cli.parsed_by(parse_grid), default="1x1", show_default=True,
              metavar="ROWSxCOLS", help="Loops shown at once")
@click.option("--num-keyframes", type=click.IntRange(min=1), default=None,
              help="Keyframes per loop  [default: keyframes given / cells]")
@click.option("--w-frames", type=click.IntRange(min=1), default=120, show_default=True,
              help="Frames from one keyframe to the next")
@click.option("--kind", type=click.Choice(interpolation.KINDS), default="cubic", show_default=True,
              help="Interpolation between keyframes")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Noise inputs")
@click.option("--fps", type=click.IntRange(min=1), default=60, show_default=True, help="Frames per second")
@click.option("--output", type=click.Path(dir_okay=False), required=True, help="Video file (.mp4, or .gif)")
@click.option("--device", "device_name", default=None, help="cpu, cuda or cuda:N  [default: cuda if available]")
@click.option("--verbose", is_flag=True, help="Show full tracebacks on errors")
def main(network_pkl, seeds, latent_files, grid, num_keyframes, w_frames, kind, truncation_psi, noise_mode, fps,
         output, device_name, verbose):
    """Write an interpolation video of looping latents."""
    device = resolve_device(device_name)
    print(f'Loading network from "{network_pkl}"...')
    G = legacy.load_network(network_pkl, key="G_ema", device=device)
    rows, cols = grid
    ws = torch.cat([w for _, w, _ in space.latent_inputs(G, seeds, latent_files, truncation_psi, device)])
    cells = interpolation.assign_keyframes(ws, rows * cols, num_keyframes)
    num_frames = cells.shape[1] * w_frames
    frames = interpolation.loop_frames(G, cells, rows, cols, w_frames, kind, noise_mode)
    path, count = video.write_video(output, tqdm(frames, total=num_frames, unit="frame"), fps=fps)
    print(f"Wrote {count} frames ({rows * G.img_height} high, {cols * G.img_width} wide) to {path}")


if __name__ == "__main__":
    dnnlib.cli.run(main)
