"""Differentiable augmentation of every image the discriminator sees (ADA).

ADA paper: Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data",
sections 2.2-2.3 and appendix B. Reals and fakes pass through the same pipeline; each transform
fires with probability `strength * p` per image, with its parameters drawn per image. Because every
transform is skipped often enough, the augmented distribution still pins down the clean one, so the
generator is not pushed to produce augmented-looking images while p stays below ~0.8 (section 2.2).

The stages run in the paper's order:
  1. pixel blitting: x-flip, 90-degree rotations, integer translation (exact pixel moves),
  2. general geometric: scaling, rotation, anisotropic scaling, fractional translation, applied
     as one resampling of a 2x wavelet-upsampled, reflection-padded image,
  3. color: brightness, contrast, luma flip, hue rotation, saturation, as one 4x4 matrix,
  4. image-space filtering: random gains for four octave bands,
  5. corruptions: additive noise, cutout.
Images are NCHW float, roughly in [-1, 1]; height and width are handled separately everywhere
(SHHQ images are 2:1). Geometry uses pixel coordinates relative to the image centre, x right,
y down; each transform is stored by its inverse (output pixel -> input pixel).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib
from torch_utils import persistence
from torch_utils.ops import upfirdn2d

# Symlet-6 low-pass analysis filter (orthogonal, 6 vanishing moments): the resampling filter of the
# geometric stage (ADA paper, appendix B). Published constants, e.g. PyWavelets' sym6 dec_lo.
SYM6 = [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148]

# Daubechies-2 (= symlet-2) low-pass filter in closed form: the filter bank of the filtering stage.
SYM2 = [(1 - 3 ** 0.5) / (4 * 2 ** 0.5), (3 - 3 ** 0.5) / (4 * 2 ** 0.5),
        (3 + 3 ** 0.5) / (4 * 2 ** 0.5), (1 + 3 ** 0.5) / (4 * 2 ** 0.5)]

# Expected power of natural images in the four octave bands (a 1/f spectrum), lowest band first.
# The filtering stage keeps the total expected power while it changes the band gains.
BAND_POWER = [10 / 13, 1 / 13, 1 / 13, 1 / 13]

# ----------------------------------------------------------------------------
# Named pipelines: the --augpipe choices. Strength 1 means "fires with probability p".

_blit = dict(xflip=1, rotate90=1, xint=1)
_geom = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_color = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
augpipe_specs = {
    'blit':   dict(_blit),
    'geom':   dict(_geom),
    'color':  dict(_color),
    'filter': dict(imgfilter=1),
    'noise':  dict(noise=1),
    'cutout': dict(cutout=1),
    'bg':     {**_blit, **_geom},
    'bgc':    {**_blit, **_geom, **_color},
    'bgcf':   {**_blit, **_geom, **_color, 'imgfilter': 1},
    'bgcfn':  {**_blit, **_geom, **_color, 'imgfilter': 1, 'noise': 1},
    'bgcfnc': {**_blit, **_geom, **_color, 'imgfilter': 1, 'noise': 1, 'cutout': 1},
    # SHHQ full-body figures: no 90-degree or arbitrary rotation, which would lay people on their
    # side or head and teach D that upright is optional.
    'body':   dict(xflip=1, xint=1, xfrac=1, scale=1, aniso=1, **_color),
}


def augpipe_kwargs(name):
    """Constructor kwargs (with class_name, for construct_class_by_name) of the named pipeline."""
    if name not in augpipe_specs:
        raise dnnlib.util.UserError(f"--augpipe: unknown pipeline '{name}'; choose one of {', '.join(augpipe_specs)}")
    return dnnlib.EasyDict(class_name='training.augment.AugmentPipe', **augpipe_specs[name])

# ----------------------------------------------------------------------------
# Homogeneous transform matrices, one per image: every argument is a [batch] tensor or a number.


def _matrix(rows, like):
    elems = [e if torch.is_tensor(e) else torch.full_like(like, e) for row in rows for e in row]
    return torch.stack(elems, dim=-1).reshape(like.shape[0], len(rows), len(rows))


def translate2d(tx, ty):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale2d(sx, sy):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotate2d(theta):
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def translate3d(tx, ty, tz):
    return _matrix([[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], tx)


def scale3d(sx, sy, sz):
    return _matrix([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], sx)


def rotate3d(axis, theta):
    """Rotation by theta around the unit vector `axis` (Rodrigues' formula), right-handed."""
    x, y, z = (float(a) for a in axis)
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1 - c
    return _matrix([[x * x * k + c, x * y * k - z * s, x * z * k + y * s, 0],
                    [y * x * k + z * s, y * y * k + c, y * z * k - x * s, 0],
                    [z * x * k - y * s, z * y * k + x * s, z * z * k + c, 0],
                    [0, 0, 0, 1]], theta)

# ----------------------------------------------------------------------------
# Parameter draws.


class _Draws:
    """Per-image random parameters; with `percentile` set, every draw is that quantile of its
    distribution and every transform fires (the original `debug_percentile`, used by the tests)."""

    def __init__(self, batch_size, device, percentile=None):
        self.batch_size = batch_size
        self.device = device
        self.percentile = None if percentile is None else min(max(float(percentile), 0.0), 1.0)

    def _shape(self, extra):
        return [self.batch_size, *extra]

    def _quantile(self, extra):
        return torch.full(self._shape(extra), self.percentile, device=self.device)

    def integer(self, n, *extra):
        """Uniform over {0, ..., n-1}."""
        if self.percentile is None:
            return torch.randint(0, n, self._shape(extra), device=self.device).float()
        return torch.floor(self._quantile(extra) * n).clamp(max=n - 1)

    def uniform(self, lo, hi, *extra):
        u = torch.rand(self._shape(extra), device=self.device) if self.percentile is None else self._quantile(extra)
        return lo + (hi - lo) * u

    def normal(self, std, *extra):
        if self.percentile is None:
            return torch.randn(self._shape(extra), device=self.device) * std
        return torch.erfinv(self._quantile(extra) * 2 - 1) * (2 ** 0.5 * std)

    def lognormal2(self, std, *extra):
        """2 ** N(0, std^2): a scale factor, as likely to halve as to double."""
        return torch.exp2(self.normal(std, *extra))

    def halfnormal(self, std, *extra):
        if self.percentile is None:
            return torch.randn(self._shape(extra), device=self.device).abs() * std
        return torch.erfinv(self._quantile(extra)) * (2 ** 0.5 * std)

    def gate(self, value, prob, neutral):
        """Keeps each image's `value` with probability `prob`, else `neutral` (transform skipped)."""
        if self.percentile is not None:
            return value
        coin = torch.rand([self.batch_size] + [1] * (value.ndim - 1), device=self.device) < prob
        return torch.where(coin, value, torch.full_like(value, neutral))

# ----------------------------------------------------------------------------
# Image operations.


def _reflect(index, size):
    """Mirror indices into [0, size) without repeating the edge pixel, for any distance outside."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = torch.remainder(index, period)
    return torch.where(index >= size, period - index, index)


def reflect_pad(images, x0, x1, y0, y1):
    """Reflection padding that, unlike F.pad, allows padding wider than the image."""
    height, width = images.shape[2:]
    ix = _reflect(torch.arange(-x0, width + x1, device=images.device), width)
    iy = _reflect(torch.arange(-y0, height + y1, device=images.device), height)
    return images.index_select(3, ix).index_select(2, iy)


def _centered_grid(height, width, device):
    """Homogeneous centred coordinates of every pixel, [3, height * width]."""
    y, x = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32) - (height - 1) / 2,
                          torch.arange(width, device=device, dtype=torch.float32) - (width - 1) / 2, indexing='ij')
    return torch.stack([x.flatten(), y.flatten(), torch.ones_like(x.flatten())])


def blit(images, M_inv):
    """Pixel blitting (ADA paper, appendix B): output pixel p copies input pixel round(M_inv p), mirrored
    at the borders. Exact for integer maps (flips, 90-degree turns, whole-pixel shifts) when height
    and width have the same parity."""
    batch, channels, height, width = images.shape
    src = M_inv.to(torch.float32) @ _centered_grid(height, width, images.device)
    sx = _reflect(torch.round(src[:, 0] + (width - 1) / 2).long(), width)
    sy = _reflect(torch.round(src[:, 1] + (height - 1) / 2).long(), height)
    index = (sy * width + sx)[:, None, :].expand(batch, channels, height * width)
    return images.reshape(batch, channels, height * width).gather(2, index).reshape(images.shape)


def resample(images, G_inv, f):
    """General geometric transforms (ADA paper, appendix B): output pixel p takes the input at G_inv p.

    The image is reflection-padded, upsampled 2x with the wavelet low-pass f, sampled bilinearly
    and downsampled with the time-reversed filter; for an orthogonal wavelet the up/down pair alone
    is the identity, so only the transform itself changes the image.
    """
    batch, channels, height, width = images.shape
    support = f.numel() // 4       # half the 2x filter's reach, in 1x pixels
    cx, cy = (width - 1) / 2, (height - 1) / 2
    G_inv = G_inv.to(images.dtype)

    # Reflection-pad so that the source footprint of the output (grown by the down filter's reach),
    # plus the up filter's reach, lies inside the padded image.
    ex, ey = cx + support, cy + support
    like = dict(dtype=images.dtype, device=images.device)
    corners = torch.tensor([[-ex, -ey, 1], [ex, -ey, 1], [ex, ey, 1], [-ex, ey, 1]], **like)
    src = (G_inv @ corners.t())[:, :2, :]                           # [batch, xy, corner]
    reach = src.permute(1, 0, 2).flatten(1)                         # [xy, batch * corner]
    reach = torch.cat([-reach, reach]).max(dim=1).values            # [left, top, right, bottom]
    margin = reach - torch.tensor([cx, cy, cx, cy], **like) + support + 1
    limit = torch.tensor([width - 1, height - 1] * 2, **like)       # one reflection's worth at most
    mx0, my0, mx1, my1 = margin.ceil().clamp(min=0).minimum(limit).to(torch.int64).tolist()
    images = reflect_pad(images, mx0, mx1, my0, my1)
    batch_ones = torch.ones([batch], **like)
    G_inv = translate2d(batch_ones * (mx0 - mx1) / 2, batch_ones * (my0 - my1) / 2) @ G_inv

    # In the 2x image, coordinates double; the filter's group delay at DC (its centroid off the
    # middle tap, in 2x pixels) shifts the content, so the transform acts about the shifted centre.
    images = upfirdn2d.upsample2d(images, f, up=2)
    delay = ((f / f.sum()) * torch.arange(f.numel(), device=f.device)).sum() - (f.numel() - 1) / 2
    delay = batch_ones * delay.to(images.dtype)
    G_inv = scale2d(batch_ones * 2, batch_ones * 2) @ G_inv @ scale2d(batch_ones / 2, batch_ones / 2)
    G_inv = translate2d(delay, delay) @ G_inv @ translate2d(-delay, -delay)

    # Sample the output (with the down filter's margin) in grid_sample's [-1, 1] coordinates.
    out_height, out_width = (height + support * 2) * 2, (width + support * 2) * 2
    in_height, in_width = images.shape[2:]
    to_unit = scale2d(batch_ones * 2 / in_width, batch_ones * 2 / in_height)
    from_unit = scale2d(batch_ones * out_width / 2, batch_ones * out_height / 2)
    theta = (to_unit @ G_inv @ from_unit)[:, :2, :]
    grid = F.affine_grid(theta, [batch, channels, out_height, out_width], align_corners=False)
    images = _GridSample.apply(images, grid)
    return upfirdn2d.downsample2d(images, f, down=2, padding=-support * 2, flip_filter=True)


class _GridSample(torch.autograd.Function):
    """Bilinear F.grid_sample (zero padding, align_corners=False), differentiable w.r.t. the images to
    any order, which R1 through the pipeline needs; older torch has no double backward for it.
    The grid is a constant (it comes from the drawn parameters)."""

    @staticmethod
    def forward(ctx, images, grid):
        assert not grid.requires_grad
        ctx.save_for_backward(images, grid)
        return F.grid_sample(images, grid, mode='bilinear', padding_mode='zeros', align_corners=False)

    @staticmethod
    def backward(ctx, grad_out):
        images, grid = ctx.saved_tensors
        return _GridSampleAdjoint.apply(grad_out, images, grid), None


class _GridSampleAdjoint(torch.autograd.Function):
    """The images' gradient of _GridSample: linear in grad_out, so its gradient is _GridSample again."""

    @staticmethod
    def forward(ctx, grad_out, images, grid):
        ctx.save_for_backward(grid)
        # aten's backward takes the images only for their shape here (the grid's gradient is not asked for).
        grad_images, _ = torch.ops.aten.grid_sampler_2d_backward(grad_out, images, grid, 0, 0, False, [True, False])
        return grad_images

    @staticmethod
    def backward(ctx, grad2):
        grid, = ctx.saved_tensors
        return _GridSample.apply(grad2, grid), None, None


def octave_filter_bank(h, num_bands=4):
    """Image-space filtering (ADA paper, appendix B): [num_bands, taps] symmetric 1-D filters splitting
    [0, pi] into octaves, lowest band first; the rows sum to a unit impulse.

    lo(w) = |H(w)|^2 / 2 and hi(w) = |H(w + pi)|^2 / 2 are complementary half-band filters (they sum
    to 1 for an orthogonal wavelet H). Each step stretches the bands found so far to half their
    frequency (zero insertion), low-passes them, and adds the new top octave, hi.
    """
    h = np.asarray(h, dtype=np.float64)
    g = h * (-1.0) ** np.arange(h.size)
    lo = np.convolve(h, h[::-1]) / 2
    hi = np.convolve(g, g[::-1]) / 2
    bank = np.zeros([num_bands, 1])
    bank[0, 0] = 1
    for band in range(1, num_bands):
        stretched = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        stretched[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo) for row in stretched])
        start = (bank.shape[1] - hi.size) // 2
        bank[band, start:start + hi.size] += hi
    return bank


def filter_bands(images, gains, bank):
    """Filters each image with the separable filter sum_i gains[:, i] * bank[i], reflection-padded."""
    batch, channels, height, width = images.shape
    taps = gains.to(images.dtype) @ bank.to(images.dtype)           # [batch, taps]
    taps = taps.repeat_interleave(channels, dim=0)                  # [batch * channels, taps]
    pad = bank.shape[1] // 2
    x = reflect_pad(images, pad, pad, pad, pad).reshape(1, batch * channels, height + 2 * pad, width + 2 * pad)
    x = F.conv2d(x, taps[:, None, None, :], groups=batch * channels)
    x = F.conv2d(x, taps[:, None, :, None], groups=batch * channels)
    return x.reshape(images.shape)

# ----------------------------------------------------------------------------


# Stochastic discriminator augmentation pipeline (ADA paper, section 2.3 and appendix B).
@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    def __init__(self,
        xflip=0,                    # Strength of x-flips (probability = strength * p).
        rotate90=0,                 # Strength of 90-degree rotations.
        xint=0,                     # Strength of integer translation.
        xint_max=0.125,             # Largest integer shift, as a fraction of the width / height.
        scale=0,                    # Strength of isotropic scaling.
        rotate=0,                   # Strength of arbitrary rotation.
        aniso=0,                    # Strength of anisotropic scaling.
        xfrac=0,                    # Strength of fractional translation.
        scale_std=0.2,              # Isotropic scale: std of log2(scale).
        rotate_max=1,               # Rotation: largest angle, in half-turns (1 = any angle).
        aniso_std=0.2,              # Anisotropic scale: std of log2(scale).
        xfrac_std=0.125,            # Fractional shift: std, as a fraction of the width / height.
        brightness=0,               # Strength of brightness offsets.
        contrast=0,                 # Strength of contrast scaling.
        lumaflip=0,                 # Strength of luma flips.
        hue=0,                      # Strength of hue rotation.
        saturation=0,               # Strength of saturation scaling.
        brightness_std=0.2,         # Brightness: std of the offset.
        contrast_std=0.5,           # Contrast: std of log2(factor).
        hue_max=1,                  # Hue: largest angle, in half-turns.
        saturation_std=1,           # Saturation: std of log2(factor).
        imgfilter=0,                # Strength of image-space filtering.
        imgfilter_bands=[1, 1, 1, 1],  # Relative strength per octave band, lowest first.
        imgfilter_std=1,            # Band gain: std of log2(gain).
        noise=0,                    # Strength of additive noise.
        cutout=0,                   # Strength of cutout.
        noise_std=0.1,              # Noise: std of the (half-normal) per-image noise std.
        cutout_size=0.5,            # Cutout: rectangle side, as a fraction of the width / height.
    ):
        super().__init__()
        self.register_buffer('p', torch.ones([]))  # Overall probability multiplier, set by ADA or --p.
        self.xflip, self.rotate90, self.xint = float(xflip), float(rotate90), float(xint)
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.imgfilter, self.noise, self.cutout = float(imgfilter), float(noise), float(cutout)
        self.xint_max, self.scale_std, self.rotate_max = float(xint_max), float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)
        self.imgfilter_bands, self.imgfilter_std = list(imgfilter_bands), float(imgfilter_std)
        if len(self.imgfilter_bands) != len(BAND_POWER):
            raise ValueError(f'AugmentPipe: imgfilter_bands needs {len(BAND_POWER)} entries, one per octave band')
        self.noise_std, self.cutout_size = float(noise_std), float(cutout_size)
        # Buffers with the names of the ecosystem's checkpoints, so their pipes load into this class.
        self.register_buffer('Hz_geom', upfirdn2d.setup_filter(SYM6))
        fbank = octave_filter_bank(SYM2, len(self.imgfilter_bands))
        self.register_buffer('Hz_fbank', torch.as_tensor(fbank, dtype=torch.float32))

    def forward(self, images, debug_percentile=None):
        """Augments a batch [N, C, H, W] (C = 1 or 3 for the color stage); differentiable w.r.t. images."""
        if not (isinstance(images, torch.Tensor) and images.ndim == 4):
            raise ValueError('AugmentPipe: images must be a [N, C, H, W] tensor')
        draws = _Draws(images.shape[0], images.device, debug_percentile)
        if self.xflip > 0 or self.rotate90 > 0 or self.xint > 0:
            images = blit(images, self._blit_matrix(draws, images.shape))
        if self.scale > 0 or self.rotate > 0 or self.aniso > 0 or self.xfrac > 0:
            G_inv = self._geom_matrix(draws, images.shape)
            active = (G_inv != torch.eye(3, device=G_inv.device)).flatten(1).any(dim=1)
            if bool(active.any()):  # one host sync; resample() needs one for its padding anyway
                images = torch.where(active[:, None, None, None], resample(images, G_inv, self.Hz_geom), images)
        if self.brightness > 0 or self.contrast > 0 or self.lumaflip > 0 or self.hue > 0 or self.saturation > 0:
            images = self._apply_color(images, self._color_matrix(draws))
        if self.imgfilter > 0:
            gains, active = self._band_gains(draws)
            images = torch.where(active[:, None, None, None], filter_bands(images, gains, self.Hz_fbank), images)
        if self.noise > 0:
            sigma = draws.gate(draws.halfnormal(self.noise_std), self.noise * self.p, 0)
            images = images + torch.randn_like(images) * sigma[:, None, None, None].to(images.dtype)
        if self.cutout > 0:
            images = images * self._cutout_mask(draws, images.shape).to(images.dtype)
        return images

    # Pixel blitting (ADA paper, appendix B), as one inverse integer map per image.
    def _blit_matrix(self, draws, shape):
        height, width = shape[2:]
        M_inv = torch.eye(3, device=draws.device).repeat(draws.batch_size, 1, 1)
        if self.xflip > 0:  # mirror with probability 1/2 when the transform fires
            i = draws.gate(draws.integer(2), self.xflip * self.p, 0)
            M_inv = M_inv @ scale2d(1 - 2 * i, torch.ones_like(i))
        if self.rotate90 > 0:  # i quarter turns; matches torch.rot90(image, k=i, dims=[2, 3])
            i = draws.gate(draws.integer(4), self.rotate90 * self.p, 0)
            M_inv = M_inv @ rotate2d(i * (math.pi / 2))
        if self.xint > 0:  # whole-pixel shift, up to xint_max of the width and of the height
            t = draws.gate(draws.uniform(-self.xint_max, self.xint_max, 2), self.xint * self.p, 0)
            M_inv = M_inv @ translate2d(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height))
        return M_inv

    # General geometric transforms (ADA paper, appendix B), composed into one inverse map per image.
    def _geom_matrix(self, draws, shape):
        height, width = shape[2:]
        G_inv = torch.eye(3, device=draws.device).repeat(draws.batch_size, 1, 1)
        if self.scale > 0:
            s = draws.gate(draws.lognormal2(self.scale_std), self.scale * self.p, 1)
            G_inv = G_inv @ scale2d(1 / s, 1 / s)
        # Rotation fires before or after the anisotropic scaling (or both), with total probability p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))
        if self.rotate > 0:
            theta = draws.gate(draws.uniform(-math.pi * self.rotate_max, math.pi * self.rotate_max), p_rot, 0)
            G_inv = G_inv @ rotate2d(-theta)
        if self.aniso > 0:
            s = draws.gate(draws.lognormal2(self.aniso_std), self.aniso * self.p, 1)
            G_inv = G_inv @ scale2d(1 / s, s)
        if self.rotate > 0:
            theta = draws.gate(draws.uniform(-math.pi * self.rotate_max, math.pi * self.rotate_max), p_rot, 0)
            if draws.percentile is not None:  # a quantile drawn twice would rotate twice
                theta = torch.zeros_like(theta)
            G_inv = G_inv @ rotate2d(-theta)
        if self.xfrac > 0:  # shift by a fraction of the width and of the height
            t = draws.gate(draws.normal(self.xfrac_std, 2), self.xfrac * self.p, 0)
            G_inv = G_inv @ translate2d(-t[:, 0] * width, -t[:, 1] * height)
        return G_inv

    # Color transforms (ADA paper, appendix B), composed into one 4x4 matrix per image acting on (r, g, b, 1).
    def _color_matrix(self, draws):
        C = torch.eye(4, device=draws.device).repeat(draws.batch_size, 1, 1)
        luma = torch.tensor([1, 1, 1, 0], dtype=torch.float32, device=draws.device) / 3 ** 0.5
        luma_proj = torch.outer(luma, luma)  # projection onto the gray axis
        if self.brightness > 0:
            b = draws.gate(draws.normal(self.brightness_std), self.brightness * self.p, 0)
            C = translate3d(b, b, b) @ C
        if self.contrast > 0:
            c = draws.gate(draws.lognormal2(self.contrast_std), self.contrast * self.p, 1)
            C = scale3d(c, c, c) @ C
        if self.lumaflip > 0:  # Householder reflection of the gray axis, with probability 1/2
            i = draws.gate(draws.integer(2), self.lumaflip * self.p, 0)
            C = (torch.eye(4, device=draws.device) - 2 * luma_proj * i[:, None, None]) @ C
        if self.hue > 0:
            theta = draws.gate(draws.uniform(-math.pi * self.hue_max, math.pi * self.hue_max), self.hue * self.p, 0)
            C = rotate3d(luma[:3], theta) @ C
        if self.saturation > 0:  # scale the distance from the gray axis
            s = draws.gate(draws.lognormal2(self.saturation_std), self.saturation * self.p, 1)
            C = (luma_proj + (torch.eye(4, device=draws.device) - luma_proj) * s[:, None, None]) @ C
        return C

    @staticmethod
    def _apply_color(images, C):
        batch, channels, height, width = images.shape
        C = C.to(images.dtype)
        x = images.reshape(batch, channels, height * width)
        if channels == 3:
            x = C[:, :3, :3] @ x + C[:, :3, 3:]
        elif channels == 1:  # gray g acts as (g, g, g); the result is averaged back to gray
            C = C[:, :3, :].mean(dim=1, keepdim=True)
            x = x * C[:, :, :3].sum(dim=2, keepdim=True) + C[:, :, 3:]
        else:
            raise ValueError(f'AugmentPipe: color transforms need 1 or 3 channels, got {channels}')
        return x.reshape(images.shape)

    # Image-space filtering (ADA paper, appendix B): one random gain per octave band, total expected power kept.
    def _band_gains(self, draws):
        num_bands = len(self.imgfilter_bands)
        power = torch.tensor(BAND_POWER, device=draws.device)
        gains = torch.ones([draws.batch_size, num_bands], device=draws.device)
        active = torch.zeros([draws.batch_size], dtype=torch.bool, device=draws.device)
        for band, strength in enumerate(self.imgfilter_bands):
            if strength <= 0:
                continue
            t_band = draws.gate(draws.lognormal2(self.imgfilter_std), self.imgfilter * self.p * strength, 1)
            active = active | (t_band != 1)
            t = torch.ones([draws.batch_size, num_bands], device=draws.device)
            t[:, band] = t_band
            gains = gains * t / (power * t.square()).sum(dim=1, keepdim=True).sqrt()
        return gains, active

    # Cutout (DeVries & Taylor 2017; ADA paper, appendix B): zero a rectangle of cutout_size x the image size.
    def _cutout_mask(self, draws, shape):
        height, width = shape[2:]
        size = torch.full([draws.batch_size], self.cutout_size, device=draws.device)
        size = draws.gate(size, self.cutout * self.p, 0)
        center = draws.uniform(0, 1, 2)
        x = (torch.arange(width, device=draws.device) + 0.5) / width
        y = (torch.arange(height, device=draws.device) + 0.5) / height
        outside_x = (x[None, :] - center[:, 0:1]).abs() >= size[:, None] / 2   # [batch, width]
        outside_y = (y[None, :] - center[:, 1:2]).abs() >= size[:, None] / 2   # [batch, height]
        return (outside_x[:, None, :] | outside_y[:, :, None])[:, None, :, :]
