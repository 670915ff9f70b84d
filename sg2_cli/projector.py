"""projector.py / sg2-projector: find a photo's latent in W or W+, optionally tune G around it (PTI).

Examples:
  python projector.py --network=SHHQ-1.0_sg2_1024.pkl --target=me.jpg --outdir=out
  python projector.py --network=SHHQ-1.0_sg2_512.pkl --target=me.jpg --space=wplus --pti-steps=350 --outdir=out
  python generate.py --network=out/pti_G.pkl --projected-w=out/projected_w.npz --outdir=out/again

The photo is fitted to the network's frame (--fit=pad: scaled to fit and padded with --pad-color, white as
in SHHQ, so nothing of the person is cut off). Outputs in --outdir: target.png (the fitted target), proj.png,
projected_w.npz (key `w` [1, num_ws, w_dim], plus the optimised noise maps, which generate.py --projected-w
uses), log.txt (the loss per step), proj.mp4 with --save-video (target beside the progress), and with
--pti-steps: pti_G.pkl (the tuned generator, G_ema only) and proj_pti.png. With --space=wplus the W+ search
starts from a full W search (--wplus-init=w, twice --num-steps in all) or from the mean w (--wplus-init=mean).
"""
import os

import click
import torch

import dnnlib
from dnnlib.image_grid import make_grid, save_png
from latent import projection, space, video
from metrics import detectors
from torch_utils.distributed import resolve_device
from training.checkpoint.load import load_checkpoint, network_of
from training.checkpoint.pickle_format import save_network_pkl

from . import outputs
from .options import Number, flag, network, shared
from .runner import parsed_by, run

MAX_STEPS = 1_000_000  # Of the search and of pivotal tuning (each step adds a log line, and a frame with a video).


class _Progress:
    """Collects the log lines and, with a video, a frame per step: the target beside the current image."""

    def __init__(self, target, writer):
        self.target, self.writer, self.lines = target, writer, []

    def add(self, stage, step, total, loss, render):
        self.lines.append(f"{stage} step {step + 1}/{total} loss {loss:.6g}")
        if self.writer is not None:
            self.writer.append(make_grid([self.target, render()], 1, 2))


def search(G, target, vgg16, space_name, wplus_init, num_steps, pixel_weight, seed, device, log, dtype=torch.float32):
    """The latent search: W, or W+ from the W result or from the mean. Returns projection.project's dict."""
    def on_step(stage, step, ws, loss, noise):
        log.add(stage, step, num_steps, loss, lambda: space.synthesize(G, ws, "const", noise, dtype)[0])
    return projection.project_stages(G, target, vgg16, space_name, num_steps, wplus_init, seed, on_step,
                                     pixel_weight=pixel_weight, device=device, dtype=dtype, progress=True)


def output_names(save_video=False, pti_steps=0):
    """The files a projection writes into --outdir."""
    names = ["target.png", "proj.png", "projected_w.npz", "log.txt"]
    return names + (["proj.mp4"] if save_video else []) + (["pti_G.pkl", "proj_pti.png"] if pti_steps else [])


def run_projection(G, target, vgg16, outdir, space_name="w", wplus_init="w", num_steps=1000, pixel_weight=0.0,
                   pti_steps=0, seed=303, save_video=False, device=torch.device("cpu"), training_set_kwargs=None,
                   dtype=torch.float32):
    """Project target (HWC uint8 at G's size) and write every output into outdir; returns the paths written."""
    dnnlib.util.make_output_dir(outdir, "--outdir")
    paths = dict(target=os.path.join(outdir, "target.png"), proj=os.path.join(outdir, "proj.png"),
                 w=os.path.join(outdir, "projected_w.npz"), log=os.path.join(outdir, "log.txt"))
    save_png(target, paths["target"])
    writer = video.VideoWriter(os.path.join(outdir, "proj.mp4"), fps=60) if save_video else None
    log = _Progress(target, writer)
    try:
        result = search(G, target, vgg16, space_name, wplus_init, num_steps, pixel_weight, seed, device, log, dtype)
        ws, noise = result["ws"], result["noise"]
        save_png(space.synthesize(G, ws, "const", noise, dtype)[0], paths["proj"])
        space.save_latents(paths["w"], ws, noise)
        log.lines.append(f"{space_name} final loss {result['final_loss']:.6g}")
        if pti_steps:
            G_pti, info = projection.pivotal_tuning(
                G, ws, target, vgg16, pti_steps, noise=noise, pixel_weight=pixel_weight, device=device, dtype=dtype,
                on_step=lambda step, G_now, loss: log.add("pti", step, pti_steps, loss,
                                                          lambda: space.synthesize(G_now, ws, "const", dtype=dtype)[0]),
                progress=True)
            paths.update(pti=os.path.join(outdir, "pti_G.pkl"), proj_pti=os.path.join(outdir, "proj_pti.png"))
            save_network_pkl(paths["pti"], dict(G_ema=G_pti, training_set_kwargs=training_set_kwargs))
            save_png(space.synthesize(G_pti, ws, "const", dtype=dtype)[0], paths["proj_pti"])
            log.lines.append(f"pti final loss {info['final_loss']:.6g}")
    except BaseException:
        if writer is not None:
            writer.close(keep=False)
        raise
    if writer is not None:
        writer.close()
        paths["video"] = writer.path
    dnnlib.util.atomic_write(paths["log"], lambda f: f.write(("\n".join(log.lines) + "\n").encode("utf-8")))
    return paths


@click.command()
@network()
@click.option("--target", "target_path", type=click.Path(dir_okay=False), required=True,
              help="Photo to project (any size)")
@click.option("--num-steps", type=click.IntRange(1, MAX_STEPS), default=1000, show_default=True,
              help="Optimisation steps")
@shared("--seed", default=303, detail="of the noise maps and the latent noise")
@flag("--save-video", help="Write proj.mp4 of the optimisation progress")
@shared("--outdir")
@click.option("--space", "space_name", type=click.Choice(["w", "wplus"]), default="w", show_default=True,
              help="One w for all layers, or one per layer")
@click.option("--wplus-init", type=click.Choice(["w", "mean"]), default="w", show_default=True,
              help="W+ start: a W search first, or the mean w")
@click.option("--fit", type=click.Choice(projection.FITS), default="pad", show_default=True,
              help="Fitting the photo to the network's aspect")
@click.option("--pad-color", callback=parsed_by(projection.parse_color), default="white", show_default=True,
              help="Padding colour for --fit=pad: white, black, #rrggbb or r,g,b")
@click.option("--pixel-weight", type=Number(min=0, max=1e9), default=0.0, show_default=True,
              help="Weight of a mean-squared pixel term beside LPIPS")
@click.option("--pti-steps", type=click.IntRange(0, MAX_STEPS), default=0, show_default=True,
              help="Pivotal tuning steps after the search (0 = none)")
@shared("--vgg16", param="vgg16_spec")
@shared("--device")
@shared("--dtype")
@shared("--force")
@shared("--verbose")
def main(network_pkl, sha256, target_path, num_steps, seed, save_video, outdir, space_name, wplus_init, fit,
         pad_color, pixel_weight, pti_steps, vgg16_spec, device_name, dtype, force):
    """Project a photo into the generator and write the results into --outdir."""
    outputs.check_new([os.path.join(outdir, name) for name in output_names(save_video, pti_steps)], force)
    device = resolve_device(device_name)
    print(f'Loading network from "{network_pkl}"...')
    data = load_checkpoint(network_pkl, sha256=sha256)
    G = network_of(data, "G_ema", network_pkl, device)
    target = projection.load_target(target_path, G.img_height, G.img_width, fit, pad_color)
    target = projection.to_channels(target, G.img_channels)
    vgg16 = detectors.open_detector("vgg16", vgg16_spec, device, verbose=True)
    paths = run_projection(G, target, vgg16, outdir, space_name, wplus_init, num_steps, pixel_weight, pti_steps, seed,
                           save_video, device, data.get("training_set_kwargs"), dtype)
    print("Wrote " + ", ".join(sorted(os.path.basename(p) for p in paths.values())) + f" to {outdir}")


def cli() -> None:
    """Entry point of `python projector.py` and the sg2-projector console script."""
    run(main)
