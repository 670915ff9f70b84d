"""Fused bias + activation + gain + clamp: the per-layer nonlinearity of StyleGAN2.

StyleGAN2 paper (Karras et al. 2020), appendix B: every layer adds a bias, applies leaky
ReLU (alpha 0.2) scaled by sqrt(2) to keep the signal magnitude (equalized learning rate),
and StyleGAN2-ADA clamps the result (`conv_clamp`) so fp16 layers cannot overflow.
"""

import math
from types import SimpleNamespace
from typing import Optional

import torch

from . import _kernels

# SELU constants (Klambauer et al. 2017).
SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def _spec(func, def_alpha, def_gain, kernel_id, smooth, func_=None):
    # func_: the in-place form of func, where PyTorch has one (used without autograd only).
    return SimpleNamespace(func=func, def_alpha=def_alpha, def_gain=def_gain, kernel_id=kernel_id, smooth=smooth,
                           has_2nd_grad=smooth, func_=func_)


def _linear(x, a):
    return x


# Activation table. `kernel_id` is the activation's number in bias_act_kernel.h; `smooth`
# says whether the second derivative is nonzero (piecewise linear ones have none).
ACTIVATIONS = {
    'linear':   _spec(_linear,                                         0.0, 1.0,          1, False, _linear),
    'relu':     _spec(lambda x, a: torch.relu(x),                      0.0, math.sqrt(2), 2, False,
                      lambda x, a: x.relu_()),
    'lrelu':    _spec(lambda x, a: torch.nn.functional.leaky_relu(x, a), 0.2, math.sqrt(2), 3, False,
                      lambda x, a: torch.nn.functional.leaky_relu_(x, a)),
    'tanh':     _spec(lambda x, a: torch.tanh(x),                      0.0, 1.0,          4, True),
    'sigmoid':  _spec(lambda x, a: torch.sigmoid(x),                   0.0, 1.0,          5, True),
    'elu':      _spec(lambda x, a: torch.nn.functional.elu(x),         0.0, 1.0,          6, True),
    'selu':     _spec(lambda x, a: torch.nn.functional.selu(x),        0.0, 1.0,          7, True),
    'softplus': _spec(lambda x, a: torch.nn.functional.softplus(x),    0.0, 1.0,          8, True),
    'swish':    _spec(lambda x, a: torch.sigmoid(x) * x,               0.0, math.sqrt(2), 9, True),
}
activation_funcs = ACTIVATIONS  # the ecosystem's name: networks read activation_funcs[act].def_gain
# The ecosystem's name for the table: the networks modules embedded in real checkpoints read
# `bias_act.activation_funcs[name].def_gain`.
activation_funcs = ACTIVATIONS


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = 'linear', alpha: Optional[float] = None,
             gain: Optional[float] = None, clamp: Optional[float] = None, impl: str = 'cuda') -> torch.Tensor:
    """y = clamp(act(x + b) * gain, -clamp, clamp), with b broadcast along dimension `dim`.

    x:      input tensor of any shape.
    b:      bias, 1-D of length x.shape[dim], or None.
    dim:    the dimension of x that b runs along (the channel dimension).
    act:    one of ACTIVATIONS.
    alpha:  negative slope of 'lrelu' (default 0.2); ignored by the others.
    gain:   output scale (default: the activation's, sqrt(2) for relu/lrelu/swish, else 1).
    clamp:  clamp the output to [-clamp, clamp] after the gain; None = no clamping.
    impl:   'cuda' = compiled kernel for CUDA tensors when available, 'ref' = PyTorch ops.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError('bias_act: x must be a torch.Tensor')
    if act not in ACTIVATIONS:
        raise ValueError(f'bias_act: act={act!r} is not one of {sorted(ACTIVATIONS)}')
    if not 0 <= dim < x.ndim:
        raise ValueError(f'bias_act: dim={dim} is out of range for a {x.ndim}-D tensor')
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f'bias_act: b has shape {list(b.shape)}, expected [{x.shape[dim]}] (x.shape[{dim}])')
    spec = ACTIVATIONS[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    plugin = _kernels.plugin_for('bias_act', impl, x, b)
    if plugin is not None:
        return _BiasActCuda.apply(x, b, dim, act, alpha, gain, clamp)
    return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)


def _bias_act_ref(x, b, dim, spec, alpha, gain, clamp):
    # Plain PyTorch ops: autograd supplies first and second derivatives.
    if not _needs_graph(x, b):
        return _bias_act_ref_inplace(x, b, dim, spec, alpha, gain, clamp)
    if b is not None:
        x = x + _along(b, dim, x.ndim)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _needs_graph(*tensors):
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _bias_act_ref_inplace(x, b, dim, spec, alpha, gain, clamp):
    # Without autograd: the same operations in the same order, each one after the first writing into the
    # tensor the first one made, so a large feature map is not allocated (and page-faulted) four times.
    # The values are bitwise those of the out-of-place steps.
    own = False  # does x hold a tensor made here (never the caller's)?
    if b is not None:
        x = x + _along(b, dim, x.ndim)
        own = True
    if own and spec.func_ is not None:
        x = spec.func_(x, alpha)
    elif spec.func is not _linear:
        x = spec.func(x, alpha)
        own = True
    if gain != 1:
        x = x.mul_(gain) if own else x * gain
        own = True
    if clamp >= 0:
        x = x.clamp_(-clamp, clamp) if own else x.clamp(-clamp, clamp)
    return x


# ----------------------------------------------------------------------------
# CUDA path. The kernel has three modes (see bias_act_kernel.h):
#   0: y  = clamp(f(x + b) * gain)
#   1: dx = dy * gain * f'(x + b) * [|y| < clamp]
#   2: dx = g * dy * gain * f''(x + b) * [|y| < clamp]   (second derivative, smooth f only)
# For the piecewise linear activations f' is read from the sign of y, so x need not be kept.

def _uses_y_for_slope(act, alpha, gain):
    # sign(y) == sign(x + b) holds for relu/lrelu/linear only while gain > 0 and alpha >= 0.
    return not ACTIVATIONS[act].smooth and gain > 0 and alpha >= 0


def _is_dense(t):
    return t.is_contiguous() or (t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last))


def _dense_like(t, ref):
    # The kernel walks memory linearly, so every operand must share one dense layout.
    if t is None or t.stride() == ref.stride():
        return t
    return torch.empty_like(ref).copy_(t)


def _run_kernel(mode, v, x, b, y, d, dim, act, alpha, gain, clamp):
    plugin = _kernels.get_plugin('bias_act')
    # The first dense operand sets the layout, so a broadcast (stride-0) gradient costs one copy.
    ref = next((t for t in (v, x, y) if t is not None and _is_dense(t)), None)
    ref = ref if ref is not None else v.contiguous()
    v, x, y, d = (_dense_like(t, ref) for t in (v, x, y, d))
    empty = v.new_empty([0])
    b = b.to(v.dtype).contiguous() if b is not None else empty
    return plugin.bias_act(v, b, empty if x is None else x, empty if y is None else y, empty if d is None else d,
                           mode, dim, ACTIVATIONS[act].kernel_id, alpha, gain, clamp)


def _sum_except(t, dim):
    return t.sum([i for i in range(t.ndim) if i != dim])


class _BiasActCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, act, alpha, gain, clamp):
        y = _run_kernel(0, x, None, b, None, None, dim, act, alpha, gain, clamp)
        # Keep only what the gradient reads, so callers may modify outputs in place where the
        # original ops allowed it (e.g. the residual `y.add_(x)` after a linear layer).
        keep_x = not _uses_y_for_slope(act, alpha, gain)
        keep_y = clamp >= 0 or (not keep_x and act != 'linear')
        ctx.params = (dim, act, alpha, gain, clamp)
        ctx.save_for_backward(x if keep_x else None, b if keep_x else None, y if keep_y else None)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, b, y = ctx.saved_tensors
        dim = ctx.params[0]
        dx = db = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            dx = _BiasActCudaGrad.apply(dy, x, b, y, *ctx.params)
        if ctx.needs_input_grad[1]:
            db = _sum_except(dx, dim)
        return dx, db, None, None, None, None, None


class _BiasActCudaGrad(torch.autograd.Function):
    # dx as a function of (dy, x, b): linear in dy, so its own backward reuses mode 1.
    @staticmethod
    def forward(ctx, dy, x, b, y, dim, act, alpha, gain, clamp):
        ctx.params = (dim, act, alpha, gain, clamp)
        ctx.save_for_backward(dy, x, b, y)
        return _run_kernel(1, dy, x, b, y, None, dim, act, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, g):
        dy, x, b, y = ctx.saved_tensors
        dim, act = ctx.params[:2]
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            d_dy = _BiasActCudaGrad.apply(g, x, b, y, *ctx.params)
        if ACTIVATIONS[act].smooth and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = _run_kernel(2, g, x, b, y, dy, *ctx.params)
            if ctx.needs_input_grad[2]:
                d_b = _sum_except(d_x, dim)
        return d_dy, d_x, d_b, None, None, None, None, None, None


# Size of the slices bias_act_() works through: each slice takes its elementwise steps while it is still in a
# core's L2 cache (512 KB measured fastest on the 2-core AMD EPYC of benchmarks/RESULTS.md, for 1-2 threads).
CACHE_SLICE_BYTES = 1 << 19


def bias_act_(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, addend=None, out_dtype=None):
    """bias_act() that writes into x, without autograd: x = clamp(act((x + addend) + b) * gain).

    addend:     optional tensor broadcast to x and added first (the noise of a synthesis layer).
    out_dtype:  optional dtype of the result (e.g. bfloat16); the steps still run in x's dtype.
    The values are bitwise those of bias_act(x.add_(addend), b, ...).to(out_dtype). A large x is worked
    through in slices of about CACHE_SLICE_BYTES along its outermost dimension in memory, so the steps read
    and write main memory once instead of once each (3-4x faster on a 33 MB feature map). Returns x, or the
    new out_dtype tensor.
    """
    if _needs_graph(x, b, addend):
        raise RuntimeError('bias_act_: writes in place, so it cannot run where autograd records the graph')
    spec = ACTIVATIONS[act]
    out = x if out_dtype in (None, x.dtype) else torch.empty_like(x, dtype=out_dtype)
    if spec.func_ is None:  # no in-place form of this activation: the plain path
        x = x.add_(addend) if addend is not None else x
        return out.copy_(bias_act(x, b, dim, act, alpha, gain, clamp, 'ref'))
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    operands = [t.expand(x.shape) for t in (addend, _along(b, dim, x.ndim)) if t is not None]
    outer = max(range(x.ndim), key=lambda i: (x.shape[i] > 1, x.stride(i)))  # outermost in memory
    step = max(1, CACHE_SLICE_BYTES // max(1, x.stride(outer) * x.element_size()))
    for start in range(0, x.shape[outer], step):
        length = min(step, x.shape[outer] - start)
        piece = x.narrow(outer, start, length)
        for operand in operands:
            piece.add_(operand.narrow(outer, start, length))
        spec.func_(piece, alpha)
        if gain != 1:
            piece.mul_(gain)
        if clamp is not None and clamp >= 0:
            piece.clamp_(-clamp, clamp)
        if out is not x:
            out.narrow(outer, start, length).copy_(piece)
    return out


def _along(b, dim, ndim):
    # A 1-D bias shaped to broadcast along dimension `dim` of an ndim-D tensor.
    return None if b is None else b.reshape([-1 if i == dim else 1 for i in range(ndim)])
