"""`python -m torch_utils.ops`: report the build toolchain, build both kernels, and say whether they work.

Exit status 0 only if both extensions built and imported (and, with a GPU, agree with the
reference paths on a small input).
"""

import os
import shutil
import sys
import time

import torch

from torch_utils import custom_ops
from torch_utils.ops import bias_act, upfirdn2d


def _line(label, value):
    print(f'{label:<22} {value}')


def _toolchain_report():
    _line('python', sys.version.split()[0])
    _line('torch', f'{torch.__version__} (CUDA {torch.version.cuda})')
    try:
        home, how = custom_ops.find_cuda_home()
        _line('CUDA_HOME', f'{home}  [{how}]')
        _line('nvcc', f'{custom_ops.nvcc_version(home)}  ({os.path.join(home, "bin", "nvcc")})')
    except custom_ops.BuildError as e:
        _line('CUDA_HOME', f'NOT FOUND: {e}')
    try:
        path, version = custom_ops._compiler()
        _line('C++ compiler', f'{path}  ({version})')
    except custom_ops.BuildError as e:
        _line('C++ compiler', f'NOT FOUND: {e}')
    ninja = shutil.which('ninja')
    if ninja is None:
        try:
            ninja = os.path.join(custom_ops._ninja_dir(), 'ninja')
        except custom_ops.BuildError as e:
            ninja = f'NOT FOUND: {e}'
    _line('ninja', ninja)
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        _line('GPU', ', '.join(names))
    else:
        _line('GPU', 'none (the kernels are built but cannot run here)')
    _line('GPU architectures', custom_ops._arch_list())
    _line('build cache', custom_ops.cache_root())
    _line('pip nvidia headers', f'{len(custom_ops.nvidia_pip_include_dirs())} include folders')
    if os.environ.get('SG2_OPS_IMPL'):
        _line('SG2_OPS_IMPL', os.environ['SG2_OPS_IMPL'])


def _smoke_test():
    """With a GPU: both kernels against the reference path on a small input."""
    x = torch.randn(2, 8, 32, 16, device='cuda')
    b = torch.randn(8, device='cuda')
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda')
    pairs = [(bias_act.bias_act(x, b, act='lrelu', clamp=1, impl=i) for i in ('cuda', 'ref')),
             (upfirdn2d.upsample2d(x, f, impl=i) for i in ('cuda', 'ref')),
             (upfirdn2d.downsample2d(x, f, impl=i) for i in ('cuda', 'ref'))]
    return max(float((a - r).abs().max()) for a, r in (tuple(p) for p in pairs))


def main():
    _toolchain_report()
    ok = True
    for name in custom_ops.OPS_PLUGINS:
        t0 = time.time()
        try:
            module = custom_ops.build_ops_plugin(name, force=True)
            _line(f'kernel {name}', f'OK ({time.time() - t0:.1f} s) {module.__file__}')
        except custom_ops.BuildError as e:
            _line(f'kernel {name}', f'FAILED: {e}')
            ok = False
    if ok and torch.cuda.is_available():
        err = _smoke_test()
        _line('GPU check', f'max |kernel - reference| = {err:.2e}')
        ok = err < 1e-4
    print('OK: both kernels built and imported' if ok else 'FAILED: see above')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
