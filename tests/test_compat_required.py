"""The tests against the original code cannot vanish: under CI=true a missing compat fixture fails the run."""
import os
import subprocess
import sys

import pytest

from helpers import ROOT, require_compat_dir

# One test that needs the fixture (two with its pkl/safetensors parameters).
NEEDS_FIXTURE = os.path.join(ROOT, "tests", "test_compat_fixture.py") + "::test_loads_every_key"


def run_pytest(tmp_path, ci):
    env = dict(os.environ, SG2_COMPAT_DIR=str(tmp_path))  # An empty folder: the fixture is missing.
    env.pop("CI", None)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", NEEDS_FIXTURE], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def test_missing_fixture_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"compat fixtures not found in {tmp_path}"):
        require_compat_dir(str(tmp_path))
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=f"compat fixtures not found in {tmp_path}"):
        require_compat_dir(str(tmp_path))


@pytest.mark.slow
def test_missing_fixture_fails_a_ci_run_and_skips_elsewhere(tmp_path):
    failed = run_pytest(tmp_path, ci="true")
    assert failed.returncode != 0, failed.stdout
    assert f"compat fixtures not found in {tmp_path}" in failed.stdout and "2 errors" in failed.stdout, failed.stdout
    skipped = run_pytest(tmp_path, ci=None)
    assert skipped.returncode == 0 and "2 skipped" in skipped.stdout, skipped.stdout
