"""upfirdn2d reference path against a brute-force loop implementation, plus its wrappers."""

import numpy as np
import pytest
import torch

from helpers import random_upfirdn2d_case
from torch_utils.ops import upfirdn2d


def brute_upfirdn2d(x, f, up, down, pad, flip_filter, gain):
    """Direct evaluation of the definition, one output pixel at a time (numpy, float64)."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    f = np.outer(f, f) if f.ndim == 1 else f
    if flip_filter:  # flip_filter turns the convolution into a correlation
        f = f[::-1, ::-1]
    n, c, h, w = x.shape
    fh, fw = f.shape

    def padded_upsampled(img, j, i):
        ky, kx = j - py0, i - px0  # position in the zero-inserted image
        if not (0 <= ky < h * upy and 0 <= kx < w * upx) or ky % upy or kx % upx:
            return 0.0
        return img[ky // upy, kx // upx]

    out_h = (h * upy + py0 + py1 - fh) // downy + 1
    out_w = (w * upx + px0 + px1 - fw) // downx + 1
    y = np.zeros([n, c, out_h, out_w])
    for b in range(n):
        for ch in range(c):
            for oy in range(out_h):
                for ox in range(out_w):
                    # Valid-mode convolution sample at (oy*downy, ox*downx).
                    acc = 0.0
                    for ty in range(fh):
                        for tx in range(fw):
                            acc += f[ty, tx] * padded_upsampled(x[b, ch], oy * downy + fh - 1 - ty, ox * downx + fw - 1 - tx)
                    y[b, ch, oy, ox] = acc * gain
    return y


@pytest.mark.parametrize('seed', range(40))
def test_matches_brute_force(seed):
    rng = np.random.RandomState(seed)
    shape, f, kwargs = random_upfirdn2d_case(rng)  # 1x2 images of 2-5 x 2-5 pixels, 1-4 taps, padding -2..3
    x = rng.randn(*shape)
    expected = brute_upfirdn2d(x, f, kwargs['up'], kwargs['down'], kwargs['padding'], kwargs['flip_filter'],
                               kwargs['gain'])
    y = upfirdn2d.upfirdn2d(torch.tensor(x), torch.tensor(f), **kwargs)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_int_and_two_value_arguments():
    rng = np.random.RandomState(5)
    x, f = rng.randn(2, 1, 4, 3), rng.randn(3, 2)
    y = upfirdn2d.upfirdn2d(torch.tensor(x), torch.tensor(f), up=2, down=[1, 2], padding=[1, 2])
    np.testing.assert_allclose(y.numpy(), brute_upfirdn2d(x, f, (2, 2), (1, 2), (1, 1, 2, 2), False, 1), rtol=1e-10)


def test_float32_and_channels_last_agree_with_float64():
    rng = np.random.RandomState(6)
    x, f = torch.tensor(rng.randn(2, 3, 8, 6)), upfirdn2d.setup_filter([1, 3, 3, 1])
    expected = upfirdn2d.upsample2d(x, f.double())
    y32 = upfirdn2d.upsample2d(x.float(), f)
    ycl = upfirdn2d.upsample2d(x.float().to(memory_format=torch.channels_last), f)
    np.testing.assert_allclose(y32.numpy(), expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(ycl.numpy(), y32.numpy(), atol=1e-6)


@pytest.mark.parametrize('taps', [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize('factor', [2, 4, [2, 1], [1, 4]])
def test_resample_output_sizes(taps, factor):
    x = torch.randn(1, 2, 8, 4)
    f = upfirdn2d.setup_filter(np.ones(taps))
    fx, fy = (factor, factor) if isinstance(factor, int) else factor
    assert upfirdn2d.upsample2d(x, f, up=factor).shape == (1, 2, 8 * fy, 4 * fx)
    assert upfirdn2d.downsample2d(x, f, down=factor).shape == (1, 2, 8 // fy, 4 // fx)
    assert upfirdn2d.filter2d(x, f).shape == x.shape
    assert upfirdn2d.filter2d(x, f, padding=[1, 2, 3, 4]).shape == (1, 2, 15, 7)


def test_constant_image_keeps_its_level_inside():
    # A normalized low-pass filter has unit DC gain; upsample2d's up**2 gain undoes zero insertion.
    x = torch.full([1, 1, 8, 8], 3.0, dtype=torch.float64)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    up = upfirdn2d.upsample2d(x, f)
    down = upfirdn2d.downsample2d(x, f)
    np.testing.assert_allclose(up[..., 2:-2, 2:-2].numpy(), 3.0, rtol=1e-12)
    np.testing.assert_allclose(down[..., 1:-1, 1:-1].numpy(), 3.0, rtol=1e-12)


def test_setup_filter():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    np.testing.assert_allclose(f.numpy(), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64, rtol=1e-6)
    assert upfirdn2d.setup_filter(np.ones(8)).shape == (8,)  # long 1-D filters stay separable
    assert upfirdn2d.setup_filter([1, 2], separable=True).shape == (2,)
    assert upfirdn2d.setup_filter(None).shape == (1, 1)
    np.testing.assert_allclose(upfirdn2d.setup_filter([1, 2], separable=True, gain=4).numpy(), [2 / 3, 4 / 3], rtol=1e-6)
    np.testing.assert_allclose(upfirdn2d.setup_filter([[1, 2], [3, 4]], flip_filter=True, normalize=False).numpy(),
                               [[4, 3], [2, 1]])


@pytest.mark.slow
def test_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    for f in (torch.randn(3, 2, dtype=torch.float64), torch.randn(3, dtype=torch.float64)):
        fn = lambda x: upfirdn2d.upfirdn2d(x, f, up=[2, 1], down=[1, 2], padding=[1, -1, 2, 0], gain=1.5)
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize('seed', range(12))
def test_gradients_match_autograd_through_the_convolution(seed):
    # On the CPU the reference path's gradient is the adjoint upfirdn2d (its double backward is then another
    # upfirdn2d, not torch's per-channel loop); it must equal what autograd derives from the plain ops, to first
    # and second order.
    rng = np.random.RandomState(seed)
    shape, f, kwargs = random_upfirdn2d_case(rng)
    x = torch.from_numpy(rng.randn(*shape)).requires_grad_(True)
    f = torch.from_numpy(f)
    dy = torch.from_numpy(rng.randn(*upfirdn2d.upfirdn2d(x.detach(), f, **kwargs).shape)).requires_grad_(True)
    v = torch.from_numpy(rng.randn(*shape))
    args = ([kwargs['up']] * 2 if isinstance(kwargs['up'], int) else kwargs['up'],
            [kwargs['down']] * 2 if isinstance(kwargs['down'], int) else kwargs['down'],
            upfirdn2d._parse_padding(kwargs['padding']), kwargs.get('flip_filter', False), kwargs.get('gain', 1))
    grads = []
    for fn in (lambda x: upfirdn2d.upfirdn2d(x, f, **kwargs), lambda x: upfirdn2d._upfirdn2d_ref(x, f, *args)):
        dx, = torch.autograd.grad((fn(x) * dy).sum(), x, create_graph=True)
        ddy, = torch.autograd.grad((dx * v).sum(), dy)  # the backward, differentiated again (R1, path length)
        grads.append((dx.detach(), ddy))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-12)


def test_bad_arguments():
    x, f = torch.zeros(1, 1, 4, 4), upfirdn2d.setup_filter([1, 1])
    with pytest.raises(ValueError, match='padding'):
        upfirdn2d.upfirdn2d(x, f, padding=[1, 2, 3])
    with pytest.raises(ValueError, match='up'):
        upfirdn2d.upfirdn2d(x, f, up=0)
    with pytest.raises(ValueError, match='empty'):
        upfirdn2d.upfirdn2d(x, f, padding=-4)
    with pytest.raises(ValueError, match='4-D'):
        upfirdn2d.upfirdn2d(torch.zeros(4, 4), f)
