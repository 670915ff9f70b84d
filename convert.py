"""Export a network checkpoint as plain weights (safetensors + JSON config), loadable without pickle.

Examples:
    python convert.py --network=SHHQ-1.0_sg2_1024.pkl --out=SHHQ-1.0_sg2_1024.safetensors
    python convert.py --network=https://example.org/net.pkl#sha256=... --out=net.safetensors

The result loads wherever a .pkl does (generate.py, calc_metrics.py, train.py --resume, legacy.load_network)
and gives the same outputs; training state (optimizers, counters) is not included.
"""
import os

import click

import dnnlib
import legacy
from training.checkpoint import plain_weights


def convert_checkpoint(network, out_path, sha256=None):
    """Read a checkpoint (path or URL, pickle or safetensors) and write its plain weights; returns the keys written."""
    out_path = os.fspath(out_path)
    if not out_path.endswith(".safetensors"):
        raise dnnlib.util.UserError(f"--out: {out_path} should end in .safetensors")
    with dnnlib.util.open_url(network, sha256=sha256) as f:
        source = getattr(f, "name", None)
        if isinstance(source, str) and os.path.exists(out_path) and os.path.samefile(source, out_path):
            raise dnnlib.util.UserError(f"--out: {out_path} is the input file; choose another name")
        data = legacy.load_network_pkl(f)
    return plain_weights.export_safetensors(data, out_path)


@click.command()
@click.option("--network", help="Checkpoint to read: .pkl (or .safetensors) path or URL", metavar="PATH|URL",
              required=True)
@click.option("--out", "out_path", help="Where to write the .safetensors file", metavar="PATH", required=True)
@click.option("--sha256", help="Expected SHA-256 of --network, checked before it is read", metavar="HEX")
@click.option("--verbose", help="Show full tracebacks on errors", is_flag=True)
def main(network, out_path, sha256, verbose):
    """Write the networks of a checkpoint (G_ema, and G, D when present) as safetensors."""
    _ = verbose  # Read by dnnlib.cli.run.
    keys = convert_checkpoint(network, out_path, sha256=sha256)
    size_mb = os.path.getsize(out_path) / (1 << 20)
    print(f"Wrote {', '.join(keys)} to {out_path} ({size_mb:.1f} MB)")


if __name__ == "__main__":
    dnnlib.cli.run(main)
