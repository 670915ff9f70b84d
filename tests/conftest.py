"""Shared pytest setup: the repository root on sys.path, the compat fixture, and the CPU build of the kernels."""
import os
import sys

import pytest
import torch

from helpers import ROOT, require_compat_dir

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "cpu_kernels"))
from sg2_cpu_kernels import load_cpu_kernels  # noqa: E402 (found through the line above)
from torch_utils.ops import _kernels  # noqa: E402 (found through ROOT)


@pytest.fixture(scope="session")
def compat_dir():
    """The folder of the original code's reference checkpoint (helpers.COMPAT_DIR, set by $SG2_COMPAT_DIR).

    Missing, the tests that compare with the original code skip, except under CI=true, where they fail.
    """
    return require_compat_dir()


@pytest.fixture
def one_torch_thread():
    """Run a test single-threaded: tiny networks run fastest so, and the test machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cpu_kernels():
    """{'bias_act': module, 'upfirdn2d': module}: the CUDA kernels' bindings and arithmetic built for the CPU
    (tests/cpu_kernels), built once per session."""
    try:
        return load_cpu_kernels()
    except Exception as e:  # a missing C++ compiler is a setup problem, reported as such
        pytest.fail(f"cannot build the CPU test kernels: {e}")


@pytest.fixture
def use_cpu_kernels(cpu_kernels, monkeypatch):
    """Every op takes its CUDA code path on CPU tensors, through the CPU build of the kernels."""
    monkeypatch.setattr(_kernels, "test_plugins", dict(cpu_kernels))
    monkeypatch.delenv(_kernels.ENV_IMPL, raising=False)
    return cpu_kernels


@pytest.fixture
def cpu_kernel_calls(use_cpu_kernels, monkeypatch):
    """As use_cpu_kernels, and the list of op names whose CPU-built kernel ran, one entry per call: proof that a
    test took the kernels' code path."""
    calls = []

    def spy(name, function):
        return type("Spy", (), {name: staticmethod(lambda *args: calls.append(name) or function(*args))})
    for name, module in use_cpu_kernels.items():  # each module exposes one function, named as the op
        monkeypatch.setitem(_kernels.test_plugins, name, spy(name, getattr(module, name)))
    return calls
