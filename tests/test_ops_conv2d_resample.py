"""conv2d_resample's fast paths against the naive composition of upfirdn2d and conv2d."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import quick_every
from torch_utils.ops import conv2d_gradfix, conv2d_resample, fma, upfirdn2d


def _pad4(padding):
    if isinstance(padding, int):
        return [padding] * 4
    return list(padding)


def naive_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """Zero-insert, filter, convolve at full resolution, filter, subsample."""
    if not flip_weight:
        w = w.flip([2, 3])
    px0, px1, py0, py1 = _pad4(padding)
    fw, fh = (1, 1) if f is None else (f.shape[-1], f.shape[0])
    # The padding upsample2d/downsample2d add so sizes scale exactly by up and 1/down.
    if up > 1:
        px0, px1, py0, py1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1, py0, py1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    x = upfirdn2d.upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up ** 2,
                            flip_filter=flip_filter, impl='ref')
    x = F.conv2d(x, w, groups=groups)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl='ref')
    return x


FILTERS = {
    'none': None,
    'blur': upfirdn2d.setup_filter([1, 3, 3, 1]).double(),
    'asym': torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=torch.float64),
    'separable': torch.tensor([0.25, 1.0, -0.5], dtype=torch.float64),
}
CASES = list(itertools.product([1, 3], [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1)], [1, [2, 0, 1, 3]], [1, 2],
                               sorted(FILTERS)))


@pytest.mark.parametrize('case', quick_every(range(len(CASES)), 7))  # 7: coprime to every factor of CASES
def test_matches_naive_composition(case):
    k, (up, down), padding, groups, fname = CASES[case]
    f = FILTERS[fname]
    gen = torch.Generator().manual_seed(case)
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, generator=gen)
    w = torch.randn(6, 4 // groups, k, k, dtype=torch.float64, generator=gen)
    for flip_weight, flip_filter in [(True, False), (False, True)]:
        y = conv2d_resample.conv2d_resample(x, w, f, up=up, down=down, padding=padding, groups=groups,
                                            flip_weight=flip_weight, flip_filter=flip_filter)
        expected = naive_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
        assert y.shape == expected.shape
        np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-10, atol=1e-10)


def test_stylegan2_layer_shapes_and_float32():
    # Synthesis layer: 3x3, up=2, padding=1, flip_weight=False. D layer: 3x3, down=2, padding=1.
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 8, 4, 2, dtype=torch.float64)
    w = torch.randn(8, 8, 3, 3, dtype=torch.float64)
    y_up = conv2d_resample.conv2d_resample(x, w, f.double(), up=2, padding=1, flip_weight=False)
    y_down = conv2d_resample.conv2d_resample(x, w, f.double(), down=2, padding=1)
    assert y_up.shape == (2, 8, 8, 4) and y_down.shape == (2, 8, 2, 1)
    y_up32 = conv2d_resample.conv2d_resample(x.float(), w.float(), f, up=2, padding=1, flip_weight=False)
    np.testing.assert_allclose(y_up32.numpy(), y_up.numpy(), atol=1e-4)


@pytest.mark.slow
def test_gradients_twice():
    torch.manual_seed(0)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    for kwargs in (dict(up=2, padding=1, flip_weight=False), dict(down=2, padding=1)):
        fn = lambda x, w: conv2d_resample.conv2d_resample(x, w, f, **kwargs)
        assert torch.autograd.gradcheck(fn, (x, w))
        assert torch.autograd.gradgradcheck(fn, (x, w))


def test_fma_broadcast_gradients():
    torch.manual_seed(0)
    a = torch.randn(2, 3, 4, 1, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 1, 5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 1, 5, dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(fma.fma(a, b, c).detach().numpy(), (a * b + c).detach().numpy(), rtol=1e-12)
    assert torch.autograd.gradcheck(fma.fma, (a, b, c))
    assert torch.autograd.gradgradcheck(fma.fma, (a, b, c))


def test_no_weight_gradients_keeps_second_order_weight_gradient():
    # R1-style: gradient of |d out / d x|^2 with respect to w must be unchanged by the context.
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)

    def penalty_grad():
        with conv2d_gradfix.no_weight_gradients():
            assert conv2d_gradfix.weight_gradients_disabled
            gx, = torch.autograd.grad(conv2d_gradfix.conv2d(x, w, padding=1).square().sum(), [x], create_graph=True)
        return torch.autograd.grad(gx.square().sum(), [w])[0]

    g1 = penalty_grad()
    gx, = torch.autograd.grad(F.conv2d(x, w, padding=1).square().sum(), [x], create_graph=True)
    g2 = torch.autograd.grad(gx.square().sum(), [w])[0]
    assert not conv2d_gradfix.weight_gradients_disabled
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-12)
    assert g1.abs().sum() > 0


def test_conv_transpose2d_wrapper():
    x, w = torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3)
    assert torch.equal(conv2d_gradfix.conv_transpose2d(x, w, stride=2, padding=1),
                       F.conv_transpose2d(x, w, stride=2, padding=1))
