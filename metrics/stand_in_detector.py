"""A small TorchScript stand-in for the Inception-v3 and VGG16 detector files, for tests and offline demos.

It has the real detectors' call signature, so every metric runs end to end without the real files
(100-500 MB, downloaded): uint8 or float NCHW images in [0, 255] of any size, resized internally,
`return_features=True` -> [N, 2048] features, `no_output_bias=True` -> [N, 1008] class
probabilities (softmax, like the real Inception file), `return_lpips=True` -> features whose
squared differences play the LPIPS distance. Numbers computed with it mean nothing beyond tests.

For DINOv2, `save_stand_in_dinov2` writes a small state dict with the official file's key names (a ViT with
one thin block and random weights), which loads through the real path (metrics/dinov2.py).

    python -m metrics.stand_in_detector STANDIN.pt
    python -m metrics.stand_in_detector --dinov2 STANDIN_DINOV2.pth
"""
import warnings

import click
import torch

import dnnlib
from dnnlib.errors import describe_error

from . import dinov2


class StandInDetector(torch.nn.Module):
    """Fixed random projections of a 16x8 average-pooled image."""

    def __init__(self,
        num_features    = 2048,     # Width of return_features=True, as Inception-v3's pool3.
        num_classes     = 1008,     # Width of the class probabilities, as the Inception graph of the IS paper.
        pooled_size     = (16, 8),  # (H, W) every image is pooled to, whatever its size.
        seed            = 0,        # Seed of the projections: same seed, same detector.
    ):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        num_inputs = 3 * pooled_size[0] * pooled_size[1]
        self.pooled_size = list(pooled_size)
        self.register_buffer("proj", torch.randn([num_inputs, num_features], generator=gen) / num_inputs ** 0.5)
        output_weight = torch.randn([num_features, num_classes], generator=gen) / num_features ** 0.5
        self.register_buffer("output_weight", output_weight)
        self.register_buffer("output_bias", torch.randn([num_classes], generator=gen))

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False,
                resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 127.5 - 1
        x = torch.nn.functional.adaptive_avg_pool2d(x, self.pooled_size)  # any input size, like the real resize
        projected = x.flatten(1) @ self.proj
        if return_lpips:
            return projected  # linear in the image, so tests can predict LPIPS differences exactly
        features = torch.relu(projected)  # non-negative like Inception's pool3 features
        if return_features:
            return features
        logits = features @ self.output_weight
        if not no_output_bias:
            logits = logits + self.output_bias
        return torch.softmax(logits, dim=1)


def save_stand_in_detector(path, **kwargs):
    """Write a scripted StandInDetector(**kwargs) to `path` (a TorchScript .pt file), atomically."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch calls TorchScript deprecated; the real files are TorchScript
        scripted = torch.jit.script(StandInDetector(**kwargs))
        dnnlib.util.atomic_write(path, lambda f: torch.jit.save(scripted, f))
    return path


def save_stand_in_dinov2(path, embed_dim=16, depth=1, pos_grid=4, seed=0):
    """Write the state dict of a small DINOv2-shaped ViT (patch 14, random weights) to `path` (torch.save),
    atomically."""
    torch.manual_seed(seed)
    vit = dinov2.VisionTransformer(embed_dim=embed_dim, depth=depth, num_heads=max(1, embed_dim // dinov2.HEAD_DIM),
                                   patch_size=14, pos_grid=pos_grid)
    with torch.no_grad():
        for name, param in vit.named_parameters():
            if name.endswith(".weight") and param.ndim >= 2:  # variance-preserving, so features vary with the image
                param.normal_(0, param[0].numel() ** -0.5)
            elif name in ("cls_token", "pos_embed"):
                param.normal_(0, 1)
    state = vit.state_dict()
    dnnlib.util.atomic_write(path, lambda f: torch.save(state, f))
    return path


@click.command()
@click.argument("out", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--dinov2", "as_dinov2", is_flag=True, help="Write the DINOv2 stand-in (a state dict, for --dinov2)")
def main(out, as_dinov2):
    """Write a stand-in detector to OUT: TorchScript for --detector, --vgg16 or make demo; with --dinov2 a
    DINOv2 state dict."""
    try:
        if as_dinov2:
            save_stand_in_dinov2(out)
        else:
            save_stand_in_detector(out)
    except OSError as err:  # one line, as the tools show it (click prints 'Error: ...' and exits 1)
        raise click.ClickException(describe_error(err)) from None


if __name__ == "__main__":
    main()  # click's standalone mode: --help prints the usage, a usage error is one line
