"""style_mixing.py / sg2-style-mixing: a grid where each row seed takes the column seeds' styles at chosen layers.

Examples:
  python style_mixing.py --network=SHHQ-1.0_sg2_1024.pkl --rows=85,100 --cols=55,821,1789 --styles=coarse --outdir=out
  python style_mixing.py --network=SHHQ-1.0_sg2_512.pkl --rows=1-3 --cols=10-13 --styles=8-15 --trunc=0.7 --outdir=out

--styles takes ws indices and ranges (0-3,8) or the bands coarse (4-8 px, ws 0-3), middle (16-32, ws 4-7) and
fine (64 and up, ws 8+), sizes counted on the larger side, so a 2:1 network's coarse band is 4x2 to 8x4.
"""
import os

import click

import dnnlib
from dnnlib.image_grid import check_grid, make_grid, save_png
from dnnlib.util import UserError
from latent import space
from torch_utils.distributed import resolve_device
from training.checkpoint.load import load_network

from . import outputs
from .options import network, shared
from .runner import parsed_by, run


@click.command()
@network()
@click.option("--rows", "row_seeds", callback=parsed_by(space.parse_range), required=True, metavar="LIST",
              help="Seeds of the rows, e.g. 0-3,42")
@click.option("--cols", "col_seeds", callback=parsed_by(space.parse_range), required=True, metavar="LIST",
              help="Seeds of the columns")
@shared("--layers", spelling="--styles", param="styles", default="0-6", detail="the layers the columns give")
@shared("--trunc")
@shared("--noise-mode")
@shared("--class")
@shared("--outdir")
@shared("--device")
@shared("--force")
@shared("--verbose")
def main(network_pkl, sha256, row_seeds, col_seeds, styles, truncation_psi, noise_mode, class_idx, outdir,
         device_name, force):
    """Write grid.png (sources along the top row and left column) and ROW-COL.png for each pair."""
    device = resolve_device(device_name)
    print(f'Loading network from "{network_pkl}"...')
    G = load_network(network_pkl, key="G_ema", device=device, sha256=sha256)
    check_grid(len(row_seeds) + 1, len(col_seeds) + 1, G.img_height, G.img_width, "--rows/--cols")
    names = ["grid.png"] + [f"{row}-{col}.png" for row in row_seeds for col in col_seeds]
    outputs.check_new([os.path.join(outdir, name) for name in names], force)
    try:
        layers = space.parse_layers(styles, G.num_ws)
    except ValueError as err:
        raise UserError(f"--styles: {err}") from None
    print(f"Mixing ws {layers} of {len(col_seeds)} column seed(s) into {len(row_seeds)} row seed(s)...")
    rows, cols, pairs = space.style_mixing(G, row_seeds, col_seeds, layers, truncation_psi, noise_mode, class_idx,
                                           device)
    dnnlib.util.make_output_dir(outdir, "--outdir")
    for (row_seed, col_seed), pixels in pairs.items():
        save_png(pixels, os.path.join(outdir, f"{row_seed}-{col_seed}.png"))
    cells = space.style_mixing_cells(rows, cols, pairs, row_seeds, col_seeds)
    save_png(make_grid(cells, len(row_seeds) + 1, len(col_seeds) + 1), os.path.join(outdir, "grid.png"))
    print(f"Wrote grid.png and {len(pairs)} pair image(s) to {outdir}")


def cli() -> None:
    """Entry point of `python style_mixing.py` and the sg2-style-mixing console script."""
    run(main)
