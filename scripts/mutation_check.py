"""Mutation check: break the package on purpose, the way a user would notice, and make sure the tests fail.

Each break is one or more patches (file, exact old text, new text) and the tests that must catch it. For every
break the script patches a scratch copy of the repository (the working tree is never touched), runs those tests
there, and puts the file back. A break "survives" when its tests still pass; the script then exits 1. A patch
whose old text is not in its file exactly once fails loudly ("target text not found"): the code has moved, and
the break must be updated.

Before the breaks, the tests of every selected break run once on the unpatched copy: they must pass, or a
"caught" would mean nothing.

    python scripts/mutation_check.py               # every break (`make mutation`)
    python scripts/mutation_check.py --list        # the breaks and what each one does
    python scripts/mutation_check.py NAME [NAME]   # only these
"""
import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Patch(NamedTuple):
    file: str   # Relative to the repository root.
    old: str    # Exact text, found exactly once in the file.
    new: str


class Break(NamedTuple):
    name: str
    what: str                   # What a user would notice.
    patches: Tuple[Patch, ...]
    tests: Tuple[str, ...]      # pytest arguments: node ids, or a file followed by -k EXPRESSION.


# ----------------------------------------------------------------------------
# The breaks.

NETWORKS = "training/networks.py"
PLAIN_WEIGHTS = "training/checkpoint/plain_weights.py"
STYLESPACE = "latent/stylespace.py"
ROSINALITY_LAYOUT = "training/checkpoint/rosinality_layout.py"
ONNX_EXPORT = "training/checkpoint/onnx_export.py"
METRIC_UTILS = "metrics/metric_utils.py"

BREAKS = (
    Break("ignore_ref_stats", "--ref-stats is ignored: training's FID is measured against the training images",
          (Patch("metrics/metric_utils.py",
                 "    if opts.ref_stats is not None:\n"
                 "        return reference_feature_stats(opts, detector, max_items)\n", ""),),
          ("tests/test_reference_stats.py::test_training_loop_metric_with_ref_stats_equals_the_dataset",)),
    Break("ignore_dtype", "G(z, c, dtype=torch.bfloat16) runs in float32 anyway",
          (Patch(NETWORKS, "    if dtype is not None:\n        return _as_dtype(dtype)\n",
                 "    if dtype is not None:\n        _as_dtype(dtype)\n"),),
          ("tests/test_metrics_speed.py::test_bf16_runs_the_synthesis_in_bf16_is_marked_and_close_to_fp32",)),
    Break("drop_labels_in_D", "a conditional discriminator ignores its labels",
          (Patch(NETWORKS, "            cmap = self.mapping(None, c)\n",
                 "            cmap = self.mapping(None, torch.zeros_like(c))\n"),),
          ("tests/test_networks_aspect.py::test_conditional_nets_use_labels",)),
    Break("noop_scan", "the pickle scan does nothing: hostile structures reach the unpickler",
          (Patch("training/checkpoint/pickle_scan.py",
                 "    machine = _Machine(classify, limits, allow_persistent_ids)\n    reader =",
                 "    return None\n    machine = _Machine(classify, limits, allow_persistent_ids)\n    reader ="),),
          ("tests/test_hostile_loader.py", "-k", "scan")),
    Break("break_seed_to_z", "--seeds=N gives other images than every other tool of the ecosystem",
          (Patch("latent/space.py", "np.random.RandomState(seed).randn(1, z_dim)",
                 "np.random.RandomState(seed + 1).randn(1, z_dim)"),),
          ("tests/test_compat_fixture.py::test_z_follows_seed_convention[pkl]",)),
    Break("skip_resume", "--resume is ignored: the run starts from scratch",
          (Patch("training/training_loop.py",
                 "    if options.resume_pkl is not None:\n        progress = resume.load_weights(",
                 "    if False:\n        progress = resume.load_weights("),),
          ("tests/test_finetune.py::test_exact_resume_of_a_freezed_fine_tuning_run",)),
    Break("drop_demodulation", "no weight demodulation (StyleGAN2 eq. 3): other images from the same checkpoint",
          (Patch(NETWORKS, "        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()\n",
                 "        dcoefs = torch.ones_like(w.square().sum(dim=[2, 3, 4]))\n"),),
          ("tests/test_compat_fixture.py::test_synthesis_matches[pkl-const-1.0]",)),
    Break("swap_grid_rows_cols", "--grid=2x3 makes a contact sheet of 3 rows and 2 columns",
          (Patch("dnnlib/image_grid.py", "    height, width, channels = images[0].shape\n",
                 "    rows, cols = cols, rows\n    height, width, channels = images[0].shape\n"),),
          ("tests/test_generate.py::test_grid_contact_sheet",)),
    Break("write_in_place", "files are written in place: a crash leaves half a snapshot where the last good one was",
          (Patch("dnnlib/output_files.py",
                 "    with atomic_output(path) as tmp:\n        with open(tmp, \"wb\") as f:\n            write_fn(f)\n",
                 "    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)\n"
                 "    if True:\n        with open(path, \"wb\") as f:\n            write_fn(f)\n"),),
          ("tests/test_output_files.py",)),
    Break("truncation_formula", "--trunc pulls towards w instead of w_avg (psi and 1 - psi swapped)",
          (Patch(NETWORKS, "                    x = self.w_avg.lerp(x, truncation_psi)\n",
                 "                    x = x.lerp(self.w_avg, truncation_psi)\n"),),
          ("tests/test_compat_fixture.py::test_mapping_matches[pkl-0.7]",)),
    Break("w_avg_update", "w_avg follows the last batch (decay 1 - beta): truncation pulls to a noisy centre",
          (Patch(NETWORKS, ".lerp(self.w_avg, self.w_avg_beta))", ".lerp(self.w_avg, 1 - self.w_avg_beta))"),),
          ("tests/test_networks_aspect.py::test_w_avg_is_a_moving_average_of_the_mapping_outputs_in_training_only",)),
    Break("const_noise_is_random", "--noise-mode=const draws new noise: the same seed gives other images",
          (Patch(NETWORKS, "            noise = self.noise_const * self.noise_strength\n",
                 "            noise = torch.randn_like(self.noise_const) * self.noise_strength\n"),),
          ("tests/test_compat_fixture.py::test_synthesis_matches[pkl-const-1.0]",)),
    Break("xflip_upside_down", "--mirror flips the training images upside down",
          (Patch("training/dataset.py", "            image = image[:, :, ::-1]\n",
                 "            image = image[:, ::-1, :]\n"),),
          ("tests/test_dataset.py::test_xflip_second_half_is_mirrored",)),
    Break("fid_elementwise_sqrt", "FID takes an element-wise square root instead of the matrix square root",
          (Patch("metrics/frechet_inception_distance.py",
                 "    s = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))\n",
                 "    s = np.sqrt(np.abs(np.dot(sigma_gen, sigma_real)))\n"),),
          ("tests/test_metrics_math.py", "-k", "frechet")),
    Break("r1_gamma_doubled", "--gamma regularises twice as strongly as the original (gamma, not gamma / 2)",
          (Patch("training/loss.py", "loss_Dr1 = penalty * (self.r1_gamma / 2)",
                 "loss_Dr1 = penalty * self.r1_gamma"),),
          ("tests/test_loss.py::test_dboth_is_dmain_plus_dreg_and_gain_scales",)),
    Break("regularise_every_step", "lazy regularisation ignored: R1 and path length run on every step",
          (Patch("training/training_loop.py", "        if run.state.batch_idx % phase.interval == 0:\n",
                 "        if True:\n"),),
          ("tests/test_training.py::test_each_regulariser_runs_every_interval",)),
    Break("lazy_adam_unscaled", "Adam's lr and betas not scaled for lazy regularisation (StyleGAN2 appendix B)",
          (Patch("training/training_loop.py", "        mb_ratio = reg_interval / (reg_interval + 1)\n",
                 "        mb_ratio = 1.0\n"),),
          ("tests/test_training.py::test_lazy_regularisation_scales_adam_as_the_paper_says",)),
    Break("ada_sign", "ADA lowers p when D overfits and raises it when it does not",
          (Patch("training/ada.py", "float(np.sign(rt - target))", "float(np.sign(target - rt))"),),
          ("tests/test_ada.py",)),
    Break("skip_download_sha256", "a download whose SHA-256 does not match is used anyway",
          (Patch("dnnlib/download.py", "    if sha256 is not None and transfer.hasher.hexdigest() != sha256:\n",
                 "    if False:\n"),),
          ("tests/test_download.py::test_wrong_sha256_is_refused_before_unpickling",)),
    Break("allocation_budget_8x", "a checkpoint may make the loader allocate 8x more than its tensors hold",
          (Patch("training/checkpoint/rebuild.py",
                 "    budget = 2 * sum(t.numel() for t in tensors.values()) + BUILD_SLACK_ELEMENTS\n",
                 "    budget = 8 * (2 * sum(t.numel() for t in tensors.values()) + BUILD_SLACK_ELEMENTS)\n"),),
          ("tests/test_hostile_loader.py", "-k", "fc_4096_without_tensors")),
    Break("unbounded_reader", "the scan reads what a pickle declares, not what the file holds (2**60 bytes)",
          (Patch("training/checkpoint/pickle_scan.py", "        if n is None or n < 0 or n > self.left:\n",
                 "        if n is None or n < 0:\n"),),
          ("tests/test_hostile_loader.py", "-k", "huge_declared_bytes")),
    Break("no_tensor_shape_check", "a checkpoint's tensors are loaded without checking their shapes",
          (Patch("training/checkpoint/rebuild.py", "        if tuple(tensors[name].shape) != tuple(shape):\n",
                 "        if False:\n"),),
          ("tests/test_plain_weights.py", "-k", "damaged_or_hostile")),
    Break("any_global_admitted", "the restricted unpickler admits any global: a checkpoint can run a shell command",
          (Patch("training/checkpoint/unpickler.py",
                 "    if (module, name) not in ALLOWED_GLOBALS:\n        return None\n",
                 "    if (module, name) not in ALLOWED_GLOBALS:\n        return pickle_scan.CALL\n"),
           Patch("training/checkpoint/unpickler.py",
                 "        target = ALLOWED_GLOBALS.get((module, name))\n        if target is None:\n",
                 "        target = ALLOWED_GLOBALS.get((module, name))\n        if target is None:\n"
                 "            return super().find_class(module, name)\n        if target is None:\n")),
          ("tests/test_legacy_safety.py::test_shell_payload_is_refused_and_not_run",)),
    Break("run_number_unlocked", "two runs starting at once in one --outdir can take the same run number",
          (Patch("training/launch.py", "    with run_number_lock(outdir):\n", "    with contextlib.nullcontext():\n"),),
          ("tests/test_hostile_cli.py::test_run_numbers_are_claimed_one_at_a_time",)),
    Break("no_equalized_lr", "fully connected layers lose their equalized learning rate gain 1/sqrt(fan_in)",
          (Patch(NETWORKS, "        self.weight_gain = lr_multiplier / np.sqrt(in_features)\n",
                 "        self.weight_gain = lr_multiplier\n"),),
          ("tests/test_compat_fixture.py::test_mapping_matches[pkl-1.0]",)),
    # Features added after the first list: safetensors, S-space edits, the rosinality format, ONNX export.
    Break("safetensors_any_dtype", "a .safetensors of bf16, int8 or bool tensors loads, cast to float32, instead of "
          "being refused",
          (Patch(PLAIN_WEIGHTS, "        if dtype != TENSOR_DTYPE:\n", "        if False:\n"),),
          ("tests/test_hostile_inputs.py", "-k", "other_dtypes")),
    Break("stylespace_mask_ignores_threshold", "edit.py stylespace --statis --threshold edits every channel of the "
          "layer, not those with |strength| > threshold",
          (Patch(STYLESPACE, "(np.abs(strengths) > threshold)", "(np.abs(strengths) >= 0)"),),
          ("tests/test_stylespace.py::test_statis_masks_the_channels_of_the_one_layer",)),
    Break("stylespace_every_layer", "edit.py stylespace --layers=5 edits every layer the direction has",
          (Patch(STYLESPACE, "    for layer in layers:\n        offsets[layer] =",
                 "    for layer in sorted(vectors):\n        offsets[layer] ="),),
          ("tests/test_stylespace.py", "-k", "edits_the_chosen_layers")),
    # Both ways at once: a round trip gives the same tensors back, only the ecosystem's layout can tell.
    Break("rosinality_blur_scale", "rosinality .pt files hold blur kernels 2x the filter, not 4x: encoders draw "
          "other images, StyleGAN-Human's conversions are refused",
          (Patch(ROSINALITY_LAYOUT, "        return tensor * 4\n", "        return tensor * 2\n"),
           Patch(ROSINALITY_LAYOUT, "        tensor = tensor / 4\n", "        tensor = tensor / 2\n")),
          ("tests/test_rosinality.py::test_writer_matches_stylegan_human_convert_on_the_fixture",)),
    Break("rosinality_noise_order", "rosinality .pt files swap the two noise maps of each level (both ways): "
          "encoders draw other images",
          (Patch(ROSINALITY_LAYOUT, "for res in upper for k in (0, 1)]", "for res in upper for k in (1, 0)]"),),
          ("tests/test_rosinality.py::test_writer_matches_stylegan_human_convert_on_the_fixture",)),
    Break("onnx_psi_not_baked", "convert.py --to=onnx --trunc=0.7 writes a graph without truncation",
          (Patch(ONNX_EXPORT, "truncation_psi=self.truncation_psi))", "truncation_psi=1.0))"),),
          ("tests/test_onnx_export.py::test_onnxruntime_images_equal_the_package_s_at_batch_1_and_3[0-aspect0-0.7]",)),
    Break("onnx_without_noise", "the ONNX graph drops the constant noise: onnxruntime draws other images than "
          "generate.py",
          (Patch(ONNX_EXPORT, "self.G.synthesis(ws, noise_mode=\"const\",",
                 "self.G.synthesis(ws, noise_mode=\"none\","),),
          ("tests/test_onnx_export.py::test_cli_ws_input_and_static_convolution_kernels",)),
    Break("cpu_layout_ignores_training", "CPU training runs the network being trained channels_last on large maps, "
          "where oneDNN's weight gradient is 3x slower",
          (Patch(NETWORKS, "return module.training and torch.is_grad_enabled() and weight.requires_grad",
                 "return False"),),
          ("tests/test_speed_paths.py::test_cpu_training_runs_the_trained_network_nchw_and_the_other_channels_last",)),
    Break("cpu_fid_overlaps", "FID overlaps generation and detection on the CPU, where the two contend for the cores",
          (Patch(METRIC_UTILS, 'return torch.device(device).type != "cpu"', "return True"),),
          ("tests/test_metrics_speed.py::test_generation_overlaps_on_gpus_only",)),
)


# ----------------------------------------------------------------------------
# Patching a scratch copy.

class PatchError(RuntimeError):
    pass


def check_targets(breaks, root=ROOT):
    """Every patch's old text is in its file exactly once; raises PatchError naming each one that is not."""
    problems = []
    for brk in breaks:
        for patch in brk.patches:
            path = os.path.join(root, patch.file)
            text = open(path, encoding="utf-8").read() if os.path.isfile(path) else None
            count = 0 if text is None else text.count(patch.old)
            if count != 1:
                problem = "file not found" if text is None else \
                    "target text not found" if count == 0 else f"target text found {count} times"
                problems.append(f"{brk.name}: {patch.file}: {problem}: {patch.old.strip()[:70]!r}")
    if problems:
        raise PatchError("the code has moved; update these breaks in scripts/mutation_check.py:\n  "
                         + "\n  ".join(problems))


def scratch_copy(dest):
    """Copy the files git tracks or would track (tracked and untracked, not ignored) into dest."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode("utf-8")
    for name in sorted(set(filter(None, listing.split("\0")))):
        source = os.path.join(ROOT, name)
        if os.path.isfile(source):  # a tracked file deleted in the working tree is left out
            os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
            shutil.copy2(source, os.path.join(dest, name))


def apply_patches(copy, brk):
    """Patch the copy; returns {file: original text} to restore."""
    originals = {}
    for patch in brk.patches:
        path = os.path.join(copy, patch.file)
        text = open(path, encoding="utf-8").read()
        originals.setdefault(patch.file, text)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(patch.old, patch.new, 1))
    return originals


def restore(copy, originals):
    for name, text in originals.items():
        with open(os.path.join(copy, name), "w", encoding="utf-8") as f:
            f.write(text)


# ----------------------------------------------------------------------------
# Running the tests in the copy.

def compat_dir():
    """The compat fixtures as the working tree's tests find them (the copy has no ../shared beside it)."""
    return os.path.realpath(os.environ.get("SG2_COMPAT_DIR", os.path.join(os.path.dirname(ROOT), "shared", "compat")))


def run_pytest(copy, args, timeout, process_timeout=None):
    """(pytest's exit status, or None if the process ran past process_timeout (default: timeout + 60 s); seconds;
    the end of its output) for `args` run in the copy, each test within `timeout` seconds."""
    process_timeout = process_timeout or timeout + 60
    # CI=true: tests that need the compat fixture fail instead of skipping; no .pyc files, so that a restored
    # file is never run from a stale cache.
    # pytest-timeout ends a hung test at `timeout` with a traceback (a failure: the break was caught).
    env = dict(os.environ, PYTHONPATH=copy, SG2_COMPAT_DIR=compat_dir(), CI="true", PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", f"--timeout={timeout}", *args]
    start = time.time()
    try:
        proc = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=process_timeout)
    except subprocess.TimeoutExpired:
        return None, time.time() - start, f"pytest gave no result within {process_timeout} s"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, time.time() - start, "\n".join(lines[-15:])


def verdict(status):
    # pytest: 0 all passed, 1 some failed, 2 interrupted (e.g. an import error at collection); else unusable.
    if status == 0:
        return "SURVIVED"
    if status in (1, 2):
        return "caught"
    return "ERROR (no result)" if status is None else f"ERROR (pytest status {status})"


def check_break(copy, brk, timeout):
    originals = apply_patches(copy, brk)
    try:
        status, seconds, tail = run_pytest(copy, brk.tests, timeout)
    finally:
        restore(copy, originals)
    return dict(name=brk.name, tests=" ".join(brk.tests).replace("tests/", ""), result=verdict(status),
                seconds=seconds, tail=tail)


def baseline(copy, breaks, timeout):
    """The selected breaks' tests on the unpatched copy (the node ids in one run, each -k selection in its own);
    exits 2 unless they all pass. Returns the seconds taken."""
    node_ids = list(dict.fromkeys(t for brk in breaks if "-k" not in brk.tests for t in brk.tests))
    selections = list(dict.fromkeys(brk.tests for brk in breaks if "-k" in brk.tests))
    seconds = 0.0
    for args in ([node_ids] if node_ids else []) + [list(selection) for selection in selections]:
        status, took, tail = run_pytest(copy, args, timeout, process_timeout=timeout * len(args) + 60)
        seconds += took
        if status != 0:
            print(f"The tests fail without any break (pytest status {status}); fix them first:\n{tail}",
                  file=sys.stderr)
            sys.exit(2)
    return seconds


# ----------------------------------------------------------------------------
# Report.

def print_table(rows):
    widths = [max(len(str(row[key])) for row in rows + [dict(name="break", tests="tests run", result="result")])
              for key in ("name", "tests", "result")]
    header = ["break", "tests run", "result"]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  seconds")
    for row in rows:
        cells = [row["name"], row["tests"], row["result"]]
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + f"  {row['seconds']:7.1f}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="run only these breaks (default: all)")
    parser.add_argument("--list", action="store_true", help="list the breaks and exit")
    parser.add_argument("--timeout", type=int, default=900, help="seconds for the tests of one break (default 900)")
    parser.add_argument("--verbose", action="store_true", help="show the end of pytest's output for every break")
    return parser.parse_args(argv)


def select(names):
    known = {brk.name: brk for brk in BREAKS}
    unknown = [name for name in names if name not in known]
    if unknown:
        sys.exit(f"unknown break(s): {', '.join(unknown)}; see --list")
    return [known[name] for name in names] if names else list(BREAKS)


def main(argv=None):
    args = parse_args(argv)
    breaks = select(args.names)
    if args.list:
        for brk in breaks:
            print(f"{brk.name:24s} {brk.what}\n{'':24s} in {', '.join(sorted({p.file for p in brk.patches}))}; "
                  f"tests: {' '.join(brk.tests)}")
        return 0
    if importlib.util.find_spec("pytest_timeout") is None:
        print("mutation_check needs pytest-timeout (pip install -e '.[test]')", file=sys.stderr)
        return 2
    try:
        check_targets(breaks)
    except PatchError as err:
        print(err, file=sys.stderr)
        return 1
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="sg2-mutation-") as scratch:
        copy = os.path.join(scratch, "repo")
        scratch_copy(copy)
        seconds = baseline(copy, breaks, args.timeout)
        print(f"Without breaks, the {len(breaks)} breaks' tests pass ({seconds:.0f} s).", flush=True)
        rows = []
        for brk in breaks:
            rows.append(check_break(copy, brk, args.timeout))
            print(f"  {brk.name}: {rows[-1]['result']} ({rows[-1]['seconds']:.0f} s)", flush=True)
    print()
    print_table(rows)
    bad = [row for row in rows if row["result"] != "caught"]
    for row in rows if args.verbose else bad:
        print(f"\n{row['name']}: {row['result']}\n{row['tail']}")
    print(f"\n{len(rows) - len(bad)} of {len(rows)} breaks caught in {time.time() - start:.0f} s.")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
