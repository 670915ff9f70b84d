"""onnxruntime vs PyTorch on the CPU: the SHHQ 512x256 generator (convert.py --to=onnx), batch 1 and 8, same run.

    python benchmarks/onnx_cpu.py                      # about 5 minutes on 2 cores
    python benchmarks/onnx_cpu.py --batches=1,8 --repeats=5 --out=onnx_cpu.md

The generator has SHHQ's configuration (z/w 512, 8 mapping layers, channel_base 32768, channel_max 512, 2:1) with
random weights; speed does not depend on the values. Rows: PyTorch as the tools call it (the fastest form for
the CPU), PyTorch in the exported form (unfused modulation, NCHW: the graph the ONNX file holds), and
onnxruntime on the exported file with as many threads as torch. z in, const noise, psi 1. The repeats are
interleaved (with the fp32 matmul peak, which each row is read against, since other work on a shared machine
slows everything down) and their medians reported; the CPU line names its instruction set (torch's CPU
capability, and the bf16/AMX flags).
"""
import os
import sys
import tempfile
import time

import click
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import dnnlib  # noqa: E402
from benchmarks import cpu as cpu_bench  # noqa: E402
from benchmarks import timing  # noqa: E402
from benchmarks import flops as flop_count  # noqa: E402
from benchmarks.generator_speed import shhq_generator  # noqa: E402
from sg2_cli import outputs  # noqa: E402
from sg2_cli.options import shared  # noqa: E402
from torch_utils import cpu_tuning  # noqa: E402
from training.checkpoint import onnx_export  # noqa: E402


def onnx_session(path, threads):
    import onnxruntime as ort  # the optional extra
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def cases_for(G, session, batches):
    """{name: dict(run=seconds of one call)} for each runtime and batch."""
    cases = {}
    for batch in batches:
        z = torch.randn(batch, G.z_dim)
        feeds = {"z": z.numpy()}

        def torch_run(z=z, **kwargs):
            with torch.no_grad():
                return timing.seconds(lambda: G(z, None, noise_mode="const", **kwargs))
        cases[f"PyTorch, the tools' form|{batch}"] = dict(run=torch_run)
        cases[f"PyTorch, the exported form|{batch}"] = dict(
            run=lambda z=z: torch_run(z, fused_modconv=False, channels_last=False))
        cases[f"onnxruntime|{batch}"] = dict(run=lambda feeds=feeds: timing.seconds(
            lambda: session.run(["img"], feeds)))
    return cases


def max_difference(G, session):
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        expected = G(z, None, noise_mode="const").numpy()
    return float(np.abs(session.run(["img"], {"z": z.numpy()})[0] - expected).max())


def run_benchmark(resolution, batches, repeats, budget_s):
    import onnxruntime as ort
    G = shhq_generator(resolution)
    malloc_tuned = cpu_tuning.reuse_freed_memory()
    lines = cpu_bench.header_lines("wall")
    lines[0] = f"# onnxruntime vs PyTorch on the CPU, {time.strftime('%Y-%m-%d %H:%M')}"
    lines.insert(-1, f"- glibc allocator reuses freed memory (the tools' setting): {'yes' if malloc_tuned else 'no'}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "G.onnx")
        start = time.perf_counter()
        onnx_export.export_onnx(G, path)
        export_s = time.perf_counter() - start
        session = onnx_session(path, torch.get_num_threads())
        lines.insert(-1, f"- onnxruntime {ort.__version__}, opset {onnx_export.OPSET}; export took {export_s:.0f} s; "
                         f"largest difference from PyTorch {max_difference(G, session):.1e}")
        cases = cases_for(G, session, batches)
        peak_case = timing.matmul_case("fp32")
        cases["peak"] = peak_case
        median = timing.measure(cases, repeats, budget_s)
    peak = peak_case["flops"] / median.pop("peak")
    flops = flop_count.generator_flops(G)
    lines.insert(-1, f"- fp32 matmul peak of this run: {peak / 1e9:.1f} GFLOP/s; the generator: {flops / 1e9:.1f} "
                     "GFLOP/img (benchmarks/flops.py)")
    rows = []
    for name, seconds in median.items():
        runtime, batch = name.split("|")
        per_image = seconds / int(batch)
        rows.append([f"{G.img_height}x{G.img_width}", runtime, batch, f"{per_image:.3f}",
                     f"{flops / per_image / peak:.2f}"])
    lines.append(timing.markdown_table(["generator", "runtime", "batch", "s/img", "share of the matmul peak"],
                                       rows))
    return "\n".join(lines)


@click.command()
@click.option("--resolution", default=512, show_default=True, help="Generator height (2:1)")
@click.option("--batches", default="1,8", callback=timing.int_list, show_default=True)
@click.option("--repeats", default=3, type=click.IntRange(min=1), show_default=True, help="Interleaved rounds")
@click.option("--budget", "budget_s", default=60.0, show_default=True,
              help="A case slower than this many seconds is measured once")
@click.option("--threads", type=click.IntRange(min=1), help="torch and onnxruntime threads  [default: torch's]")
@shared("--out", param="out", type=click.Path(dir_okay=False), required=False, detail="also the Markdown")
@shared("--force")
def main(resolution, batches, repeats, budget_s, threads, out, force):
    """Time onnxruntime and PyTorch on the same generator, interleaved."""
    outputs.check_new([out] if out else [], force, "--out")
    if threads:
        torch.set_num_threads(threads)
    text = run_benchmark(resolution, batches, repeats, budget_s)
    print(text)
    if out:
        dnnlib.util.atomic_write(out, lambda f: f.write((text + "\n").encode("utf-8")))


if __name__ == "__main__":
    main()
