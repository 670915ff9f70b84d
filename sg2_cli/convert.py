"""convert.py / sg2-convert: a checkpoint in another format: .pkl, plain weights (safetensors + JSON config),
rosinality/stylegan2-pytorch's .pt, or an ONNX generator.

Examples:
    python convert.py --network=SHHQ-1.0_sg2_1024.pkl --out=SHHQ-1.0_sg2_1024.safetensors
    python convert.py --network=SHHQ-1.0_sg2_1024.pkl --out=stylegan_human_1024.pt --to=rosinality
    python convert.py --network=e4e_decoder.pt --out=net.pkl
    python convert.py --network=SHHQ-1.0_sg2_512.pkl --out=shhq_512.onnx --trunc=0.7

--to defaults from the suffix of --out (.pkl, .safetensors, .onnx) and is needed for .pt/.pth (rosinality).
Any checkpoint the tools read is an input (.pkl, .safetensors, rosinality's .pt); training state (optimizers,
counters) is carried by .pkl only.
"""
import os

import click

import dnnlib
from dnnlib.util import UserError
from training.checkpoint import onnx_export, pickle_format, plain_weights, rosinality
from training.checkpoint.load import load_network_pkl, network_of

from . import outputs
from .options import flag, network, shared
from .runner import run

FORMATS = ("pkl", "safetensors", "rosinality", "onnx")
SUFFIXES = {".pkl": "pkl", ".safetensors": "safetensors", ".onnx": "onnx", ".pt": "rosinality", ".pth": "rosinality"}


def output_format(out_path, to):
    """The format to write: --to, else from the suffix of --out; .pt/.pth need --to, and the two must agree."""
    suffix = os.path.splitext(os.fspath(out_path))[1].lower()
    implied = SUFFIXES.get(suffix)
    if implied is None:
        raise UserError(f"--out: {out_path} should end in .pkl, .safetensors, .onnx, or .pt/.pth (--to=rosinality)")
    if to is None and implied == "rosinality":
        raise UserError(f"--to: required for a {suffix} output; --to=rosinality writes rosinality's format")
    if to is not None and to != implied:
        raise UserError(f"--to={to} does not match --out={out_path}, which names a {implied} file")
    return implied


def _check_format_options(fmt, truncation_psi, onnx_input, custom_channels):
    if fmt != "onnx" and (truncation_psi is not None or onnx_input is not None):
        raise UserError(f"--trunc and --onnx-input apply to --to=onnx only (not {fmt})")
    if onnx_input == "ws" and truncation_psi is not None:
        raise UserError("--trunc does nothing with --onnx-input=ws (the ws given are used as they are); omit it")
    if fmt != "rosinality" and custom_channels:
        raise UserError(f"--custom-channels applies to --to=rosinality only (not {fmt})")


def write_checkpoint(data, out_path, fmt, truncation_psi=None, onnx_input=None, custom_channels=False):
    """Write a loaded checkpoint dict in `fmt`; returns what was written (keys or inputs), for the summary."""
    if fmt == "pkl":
        pickle_format.save_network_pkl(out_path, data)
        return [key for key, value in data.items() if value is not None]
    if fmt == "safetensors":
        return plain_weights.export_safetensors(data, out_path)
    if fmt == "rosinality":
        return rosinality.export_rosinality(data, out_path, custom_channels=custom_channels)
    key = "G_ema" if data.get("G_ema") is not None else "G"
    inputs = onnx_export.export_onnx(network_of(data, key, "--network"), out_path,
                                     1.0 if truncation_psi is None else truncation_psi, onnx_input or "z")
    return [f"{key} (inputs {', '.join(inputs)} -> img, opset {onnx_export.OPSET})"]


def read_input(network, out_path, sha256=None, force=True):
    """The checkpoint dict of --network, after checking that --out may be written (not the input, not an
    existing file without `force`)."""
    with dnnlib.util.open_url(network, sha256=sha256) as f:
        source = getattr(f, "name", None)
        if isinstance(source, str) and os.path.exists(out_path) and os.path.samefile(source, out_path):
            raise UserError(f"--out: {out_path} is the input file; choose another name")
        outputs.check_new([out_path], force, "--out")
        return load_network_pkl(f)


def convert_checkpoint(network, out_path, sha256=None, force=True, to=None, truncation_psi=None, onnx_input=None,
                       custom_channels=False):
    """Read a checkpoint (path or URL, any format the tools read) and write it as `to` (default: from the
    suffix of `out_path`); returns what was written. An existing `out_path` is replaced only with `force`
    (the command line's --force; library callers replace)."""
    out_path = os.fspath(out_path)
    fmt = output_format(out_path, to)
    _check_format_options(fmt, truncation_psi, onnx_input, custom_channels)
    data = read_input(network, out_path, sha256, force)
    return write_checkpoint(data, out_path, fmt, truncation_psi, onnx_input, custom_channels)


def rosinality_arguments(data):
    """How rosinality's code builds the generator just written, for the summary line."""
    G = data.get("G_ema") if data.get("G_ema") is not None else data.get("G")
    if G is None:
        return ""
    multiplier = rosinality.channel_multiplier_of(data)
    table = f", channel_multiplier={multiplier})" if multiplier else ") with a channel table of its own"
    shape = " (StyleGAN-Human's 2:1 variant)" if tuple(G.aspect_ratio) == (2, 1) else ""
    return f"; load it into rosinality's Generator(size={G.img_resolution}, style_dim={G.w_dim}, " \
           f"n_mlp={G.mapping.num_layers}{table}{shape}"


@click.command()
@network()
@shared("--out", type=click.Path(dir_okay=False), detail="a .pkl, .safetensors, .onnx, or .pt/.pth file")
@click.option("--to", type=click.Choice(FORMATS), default=None,
              help="Output format  [default: from the suffix of --out; required for .pt/.pth]")
@shared("--trunc", default=None, show_default=False, note="1", detail="baked into an ONNX export")
@click.option("--onnx-input", type=click.Choice(onnx_export.INPUTS), default=None,
              help="ONNX inputs: z [N, z_dim] (and c), or ws [N, num_ws, w_dim] for the synthesis network  "
                   "[default: z]")
@flag("--custom-channels", help="rosinality: write a channel table that rosinality's Generator(channel_multiplier)"
                                " cannot build (for code that builds its own table)")
@shared("--force")
@shared("--verbose")
def main(network_pkl, sha256, out_path, to, truncation_psi, onnx_input, custom_channels, force):
    """Write a checkpoint in another format: .pkl, safetensors, rosinality's .pt, or an ONNX generator."""
    fmt = output_format(out_path, to)
    _check_format_options(fmt, truncation_psi, onnx_input, custom_channels)
    data = read_input(network_pkl, out_path, sha256, force)
    written = write_checkpoint(data, out_path, fmt, truncation_psi, onnx_input, custom_channels)
    size_mb = os.path.getsize(out_path) / (1 << 20)
    note = rosinality_arguments(data) if fmt == "rosinality" else ""
    print(f"Wrote {', '.join(written)} to {out_path} ({size_mb:.1f} MB){note}")


def cli() -> None:
    """Entry point of `python convert.py` and the sg2-convert console script."""
    run(main)
