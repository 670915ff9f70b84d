"""A second implementation of rosinality/stylegan2-pytorch's Generator and Discriminator, for the tests.

Written from the published facts of its model.py (module names, which make the state-dict keys; equalized-lr
scales; blur, noise and upsampling conventions), with plain PyTorch ops and nothing of this package, so that
the checkpoint converters are checked against an independent computation:

- EqualLinear keeps weight * (1 / sqrt(in)) * lr_mul and bias * lr_mul; EqualConv2d weight * 1 / sqrt(fan_in).
- The mapping is PixelNorm then n_mlp EqualLinear(lr_mul=0.01) with fused leaky ReLU (slope 0.2, gain sqrt 2).
- ModulatedConv2d builds one kernel per sample (scale * weight * style, demodulated) and runs a grouped
  convolution; the upsampling one is a stride-2 transposed convolution followed by a blur with padding
  (1, 1) and a kernel 4x the normalised [1, 3, 3, 1] filter.
- StyledConv: modulated conv, then image + weight * noise, then leaky ReLU with the activation's bias.
- ToRGB: modulated 1x1 conv without demodulation, plus a [1, 3, 1, 1] bias, plus the upsampled skip image
  (upfirdn2d with up=2, padding (2, 1), kernel 4x the filter).
- Discriminator: ConvLayer(3, C, 1), ResBlocks ((conv1, downsampling conv2) + blurred 1x1 skip) / sqrt 2,
  minibatch stddev (group 4, 1 feature), final_conv, then final_linear (fused lrelu, then linear).

`channels` overrides rosinality's channel table and `aspect` (H, W) makes StyleGAN-Human's 2:1 variant (a
4x2 constant input, noise maps of H x H/2), so small networks can be tested.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F


def rosinality_channels(channel_multiplier=2):
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}


def make_kernel(taps):
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d_native(x, kernel, up=1, down=1, pad=(0, 0)):
    """Zero insertion, padding (pad0 before, pad1 after, both axes), true convolution, then decimation."""
    n, c, h, w = x.shape
    x = x.reshape(n * c, 1, h, w)
    if up > 1:
        x = x.reshape(n * c, 1, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n * c, 1, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    x = F.conv2d(x, torch.flip(kernel, [0, 1])[None, None])
    x = x[:, :, ::down, ::down]
    return x.reshape(n, c, x.shape[2], x.shape[3])


def fused_leaky_relu(x, bias, negative_slope=0.2, scale=2 ** 0.5):
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.reshape(shape), negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    def __init__(self, taps, factor=2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d_native(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    def __init__(self, taps, pad, upsample_factor=1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d_native(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, in_dim, out_dim, bias_init=0, lr_mul=1, activation=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init))
        self.activation, self.scale, self.lr_mul = activation, lr_mul / math.sqrt(in_dim), lr_mul

    def forward(self, x):
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class ModulatedConv2d(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, style_dim, demodulate=True, upsample=False,
                 taps=(1, 3, 3, 1)):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            p = (len(taps) - 2) - (kernel_size - 1)
            self.blur = Blur(list(taps), pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x, style, style_offset=None):
        batch, in_channel, height, width = x.shape
        style = self.modulation(style)
        if style_offset is not None:  # StyleGAN-Human's S-space edits add to this style vector
            style = style + style_offset
        weight = self.scale * self.weight * style.view(batch, 1, in_channel, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(batch, self.out_channel, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, batch * in_channel, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            return self.blur(out.view(batch, self.out_channel, out.shape[2], out.shape[3]))
        out = F.conv2d(x, weight.reshape(batch * self.out_channel, in_channel, k, k), padding=self.padding,
                       groups=batch)
        return out.view(batch, self.out_channel, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image, noise):
        return image + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channel, height=4, width=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, height, width))

    def forward(self, batch):
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x, style, noise, style_offset=None):
        return self.activate(self.noise(self.conv(x, style, style_offset), noise))


class ToRGB(nn.Module):
    def __init__(self, in_channel, style_dim, upsample=True):
        super().__init__()
        if upsample:
            self.upsample = Upsample([1, 3, 3, 1])
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class Generator(nn.Module):
    def __init__(self, size, style_dim, n_mlp, channel_multiplier=2, lr_mlp=0.01, channels=None, aspect=(1, 1)):
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp,
                                                              activation="fused_lrelu") for _ in range(n_mlp)])
        self.channels = channels or rosinality_channels(channel_multiplier)
        const_h, const_w = (4 * aspect[0] // max(aspect), 4 * aspect[1] // max(aspect))
        self.input = ConstantInput(self.channels[4], const_h, const_w)
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs, self.upsamples, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.ModuleList(), \
            nn.Module()
        for layer_idx in range(self.num_layers):
            scale = 2 ** ((layer_idx + 1) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, const_h * scale, const_w * scale))
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel
        self.n_latent = self.log_size * 2 - 2

    def mean_latent(self, n_latent):
        return self.style(torch.randn(n_latent, self.style_dim)).mean(0, keepdim=True)

    def synthesis(self, latent, style_offsets=None):
        """The image of ws [N, n_latent, style_dim] with the stored noise buffers (randomize_noise=False);
        style_offsets: one entry (None or a tensor) per StyledConv, as StyleGAN-Human's edits use them."""
        noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        offsets = style_offsets or [None] * self.num_layers
        out = self.conv1(self.input(latent.shape[0]), latent[:, 0], noise[0], offsets[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for level, to_rgb in enumerate(self.to_rgbs):
            i = 2 * level + 1
            out = self.convs[2 * level](out, latent[:, i], noise[i], offsets[i])
            out = self.convs[2 * level + 1](out, latent[:, i + 1], noise[i + 1], offsets[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip

    def forward(self, styles, truncation=1, truncation_latent=None, input_is_latent=False):
        """rosinality's Generator call for one style (no mixing) with randomize_noise=False: (image, None)."""
        style = styles[0] if input_is_latent else self.style(styles[0])
        if truncation < 1:
            style = truncation_latent + truncation * (style - truncation_latent)
        latent = style if style.ndim == 3 else style.unsqueeze(1).repeat(1, self.n_latent, 1)
        return self.synthesis(latent), None


class ConvLayer(nn.Sequential):
    def __init__(self, in_channel, out_channel, kernel_size, downsample=False, bias=True, activate=True):
        layers = []
        if downsample:
            p = (4 - 2) + (kernel_size - 1)
            layers.append(Blur([1, 3, 3, 1], pad=((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, padding=0 if downsample else kernel_size // 2,
                                  stride=2 if downsample else 1, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channel, out_channel):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False, bias=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    def __init__(self, size, channel_multiplier=2, channels=None, aspect=(1, 1)):
        super().__init__()
        channels = channels or rosinality_channels(channel_multiplier)
        convs = [ConvLayer(3, channels[size], 1)]
        in_channel = channels[size]
        for i in range(int(math.log2(size)), 2, -1):
            convs.append(ResBlock(in_channel, channels[2 ** (i - 1)]))
            in_channel = channels[2 ** (i - 1)]
        self.convs = nn.Sequential(*convs)
        self.stddev_group, self.stddev_feat = 4, 1
        self.final_conv = ConvLayer(in_channel + 1, channels[4], 3)
        cells = (4 * aspect[0] // max(aspect)) * (4 * aspect[1] // max(aspect))
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * cells, channels[4], activation="fused_lrelu"),
                                          EqualLinear(channels[4], 1))

    def forward(self, x):
        out = self.convs(x)
        batch, channel, height, width = out.shape
        group = min(batch, self.stddev_group)
        stddev = out.view(group, -1, self.stddev_feat, channel // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, stddev.repeat(group, 1, height, width)], 1)
        return self.final_linear(self.final_conv(out).view(batch, -1))
