"""Upsample, FIR filter, downsample (upfirdn2d): the anti-aliased resampling of StyleGAN2.

StyleGAN2 paper (Karras et al. 2020), appendix B: up- and downsampling use a separable
[1, 3, 3, 1] low-pass filter, following Zhang 2019 ("Making convolutional networks
shift-invariant again"). One op does all three steps:
  1. upsample by inserting up-1 zeros after every sample,
  2. pad with zeros (a negative padding crops),
  3. convolve with the FIR filter (flipped, i.e. a true convolution, unless flip_filter),
  4. keep every down-th sample.
Output size per axis: (in * up + pad0 + pad1 - filter_size) // down + 1.
"""

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from . import _kernels


def _parse_scaling(scaling, name):
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    sx, sy = (int(s) for s in scaling)  # [x, y]
    if sx < 1 or sy < 1:
        raise ValueError(f'upfirdn2d: {name}={scaling} must be >= 1')
    return sx, sy


def _parse_padding(padding):
    if isinstance(padding, int):
        padding = [padding, padding]
    padding = [int(p) for p in padding]
    if len(padding) == 2:  # [x, y]
        padx, pady = padding
        padding = [padx, padx, pady, pady]
    if len(padding) != 4:
        raise ValueError(f'upfirdn2d: padding={padding} must be an int, [x, y] or [x0, x1, y0, y1]')
    return padding  # [x0, x1, y0, y1]


def _get_filter_size(f):
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ValueError('upfirdn2d: f must be a 1-D (separable) or 2-D filter tensor, or None')
    return int(f.shape[-1]), int(f.shape[0])  # width, height


def setup_filter(f, device: torch.device = torch.device('cpu'), normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """Turns a filter given as a list/array/tensor into the float32 tensor the ops take.

    f:            None (identity), a scalar, a 1-D or a 2-D filter.
    normalize:    scale so the taps sum to 1 (keeps the signal's DC level).
    flip_filter:  flip the filter now, so later ops can skip it.
    gain:         overall gain baked into the filter (a 1-D filter gets sqrt per axis).
    separable:    keep a 1-D filter 1-D (applied along x and y); default: when it has >= 8 taps.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError('setup_filter: f must be a non-empty scalar, 1-D or 2-D filter')
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError('setup_filter: separable=True needs a 1-D filter')
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Union[int, Sequence[int]] = 1, down: Union[int, Sequence[int]] = 1, padding: Union[int, Sequence[int]] = 0,
              flip_filter: bool = False, gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Upsample, pad, FIR filter and downsample a batch of 2-D images.

    x:            [N, C, H, W] (contiguous or channels_last).
    f:            float32 filter from setup_filter(): [fh, fw], [fw] (separable) or None.
    up, down:     int or [x, y] integer factors.
    padding:      int, [x, y] or [x0, x1, y0, y1]; negative values crop.
    flip_filter:  False = convolution (filter flipped), True = correlation.
    gain:         overall scale of the output.
    impl:         'cuda' = compiled kernel for CUDA tensors when available (except for large plain filtering,
                  where cuDNN is faster; see _kernels.upfirdn2d_prefers_reference), 'ref' = PyTorch ops.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError('upfirdn2d: x must be a 4-D [N, C, H, W] tensor')
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    _get_filter_size(f)
    upx, upy = _parse_scaling(up, 'up')
    downx, downy = _parse_scaling(down, 'down')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    out_w = (x.shape[3] * upx + padx0 + padx1 - f.shape[-1]) // downx + 1
    out_h = (x.shape[2] * upy + pady0 + pady1 - f.shape[0]) // downy + 1
    if out_w < 1 or out_h < 1:
        raise ValueError(f'upfirdn2d: output would be empty ({out_h}x{out_w}); padding {padding} too small for the filter')
    args = ((upx, upy), (downx, downy), (padx0, padx1, pady0, pady1), bool(flip_filter), float(gain))
    if _kernels.plugin_for('upfirdn2d', impl, x) is not None and \
            not _kernels.upfirdn2d_prefers_reference(x.numel(), args[0], args[1]):
        return _upfirdn2d_cuda(x, f, *args)
    if x.device.type == 'cpu' and torch.is_grad_enabled() and x.requires_grad:
        return _Upfirdn2dRef.apply(x, f, *args)
    return _upfirdn2d_ref(x, f, *args)


def _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    # Plain PyTorch ops: autograd supplies all derivatives (f gets none).
    (upx, upy), (downx, downy), (padx0, padx1, pady0, pady1) = up, down, padding
    n, c, h, w = x.shape
    if upx > 1 or upy > 1:  # zero insertion: each sample followed by up-1 zeros
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    # The convolution pads the symmetric non-negative part itself (the same zeros, without writing a padded
    # copy of a large tensor); F.pad does the rest (negative padding crops).
    conv_px, conv_py = max(min(padx0, padx1), 0), max(min(pady0, pady1), 0)
    rest = [padx0 - conv_px, padx1 - conv_px, pady0 - conv_py, pady1 - conv_py]
    if any(rest):
        x = F.pad(x, rest)
    f = (f.to(x.device) * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    # Depthwise correlation; the stride does the downsampling (same sums as slicing afterwards).
    if f.ndim == 2:
        weight = f[None, None].repeat(c, 1, 1, 1)
        return F.conv2d(x, weight, stride=(downy, downx), padding=(conv_py, conv_px), groups=c)
    x = F.conv2d(x, f[None, None, None, :].repeat(c, 1, 1, 1), stride=(1, downx), padding=(0, conv_px), groups=c)
    return F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), stride=(downy, 1), padding=(conv_py, 0), groups=c)


class _Upfirdn2dRef(torch.autograd.Function):
    # The reference path with the adjoint upfirdn2d as its gradient, as the CUDA op has (below). Autograd through
    # the depthwise convolution itself would be correct too, but its double backward (R1, path length) runs one
    # convolution per channel on the CPU: about a third of a 512x256 path-length step (benchmarks/RESULTS.md).
    @staticmethod
    def forward(ctx, x, f, up, down, padding, flip_filter, gain):
        ctx.save_for_backward(f)
        ctx.params = (x.shape, up, down, padding, flip_filter, gain)
        return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)

    @staticmethod
    def backward(ctx, dy):
        f, = ctx.saved_tensors
        x_shape, up, down, padding, flip_filter, gain = ctx.params
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None, None
        fw, fh = _get_filter_size(f)
        px0, px1 = _grad_padding(x_shape[3], dy.shape[3], up[0], down[0], padding[0], fw)
        py0, py1 = _grad_padding(x_shape[2], dy.shape[2], up[1], down[1], padding[2], fh)
        dx = _Upfirdn2dRef.apply(dy, f, down, up, (px0, px1, py0, py1), not flip_filter, gain)
        assert dx.shape == x_shape
        return dx, None, None, None, None, None, None


def _upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain):
    # A separable filter runs as two 1-D passes: along x, then along y.
    if f.ndim == 2:
        return _Upfirdn2dCuda.apply(x, f, up, down, padding, flip_filter, gain)
    (upx, upy), (downx, downy), (padx0, padx1, pady0, pady1) = up, down, padding
    x = _Upfirdn2dCuda.apply(x, f[None, :], (upx, 1), (downx, 1), (padx0, padx1, 0, 0), flip_filter, gain)
    return _Upfirdn2dCuda.apply(x, f[:, None], (1, upy), (1, downy), (0, 0, pady0, pady1), flip_filter, 1.0)


def _grad_padding(in_size, out_size, up, down, pad0, f_size):
    # Padding of the adjoint op: upsample dy by `down`, flipped filter, downsample by `up`.
    return f_size - pad0 - 1, in_size * up - out_size * down + pad0 - up + 1


class _Upfirdn2dCuda(torch.autograd.Function):
    # The gradient of upfirdn2d is again an upfirdn2d, so this is differentiable any number of times.
    @staticmethod
    def forward(ctx, x, f, up, down, padding, flip_filter, gain):
        plugin = _kernels.get_plugin('upfirdn2d')
        f = f.to(device=x.device, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
        y = plugin.upfirdn2d(x, f.contiguous(), up[0], up[1], down[0], down[1], *padding, flip_filter, gain,
                             _kernels.tiled_allowed())
        ctx.save_for_backward(f)
        ctx.params = (x.shape, y.shape, up, down, padding, flip_filter, gain)
        return y

    @staticmethod
    def backward(ctx, dy):
        f, = ctx.saved_tensors
        x_shape, y_shape, up, down, padding, flip_filter, gain = ctx.params
        dx = None
        if ctx.needs_input_grad[0]:
            px0, px1 = _grad_padding(x_shape[3], y_shape[3], up[0], down[0], padding[0], f.shape[-1])
            py0, py1 = _grad_padding(x_shape[2], y_shape[2], up[1], down[1], padding[2], f.shape[0])
            dx = _Upfirdn2dCuda.apply(dy, f, down, up, (px0, px1, py0, py1), not flip_filter, gain)
            assert dx.shape == x_shape
        return dx, None, None, None, None, None, None


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding: Union[int, Sequence[int]] = 0, flip_filter: bool = False, gain: float = 1,
             impl: str = 'cuda') -> torch.Tensor:
    """FIR filter without resampling; the output has the input's size plus the given padding."""
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Union[int, Sequence[int]] = 2, padding: Union[int, Sequence[int]] = 0, flip_filter: bool = False,
               gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Upsample by `up` with filter f; the output is exactly up times the input (plus padding).

    The gain is multiplied by up**2 because zero insertion keeps only 1/up**2 of the energy.
    """
    upx, upy = _parse_scaling(up, 'up')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + (fw + upx - 1) // 2, padx1 + (fw - upx) // 2,
         pady0 + (fh + upy - 1) // 2, pady1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down: Union[int, Sequence[int]] = 2, padding: Union[int, Sequence[int]] = 0, flip_filter: bool = False,
                 gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Filter with f and downsample by `down`; the output is exactly 1/down of the input (plus padding)."""
    downx, downy = _parse_scaling(down, 'down')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + (fw - downx + 1) // 2, padx1 + (fw - downx) // 2,
         pady0 + (fh - downy + 1) // 2, pady1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
