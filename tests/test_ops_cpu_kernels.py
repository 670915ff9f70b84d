"""The CUDA kernels' arithmetic, run on the CPU through a test-only build, against the reference paths.

tests/cpu_kernels compiles the real bindings and the real per-element code of
torch_utils/ops/*_kernel.h with a CPU loop in place of the kernel launch (CONVENTIONS.md,
"Kernels you cannot run here"). Installed as test plugins, they make every op take its
CUDA code path -- autograd functions, gradient padding, separable passes, the tiled
fast path's index math -- on CPU tensors. Only launch configurations are left to the GPU suite.
"""

import os

import numpy as np
import pytest
import torch

import legacy
from helpers import quick_every, random_upfirdn2d_case
from helpers_ops import outputs_to_second_order, small_networks
from torch_utils.ops import _kernels, bias_act, conv2d_resample, upfirdn2d
from training.loss import r1_penalty_from_logits

ACTS = sorted(bias_act.ACTIVATIONS)
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def test_kernel_path_is_taken(use_cpu_kernels, monkeypatch):
    calls = []
    real = use_cpu_kernels['bias_act']
    monkeypatch.setitem(_kernels.test_plugins, 'bias_act', type('Spy', (), {
        'bias_act': staticmethod(lambda *a: calls.append(a[5]) or real.bias_act(*a))}))
    bias_act.bias_act(torch.randn(2, 3), torch.randn(3), act='lrelu')
    assert calls == [0]
    bias_act.bias_act(torch.randn(2, 3), torch.randn(3), act='lrelu', impl='ref')
    monkeypatch.setenv(_kernels.ENV_IMPL, 'ref')
    bias_act.bias_act(torch.randn(2, 3), torch.randn(3), act='lrelu')
    assert calls == [0]


# ----------------------------------------------------------------------------
# bias_act

@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_bias_act_forward(use_cpu_kernels, act, dtype):
    gen = torch.Generator().manual_seed(ACTS.index(act))
    x = (torch.randn(3, 5, 4, 6, generator=gen) * 3).to(dtype)
    b = torch.randn(5, generator=gen).to(dtype)
    for xx in (x, x.to(memory_format=torch.channels_last)):
        for kwargs in (dict(), dict(alpha=0.3, gain=0.8, clamp=1.1)):
            y = bias_act.bias_act(xx, b, act=act, **kwargs)
            r = bias_act.bias_act(xx.double(), b.double(), act=act, impl='ref', **kwargs)
            assert y.dtype == dtype and y.stride() == xx.stride()
            torch.testing.assert_close(y.double(), r, atol=TOL[dtype] * 10, rtol=TOL[dtype])


@pytest.mark.parametrize('act', ACTS)
def test_bias_act_dims_and_no_bias(use_cpu_kernels, act):
    for shape, dim in (([4, 7], 0), ([4, 7], 1), ([5, 3, 2], 2), ([2, 3, 4, 5], 1)):
        x = torch.randn(shape, dtype=torch.float64) * 2
        for b in (torch.randn(shape[dim], dtype=torch.float64), None):
            for kwargs in (dict(), dict(gain=1.3, clamp=0.7), dict(alpha=-0.5, gain=-2.0)):
                y = bias_act.bias_act(x, b, dim=dim, act=act, **kwargs)
                torch.testing.assert_close(y, bias_act.bias_act(x, b, dim=dim, act=act, impl='ref', **kwargs),
                                           atol=1e-12, rtol=1e-10)


def _away_from_kinks(act, gain, clamp, seed, shape=(2, 3, 4, 3)):
    # Inputs whose pre-activation and pre-clamp values keep 1e-3 away from kinks.
    for s in range(seed, seed + 200):
        torch.manual_seed(s)
        x = torch.randn(shape, dtype=torch.float64) * 1.5
        b = torch.randn(shape[1], dtype=torch.float64) * 0.2
        xb = x + b.reshape(1, -1, 1, 1)
        z = bias_act.bias_act(xb, act=act, gain=gain, impl='ref')
        if xb.abs().min() > 1e-3 and (clamp is None or (z.abs() - clamp).abs().min() > 1e-3):
            return x.requires_grad_(True), b.requires_grad_(True)
    raise AssertionError('no suitable inputs')


@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('clamp', quick_every([None, 0.4], 2))
def test_bias_act_first_and_second_derivatives(use_cpu_kernels, act, clamp):
    x, b = _away_from_kinks(act, 0.9, clamp, seed=ACTS.index(act) * 1000)
    fn = lambda impl: (lambda x, b: bias_act.bias_act(x, b, act=act, gain=0.9, clamp=clamp, impl=impl))
    # Against the reference's autograd: gradient and the R1-style gradient of a gradient norm.
    outs = []
    for impl in ('cuda', 'ref'):
        y = fn(impl)(x, b)
        gx, gb = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum(),
                                     [x, b], create_graph=True)
        loss = gx.square().sum() + gb.sum()
        if loss.requires_grad:
            second = torch.autograd.grad(loss, [x, b], allow_unused=True, materialize_grads=True)
        else:  # linear: the gradient does not depend on x
            second = [torch.zeros_like(x), torch.zeros_like(b)]
        outs.append([y, gx, gb] + list(second))
    for k, r in zip(*outs):
        torch.testing.assert_close(k, r, atol=1e-10, rtol=1e-8)
    assert torch.autograd.gradcheck(fn('cuda'), (x, b))
    assert torch.autograd.gradgradcheck(fn('cuda'), (x, b))


def test_bias_act_gradient_channels_last(use_cpu_kernels):
    x, b = _away_from_kinks('swish', 1.0, 0.5, seed=7)
    x = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    for impl in ('cuda', 'ref'):
        y = bias_act.bias_act(x, b, act='swish', clamp=0.5, impl=impl)
        g = torch.autograd.grad(y.square().sum() + y.sum(), [x, b])  # y.sum(): a broadcast (stride 0) gradient
        if impl == 'cuda':
            expected = g
        else:
            torch.testing.assert_close(expected, g)


def test_bias_act_linear_output_may_be_modified_in_place(use_cpu_kernels):
    # The discriminator's residual sum adds into a linear layer's output in place.
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    y = bias_act.bias_act(x, b, act='linear', gain=0.5)
    y.add_(1)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.5))
    torch.testing.assert_close(b.grad, torch.full_like(b, 16.0))


def test_bias_act_checks_operands(cpu_kernels):
    v = torch.randn(2, 3)
    with pytest.raises(RuntimeError, match='b must'):
        cpu_kernels['bias_act'].bias_act(v, torch.randn(2), v[:0], v[:0], v[:0], 0, 1, 3, 0.2, 1.0, -1.0)
    with pytest.raises(RuntimeError, match='x or y'):
        cpu_kernels['bias_act'].bias_act(v, v[0, :0], v[:0], v[:0], v[:0], 1, 1, 3, 0.2, 1.0, -1.0)


# ----------------------------------------------------------------------------
# upfirdn2d

def _random_upfirdn_case(seed):
    rng = np.random.RandomState(seed)
    shape, f, kwargs = random_upfirdn2d_case(rng, max_taps=6, separable_odds=3, batch=((2, 3), (3, 4)),
                                             height=(3, 40), width=(3, 80), pad=(-2, 5))
    return torch.tensor(rng.randn(*shape)), torch.tensor(f), kwargs


@pytest.mark.parametrize('tiled', ['1', '0'])
@pytest.mark.parametrize('seed', range(24))
def test_upfirdn2d_random_cases(use_cpu_kernels, monkeypatch, tiled, seed):
    monkeypatch.setenv(_kernels.ENV_TILED, tiled)
    x, f, kwargs = _random_upfirdn_case(seed)
    expected = upfirdn2d.upfirdn2d(x, f, impl='ref', **kwargs)
    torch.testing.assert_close(upfirdn2d.upfirdn2d(x, f, **kwargs), expected, atol=1e-10, rtol=1e-10)
    x32, f32 = x.float(), f.float()
    torch.testing.assert_close(upfirdn2d.upfirdn2d(x32, f32, **kwargs).double(), expected, atol=1e-4, rtol=1e-4)
    xcl = x32.to(memory_format=torch.channels_last)
    ycl = upfirdn2d.upfirdn2d(xcl, f32, **kwargs)
    assert ycl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ycl.double(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('tiled', ['1', '0'])
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_upfirdn2d_stylegan2_resampling_low_precision(use_cpu_kernels, monkeypatch, tiled, dtype):
    monkeypatch.setenv(_kernels.ENV_TILED, tiled)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 4, 40, 20)
    for op in (lambda x, impl: upfirdn2d.upsample2d(x, f, impl=impl),
               lambda x, impl: upfirdn2d.downsample2d(x, f, impl=impl),
               lambda x, impl: upfirdn2d.filter2d(x, f, padding=1, impl=impl)):
        expected = op(x.to(dtype).double(), 'ref')
        y = op(x.to(dtype), 'cuda')
        assert y.dtype == dtype
        torch.testing.assert_close(y.double(), expected, atol=TOL[dtype] * 10, rtol=TOL[dtype] * 2)


def test_upfirdn2d_dispatch_rule(use_cpu_kernels, monkeypatch):
    # Large plain filtering (up = down = 1) takes the reference path; resampling and small calls the kernel.
    monkeypatch.setattr(_kernels, 'UPFIRDN2D_REF_MIN_ELEMENTS', 2 * 4 * 16 * 8)
    calls = []
    real = use_cpu_kernels['upfirdn2d']
    monkeypatch.setitem(_kernels.test_plugins, 'upfirdn2d', type('Spy', (), {
        'upfirdn2d': staticmethod(lambda *a: calls.append(tuple(a[0].shape)) or real.upfirdn2d(*a))}))
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    large, small = torch.randn(2, 4, 16, 8), torch.randn(2, 4, 8, 8)
    cases = [(large, lambda t: upfirdn2d.filter2d(t, f), False),
             (large, lambda t: upfirdn2d.upfirdn2d(t, f, padding=1, gain=4), False),
             (small, lambda t: upfirdn2d.filter2d(t, f), True),
             (large, lambda t: upfirdn2d.downsample2d(t, f), True),
             (large, lambda t: upfirdn2d.upsample2d(t, f), True)]
    for x, op, kernel_expected in cases:
        calls.clear()
        y = op(x)
        assert bool(calls) == kernel_expected
        torch.testing.assert_close(y, op_ref(op, x), atol=1e-5, rtol=1e-5)
    monkeypatch.setenv(_kernels.ENV_DISPATCH, '0')  # the switch benchmarks/ops.py uses to time the kernel itself
    calls.clear()
    upfirdn2d.filter2d(large, f)
    assert calls
    assert not _kernels.upfirdn2d_prefers_reference(1 << 30, (1, 1), (1, 1))
    monkeypatch.delenv(_kernels.ENV_DISPATCH)
    assert _kernels.upfirdn2d_prefers_reference(1 << 30, (1, 1), (1, 1))
    assert not _kernels.upfirdn2d_prefers_reference(1 << 30, (2, 2), (1, 1))


def op_ref(op, x):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_kernels.ENV_IMPL, 'ref')
        return op(x)


@pytest.mark.parametrize('seed', quick_every(range(6), 3))
def test_upfirdn2d_gradients(use_cpu_kernels, seed):
    x, f, kwargs = _random_upfirdn_case(100 + seed)
    x = x[:1, :2, :6, :5].clone().requires_grad_(True)
    kwargs['padding'] = [max(p, 2) for p in kwargs['padding']]
    fn = lambda x: upfirdn2d.upfirdn2d(x, f, **kwargs)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
    w = torch.randn_like(fn(x))
    g_kernel, = torch.autograd.grad((fn(x) * w).sum(), [x])
    g_ref, = torch.autograd.grad((upfirdn2d.upfirdn2d(x, f, impl='ref', **kwargs) * w).sum(), [x])
    torch.testing.assert_close(g_kernel, g_ref, atol=1e-10, rtol=1e-10)


def test_conv2d_resample_through_kernels(use_cpu_kernels, monkeypatch):
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 4, 8, 4, requires_grad=True)
    w = torch.randn(5, 4, 3, 3, requires_grad=True)
    for kwargs in (dict(up=2, padding=1, flip_weight=False), dict(down=2, padding=1), dict(up=2, down=2, padding=1)):
        outs = []
        for impl in ('cuda', 'ref'):
            monkeypatch.setenv(_kernels.ENV_IMPL, impl)
            y = conv2d_resample.conv2d_resample(x, w, f, **kwargs)
            outs.append([y] + list(torch.autograd.grad(y.square().sum(), [x, w])))
        for k, r in zip(*outs):
            torch.testing.assert_close(k, r, atol=1e-3, rtol=1e-4)


# ----------------------------------------------------------------------------
# Whole networks, to second order: the CPU twin of test_cuda_ops' test_generator_and_discriminator_cuda_vs_ref
# (its force_fp32 variant; the CPU runs float32 throughout). On the 2-core VM the largest difference was 2e-6
# (the image, values up to 3); 1e-5 is 5x that. The GPU test allows 1e-3, since cuDNN's convolutions and TF32
# settings add their own rounding there.


@pytest.mark.slow
def test_generator_and_discriminator_through_kernels_match_the_reference(cpu_kernel_calls, monkeypatch):
    monkeypatch.setenv(_kernels.ENV_DISPATCH, '0')  # the kernel on every shape, as the GPU test runs it
    torch.manual_seed(0)
    G, D = small_networks('cpu')
    z = torch.randn(4, G.z_dim)
    through_kernels = outputs_to_second_order(G, D, z, force_fp32=True)
    assert {'bias_act', 'upfirdn2d'} <= set(cpu_kernel_calls)
    monkeypatch.setenv(_kernels.ENV_IMPL, 'ref')
    reference = outputs_to_second_order(G, D, z, force_fp32=True)
    for name, k, r in zip(['image', 'logits', 'r1', 'd_r1_d_weight'], through_kernels, reference):
        torch.testing.assert_close(k, r, atol=1e-5, rtol=1e-5, msg=name)


# ----------------------------------------------------------------------------
# The original code's outputs, reproduced through the kernels' arithmetic.


@pytest.mark.slow
def test_compat_fixture_through_kernels(use_cpu_kernels, compat_dir):
    with open(os.path.join(compat_dir, 'tiny_64x32.pkl'), 'rb') as fh:
        data = legacy.load_network_pkl(fh)
    expected = np.load(os.path.join(compat_dir, 'tiny_64x32_expected.npz'))
    G, D = data['G_ema'], data['D']
    z = torch.tensor(expected['z'])
    c = torch.zeros(len(z), 0)
    ws = G.mapping(z, c, truncation_psi=0.7)
    img = G.synthesis(ws, noise_mode='const', force_fp32=True)
    np.testing.assert_allclose(img.detach().numpy(), expected['img_const_psi0.7'], atol=1e-3)
    x = torch.tensor(expected['D_input_rand']).requires_grad_(True)
    logits = D(x, c, force_fp32=True)
    np.testing.assert_allclose(logits.detach().numpy(), expected['D_logits_rand'], atol=1e-3)
    np.testing.assert_allclose(r1_penalty_from_logits(logits, x).detach().numpy(), expected['r1_penalty_rand'],
                               rtol=1e-3)
