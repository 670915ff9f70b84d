"""convert.py / sg2-convert: export a network checkpoint as plain weights (safetensors + JSON config), loadable
without pickle.

Examples:
    python convert.py --network=SHHQ-1.0_sg2_1024.pkl --out=SHHQ-1.0_sg2_1024.safetensors
    python convert.py --network=https://example.org/net.pkl#sha256=... --out=net.safetensors

The result loads wherever a .pkl does (generate.py, calc_metrics.py, train.py --resume, legacy.load_network)
and gives the same outputs; training state (optimizers, counters) is not included.
"""
import os

import click

import dnnlib
from training.checkpoint import plain_weights
from training.checkpoint.load import load_network_pkl

from . import outputs
from .options import network, shared
from .runner import run


def convert_checkpoint(network, out_path, sha256=None, force=True):
    """Read a checkpoint (path or URL, pickle or safetensors) and write its plain weights; returns the keys written.

    An existing `out_path` is replaced only with `force` (the command line's --force; library callers replace)."""
    out_path = os.fspath(out_path)
    if not out_path.endswith(".safetensors"):
        raise dnnlib.util.UserError(f"--out: {out_path} should end in .safetensors")
    with dnnlib.util.open_url(network, sha256=sha256) as f:
        source = getattr(f, "name", None)
        if isinstance(source, str) and os.path.exists(out_path) and os.path.samefile(source, out_path):
            raise dnnlib.util.UserError(f"--out: {out_path} is the input file; choose another name")
        outputs.check_new([out_path], force, "--out")
        data = load_network_pkl(f)
    return plain_weights.export_safetensors(data, out_path)


@click.command()
@network()
@shared("--out", type=click.Path(dir_okay=False), detail="a .safetensors file")
@shared("--force")
@shared("--verbose")
@shared("--progress")
def main(network_pkl, sha256, out_path, force):
    """Write the networks of a checkpoint (G_ema, and G, D when present) as safetensors."""
    keys = convert_checkpoint(network_pkl, out_path, sha256=sha256, force=force)
    size_mb = os.path.getsize(out_path) / (1 << 20)
    print(f"Wrote {', '.join(keys)} to {out_path} ({size_mb:.1f} MB)")


def cli() -> None:
    """Entry point of `python convert.py` and the sg2-convert console script."""
    run(main)
