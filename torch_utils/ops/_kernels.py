"""Decides per call whether an op runs its compiled kernel or its reference path."""

import os

from torch_utils import custom_ops

# SG2_OPS_IMPL=ref forces every op onto its reference path (no build is attempted).
ENV_IMPL = 'SG2_OPS_IMPL'
# SG2_UPFIRDN2D_TILED=0 disables upfirdn2d's shared-memory fast path (generic kernel only).
ENV_TILED = 'SG2_UPFIRDN2D_TILED'

# SG2_UPFIRDN2D_DISPATCH=0 runs upfirdn2d's kernel for every shape (benchmarks/ops.py times the kernel so).
ENV_DISPATCH = 'SG2_UPFIRDN2D_DISPATCH'

# Plain filtering (up = down = 1) of at least this many elements runs as fast or faster in cuDNN's depthwise
# convolution (the reference path) than in the kernel: 0.64-0.99x for every such call from 64x32 up in the
# SHHQ networks at batch 4 on an H100 (benchmarks/RESULTS.md), while smaller ones run 1.5-4x faster in the kernel.
UPFIRDN2D_REF_MIN_ELEMENTS = 1 << 22

_plugins = {}       # name -> loaded CUDA extension, or None after a failed build (never retried)
test_plugins = {}   # name -> CPU build of the same kernel code; set by tests only (tests/cpu_kernels)


def forced_ref():
    return os.environ.get(ENV_IMPL, '').strip().lower() in ('ref', 'reference', 'torch')


def tiled_allowed():
    return os.environ.get(ENV_TILED, '1').strip() not in ('0', 'false', 'no')


def check_impl(impl):
    if impl not in ('cuda', 'ref'):
        raise ValueError(f"impl={impl!r}: expected 'cuda' or 'ref'")


def get_plugin(name):
    """The compiled extension `name` ('bias_act' or 'upfirdn2d'), or None if it cannot be built."""
    if name in test_plugins:
        return test_plugins[name]
    if name not in _plugins:
        _plugins[name] = custom_ops.get_ops_plugin(name)
    return _plugins[name]


def plugin_for(name, impl, *tensors):
    """The extension to use for this call, or None to use the reference path."""
    check_impl(impl)
    if impl != 'cuda' or forced_ref():
        return None
    tensors = [t for t in tensors if t is not None]
    if name in test_plugins and not any(t.is_cuda for t in tensors):
        return test_plugins[name]
    if not all(t.is_cuda for t in tensors):
        return None
    return get_plugin(name)


def upfirdn2d_prefers_reference(numel, up, down):
    """True where upfirdn2d's reference path is the faster one for a CUDA tensor: large plain filtering."""
    if os.environ.get(ENV_DISPATCH, '1').strip().lower() in ('0', 'false', 'no'):
        return False
    return tuple(up) == (1, 1) and tuple(down) == (1, 1) and numel >= UPFIRDN2D_REF_MIN_ELEMENTS
