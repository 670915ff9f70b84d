"""gen_video.py / sg2-gen-video: loops through seeds or saved latents, one loop or a grid of them.

Examples:
  python gen_video.py --network=SHHQ-1.0_sg2_512.pkl --seeds=0-31 --grid=2x4 --out=lerp.mp4
  python gen_video.py --network=SHHQ-1.0_sg2_1024.pkl --seeds=1-8 --kind=slerp --w-frames=60 --out=loop.mp4
  python gen_video.py --network=pti_G.pkl --latents=a/projected_w.npz --latents=out/seed0003.npz --out=two.mp4

Frames: num_keyframes * w_frames; each cell of the ROWSxCOLS grid loops through its own keyframes
(seeds or latents taken in order, cell by cell, repeated as needed), back to its first.
Noise maps stored in latent files are not used (they cannot be interpolated); the network's own are.
"""
import click
import torch
from tqdm import tqdm

from dnnlib.util import UserError
from latent import interpolation, space, video
from torch_utils.distributed import resolve_device
from training.checkpoint.load import load_network

from . import outputs
from .options import network, shared
from .runner import run

MAX_KEYFRAMES = 4096  # Keyframe latents of all loops together (each [num_ws, w_dim], kept in memory).


def check_sizes(num_inputs, rows, cols, num_keyframes, w_frames, height, width):
    """Refuse a video whose keyframes, frame count or frame size are out of bounds, before any work."""
    cells = rows * cols
    per_loop = num_keyframes if num_keyframes is not None else max(num_inputs // cells, 1)
    video.check_video(per_loop * w_frames, rows * height, cols * width, "--grid/--num-keyframes/--w-frames")
    if max(num_inputs, cells * per_loop) > MAX_KEYFRAMES:
        raise UserError(f"--seeds/--latents/--num-keyframes: {max(num_inputs, cells * per_loop)} keyframes; "
                        f"a video may have at most {MAX_KEYFRAMES}")


@click.command()
@network()
@shared("--seeds", detail="the keyframes")
@shared("--latents")
@shared("--grid", default="1x1", show_default=True, detail="loops shown at once")
@click.option("--num-keyframes", type=click.IntRange(1, MAX_KEYFRAMES), default=None,
              help="Keyframes per loop  [default: keyframes given / cells]")
@click.option("--w-frames", type=click.IntRange(1, video.MAX_FRAMES), default=120, show_default=True,
              help="Frames from one keyframe to the next")
@click.option("--kind", type=click.Choice(interpolation.KINDS), default="cubic", show_default=True,
              help="Interpolation between keyframes")
@shared("--trunc")
@shared("--noise-mode")
@click.option("--fps", type=click.IntRange(1, 1000), default=60, show_default=True, help="Frames per second")
@shared("--out", old=("--output",), type=click.Path(dir_okay=False), detail=".mp4, or .gif")
@shared("--device")
@shared("--force")
@shared("--verbose")
def main(network_pkl, sha256, seeds, latent_files, grid, num_keyframes, w_frames, kind, truncation_psi, noise_mode,
         fps, out_path, device_name, force):
    """Write an interpolation video of looping latents."""
    outputs.check_new([out_path], force, "--out")
    if seeds is not None and len(seeds) > MAX_KEYFRAMES:
        raise UserError(f"--seeds: {len(seeds)} keyframes; a video may have at most {MAX_KEYFRAMES}")
    device = resolve_device(device_name)
    print(f'Loading network from "{network_pkl}"...')
    G = load_network(network_pkl, key="G_ema", device=device, sha256=sha256)
    rows, cols = grid
    num_inputs = len(seeds) if seeds is not None else 0
    check_sizes(num_inputs, rows, cols, num_keyframes, w_frames, G.img_height, G.img_width)
    ws = torch.cat([w for _, w, _ in space.latent_inputs(G, seeds, latent_files, truncation_psi, device)])
    check_sizes(len(ws), rows, cols, num_keyframes, w_frames, G.img_height, G.img_width)
    cells = interpolation.assign_keyframes(ws, rows * cols, num_keyframes)
    num_frames = cells.shape[1] * w_frames
    frames = interpolation.loop_frames(G, cells, rows, cols, w_frames, kind, noise_mode)
    path, count = video.write_video(out_path, tqdm(frames, total=num_frames, unit="frame"), fps=fps)
    print(f"Wrote {count} frames ({rows * G.img_height} high, {cols * G.img_width} wide) to {path}")


def cli() -> None:
    """Entry point of `python gen_video.py` and the sg2-gen-video console script."""
    run(main)
