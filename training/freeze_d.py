"""Freeze-D (Mo et al. 2020, "Freeze the Discriminator: a Simple Baseline for Fine-Tuning GANs").

The first N layers of D, counted from its input at the highest resolution, keep their weights. They
are counted as stylegan2-ada-pytorch's `--freezed` counts them: block by block from the highest
resolution down to 8, each block's layers in the order fromrgb (first block only; every block in
the 'skip' architecture), conv0, conv1, skip ('resnet' only). The epilogue (b4) is never frozen.
So for the 'resnet' D of SHHQ at 512x256, `--freezed=4` freezes b512 (fromrgb, conv0, conv1, skip),
`--freezed=7` also b256, and each further 3 one more block.

The network does the freezing (`DiscriminatorBlock(freeze_layers=N)`, the original's constructor
argument): it registers a frozen layer's weight and bias as buffers, so no optimizer holds them and
they stay bitwise unchanged. The argument travels in D's `block_kwargs`, so snapshots keep it.
"""
import dnnlib


def layer_names(img_resolution, architecture="resnet"):
    """D's freezable layers in the order --freezed counts them, e.g. ['b64.fromrgb', 'b64.conv0', ...]."""
    names = []
    res = img_resolution
    while res >= 8:
        if res == img_resolution or architecture == "skip":
            names.append(f"b{res}.fromrgb")
        names += [f"b{res}.conv0", f"b{res}.conv1"]
        if architecture == "resnet":
            names.append(f"b{res}.skip")
        res //= 2
    return names


def frozen_layers(D_kwargs):
    """How many layers D's options freeze (0 when they say nothing)."""
    return int((D_kwargs.get("block_kwargs") or {}).get("freeze_layers", 0))


def set_frozen_layers(D_kwargs, freezed, img_resolution):
    """Freeze the first `freezed` layers; more than D's blocks have is an error that says how many there are."""
    names = layer_names(img_resolution, D_kwargs.get("architecture", "resnet"))
    if not 0 <= freezed <= len(names):
        raise dnnlib.util.UserError(f"--freezed: {freezed} is more than the {len(names)} layers of D's blocks at "
                                    f"resolution {img_resolution} ({names[0]} ... {names[-1]}); use 0-{len(names)}")
    D_kwargs["block_kwargs"] = dnnlib.EasyDict(D_kwargs.get("block_kwargs") or {}, freeze_layers=int(freezed))
