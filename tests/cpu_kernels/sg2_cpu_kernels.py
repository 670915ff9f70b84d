"""Builds the test-only CPU versions of the op kernels (cached like the real extensions)."""

import os

from torch_utils import custom_ops

HERE = os.path.dirname(os.path.abspath(__file__))


def load_cpu_kernels():
    """{'bias_act': module, 'upfirdn2d': module}: the kernels' binding and arithmetic, run on the CPU."""
    modules = {}
    for name, spec in custom_ops.OPS_PLUGINS.items():
        binding = os.path.join(custom_ops.OPS_DIR, spec['sources'][0])
        headers = [binding] + [os.path.join(custom_ops.OPS_DIR, h) for h in spec['headers']]
        modules[name] = custom_ops.load_extension(f'sg2_{name}_cputest', [os.path.join(HERE, f'{name}_cpu.cpp')],
                                                  headers, with_cuda=False)
    return modules
