"""bias_act reference path against closed-form formulas, plus float64 gradient checks."""

import math

import numpy as np
import pytest
import torch

from torch_utils.ops import bias_act

SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


# Closed forms written independently of the module under test: (formula, default gain).
FORMULAS = {
    'linear':   (lambda v, a: v,                                                  1.0),
    'relu':     (lambda v, a: np.maximum(v, 0),                                   math.sqrt(2)),
    'lrelu':    (lambda v, a: np.where(v > 0, v, a * v),                          math.sqrt(2)),
    'tanh':     (lambda v, a: np.tanh(v),                                         1.0),
    'sigmoid':  (lambda v, a: _sigmoid(v),                                        1.0),
    'elu':      (lambda v, a: np.where(v > 0, v, np.exp(v) - 1),                  1.0),
    'selu':     (lambda v, a: SELU_SCALE * np.where(v > 0, v, SELU_ALPHA * (np.exp(v) - 1)), 1.0),
    'softplus': (lambda v, a: np.log1p(np.exp(v)),                                1.0),
    'swish':    (lambda v, a: v * _sigmoid(v),                                    math.sqrt(2)),
}


@pytest.mark.parametrize('act', sorted(FORMULAS))
def test_defaults_match_closed_form(act):
    rng = np.random.RandomState(0)
    x, b = rng.randn(2, 3, 5, 4) * 2, rng.randn(3)
    formula, gain = FORMULAS[act]
    expected = formula(x + b.reshape(1, 3, 1, 1), 0.2) * gain
    y = bias_act.bias_act(torch.tensor(x), torch.tensor(b), act=act, impl='ref')
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('act', sorted(FORMULAS))
def test_alpha_gain_clamp_dim(act):
    # Bias along dim 2 of a 3-D tensor; clamp is applied after the gain.
    rng = np.random.RandomState(1)
    x, b = rng.randn(4, 2, 6) * 3, rng.randn(6)
    alpha, gain, clamp = 0.3, 2.5, 1.7
    formula, _ = FORMULAS[act]
    expected = np.clip(formula(x + b, alpha) * gain, -clamp, clamp)
    y = bias_act.bias_act(torch.tensor(x), torch.tensor(b), dim=2, act=act, alpha=alpha, gain=gain, clamp=clamp)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert (np.abs(expected) == clamp).any()  # the test really exercises clamping


def test_activation_table_defaults():
    # Networks (and the code embedded in checkpoints) read default gains from activation_funcs.
    funcs = bias_act.activation_funcs
    assert set(funcs) == set(FORMULAS)
    for act, (_, gain) in FORMULAS.items():
        assert funcs[act].def_gain == pytest.approx(gain)
    assert funcs['lrelu'].def_alpha == pytest.approx(0.2)


def test_no_bias_2d_input():
    x = torch.randn(7, 5, dtype=torch.float64)
    y = bias_act.bias_act(x, None, act='lrelu')
    np.testing.assert_allclose(y.numpy(), np.where(x > 0, x, 0.2 * x) * math.sqrt(2), rtol=1e-12)


@pytest.mark.parametrize('act', sorted(FORMULAS))
@pytest.mark.parametrize('clamp', [None, 0.3])
def test_gradcheck_first_and_second_order(act, clamp):
    fn = lambda x, b: bias_act.bias_act(x, b, act=act, gain=0.7, clamp=clamp)
    # Draw inputs away from the kinks of relu/lrelu and of the clamp, where finite
    # differences and analytic derivatives legitimately disagree.
    for seed in range(100):
        torch.manual_seed(seed)
        x = torch.randn(2, 3, 3, 2, dtype=torch.float64)
        x = (x + 0.1 * x.sign()).requires_grad_(True)
        b = (0.1 * torch.randn(3, dtype=torch.float64)).requires_grad_(True)
        z = bias_act.bias_act(x + b.reshape(1, 3, 1, 1), act=act, gain=0.7).detach()
        if (z.abs() - (clamp or 0)).abs().min() > 1e-3 and (x + b.reshape(1, 3, 1, 1)).abs().min() > 1e-3:
            break
    if clamp is not None:
        assert (z.abs() > clamp).any() and (z.abs() < clamp).any()
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bad_arguments():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match='act'):
        bias_act.bias_act(x, act='gelu')
    with pytest.raises(ValueError, match='shape'):
        bias_act.bias_act(x, torch.zeros(2))
    with pytest.raises(ValueError, match='impl'):
        bias_act.bias_act(x, impl='triton')


def test_cuda_impl_on_cpu_tensor_uses_reference():
    x, b = torch.randn(2, 4, 3, 3), torch.randn(4)
    a = bias_act.bias_act(x, b, act='lrelu', clamp=0.5, impl='cuda')
    r = bias_act.bias_act(x, b, act='lrelu', clamp=0.5, impl='ref')
    assert torch.equal(a, r)


# ----------------------------------------------------------------------------
# bias_act_: the in-place form the CPU generator uses without autograd, worked through in cache-sized slices.


@pytest.mark.parametrize('act', ['lrelu', 'relu', 'linear', 'tanh'])
@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize('batch', [1, 2])
def test_in_place_slices_are_bitwise_the_plain_steps(act, layout, batch, monkeypatch):
    # 130 bytes: several slices along the outermost dimension in memory, the last one shorter.
    monkeypatch.setattr(bias_act, 'CACHE_SLICE_BYTES', 130)
    gen = torch.Generator().manual_seed(batch)
    x = (torch.randn([batch, 5, 7, 3], generator=gen) * 4).contiguous(memory_format=layout)
    b, noise = torch.randn([5], generator=gen), torch.randn([7, 3], generator=gen)
    for kwargs in (dict(), dict(gain=0.7, clamp=1.5), dict(clamp=2.0)):
        for addend in (noise, None):
            for out_dtype in (None, torch.bfloat16):
                plain = x.clone() if addend is None else x.clone().add_(addend)
                expected = bias_act.bias_act(plain, b, act=act, impl='ref', **kwargs).to(out_dtype or x.dtype)
                result = bias_act.bias_act_(x.clone(), b, act=act, addend=addend, out_dtype=out_dtype, **kwargs)
                assert result.dtype == expected.dtype and torch.equal(result, expected)


def test_in_place_form_writes_into_x_and_refuses_autograd():
    x = torch.randn([1, 4, 3, 3])
    assert bias_act.bias_act_(x, torch.ones([4]), act='lrelu') is x
    with pytest.raises(RuntimeError, match='autograd'):
        bias_act.bias_act_(torch.randn([1, 4, 3, 3], requires_grad=True), act='lrelu')
