"""edit.py / sg2-edit: directions in W (compute SeFa directions from the weights, or apply a direction file),
and StyleGAN-Human's edits in style space (S).

Examples:
  python edit.py sefa --network=SHHQ-1.0_sg2_1024.pkl --layers=all --num=10 --out=sefa.npz
  python edit.py apply --network=SHHQ-1.0_sg2_1024.pkl --direction=sefa.npz:0 --seeds=0-3 \\
      --strengths=-3,-1.5,0,1.5,3 --layers=coarse --outdir=out
  python edit.py apply --network=out/pti_G.pkl --direction=upper_length.pt --latents=out/projected_w.npz \\
      --strengths=-4,-2,0,2,4 --video --outdir=out
  python edit.py stylespace --network=SHHQ-1.0_sg2_1024.pkl --direction=latent_direction/ss/upper_length \\
      --layers=0-14 --seeds=61531 --strengths=0,0.5,1 --trunc=0.8 --outdir=out

A direction file is a [w_dim] or [1, w_dim] (or [K, w_dim] with FILE:INDEX) array or tensor in .npy, .npz or
.pt, loaded safely: plain arrays and tensors only, never pickled code. --layers takes ws indices and ranges
or the bands coarse (ws 0-3), middle (4-7), fine (8+), or all. A style-space direction is a folder (or zip) of
StyleGAN-Human's style_vect_mean_<layer>.pkl files, read as numpy arrays only, or per-layer vectors in .npz/.npy/.pt;
its --layers are style layers: the modulated convolutions in synthesis order (b4.conv1 = 0, b8.conv0 = 1, ...).
"""
import os

import click

import dnnlib
from dnnlib import progress
from dnnlib.image_grid import check_grid, save_png
from dnnlib.util import UserError
from latent import directions, space, stylespace, video
from torch_utils.distributed import resolve_device
from training.checkpoint.load import load_network

from . import outputs
from .options import STRENGTH_LIMIT, flag, network, parse_numbers, shared
from .runner import parsed_by, run

MAX_ITEMS = 4096  # Seeds or latents edited in one run (their ws are kept in memory together).


def _layers(text, G):
    try:
        return space.parse_layers(text, G.num_ws)
    except ValueError as err:
        raise UserError(f"--layers: {err}") from None


def _load(network_pkl, sha256, device_name):
    device = resolve_device(device_name)
    print(f'Loading network from "{network_pkl}"...')
    return load_network(network_pkl, key="G_ema", device=device, sha256=sha256), device


def _load_for_strips(network_pkl, sha256, device_name, seeds, strengths):
    """G and its device for `apply` and `stylespace`, after checking that the strips they write can be made."""
    if seeds is not None and len(seeds) > MAX_ITEMS:
        raise UserError(f"--seeds: {len(seeds)} seeds; edit at most {MAX_ITEMS} at once")
    G, device = _load(network_pkl, sha256, device_name)
    check_grid(1, len(strengths), G.img_height, G.img_width, "--strengths")
    return G, device


@click.group()
def main():
    """Latent editing: `sefa` finds directions, `apply` uses one in W, `stylespace` edits the styles (S)."""


@main.command()
@network()
@shared("--layers", detail="the layers whose styles are factorised")
@click.option("--num", type=click.IntRange(min=1), default=10, show_default=True, help="Directions to keep")
@shared("--out", old=("--output",), type=click.Path(dir_okay=False), detail="a direction file: .npz, .npy or .pt")
@shared("--force")
@shared("--verbose")
@shared("--progress")
def sefa(network_pkl, sha256, layers, num, out_path, force):
    """Closed-form directions (SeFa): the top eigenvectors of A^T A of the layers' style affines."""
    outputs.check_new([out_path], force, "--out")
    G, _ = _load(network_pkl, sha256, "cpu")
    layers = _layers(layers, G)
    found, eigenvalues = directions.sefa(G, layers, num)
    directions.save_directions(out_path, found, eigenvalues, layers)
    print("Eigenvalues: " + ", ".join(f"{v:.4g}" for v in eigenvalues.tolist()))
    print(f"Wrote {len(found)} direction(s) of layers {layers} to {out_path}")


@main.command()
@network()
@click.option("--direction", "direction_spec", required=True, metavar="FILE[:INDEX]", help="Direction file")
@shared("--seeds", detail="the seeds to edit")
@shared("--latents")
@click.option("--strengths", callback=parsed_by(parse_numbers), default="-3,-1.5,0,1.5,3", show_default=True,
              metavar="LIST", help=f"Strengths of the strip: numbers from {-STRENGTH_LIMIT:g} to {STRENGTH_LIMIT:g}")
@shared("--layers", detail="the layers the direction is added to")
@shared("--trunc")
@shared("--noise-mode")
@flag("--video", "make_video", help="Also write edit.mp4, sweeping the strength")
@click.option("--video-frames", type=click.IntRange(2, video.MAX_FRAMES), default=90, show_default=True,
              help="Frames of the video")
@shared("--outdir")
@shared("--device")
@shared("--force")
@shared("--verbose")
@shared("--progress")
def apply(network_pkl, sha256, direction_spec, seeds, latent_files, strengths, layers, truncation_psi, noise_mode,
          make_video, video_frames, outdir, device_name, force):
    """Write one strip per seed or latent: the image at each strength, side by side."""
    G, device = _load_for_strips(network_pkl, sha256, device_name, seeds, strengths)
    direction = directions.load_direction(direction_spec, G.w_dim)
    layers = _layers(layers, G)
    items = space.latent_inputs(G, seeds, latent_files, truncation_psi, device)
    if make_video:
        video.check_video(video_frames, G.img_height, len(items) * G.img_width, "--video")
    names = [f"{name}.png" for name, _, _ in items] + (["edit.mp4"] if make_video else [])
    outputs.check_new([os.path.join(outdir, name) for name in names], force)
    dnnlib.util.make_output_dir(outdir, "--outdir")
    for name, ws, noise in progress.track(items, desc="strips", unit="strip"):
        save_png(directions.edit_strip(G, ws, direction, strengths, layers, noise_mode, noise),
                 os.path.join(outdir, f"{name}.png"))
    print(f"Wrote {len(items)} strip(s) to {outdir}")
    if make_video:
        frames = directions.sweep_frames(G, [ws for _, ws, _ in items], direction, strengths, layers, video_frames,
                                         noise_mode, [noise for _, _, noise in items])
        frames = progress.track(frames, video_frames, "frames", "frame")
        path, count = video.write_video(os.path.join(outdir, "edit.mp4"), frames)
        print(f"Wrote {count} frames to {path}")


@main.command("stylespace")
@network()
@click.option("--direction", "direction", required=True, type=click.Path(exists=True), metavar="DIR|FILE",
              help="Folder or zip of style_vect_mean_<layer>.pkl files (StyleGAN-Human's latent_direction/ss/<attr>), "
                   "or per-layer vectors in .npz/.npy/.pt")
@shared("--seeds", detail="the seeds to edit")
@shared("--latents")
@click.option("--strengths", callback=parsed_by(parse_numbers), default="-2,-1,0,1,2", show_default=True,
              metavar="LIST", help=f"Strengths of the strip: numbers from {-STRENGTH_LIMIT:g} to {STRENGTH_LIMIT:g}")
@shared("--style-layers", detail="those that get their vector")
@click.option("--statis", type=click.Path(exists=True, dir_okay=False), metavar="CSV",
              help="StyleGAN-Human's statis.csv (channel, strength) of the one chosen layer: edit only its channels "
                   "with |strength| > --threshold")
@shared("--statis-threshold")
@shared("--trunc")
@shared("--noise-mode")
@shared("--outdir")
@shared("--device")
@shared("--force")
@shared("--verbose")
@shared("--progress")
def stylespace_edit(network_pkl, sha256, direction, seeds, latent_files, strengths, layers_text, statis, threshold,
                    truncation_psi, noise_mode, outdir, device_name, force):
    """Write one strip per seed or latent: the image with the style-space edit at each strength, side by side."""
    G, device = _load_for_strips(network_pkl, sha256, device_name, seeds, strengths)
    vectors, layers = stylespace.prepare_edit(G, direction, layers_text, statis, threshold)
    items = space.latent_inputs(G, seeds, latent_files, truncation_psi, device)
    outputs.check_new([os.path.join(outdir, f"{name}.png") for name, _, _ in items], force)
    dnnlib.util.make_output_dir(outdir, "--outdir")
    for name, ws, noise in progress.track(items, desc="strips", unit="strip"):
        save_png(stylespace.edit_strip(G, ws, vectors, layers, strengths, noise_mode, noise),
                 os.path.join(outdir, f"{name}.png"))
    print(f"Wrote {len(items)} strip(s) of style layers {layers} to {outdir}")


def cli() -> None:
    """Entry point of `python edit.py` and the sg2-edit console script."""
    run(main)
