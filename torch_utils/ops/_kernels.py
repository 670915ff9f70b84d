"""Decides per call whether an op runs its compiled CUDA kernel or its reference path."""

import os

# Environment override: SG2_OPS_IMPL=ref forces every op onto its reference path.
ENV_IMPL = 'SG2_OPS_IMPL'

_plugins = {}  # name -> loaded module, or None after a failed build (never retried)


def forced_ref():
    return os.environ.get(ENV_IMPL, '').strip().lower() in ('ref', 'reference', 'torch')


def check_impl(impl):
    if impl not in ('cuda', 'ref'):
        raise ValueError(f"impl={impl!r}: expected 'cuda' or 'ref'")


def get_plugin(name):
    """The compiled extension `name` ('bias_act' or 'upfirdn2d'), or None if it cannot be built."""
    if name not in _plugins:
        from torch_utils import custom_ops  # local import: ops stay importable without it
        _plugins[name] = custom_ops.get_ops_plugin(name)
    return _plugins[name]


def plugin_for(name, impl, *tensors):
    """The extension to use for this call, or None to use the reference path."""
    check_impl(impl)
    if impl != 'cuda' or forced_ref():
        return None
    if not all(t.is_cuda for t in tensors if t is not None):
        return None
    return get_plugin(name)
