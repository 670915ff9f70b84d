"""Shared pytest setup: put the repository root on sys.path, and the compat fixture for the tests that need it."""
import sys

import pytest
import torch

from helpers import ROOT, require_compat_dir

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


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
