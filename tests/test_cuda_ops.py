"""GPU suite: the CUDA kernels against the reference paths (skipped without a GPU).

Run on a GPU machine with:  PYTHONPATH=. python3 -m pytest tests/test_cuda_ops.py -q
The kernels build on first use (about a minute); a build failure here is a test failure.
"""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import random_upfirdn2d_case
from helpers_ops import outputs_to_second_order, small_networks
from torch_utils import custom_ops
from torch_utils.ops import _kernels, bias_act, conv2d_resample, upfirdn2d

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTS = sorted(bias_act.ACTIVATIONS)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Relative tolerance per dtype (_close allows 10x that in absolute terms, and `scale` more for long sums). The
# kernels round once per output where the reference path rounds after each of its ops, so half precisions get
# two units of their rounding (eps: float16 9.8e-4, bfloat16 7.8e-3); float32 gets 1e-5, about 80 eps, for the
# other summation order of filters of up to 81 taps with a gain; float64 1e-10. The H100 run recorded in
# benchmarks/RESULTS.md (176 passed) used these values.
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.fixture(scope='module', autouse=True)
def kernels():
    os.environ.pop(_kernels.ENV_IMPL, None)
    os.environ[_kernels.ENV_DISPATCH] = '0'  # kernel-vs-reference tests run the kernel on every shape
    # Exact fp32 convolutions, so network comparisons see only the ops' differences.
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        modules = {name: custom_ops.build_ops_plugin(name) for name in custom_ops.OPS_PLUGINS}
    except custom_ops.BuildError as e:
        pytest.fail(f'CUDA kernels failed to build: {e}')
    assert _kernels.get_plugin('bias_act') is not None and _kernels.get_plugin('upfirdn2d') is not None
    yield modules
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _close(actual, expected, dtype, scale=1.0):
    torch.testing.assert_close(actual.double(), expected.double(), atol=TOL[dtype] * 10 * scale, rtol=TOL[dtype] * scale)


# ----------------------------------------------------------------------------
# bias_act

@pytest.mark.parametrize('act, dtype', list(itertools.product(ACTS, DTYPES)))
def test_bias_act_forward_grid(act, dtype):
    gen = torch.Generator(device='cuda').manual_seed(ACTS.index(act))
    for shape, dim in (([8, 16, 32, 16], 1), ([64, 512], 1), ([3, 5, 7], 2), ([1000003], 0)):
        x = (torch.randn(shape, device='cuda', generator=gen) * 3).to(dtype)
        b = torch.randn(shape[dim], device='cuda', generator=gen).to(dtype)
        layouts = [x, x.to(memory_format=torch.channels_last)] if x.ndim == 4 else [x, x.transpose(0, -1)]
        for xx in layouts:
            bb = b if xx.shape[dim] == b.shape[0] else None
            for kwargs in (dict(), dict(alpha=0.1, gain=0.7, clamp=1.5), dict(clamp=256)):
                y = bias_act.bias_act(xx, bb, dim=dim, act=act, **kwargs)
                r = bias_act.bias_act(xx.double(), None if bb is None else bb.double(), dim=dim, act=act, impl='ref', **kwargs)
                assert y.dtype == dtype and y.shape == xx.shape
                _close(y, r, dtype)


@pytest.mark.parametrize('act', ACTS)
def test_bias_act_gradcheck_float64(act):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 3, device='cuda', dtype=torch.float64)
    x = (x + 0.05 * x.sign()).requires_grad_(True)  # keep off the kinks
    b = torch.zeros(4, device='cuda', dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act.bias_act(x, b, act=act, gain=0.8, clamp=None)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize('act, dtype, clamp', list(itertools.product(ACTS, [torch.float32, torch.float16], [None, 1.0])))
def test_bias_act_first_and_second_derivatives_match_reference(act, dtype, clamp):
    torch.manual_seed(1)
    x0 = torch.randn(4, 32, 16, 8, device='cuda').to(dtype)
    b0 = torch.randn(32, device='cuda').to(dtype)
    # Elements within rounding of a kink or of the clamp may legitimately take the other branch
    # in low precision; give them no weight so they do not count.
    xb = x0.double() + b0.double().reshape(1, -1, 1, 1)
    z = bias_act.bias_act(xb, act=act, impl='ref')
    keep = (xb.abs() > 0.02) & ((z.abs() - (clamp or 0)).abs() > 0.02)
    w = (torch.randn(x0.shape, device='cuda', dtype=torch.float64) * keep).to(dtype)
    results = []
    for impl in ('cuda', 'ref'):
        x, b = x0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        y = bias_act.bias_act(x, b, act=act, clamp=clamp, impl=impl)
        gx, gb = torch.autograd.grad((y * w).sum(), [x, b], create_graph=True)
        loss = gx.float().square().sum()
        second = (torch.autograd.grad(loss, [x, b], allow_unused=True, materialize_grads=True)
                  if loss.requires_grad else [torch.zeros_like(x), torch.zeros_like(b)])
        results.append([y, gx, gb] + list(second))
    for name, k, r in zip(['y', 'dy/dx', 'dy/db', 'd2/dx2', 'd2/dxdb'], *results):
        err = (k.double() - r.double()).abs().max() / r.double().abs().max().clamp_min(1e-12)
        # Relative to the largest value; 50x: the second derivatives chain two roundings in the low precision and
        # sum 4x32x16x8 terms per bias entry.
        assert err < TOL[dtype] * 50, (name, float(err))


# ----------------------------------------------------------------------------
# upfirdn2d

def _random_case(rng, big=False):
    size = (1, 200) if big else (1, 20)
    return random_upfirdn2d_case(rng, max_taps=9, separable_odds=3, batch=((1, 4), (1, 9)), height=size, width=size,
                                 pad=(-3, 6))


@pytest.mark.parametrize('tiled', ['1', '0'])
@pytest.mark.parametrize('seed', range(40))
def test_upfirdn2d_random_grid(monkeypatch, tiled, seed):
    monkeypatch.setenv(_kernels.ENV_TILED, tiled)
    rng = np.random.RandomState(seed)
    shape, f, kwargs = _random_case(rng, big=seed % 2 == 0)
    x = torch.tensor(rng.randn(*shape), device='cuda')
    f = torch.tensor(f, device='cuda', dtype=torch.float32)
    for dtype in DTYPES:
        for xx in (x.to(dtype), x.to(dtype).to(memory_format=torch.channels_last)):
            y = upfirdn2d.upfirdn2d(xx, f, **kwargs)
            r = upfirdn2d.upfirdn2d(xx.double(), f.double(), impl='ref', **kwargs)
            assert y.dtype == dtype and y.shape == r.shape
            _close(y, r, dtype, scale=4)


@pytest.mark.parametrize('tiled', ['1', '0'])
def test_upfirdn2d_stylegan2_shapes(monkeypatch, tiled):
    # Shapes of the SHHQ 1024x512 configuration (batch 2, thinner channels to stay quick).
    monkeypatch.setenv(_kernels.ENV_TILED, tiled)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda')
    for (c, h, w) in ((512, 8, 4), (128, 128, 64), (32, 1024, 512), (3, 512, 256)):
        x = torch.randn(2, c, h, w, device='cuda')
        for dtype in (torch.float32, torch.float16):
            xx = x.to(dtype)
            for op in (lambda t, i: upfirdn2d.upsample2d(t, f, impl=i),
                       lambda t, i: upfirdn2d.downsample2d(t, f, impl=i),
                       lambda t, i: upfirdn2d.filter2d(t, f, padding=[1, 2, 1, 2], impl=i),
                       lambda t, i: upfirdn2d.upfirdn2d(t, f, padding=[1, 1, 1, 1], gain=4, impl=i)):
                _close(op(xx, 'cuda'), op(xx.double(), 'ref'), dtype, scale=4)


def test_upfirdn2d_many_planes():
    # More image planes than a grid dimension holds (65535): the kernels loop over them.
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda')
    x = torch.randn(2, 40000, 6, 5, device='cuda')
    for op in (lambda t, i: upfirdn2d.upsample2d(t, f, impl=i), lambda t, i: upfirdn2d.downsample2d(t, f, impl=i)):
        _close(op(x, 'cuda'), op(x.double(), 'ref'), torch.float32)


def test_upfirdn2d_gradients():
    rng = np.random.RandomState(3)
    for _ in range(6):
        shape, f, kwargs = _random_case(rng)
        x = torch.tensor(rng.randn(1, 2, min(shape[2], 6), min(shape[3], 6)), device='cuda', requires_grad=True)
        kwargs['padding'] = [max(p, 3) for p in kwargs['padding']]
        f = torch.tensor(f, device='cuda')
        fn = lambda x: upfirdn2d.upfirdn2d(x, f, **kwargs)
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def test_upfirdn2d_dispatch_picks_cudnn_for_large_plain_filtering(monkeypatch):
    # The per-shape dispatch (benchmarks/RESULTS.md): large up=down=1 calls take the reference (cuDNN) path, with
    # the kernel's result and gradient; resampling calls keep the kernel.
    monkeypatch.setenv(_kernels.ENV_DISPATCH, '1')
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda')
    calls = []
    real = _kernels.get_plugin('upfirdn2d')
    monkeypatch.setitem(_kernels._plugins, 'upfirdn2d', type('Spy', (), {
        'upfirdn2d': staticmethod(lambda *a: calls.append(a[0].shape) or real.upfirdn2d(*a))}))
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(4, 128, 256, 128, device='cuda', dtype=dtype, requires_grad=True)  # 2^24 elements
        for op, kernel_expected in ((lambda t: upfirdn2d.upfirdn2d(t, f, padding=2), False),
                                    (lambda t: upfirdn2d.filter2d(t, f), False),
                                    (lambda t: upfirdn2d.downsample2d(t, f), True)):
            calls.clear()
            y = op(x)
            assert bool(calls) == kernel_expected
            monkeypatch.setenv(_kernels.ENV_DISPATCH, '0')
            y_kernel = op(x)
            monkeypatch.setenv(_kernels.ENV_DISPATCH, '1')
            _close(y, y_kernel, dtype, scale=4)
            g, = torch.autograd.grad(y.float().square().sum(), [x])
            g_kernel, = torch.autograd.grad(y_kernel.float().square().sum(), [x])
            _close(g, g_kernel, dtype, scale=16)


def test_conv2d_resample_cuda_vs_ref(monkeypatch):
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda')
    x0 = torch.randn(4, 64, 32, 16, device='cuda')
    w = torch.randn(32, 64, 3, 3, device='cuda') / 24
    for kwargs in (dict(up=2, padding=1, flip_weight=False), dict(down=2, padding=1), dict(padding=1)):
        outs = []
        for impl in ('cuda', 'ref'):
            monkeypatch.setenv(_kernels.ENV_IMPL, impl)
            x = x0.clone().requires_grad_(True)
            y = conv2d_resample.conv2d_resample(x, w, f, **kwargs)
            outs.append([y, torch.autograd.grad(y.square().sum(), [x])[0]])
        for k, r in zip(*outs):
            torch.testing.assert_close(k, r, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------
# Whole networks: impl='cuda' and impl='ref' agree.

@pytest.mark.parametrize('force_fp32', [True, False])
def test_generator_and_discriminator_cuda_vs_ref(monkeypatch, force_fp32):
    torch.manual_seed(0)
    G, D = small_networks('cuda')
    z = torch.randn(4, G.z_dim, device='cuda')
    outs = {}
    for impl in ('cuda', 'ref'):
        monkeypatch.setenv(_kernels.ENV_IMPL, impl)
        outs[impl] = outputs_to_second_order(G, D, z, force_fp32)
    names = ['image', 'logits', 'r1', 'd_r1_d_weight']
    for name, k, r in zip(names, outs['cuda'], outs['ref']):
        assert torch.isfinite(k).all(), name
        if force_fp32:  # 1e-3: the tolerance at which the networks reproduce the original code's outputs
            torch.testing.assert_close(k, r, atol=1e-3, rtol=1e-3, msg=name)
        else:  # fp16 layers round differently in the fused kernel than in the op-by-op reference
            rel = (k - r).abs().mean() / r.abs().mean().clamp_min(1e-8)
            assert rel < 5e-2, (name, float(rel))  # a wrong kernel is off by O(1)


def test_diagnostic_exits_zero():
    out = subprocess.run([sys.executable, '-m', 'torch_utils.ops'], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
