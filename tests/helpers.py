"""Helpers more than one test module needs: where the compat fixture lives, image folders, random op cases.

(Training runs have their own module, helpers_training.py; the local HTTP server is in helpers_http.py.)
"""
import json
import os

import PIL.Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The one setting for the reference checkpoint of the original code: $SG2_COMPAT_DIR, else the shared folder
# beside the checkout (read-only, never inside the repository). Tests get it from the `compat_dir` fixture.
COMPAT_DIR = os.environ.get("SG2_COMPAT_DIR", os.path.join(os.path.dirname(ROOT), "shared", "compat"))


def require_compat_dir(folder=COMPAT_DIR):
    """`folder` if it holds the compat fixture; else the test skips, or fails under CI=true (as CI services set
    it), so that a CI run cannot pass with the tests against the original code silently skipped."""
    import pytest
    if not os.path.isfile(os.path.join(folder, "tiny_64x32.pkl")):
        message = f"compat fixtures not found in {folder} (set SG2_COMPAT_DIR)"
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}; with CI=true the tests against the original code must run", pytrace=False)
        pytest.skip(message)
    return folder


_MEASURED = ("import json, resource, subprocess, sys, time\n"
             "start = time.time()\n"
             "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(json.dumps(dict(status=proc.returncode, output=proc.stdout + proc.stderr, seconds=time.time() - start,"
             " peak_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)))\n")


def run_tool(script, args, env=None, timeout=600, file_size_limit=None):
    """Run a command-line tool of the repository (e.g. 'generate.py') as a fresh child of a fresh wrapper process,
    whose RUSAGE_CHILDREN then holds the tool's own peak memory. Returns dict(status, output, seconds, peak_mb).
    `file_size_limit` (bytes, RLIMIT_FSIZE) stands in for a full disk: writes past it fail with EFBIG."""
    import resource
    import subprocess
    import sys

    def limit():
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, **(env or {}))
    env.pop("SG2_VERBOSE", None)
    proc = subprocess.run([sys.executable, "-c", _MEASURED, sys.executable, os.path.join(ROOT, script), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def write_image_folder(folder, images, labels=None):
    """Save {relative name: HWC uint8 array} as image files under `folder` (sub-folders as the names say),
    with a dataset.json of `labels` when given; returns the folder."""
    os.makedirs(folder, exist_ok=True)
    for name, array in images.items():
        path = os.path.join(folder, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        PIL.Image.fromarray(array).save(path)
    if labels is not None:
        with open(os.path.join(folder, "dataset.json"), "w") as f:
            json.dump({"labels": labels}, f)
    return folder


def random_upfirdn2d_case(rng, max_taps=5, separable_odds=2, batch=((1, 2), (2, 3)), height=(2, 6), width=(2, 6),
                          pad=(-2, 4)):
    """One random upfirdn2d call: (x shape, filter as a numpy array, kwargs of upfirdn2d).

    Up and down factors 1-3 per axis; a separable filter one time in `separable_odds`, each side 1 to
    max_taps - 1 taps; (N, C), height, width and each padding drawn from the given [low, high) ranges,
    then the padding grown until the output is not empty.
    """
    up = [int(rng.randint(1, 4)), int(rng.randint(1, 4))]
    down = [int(rng.randint(1, 4)), int(rng.randint(1, 4))]
    separable = rng.randint(separable_odds) == 0
    fshape = [int(rng.randint(1, max_taps))] if separable else [int(rng.randint(1, max_taps)),
                                                                int(rng.randint(1, max_taps))]
    shape = [int(rng.randint(*batch[0])), int(rng.randint(*batch[1])), int(rng.randint(*height)),
             int(rng.randint(*width))]
    padding = [int(p) for p in rng.randint(pad[0], pad[1], size=4)]
    fh, fw = (fshape[0], fshape[0]) if separable else fshape
    while shape[2] * up[1] + padding[2] + padding[3] < fh or shape[3] * up[0] + padding[0] + padding[1] < fw:
        padding = [p + 1 for p in padding]
    kwargs = dict(up=up, down=down, padding=padding, flip_filter=bool(rng.randint(2)), gain=float(rng.uniform(0.5, 2)))
    return shape, rng.randn(*fshape), kwargs


def quick_every(values, step, several_names=False):
    """Parameters for pytest.mark.parametrize (or fixture params): every step-th one also runs in the quick loop
    (`pytest -m "not slow"`), the others are marked slow; `make test` runs them all. With several_names, each
    value is a tuple holding one value per parameter name."""
    import pytest
    return [value if i % step == 0 else pytest.param(*(value if several_names else (value,)), marks=pytest.mark.slow)
            for i, value in enumerate(values)]
