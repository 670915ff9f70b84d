"""2-D convolution fused with upfirdn2d up/downsampling.

StyleGAN2 paper (Karras et al. 2020), appendix B: upsampling layers run a transposed
convolution and then the [1, 3, 3, 1] low-pass filter; downsampling layers filter first and
then run a strided convolution. The result equals the naive composition
"upsample2d -> conv2d" and "conv2d -> downsample2d" (with the same filter and padding), but
does the convolution at the lower resolution.
"""

from typing import Optional, Sequence, Union

import torch

from . import conv2d_gradfix
from . import upfirdn2d


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    # flip_weight=True is PyTorch's correlation; False flips the kernel (a true convolution).
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    op = conv2d_gradfix.conv_transpose2d if transpose else conv2d_gradfix.conv2d
    return op(x, w, stride=stride, padding=padding, groups=groups)


def _transpose_weight(w, groups):
    # conv2d weight [out, in/groups, kh, kw] -> conv_transpose2d weight [in, out/groups, kh, kw].
    out_ch, in_per_group, kh, kw = w.shape
    if groups == 1:
        return w.transpose(0, 1)
    w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_per_group, out_ch // groups, kh, kw)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1, down: int = 1,
                    padding: Union[int, Sequence[int]] = 0, groups: int = 1, flip_weight: bool = True, flip_filter: bool = False,
                    impl: str = 'cuda') -> torch.Tensor:
    """Convolve x with w, upsampling or downsampling through the FIR filter f.

    x:            [N, C_in, H, W].
    w:            [C_out, C_in / groups, kh, kw].
    f:            filter from upfirdn2d.setup_filter(), or None (box filter of size 1).
    up, down:     integer factors (not both > 1 in StyleGAN2, but allowed).
    padding:      int, [x, y] or [x0, x1, y0, y1], in input pixels after upsampling.
    groups:       as in torch.nn.functional.conv2d.
    flip_weight:  True = correlation (PyTorch's conv2d), False = convolution.
    flip_filter:  passed to upfirdn2d.
    impl:         upfirdn2d implementation, 'cuda' (kernel for CUDA tensors when available) or 'ref'.
    """
    if x.ndim != 4 or w.ndim != 4 or x.dtype != w.dtype:
        raise ValueError('conv2d_resample: x and w must be 4-D tensors of the same dtype')
    if not (isinstance(up, int) and up >= 1 and isinstance(down, int) and down >= 1):
        raise ValueError(f'conv2d_resample: up={up!r} and down={down!r} must be ints >= 1')
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f'conv2d_resample: groups={groups!r} must be an int >= 1')
    kh, kw = w.shape[2], w.shape[3]
    fw, fh = upfirdn2d._get_filter_size(f)
    px0, px1, py0, py1 = upfirdn2d._parse_padding(padding)

    # Padding that upsample2d/downsample2d would add to keep sizes exact multiples.
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]

    # 1x1 kernel and downsampling: resample first, then convolve the smaller image.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, impl=impl)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 kernel and upsampling: convolve the smaller image first, then upsample.
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter, impl=impl)

    # Downsampling: filter at full resolution, then a strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, impl=impl)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling: a strided transposed convolution does zero insertion and convolution at
    # once; the low-pass filter then runs on its output.
    if up > 1:
        w = _transpose_weight(w, groups)
        px0, px1 = px0 - (kw - 1), px1 - (kw - up)
        py0, py1 = py0 - (kh - 1), py1 - (kh - up)
        # Let the transposed convolution crop what it can; upfirdn2d handles the rest.
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt],
                                gain=up ** 2, flip_filter=flip_filter, impl=impl)
        if down > 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
        return x

    # No resampling and symmetric non-negative padding: plain conv2d.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # Anything else: pad (or crop) with upfirdn2d, then an unpadded convolution.
    x = upfirdn2d.upfirdn2d(x, None, padding=pad, impl=impl)
    return _conv(x, w, groups=groups, flip_weight=flip_weight)
