"""The options the tools share, each defined once: its spelling, help text, type, checks and default.

A tool declares `@shared("--trunc")`; one that needs another default or parameter name says so
(`@shared("--seed", default=303)`), never another help text. `network()` is `--network` with `--sha256`.
train.py builds its options from the fields of training.options.TrainCommand and takes the shared
ones from here (sg2_cli/train.py). Numbers are checked where they are parsed: finite and in range, so
`--trunc=nan` or `--strengths=inf` is a usage error, not a black image.

Output: `--outdir` is a folder the tool writes named files into, `--out` the one file (or dataset) it
makes. Existing outputs are replaced only with `--force` (outputs.check_new).
"""
import math

import click
import torch

from dnnlib import download
from dnnlib.image_grid import parse_grid
from dnnlib.util import UserError
from latent import space
from metrics import metric_main
from torch_utils import precision
from training.options import DEFAULT_METRICS

from .runner import RunState, parsed_by

TRUNC_LIMIT = 10.0       # |psi|: 10x farther from the mean w than a seed is; beyond, images only saturate.
STRENGTH_LIMIT = 1000.0  # |strength| of an edit; far beyond any useful edit, well inside float32.
MAX_STRENGTHS = 1000     # Images in one edit strip.


class SharedOption(click.Option):
    """An option defined here. Spellings in `old_spellings` keep working but are left out of --help."""

    def __init__(self, *args, old_spellings=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.old_spellings = tuple(old_spellings)

    def get_help_record(self, ctx):
        saved = self.opts
        self.opts = [opt for opt in saved if opt not in self.old_spellings]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = saved


class Number(click.FloatRange):
    """A float option within a range that must be finite (click's FloatRange lets nan through, and inf
    where there is no bound)."""
    name = "number"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def parse_numbers(text, limit=STRENGTH_LIMIT, max_count=MAX_STRENGTHS):
    """'-3,-1.5,0' -> [-3.0, -1.5, 0.0]: finite numbers within +-limit, at most max_count of them."""
    if isinstance(text, list):
        return text
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ValueError(f"'{text}' is not a comma-separated list of numbers") from None
    bad = [v for v in values if not (math.isfinite(v) and abs(v) <= limit)]
    if bad:
        raise ValueError(f"{bad[0]} is not a finite number from {-limit:g} to {limit:g}")
    if len(values) > max_count:
        raise ValueError(f"{len(values)} values; at most {max_count}")
    return values


def flag(*decls, help, cls=click.Option, default=False, **attrs):
    """A boolean option given bare (`--mirror`); `--mirror=1`, `--mirror=false` (the original tools'
    spelling) keep working."""
    return click.option(*decls, cls=cls, type=click.BOOL, is_flag=False, flag_value=True, default=default,
                        metavar="", help=help, **attrs)


def _remember_verbose(ctx, param, value):
    # The runner reads --verbose from the run's state (ctx.obj), not from sys.argv.
    if value and isinstance(ctx.obj, RunState):
        ctx.obj.verbose = True
    return value


def _as_dtype(ctx, param, value):
    return precision.as_dtype(value)


def _check_device(ctx, param, value):
    # The form only (cpu, cuda, cuda:N, ...); whether the machine has it is checked where the tool uses it.
    try:
        return None if value is None else str(torch.device(value))
    except (RuntimeError, TypeError, ValueError):
        raise click.BadParameter(f"'{value}' is not a device; use cpu, cuda or cuda:N") from None


def _check_sha256(ctx, param, value):
    try:
        return download.normalize_sha256(value)
    except UserError as err:
        raise click.BadParameter(str(err).split(": ", 1)[-1]) from None


def _help(text, note):
    return text if note is None else f"{text}  [default: {note}]"


# Each shared option: its attributes for click.option. `param` is the name the tool's function receives,
# `note` the text of [default: ...] where show_default cannot say it, `old` spellings left out of --help.
SPECS = {
    "--sha256": dict(param="sha256", metavar="HEX", callback=_check_sha256,
                     help="Expected SHA-256 of --network, checked before the file is read (a URL may carry "
                          "#sha256=HEX instead)"),
    "--network": dict(param="network_pkl", metavar="PATH|URL", required=True,
                      help="Network checkpoint (.pkl, .safetensors or rosinality's .pt): a path, or a URL (http(s), "
                           "Google Drive link, hf://OWNER/REPO/FILE)"),
    "--device": dict(param="device_name", metavar="DEVICE", note="cuda if available", callback=_check_device,
                     help="cpu, cuda or cuda:N"),
    "--dtype": dict(param="dtype", type=click.Choice(list(precision.PRECISIONS)), default=precision.DEFAULT,
                    show_default=True, callback=_as_dtype,
                    help="Synthesis precision: bf16 is faster on CPUs with AMX or AVX512_BF16 (images differ "
                         "slightly)"),
    "--seeds": dict(param="seeds", metavar="LIST", callback=parsed_by(space.parse_range),
                    help="Seeds: numbers and ranges, e.g. 0-9,42"),
    "--latents": dict(param="latent_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
                      help="Saved latents (projected_w.npz, generate.py --save-w output, .npy, .pt) in place of "
                           "--seeds; repeatable"),
    "--trunc": dict(param="truncation_psi", type=Number(-TRUNC_LIMIT, TRUNC_LIMIT), default=1.0,
                    show_default=True, help="Truncation psi (1 = none)"),
    "--noise-mode": dict(param="noise_mode", type=click.Choice(["const", "random", "none"]), default="const",
                         show_default=True, help="Noise inputs: the stored constants, fresh random noise, or none"),
    "--class": dict(param="class_idx", type=click.IntRange(min=0), default=None,
                    help="Class label (conditional networks only)"),
    "--layers": dict(param="layers", default="all", show_default=True, metavar="LAYERS",
                     help="ws indices and ranges (0-3,8), or coarse, middle, fine, all"),
    # edit.py stylespace's --layers: another kind of layer (styles, not ws), so its own entry and help.
    "--style-layers": dict(param="layers_text", spelling="--layers", default=None, metavar="LAYERS",
                           note="every layer of the direction",
                           help="Style layers (modulated convolutions in synthesis order, toRGB excluded: b4.conv1 = "
                                "0, b8.conv0 = 1, ...): indices and ranges, e.g. 0-14, or all"),
    # edit.py stylespace's --threshold (bg_white.py's --threshold is a mask level, another thing).
    "--statis-threshold": dict(param="threshold", spelling="--threshold", type=Number(0, 1e6), default=None,
                               help="Channel-strength threshold of --statis: channels with |strength| above it are "
                                    "edited"),
    "--grid": dict(param="grid", metavar="ROWSxCOLS", callback=parsed_by(parse_grid),
                   help="Grid layout, ROWSxCOLS"),
    "--outdir": dict(param="outdir", type=click.Path(file_okay=False), metavar="DIR", required=True,
                     help="Output folder (created if needed)"),
    "--out": dict(param="out_path", type=click.Path(), metavar="PATH", required=True, help="Output file"),
    "--force": dict(param="force", flag=True, help="Replace outputs that exist already"),
    "--verbose": dict(param="verbose", flag=True, callback=_remember_verbose, expose_value=False,
                      help="Show full tracebacks on errors"),
    "--seed": dict(param="seed", type=click.IntRange(0, space.MAX_SEED), default=0, show_default=True,
                   help="Random seed"),
    "--data": dict(param="data", metavar="PATH", help="Images: a folder or zip made by dataset_tool.py"),
    "--mirror": dict(param="mirror", flag=True, help="Add x-flipped copies of the images"),
    "--gpus": dict(param="gpus", type=click.IntRange(1, 1024), default=1,
                   help="Number of processes (GPUs; CPU processes with gloo when there is no CUDA)"),
    "--metrics": dict(param="metrics", metavar="LIST", default=DEFAULT_METRICS, show_default=True,
                      help=f"Metrics, a comma list of {', '.join(metric_main.list_valid_metrics())}"),
    "--detector": dict(param="detector", metavar="PATH|URL", note="$SG2_INCEPTION_DETECTOR, else the standard URL",
                       help="Inception-v3 detector (TorchScript file or URL) for FID, KID and IS"),
    "--vgg16": dict(param="vgg16", metavar="PATH|URL", note="$SG2_VGG16_DETECTOR, else the standard URL",
                    help="VGG16 detector (TorchScript file or URL) for LPIPS: projection, precision/recall, PPL"),
    "--dinov2": dict(param="dinov2", metavar="PATH|URL", note="$SG2_DINOV2_DETECTOR, else the official URL",
                     help="DINOv2 ViT-L/14 detector (the state dict dinov2_vitl14_pretrain.pth, read weights-only) "
                          "for fd_dinov2 and prdc"),
    "--ref-stats": dict(param="ref_stats", metavar="NPZ|URL",
                        help="Real-image statistics (calc_metrics.py --export-stats) in place of the dataset's"),
}


def shared(name, **changes):
    """The click.option decorator of the shared option `name`; `changes` may set default, required, param,
    note, old (hidden old spellings), show_default, add to the help after a semicolon (`detail`), or give
    the option another spelling of the same kind (`spelling`, e.g. style_mixing's --styles: layers)."""
    spec = {**SPECS[name], **changes}
    param, note, old = spec.pop("param"), spec.pop("note", None), tuple(spec.pop("old", ()))
    detail, name = spec.pop("detail", None), spec.pop("spelling", name)
    spec["help"] = _help(spec["help"] + (f"; {detail}" if detail else ""), note)
    if spec.pop("flag", False):
        return flag(name, *old, param, cls=SharedOption, old_spellings=old, **spec)
    return click.option(name, *old, param, cls=SharedOption, old_spellings=old, **spec)


def network(required=True):
    """--network and --sha256, always together."""
    def decorate(fn):
        return shared("--network", required=required)(shared("--sha256")(fn))
    return decorate
