"""The build helper: the CUDA extensions compile and import without a GPU (acceptance 1),
a broken toolchain gives one warning and no retries (acceptance 2), toolkit discovery,
failure caching and the build lock."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from torch_utils import custom_ops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_python(code, env_updates, timeout=600):
    env = dict(os.environ, PYTHONPATH=REPO, **env_updates)
    env.pop('SG2_OPS_IMPL', None)
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_cuda_extensions_compile_and_import():
    # Slow the first time (minutes on 2 cores); cached by source hash afterwards.
    try:
        custom_ops.find_cuda_home()
    except custom_ops.BuildError as e:
        pytest.skip(f'no CUDA toolkit on this machine: {e}')
    for name in custom_ops.OPS_PLUGINS:
        module = custom_ops.build_ops_plugin(name, force=True)
        assert callable(getattr(module, name))


@pytest.mark.slow
def test_broken_toolkit_warns_once_and_never_retries(tmp_path):
    empty = tmp_path / 'empty_cuda'
    empty.mkdir()
    code = '''
        import json, warnings
        import torch
        from torch_utils import custom_ops
        from torch_utils.ops import _kernels, bias_act, upfirdn2d
        attempts = []
        real_load = custom_ops.load_extension
        custom_ops.load_extension = lambda name, *a, **k: attempts.append(name) or real_load(name, *a, **k)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            for _ in range(3):
                plugins = [_kernels.get_plugin(n) for n in ('bias_act', 'upfirdn2d')]
            x = torch.randn(2, 3, 8, 4)
            y = upfirdn2d.upsample2d(bias_act.bias_act(x, torch.zeros(3), act='lrelu'), upfirdn2d.setup_filter([1, 3, 3, 1]))
        messages = [str(w.message) for w in caught if issubclass(w.category, custom_ops.OpsBuildWarning)]
        print(json.dumps(dict(plugins=[p is None for p in plugins], attempts=attempts, messages=messages,
                              shape=list(y.shape))))
    '''
    out = _run_python(code, dict(CUDA_HOME=str(empty), TORCH_EXTENSIONS_DIR=str(tmp_path / 'cache')))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['plugins'] == [True, True]
    assert result['attempts'] == ['sg2_bias_act', 'sg2_upfirdn2d']  # once each, not once per call
    assert len(result['messages']) == 1
    assert f'CUDA_HOME={empty}' in result['messages'][0] and 'Fix:' in result['messages'][0]
    assert result['shape'] == [2, 3, 16, 8]  # the reference path still works


def _fake_toolkit(root):
    (root / 'bin').mkdir(parents=True)
    (root / 'include').mkdir()
    (root / 'include' / 'cuda_runtime.h').write_text('')
    nvcc = root / 'bin' / 'nvcc'
    nvcc.write_text('#!/bin/sh\necho "Cuda compilation tools, release 13.0, V13.0.0"\n')
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)


def test_finds_toolkit_behind_nvcc_wrapper_script(tmp_path, monkeypatch):
    toolkit = tmp_path / 'opt' / 'cuda-13.0'
    _fake_toolkit(toolkit)
    wrapper_dir = tmp_path / 'wrappers' / 'bin'
    wrapper_dir.mkdir(parents=True)
    (wrapper_dir.parent / 'include').mkdir()  # the wrapper's parent is NOT a toolkit
    wrapper = wrapper_dir / 'nvcc'
    wrapper.write_text(f'#!/bin/sh\nexec {toolkit}/bin/nvcc "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.delenv('CUDA_HOME', raising=False)
    monkeypatch.delenv('CUDA_PATH', raising=False)
    monkeypatch.setenv('PATH', f'{wrapper_dir}{os.pathsep}/usr/bin:/bin')
    root, how = custom_ops.find_cuda_home()
    assert root == os.path.realpath(toolkit) and 'wrapper' in how
    assert custom_ops.nvcc_version(root) == '13.0'


def test_cuda_home_must_be_a_toolkit(tmp_path, monkeypatch):
    monkeypatch.setenv('CUDA_HOME', str(tmp_path))
    with pytest.raises(custom_ops.BuildError, match='CUDA_HOME'):
        custom_ops.find_cuda_home()
    _fake_toolkit(tmp_path / 'tk')
    monkeypatch.setenv('CUDA_HOME', str(tmp_path / 'tk'))
    assert custom_ops.find_cuda_home()[0] == os.path.realpath(tmp_path / 'tk')


def test_explains_common_failures():
    cause, fix = custom_ops._explain('x.cu:1:10: fatal error: cusparse.h: No such file or directory\n')
    assert 'cusparse.h' in cause and 'nvidia' in fix
    cause, _ = custom_ops._explain('/usr/bin/ld: cannot find -lcudart: No such file\n')
    assert 'cudart' in cause
    cause, _ = custom_ops._explain('#error -- unsupported GNU version! gcc versions later than 13 are not supported!')
    assert 'host compiler' in cause


# A minimal extension that compiles in about a second (no torch headers).
TINY_SOURCE = r'''
#include <Python.h>
#define SG2_CAT2(a, b) a##b
#define SG2_CAT(a, b) SG2_CAT2(a, b)
#define SG2_STR2(a) #a
#define SG2_STR(a) SG2_STR2(a)
static PyModuleDef tiny_def = {PyModuleDef_HEAD_INIT, SG2_STR(TORCH_EXTENSION_NAME), nullptr, -1, nullptr};
PyMODINIT_FUNC SG2_CAT(PyInit_, TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&tiny_def); }
'''


@pytest.mark.slow
def test_concurrent_processes_build_once(tmp_path):
    src = tmp_path / 'tiny.cpp'
    src.write_text(TINY_SOURCE)
    code = f'''
        from torch_utils import custom_ops
        m = custom_ops.load_extension('sg2_tiny_lock_test', [{str(src)!r}], with_cuda=False)
        print('loaded', m.__name__)
    '''
    env = dict(os.environ, PYTHONPATH=REPO, TORCH_EXTENSIONS_DIR=str(tmp_path / 'cache'))
    procs = [subprocess.Popen([sys.executable, '-c', textwrap.dedent(code)], env=env, cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert all('loaded sg2_tiny_lock_test' in o[0] for o in outs)
    assert sum(o[1].count('building the sg2_tiny_lock_test extension') for o in outs) == 1


def test_failed_build_is_recorded_and_reused(tmp_path, monkeypatch):
    src = tmp_path / 'broken.cpp'
    src.write_text('#include <sg2_no_such_header.h>\n' + TINY_SOURCE)
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path / 'cache'))
    with pytest.raises(custom_ops.BuildError, match='sg2_no_such_header.h') as first:
        custom_ops.load_extension('sg2_tiny_broken', [str(src)], with_cuda=False)
    assert os.path.isfile(first.value.log_path)
    with pytest.raises(custom_ops.BuildError, match='recorded'):  # another process would not rebuild
        custom_ops.load_extension('sg2_tiny_broken', [str(src)], with_cuda=False)
