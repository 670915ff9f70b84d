"""The tensor layout of rosinality/stylegan2-pytorch's Generator and Discriminator, mapped onto this package's.

One table per network pairs every rosinality state-dict key with the tensor of this package it holds and the
reshaping between them, so writing and reading are the same table read two ways (and a round trip gives back
the same tensors, bit for bit). The generator's keys, shapes and scales are those of StyleGAN-Human's
`legacy.convert`: the mapping layers are `style.1` ... (`style.0` is the pixel norm), the constant input and
the noise buffers gain leading dimensions ([1, C, 4, 4] and [1, 1, H, W]), toRGB biases are [1, 3, 1, 1], and
the blur kernels are 4x the normalised [1, 3, 3, 1] filter (rosinality scales its upsampling filters by the
factor squared). The discriminator's ResBlocks keep their normalised blur kernels, as rosinality builds them.
Equalized-lr scales are the same in both codes (weights stored unscaled, the mapping's lr multiplier 0.01),
so every other tensor is copied as it is.

2:1 networks (StyleGAN-Human's) keep their shapes: a 4x2 constant input, [1, 1, H, H/2] noise buffers, and a
final linear layer of D that reads C * 4 * 2 features.
"""
import re

import numpy as np
import torch

from torch_utils.ops import upfirdn2d

LR_MLP = 0.01                 # rosinality's Generator(lr_mlp=0.01): the mapping layers' lr multiplier
BLUR_FILTER = [1, 3, 3, 1]    # rosinality's blur_kernel, NVIDIA's resample_filter
MBSTD_GROUP = 4               # rosinality's Discriminator.stddev_group
ROSINALITY_MAX_RESOLUTION = 1024  # the largest resolution of rosinality's channel table

# How a tensor changes between the two layouts (reshapes and the blur scale are exact, so round trips are too).
SAME, LEAD1, LEAD2, RGB_BIAS, UP_KERNEL, KERNEL = "same", "lead1", "lead2", "rgb_bias", "up_kernel", "kernel"


class LayoutError(ValueError):
    """A network or state dict that the other layout cannot hold; the message says why (one line)."""


def canonical_filter():
    """The resample filter of every layer here: [1, 3, 3, 1], normalised, as a 4x4 tensor."""
    return upfirdn2d.setup_filter(BLUR_FILTER)


def to_rosinality(kind, tensor):
    if kind == LEAD1:
        return tensor.unsqueeze(0)
    if kind == LEAD2:
        return tensor[None, None]
    if kind == RGB_BIAS:
        return tensor[None, :, None, None]
    if kind == UP_KERNEL:
        return tensor * 4
    return tensor


def from_rosinality(kind, tensor, shape):
    """A rosinality tensor as this package's tensor of `shape` (the reshapes drop the leading dimensions)."""
    if kind == UP_KERNEL:
        tensor = tensor / 4
    return tensor.reshape(shape)


# ----------------------------------------------------------------------------
# The tables: [(rosinality key, this package's tensor name, kind)], in the order rosinality's state_dict lists them.


def _styled_conv(ros, nv, upsample):
    entries = [(f"{ros}.conv.weight", f"{nv}.weight", LEAD1)]
    if upsample:
        entries.append((f"{ros}.conv.blur.kernel", f"{nv}.resample_filter", UP_KERNEL))
    return entries + [(f"{ros}.conv.modulation.weight", f"{nv}.affine.weight", SAME),
                      (f"{ros}.conv.modulation.bias", f"{nv}.affine.bias", SAME),
                      (f"{ros}.noise.weight", f"{nv}.noise_strength", LEAD1),
                      (f"{ros}.activate.bias", f"{nv}.bias", SAME)]


def _to_rgb(ros, block, upsample):
    entries = [(f"{ros}.bias", f"{block}.torgb.bias", RGB_BIAS)]
    if upsample:
        entries.append((f"{ros}.upsample.kernel", f"{block}.resample_filter", UP_KERNEL))
    return entries + [(f"{ros}.conv.weight", f"{block}.torgb.weight", LEAD1),
                      (f"{ros}.conv.modulation.weight", f"{block}.torgb.affine.weight", SAME),
                      (f"{ros}.conv.modulation.bias", f"{block}.torgb.affine.bias", SAME)]


def generator_table(num_mapping_layers, img_resolution):
    """Every tensor of rosinality's Generator (mapping depth, larger image side) and its counterpart here."""
    table = []
    for idx in range(num_mapping_layers):
        table += [(f"style.{idx + 1}.weight", f"mapping.fc{idx}.weight", SAME),
                  (f"style.{idx + 1}.bias", f"mapping.fc{idx}.bias", SAME)]
    table.append(("input.input", "synthesis.b4.const", LEAD1))
    table += _styled_conv("conv1", "synthesis.b4.conv1", upsample=False)
    table += _to_rgb("to_rgb1", "synthesis.b4", upsample=False)
    upper = [2 ** i for i in range(3, int(np.log2(img_resolution)) + 1)]
    for level, res in enumerate(upper):
        table += _styled_conv(f"convs.{2 * level}", f"synthesis.b{res}.conv0", upsample=True)
        table += _styled_conv(f"convs.{2 * level + 1}", f"synthesis.b{res}.conv1", upsample=False)
    for level, res in enumerate(upper):
        table += _to_rgb(f"to_rgbs.{level}", f"synthesis.b{res}", upsample=True)
    noise_layers = ["synthesis.b4.conv1"] + [f"synthesis.b{res}.conv{k}" for res in upper for k in (0, 1)]
    table += [(f"noises.noise_{idx}", f"{nv}.noise_const", LEAD2) for idx, nv in enumerate(noise_layers)]
    return table


def discriminator_table(img_resolution):
    """Every tensor of rosinality's Discriminator (ResBlocks from the image size down to 8) and its counterpart."""
    top = f"b{img_resolution}"
    table = [("convs.0.0.weight", f"{top}.fromrgb.weight", SAME), ("convs.0.1.bias", f"{top}.fromrgb.bias", SAME)]
    resolutions = [2 ** i for i in range(int(np.log2(img_resolution)), 2, -1)]
    for idx, res in enumerate(resolutions, start=1):
        ros, nv = f"convs.{idx}", f"b{res}"
        table += [(f"{ros}.conv1.0.weight", f"{nv}.conv0.weight", SAME),
                  (f"{ros}.conv1.1.bias", f"{nv}.conv0.bias", SAME),
                  (f"{ros}.conv2.0.kernel", f"{nv}.conv1.resample_filter", KERNEL),
                  (f"{ros}.conv2.1.weight", f"{nv}.conv1.weight", SAME),
                  (f"{ros}.conv2.2.bias", f"{nv}.conv1.bias", SAME),
                  (f"{ros}.skip.0.kernel", f"{nv}.skip.resample_filter", KERNEL),
                  (f"{ros}.skip.1.weight", f"{nv}.skip.weight", SAME)]
    return table + [("final_conv.0.weight", "b4.conv.weight", SAME), ("final_conv.1.bias", "b4.conv.bias", SAME),
                    ("final_linear.0.weight", "b4.fc.weight", SAME), ("final_linear.0.bias", "b4.fc.bias", SAME),
                    ("final_linear.1.weight", "b4.out.weight", SAME), ("final_linear.1.bias", "b4.out.bias", SAME)]


# ----------------------------------------------------------------------------
# Channel tables.


def rosinality_channel_multiplier(channels):
    """The channel_multiplier m with which rosinality's Generator/Discriminator has these channels ({res: C},
    4 .. size): 512 up to 32, then 256m at 64, 128m at 128, ...; None when there is none."""
    if max(channels) > ROSINALITY_MAX_RESOLUTION:
        return None
    for m in (1, 2, 3, 4, 5, 6, 7, 8):
        if all(c == (512 if res <= 32 else 16384 * m // res) for res, c in channels.items()):
            return m
    return None


def channel_options(channels, what):
    """(channel_base, channel_max) for which min(channel_base // res, channel_max) gives `channels` ({res: C}),
    the only tables this package's networks build; LayoutError when no pair does."""
    channel_max = max(channels.values())
    for channel_base in sorted({c * res for res, c in channels.items()} | {channel_max * max(channels)}):
        if all(min(channel_base // res, channel_max) == c for res, c in channels.items()):
            return channel_base, channel_max
    table = ", ".join(f"{res}: {c}" for res, c in sorted(channels.items()))
    raise LayoutError(f"{what} has channels per resolution {{{table}}}, which this package's networks cannot build "
                      "(they have min(channel_base // res, channel_max) channels at each resolution)")


def count_consecutive(keys, pattern, start):
    """How many consecutive indices from `start` match `pattern` (a regex with one group) among `keys`."""
    found = {int(m.group(1)) for m in map(re.compile(pattern).fullmatch, keys) if m}
    count = 0
    while start + count in found:
        count += 1
    return count


def shape_of(state, key, what):
    """The shape of a rosinality tensor as a tuple; a missing key is an error naming it."""
    if key not in state or not isinstance(state[key], torch.Tensor):
        raise LayoutError(f"{what} lacks tensor '{key}'")
    return tuple(state[key].shape)
