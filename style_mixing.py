"""Style mixing: a grid where each row seed takes the column seeds' styles at the chosen layers.

Examples:
  python style_mixing.py --network=SHHQ-1.0_sg2_1024.pkl --rows=85,100 --cols=55,821,1789 --styles=coarse --outdir=out
  python style_mixing.py --network=SHHQ-1.0_sg2_512.pkl --rows=1-3 --cols=10-13 --styles=8-15 --trunc=0.7 --outdir=out

--styles takes ws indices and ranges (0-3,8) or the bands coarse (4-8 px, ws 0-3), middle (16-32, ws 4-7) and
fine (64 and up, ws 8+), sizes counted on the larger side, so a 2:1 network's coarse band is 4x2 to 8x4.
"""
import os

import click

import dnnlib
import dnnlib.cli
import legacy
from dnnlib.image_grid import make_grid, save_png
from dnnlib.util import UserError
from torch_utils.distributed import resolve_device
from latent import space


@click.command()
@click.option("--network", "network_pkl", help="Network pickle path or URL", required=True, metavar="PATH|URL")
@click.option("--rows", "row_seeds", callback=dnnlib.cli.parsed_by(space.parse_range), required=True,
              help="Seeds of the rows, e.g. 0-3,42")
@click.option("--cols", "col_seeds", callback=dnnlib.cli.parsed_by(space.parse_range), required=True,
              help="Seeds of the columns")
@click.option("--styles", "styles", default="0-6", show_default=True,
              help="Layers the columns give: ws indices/ranges or coarse, middle, fine")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Noise inputs")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None, help="Class (conditional networks)")
@click.option("--outdir", type=click.Path(file_okay=False), required=True, help="Where to write the PNGs")
@click.option("--device", "device_name", default=None, help="cpu, cuda or cuda:N  [default: cuda if available]")
@click.option("--verbose", is_flag=True, help="Show full tracebacks on errors")
def main(network_pkl, row_seeds, col_seeds, styles, truncation_psi, noise_mode, class_idx, outdir, device_name,
         verbose):
    """Write grid.png (sources along the top row and left column) and ROW-COL.png for each pair."""
    device = resolve_device(device_name)
    print(f'Loading network from "{network_pkl}"...')
    G = legacy.load_network(network_pkl, key="G_ema", device=device)
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


if __name__ == "__main__":
    dnnlib.cli.run(main)
