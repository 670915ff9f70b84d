"""Shared pytest setup: put the repository root on sys.path and locate the compat fixtures."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# The reference checkpoint lives beside the checkout (read-only), never inside the repository.
COMPAT_DIR = os.environ.get("SG2_COMPAT_DIR", os.path.join(os.path.dirname(ROOT), "shared", "compat"))


@pytest.fixture(scope="session")
def compat_dir():
    if not os.path.isfile(os.path.join(COMPAT_DIR, "tiny_64x32.pkl")):
        pytest.skip(f"compat fixtures not found in {COMPAT_DIR} (set SG2_COMPAT_DIR)")
    return COMPAT_DIR


@pytest.fixture
def one_torch_thread():
    """Run a test single-threaded: tiny networks run fastest so, and the test machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
