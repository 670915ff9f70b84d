"""CPU speed of the networks, read against the matmul peak measured in the same run; prints Markdown.

    python benchmarks/cpu.py                              # everything (10-20 minutes on 2 cores)
    python benchmarks/cpu.py --sizes=512 --batches=1,4 --no-train --out=cpu.md
    python benchmarks/cpu.py --layers                     # also: each synthesis block in NCHW vs channels_last

Sections: the CPU (model, bf16 instructions), the fp32 and bf16 matmul peaks, the generator (SHHQ configs:
z/w 512, 8 mapping layers, channel_base 32768, channel_max 512, 2:1) in s/img and efficiency for each size,
batch and dtype, the discriminator forward + R1 backward at batch 4, and training sec/kimg of the `make demo`
configuration. Efficiency = analytic FLOPs (benchmarks/flops.py) / time / the same-run matmul peak of that dtype.
Other work on the machine slows everything down; the repeats are interleaved and their medians reported, and
the load average is printed so a busy run can be recognised.
"""

import json
import os
import statistics
import sys
import tempfile
import time

import click
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import dnnlib  # noqa: E402
from benchmarks import flops as flop_count  # noqa: E402
from torch_utils import cpu_tuning  # noqa: E402
from sg2_cli import outputs  # noqa: E402
from sg2_cli.options import shared  # noqa: E402
from torch_utils.precision import PRECISIONS  # noqa: E402
from training import networks  # noqa: E402
from training import loss as training_loss  # noqa: E402


# ----------------------------------------------------------------------------
# Machine.


def load_average():
    return "n/a" if not hasattr(os, "getloadavg") else " ".join(f"{v:.1f}" for v in os.getloadavg())


# ----------------------------------------------------------------------------
# Timed work. Each function returns one measurement in seconds.


def seconds(fn, min_time=0.0):
    """Wall time of fn(); with min_time, fn runs repeatedly for at least that long and the mean is returned."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls


def peak_size(dtype_name):
    """Matrix size of the peak measurement: 2048, or 1024 for bf16 where it is emulated (2048 takes minutes)."""
    return 1024 if dtype_name == "bf16" and not cpu_tuning.bf16_is_fast() else 2048


def matmul_case(dtype, n):
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return dict(flops=2 * n ** 3, run=lambda: seconds(lambda: a @ b, min_time=0.3))


def shhq_generator(resolution):
    torch.manual_seed(0)
    return networks.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                              mapping_kwargs=dict(num_layers=8), aspect_ratio=(2, 1),
                              synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4,
                                                    conv_clamp=256)).eval().requires_grad_(False)


# The original implementation's inference form on any device: the fused (grouped) modulated convolution, NCHW.
ORIGINAL_FORM = dict(fused_modconv=True, channels_last=False)


def generator_case(G, batch, dtype, original=False):
    z = torch.randn(batch, G.z_dim)
    c = torch.zeros(batch, 0)

    kwargs = dict(dtype=dtype) if dtype != torch.float32 else {}  # fp32: the call any StyleGAN2 code accepts
    if original:
        kwargs = ORIGINAL_FORM

    def run():
        with torch.no_grad():
            return seconds(lambda: G(z, c, noise_mode="const", **kwargs))
    return dict(flops=flop_count.generator_flops(G) * batch, run=run)


def discriminator_r1_case(resolution, batch):
    """D forward, the R1 gradient with create_graph, and the backward of the penalty (the Dreg phase)."""
    torch.manual_seed(0)
    D = networks.Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, channel_base=32768,
                               channel_max=512, num_fp16_res=4, conv_clamp=256, aspect_ratio=(2, 1))
    x_leaf = torch.randn(batch, 3, resolution, resolution // 2).requires_grad_(True)
    c = torch.zeros(batch, 0)

    def step():
        x = x_leaf * 1  # not a leaf: the FLOP counter cannot follow autograd.grad() to a leaf
        penalty = training_loss.r1_penalty_from_logits(D(x, c), x, create_graph=True)
        penalty.sum().backward()

    with FlopCounterMode(display=False) as counter:
        step()
    return dict(flops=counter.get_total_flops(), run=lambda: seconds(step))


def block_layout_case(G, res, batch, channels_last):
    """One synthesis block in a given memory layout, with inputs of the right shape."""
    synthesis = G.synthesis
    block = getattr(synthesis, f"b{res}")
    height, width = networks.shape_at(res, synthesis.aspect_ratio)
    x = None if block.in_channels == 0 else torch.randn(batch, block.in_channels, height // 2, width // 2)
    if x is not None and channels_last:
        x = x.contiguous(memory_format=torch.channels_last)  # as the previous block would hand it over
    img = None if block.in_channels == 0 else torch.randn(batch, 3, height // 2, width // 2)
    ws = torch.randn(batch, block.num_conv + block.num_torgb, synthesis.w_dim)

    def run():
        with torch.no_grad():
            return seconds(lambda: block(x, None if img is None else img.clone(), ws, noise_mode="const",
                                         channels_last=channels_last))
    return dict(run=run, shape=f"{block.conv1.out_channels}x{height}x{width}")


def measure(cases, repeats, budget_s):
    """Median seconds per case over `repeats` interleaved rounds, after a warm-up round.

    A case slower than budget_s keeps its warm-up time as its only measurement (one-time setup is then small
    beside the work). A case with `scale_of` = (other case, factor) is skipped when the other case's time times
    the factor exceeds three budgets (bf16 at batch 8 where bf16 is emulated would take many minutes).
    """
    times = {name: [] for name in cases}
    warmup = {}
    for round_idx in range(repeats + 1):
        for name, case in cases.items():
            ref, factor = case.get("scale_of", (None, 1))
            if ref in warmup and warmup[ref] * factor > 3 * budget_s:
                continue  # too slow to run at all
            if round_idx > 0 and warmup[name] > budget_s:
                continue  # measured once, in the warm-up round
            elapsed = case["run"]()
            if round_idx == 0:
                warmup[name] = elapsed
            if round_idx > 0 or elapsed > budget_s:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items() if values}


# ----------------------------------------------------------------------------
# Training sec/kimg of the demo configuration (the public path: train.py in subprocesses, as `make demo`).


def demo_sec_per_kimg(minutes, workdir):
    """Median Timing/sec_per_kimg over the ticks after the first, and the kimg reached."""
    from scripts import demo
    data = os.path.join(workdir, "figures-64x32.zip")
    env = demo.demo_env()
    if not os.path.exists(data):
        demo.make_data(data, env)
    runs = os.path.join(workdir, "runs")
    demo.train(runs, data, kimg=1000, minutes=minutes, env=env, quiet=True)
    run_dir = max((os.path.join(runs, d) for d in os.listdir(runs)), key=os.path.getmtime)
    with open(os.path.join(run_dir, "stats.jsonl")) as f:
        ticks = [json.loads(line) for line in f if line.strip()]
    values = [t["Timing/sec_per_kimg"]["mean"] for t in ticks[1:] if "Timing/sec_per_kimg" in t]
    kimg = ticks[-1]["Progress/kimg"]["mean"] if ticks and "Progress/kimg" in ticks[-1] else float("nan")
    return (statistics.median(values) if values else float("nan")), kimg, len(values)


# ----------------------------------------------------------------------------
# Report.


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def header_lines(malloc_tuned):
    flags = cpu_tuning.bf16_flags()
    hardware = "PyTorch runs bf16 in hardware" if cpu_tuning.bf16_is_fast() else "bf16 is emulated in software"
    return [f"# CPU benchmark, {time.strftime('%Y-%m-%d %H:%M')}", "",
            f"- CPU: {cpu_tuning.cpu_name()}; {os.cpu_count()} logical CPUs; torch threads {torch.get_num_threads()}; "
            f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}; "
            f"allocator: {'freed memory reused (cpu_tuning.reuse_freed_memory)' if malloc_tuned else 'glibc defaults'}",
            f"- bf16-related instructions: {', '.join(flags) or 'none'} ({hardware})",
            f"- load average at start: {load_average()}", ""]


def collect_cases(generators, batches, dtypes, layers, only_layers):
    cases = {f"peak {name}": matmul_case(PRECISIONS[name], peak_size(name)) for name in dtypes}
    if not only_layers:
        smallest = min(generators)
        for name in dtypes:
            ref = f"G {smallest} {batches[0]} {name}"
            ref_flops = flop_count.generator_flops(generators[smallest]) * batches[0]
            for res, G in sorted(generators.items()):
                for batch in batches:
                    case = generator_case(G, batch, PRECISIONS[name])
                    cases[f"G {res} {batch} {name}"] = dict(case, scale_of=(ref, case["flops"] / ref_flops))
                    if name == "fp32":
                        case = generator_case(G, batch, PRECISIONS[name], original=True)
                        cases[f"G {res} {batch} original"] = dict(case, scale_of=(ref, case["flops"] / ref_flops))
        cases["D+R1"] = discriminator_r1_case(min(generators), 4)
    if layers:
        G = generators[min(generators)]
        for res in G.synthesis.block_resolutions:
            for batch in sorted({1, max(batches)}):
                for cl in (False, True):
                    cases[f"layout {res} {batch} {cl}"] = block_layout_case(G, res, batch, cl)
    return cases


def generator_section(generators, batches, dtypes, median, cases, peak):
    rows = []
    for res in generators:
        for name in dtypes:
            for batch in batches:
                key = f"G {res} {batch} {name}"
                if key not in median:
                    rows.append([f"{res}x{res // 2}", batch, name, "skipped (too slow)", "", "", "", "", ""])
                    continue
                sec = median[key] / batch
                first = median[f"G {res} {batches[0]} {name}"] / batches[0]
                original = median.get(f"G {res} {batch} original") if name == "fp32" else None
                rows.append([f"{res}x{res // 2}", batch, name, f"{sec:.3f}",
                             f"{cases[key]['flops'] / median[key] / 1e9:.1f}",
                             f"{cases[key]['flops'] / median[key] / peak[name]:.2f}", f"{sec / first:.2f}",
                             f"{original / batch:.3f}" if original else "",
                             f"{original / median[key]:.2f}x" if original else ""])
    sizes = ", ".join(f"{r}x{r // 2}: {flop_count.generator_flops(G) / 1e9:.1f}" for r, G in generators.items())
    header = ["size", "batch", "dtype", "s/img", "GFLOP/s", "efficiency", f"s/img vs batch {batches[0]}",
              "original form s/img", "speedup"]
    return [f"## Generator, SHHQ config ({sizes} GFLOP/img, benchmarks/flops.py)", "",
            "Original form: the same network called with fused_modconv=True, channels_last=False (the original "
            "code's choice on the CPU), in the same run.", "", markdown_table(header, rows), ""]


def discriminator_section(res, median, cases, peak):
    flops, sec = cases["D+R1"]["flops"], median["D+R1"]
    return [f"## Discriminator forward + R1 backward, {res}x{res // 2}, batch 4, fp32", "",
            markdown_table(["s/step", "GFLOP/step (FLOP counter)", "GFLOP/s", "efficiency"],
                           [[f"{sec:.2f}", f"{flops / 1e9:.1f}", f"{flops / sec / 1e9:.1f}",
                             f"{flops / sec / peak['fp32']:.2f}"]]), ""]


def training_section(minutes):
    with tempfile.TemporaryDirectory() as workdir:
        sec_per_kimg, kimg, ticks = demo_sec_per_kimg(minutes, workdir)
    return ["## Training, `make demo` configuration", "",
            markdown_table(["sec/kimg (median of ticks after the first)", "ticks", "kimg reached", "minutes"],
                           [[f"{sec_per_kimg:.1f}", ticks, f"{kimg:.1f}", f"{minutes:g}"]]), ""]


def run_benchmark(sizes, batches, dtypes, repeats, budget_s, layers, train_minutes, only_layers=False,
                  malloc_tuned=False):
    """Every section, measured; returns the Markdown text."""
    out = header_lines(malloc_tuned)
    generators = {res: shhq_generator(res) for res in sizes}
    cases = collect_cases(generators, batches, dtypes, layers, only_layers)
    median = measure(cases, repeats, budget_s)
    peak = {name: cases[f"peak {name}"]["flops"] / median[f"peak {name}"] for name in dtypes}
    out += ["## Matmul peak (same run, median)", "",
            markdown_table(["dtype", "matrix size", "GFLOP/s"],
                           [[name, peak_size(name), f"{peak[name] / 1e9:.1f}"] for name in dtypes]), ""]
    if not only_layers:
        out += generator_section(generators, batches, dtypes, median, cases, peak)
        out += discriminator_section(min(sizes), median, cases, peak)
    if layers:
        out += layout_section(generators[min(sizes)], median, cases, batches)
    if train_minutes:
        out += training_section(train_minutes)
    out += [f"- load average at end: {load_average()}", ""]
    return "\n".join(out)


def layout_section(G, median, cases, batches):
    rows = []
    for res in G.synthesis.block_resolutions:
        for batch in sorted({1, max(batches)}):
            nchw, nhwc = median[f"layout {res} {batch} False"], median[f"layout {res} {batch} True"]
            rows.append([res, cases[f"layout {res} {batch} False"]["shape"], batch, f"{nchw * 1e3 / batch:.1f}",
                         f"{nhwc * 1e3 / batch:.1f}", f"{nchw / nhwc:.2f}"])
    return ["## Synthesis blocks: NCHW vs channels_last (fp32)", "",
            markdown_table(["block", "C x H x W", "batch", "NCHW ms/img", "channels_last ms/img", "speedup"], rows),
            ""]


def _int_list(ctx, param, value):
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of integers")


@click.command()
@click.option("--sizes", default="512,1024", callback=_int_list, show_default=True, help="Generator heights")
@click.option("--batches", default="1,4,8", callback=_int_list, show_default=True)
@click.option("--dtypes", default="fp32,bf16", show_default=True, help="Comma list of fp32, bf16")
@click.option("--repeats", default=3, type=click.IntRange(min=1), show_default=True, help="Interleaved rounds")
@click.option("--budget", "budget_s", default=60.0, show_default=True,
              help="A case slower than this many seconds is measured once")
@click.option("--threads", type=click.IntRange(min=1), help="torch threads  [default: torch's]")
@click.option("--layers", is_flag=True, help="Also time each synthesis block in NCHW and channels_last")
@click.option("--only-layers", is_flag=True, help="Only the per-block layout table (with the matmul peaks)")
@click.option("--train-minutes", default=3.0, show_default=True, help="Demo training run length; 0 = skip")
@click.option("--no-train", is_flag=True, help="Skip the training measurement")
@shared("--out", param="out", type=click.Path(dir_okay=False), required=False, detail="also the Markdown")
@shared("--force")
def main(sizes, batches, dtypes, repeats, budget_s, threads, layers, only_layers, train_minutes, no_train, out, force):
    """Time the generator, discriminator and demo training on the CPU against the same-run matmul peak."""
    outputs.check_new([out] if out else [], force, "--out")
    dtypes = [d.strip() for d in dtypes.split(",") if d.strip()]
    if not dtypes or any(d not in PRECISIONS for d in dtypes) or "fp32" not in dtypes:
        raise click.BadParameter("--dtypes: give fp32 and optionally bf16")
    if threads:
        torch.set_num_threads(threads)
    malloc_tuned = cpu_tuning.reuse_freed_memory()  # as generate.py and calc_metrics.py do on the CPU
    text = run_benchmark(sizes, batches, dtypes, repeats, budget_s, layers or only_layers,
                         0 if no_train or only_layers else train_minutes, only_layers, malloc_tuned)
    print(text)
    if out:
        dnnlib.util.atomic_write(out, lambda f: f.write((text + "\n").encode("utf-8")))


if __name__ == "__main__":
    main()
