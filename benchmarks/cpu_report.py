"""The Markdown of benchmarks/cpu.py: one section per measurement, and the goals of issue 22 at a glance.

Every share of the peak is a figure's FLOP/s over the matmul peak of the same process and rounds.
"""
import json
import os
import statistics
import tempfile

import torch

from benchmarks import timing
from benchmarks.timing import markdown_table, spread


def sections(results):
    out = goals_section(results)
    for key, section in (("generator", generator_section), ("tools", tools_section), ("levers", levers_section),
                         ("train", train_section), ("demo", demo_section), ("fid", fid_section),
                         ("layers", layers_section)):
        if key in results:
            out += section(results)
    return out


def clock_note(run):
    """How a child timed: 'wall time, 2 threads' or 'process CPU time, 1 thread'."""
    clock = "process CPU time" if run.get("clock") == "cpu" else "wall time"
    threads = run.get("threads")
    return f"{clock}, {threads} thread{'s' if threads != 1 else ''}" if threads else clock


# ----------------------------------------------------------------------------
# The goals at a glance.


def per_image_ratios(run):
    """{batch: s/img over batch 1's} of a generator child's plain cases."""
    first = run["cases"]["G batch 1"][0]
    return {int(name.split()[-1]): v[0] / first for name, v in run["cases"].items()}


def shares(run, dtype_name):
    """{batch: share of the same-run peak} of a generator child's plain cases."""
    return {int(name.split()[-1]): run["flops_per_image"] / v[0] / run["peaks"][dtype_name]
            for name, v in run["cases"].items()}


def goals_section(results):
    rows = []
    for (size, dtype_name), run in sorted(results.get("generator", {}).items()):
        ratio = max(per_image_ratios(run).values())
        share = min(shares(run, dtype_name).values())
        target = ">= 0.5" if dtype_name == "bf16" else ">= 0.7"
        rows.append([f"1: per image, worst batch vs batch 1, {size}x{size // 2} {dtype_name}", f"{ratio:.2f}",
                     "<= 1.05"])
        rows.append([f"{'3' if dtype_name == 'bf16' else '4'}: lowest share of the {dtype_name} peak, "
                     f"{size}x{size // 2}", f"{share:.2f}", target])
    if "tools" in results:
        cases = results["tools"]["cases"]
        batched = {name: v[0] for name, v in cases.items() if name.startswith("generate.py --batch=")}
        worst = max(batched, key=batched.get)
        rows.append([f"1: generate.py, slowest batch ({worst.split()[-1]}) vs --batch=1, per image",
                     f"{batched[worst] / cases['generate.py --batch=1'][0]:.2f}", "<= 1.05"])
    if "train" in results:
        flops, secs = train_totals(results["train"])
        size = results.train["size"]
        rows.append([f"5: SHHQ {size}x{size // 2} training step (G+D, R1, path length), share of the fp32 peak",
                     f"{flops / secs / results['train']['peaks']['fp32']:.2f}", "as a fraction"])
    if "demo" in results:
        medians = {name: statistics.median(run[0] for run in runs) for name, runs in results.demo["runs"].items()}
        rows.append(["5: `make demo` sec/kimg, median of the runs", "; ".join(
            f"{name}: {value:.1f}" for name, value in medians.items()), "lower than an earlier checkout's"])
    if "fid" in results:
        fid = results["fid"]
        cases = fid["cases"]
        rows.append(["6: FID detector, share of the fp32 peak",
                     f"{fid['detector_flops_per_image'] / cases['detector'][0] / fid['peaks']['fp32']:.2f}", ">= 0.5"])
        alone = cases["detector"][0]
        rows.append(["6: FID pipeline time over the detector's alone (1.00 = generator hidden; in brackets the two "
                     "timed apart and added)", f"{cases['pipeline'][0] / alone:.2f} "
                     f"({(cases['generator'][0] + alone) / alone:.2f})", "<= 1.05"])
    return ["## The goals at a glance", "",
            "Batch invariance (goal 2) is held by tests (tests/test_batch_invariance.py), not measured.", "",
            markdown_table(["goal", "measured", "target"], rows), ""]


# ----------------------------------------------------------------------------
# Generator sections.


def generator_section(results):
    rows = []
    for (size, dtype_name), run in sorted(results.generator.items()):
        ratios, share = per_image_ratios(run), shares(run, dtype_name)
        for name, stats in run["cases"].items():
            batch = int(name.split()[-1])
            rows.append([f"{size}x{size // 2}", dtype_name, batch, spread(stats), f"{share[batch]:.2f}",
                         f"{ratios[batch]:.2f}", f"{run['peaks'][dtype_name] / 1e9:.1f}"])
    flops = {size: run["flops_per_image"] / 1e9 for (size, _), run in results.generator.items()}
    sizes = ", ".join(f"{s}x{s // 2}: {f:.1f}" for s, f in sorted(flops.items()))
    return ["## Generator: a plain G(z, c) in a fresh process (goals 1, 3, 4)", "",
            f"SHHQ config, random weights ({sizes} GFLOP/img, benchmarks/flops.py); each (size, dtype) in its own "
            "process with no allocator setting made by the caller; s/img as median (min-max) of the rounds; "
            f"{clock_note(next(iter(results.generator.values())))}.", "",
            markdown_table(["size", "dtype", "batch", "s/img", "share of peak", "s/img vs batch 1",
                            "same-run peak GFLOP/s"], rows), ""]


def tools_section(results):
    run = results.tools
    first = run["cases"]["generate.py --batch=1"][0]
    rows = [[name, spread(stats), f"{run['flops_per_image'] / stats[0] / run['peaks']['fp32']:.2f}",
             f"{stats[0] / first:.2f}"] for name, stats in run["cases"].items()]
    return ["## Through the tools (goal 1)", "",
            f"The first size's generator, fp32; generate_images over 17 seeds (what generate.py runs; its default "
            f"batch on the CPU is 1); {clock_note(run)}. Same-run fp32 peak {run['peaks']['fp32'] / 1e9:.1f} GFLOP/s.",
            "",
            markdown_table(["path", "s/img", "share of peak", "vs --batch=1"], rows), ""]


def levers_section(results):
    run = results.levers
    default = run["cases"]["per-sample (the default), batch 1"][0]
    rows = [[name, spread(stats), f"{stats[0] / default:.2f}"] for name, stats in run["cases"].items()]
    out = ["## Levers: what the CPU form was chosen from (goal 1)", "",
           f"The first size's generator, fp32, one process, interleaved rounds, {clock_note(run)} (same-run fp32 "
           f"peak {run['peaks']['fp32'] / 1e9:.1f} GFLOP/s). Time against the default at batch 1.", "",
           markdown_table(["form", "s/img", "vs default, batch 1"], rows), ""]
    off = results.malloc_off
    rows = [[name.replace("G ", ""), spread(stats), f"{off['peaks']['fp32'] / 1e9:.1f}"]
            for name, stats in off["cases"].items()]
    out += ["glibc's allocator left alone (SG2_CPU_MALLOC=0, its own process; compare with the generator section):",
            "", markdown_table(["batch", "s/img", "same-run peak GFLOP/s"], rows), ""]
    epi = results.epilogue
    rows = [[name, spread(stats, 1e3, "{:.1f}"), "yes" if name == "separate" or epi["bitwise"][name] else "no"]
            for name, stats in epi["cases"].items()]
    out += ["The layer epilogue (noise, bias, leaky ReLU, gain, clamp) on the largest 512x256 feature map "
            f"([1, 64, 512, 256], channels_last); torch.compile's first call took {epi['compile_seconds']:.0f} s:",
            "", markdown_table(["epilogue", "ms", "bitwise the separate ops"], rows), ""]
    return out


# ----------------------------------------------------------------------------
# Training and FID.


def train_totals(train):
    return (sum(p["flops"] for p in train["phases"].values()),
            sum(p["seconds"][0] for p in train["phases"].values()))


def train_section(results):
    train = results.train
    peak = train["peaks"]["fp32"]
    rows = [[name, spread(p["seconds"], fmt="{:.1f}"), f"{p['flops'] / 1e9:.0f}",
             f"{p['flops'] / p['seconds'][0] / 1e9:.1f}", f"{p['flops'] / p['seconds'][0] / peak:.2f}"]
            for name, p in train["phases"].items()]
    flops, secs = train_totals(train)
    rows.append(["step", f"{secs:.1f}", f"{flops / 1e9:.0f}", f"{flops / secs / 1e9:.1f}",
                 f"{flops / secs / peak:.2f}"])
    return ["## Training at SHHQ size (goal 5)", "",
            f"{train['size']}x{train['size'] // 2}, shhq preset, batch {train['batch']}, fp32, one step with both "
            f"regularisers, {clock_note(train)} (same-run fp32 peak {peak / 1e9:.1f} GFLOP/s); FLOPs from torch's "
            "FLOP counter.", "",
            markdown_table(["phase", "seconds", "GFLOP", "GFLOP/s", "share of peak"], rows), ""]


def demo_section(results):
    demo = results.demo
    rows = [[name, index + 1, f"{sec_per_kimg:.1f}", ticks, f"{kimg:.1f}"]
            for name, runs in demo["runs"].items() for index, (sec_per_kimg, kimg, ticks) in enumerate(runs)]
    return ["## `make demo` training (goal 5)", "",
            f"train.py with `make demo`'s options for {demo['minutes']:g} minutes per run on one dataset; with a "
            "baseline checkout the two alternate, run by run.", "",
            markdown_table(["checkout", "run", "sec/kimg (median of ticks after the first)", "ticks", "kimg reached"],
                           rows), ""]


def fid_section(results):
    fid = results.fid
    cases, peak, n = fid["cases"], fid["peaks"]["fp32"], 50000
    both = fid["generator_flops_per_image"] + fid["detector_flops_per_image"]
    flops = dict(generator=fid["generator_flops_per_image"], detector=fid["detector_flops_per_image"])
    rows = [[name, spread(stats, 1e3, "{:.1f}"), f"{flops.get(name, both) / stats[0] / peak:.2f}",
             f"{n * stats[0] / 60:.0f}"] for name, stats in cases.items()]
    sequential = cases["generator"][0] + cases["detector"][0]
    rows.append(["generator, then detector (no overlap)", f"{sequential * 1e3:.1f}", f"{both / sequential / peak:.2f}",
                 f"{n * sequential / 60:.0f}"])
    return ["## FID on the CPU with Inception-v3's shapes (goal 6)", "",
            f"The demo network (64x32) and a random Inception-v3 behind the real detector's interface "
            f"({fid['detector_flops_per_image'] / 1e9:.1f} GFLOP/img by torch's counter); {fid['images']} generated "
            f"images per run; same-run fp32 peak {peak / 1e9:.1f} GFLOP/s. fid50k_full's generated half is the "
            "pipeline row times 50k (the real-image statistics are cached after the first run).", "",
            markdown_table(["part", "ms/img", "share of peak", "minutes for 50k"], rows), ""]


# ----------------------------------------------------------------------------
# In-process measurements: the demo's training and the per-block layouts.


def demo_sec_per_kimg(minutes, baseline=None, rounds=1):
    """{checkout: [(median Timing/sec_per_kimg over the ticks after the first, kimg reached, ticks), ...]} of
    `make demo`'s training (train.py in subprocesses) for `minutes`, on one dataset; with `baseline` (an earlier
    checkout's folder) the two checkouts alternate, `rounds` runs each, so both see the same machine."""
    from scripts import demo
    trees = {"this checkout": timing.ROOT, **({f"baseline {baseline}": os.path.abspath(baseline)} if baseline else {})}
    runs_of = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as workdir:
        data = os.path.join(workdir, "figures-64x32.zip")
        demo.make_data(data, demo.demo_env())
        for round_index in range(rounds):
            for name, tree in trees.items():
                runs = os.path.join(workdir, f"runs-{round_index}-{list(trees).index(name)}")
                env = dict(demo.demo_env(), PYTHONPATH=tree)  # the checkout's own package
                demo.train(runs, data, kimg=1000, minutes=minutes, env=env, quiet=True, cwd=tree)
                runs_of[name].append(_demo_ticks(runs))
    return dict(minutes=minutes, runs=runs_of)


def _demo_ticks(runs):
    """(median sec/kimg over the ticks after the first, kimg reached, ticks) of the one run folder in `runs`."""
    (run_dir,) = [os.path.join(runs, d) for d in os.listdir(runs)]
    with open(os.path.join(run_dir, "stats.jsonl")) as f:
        ticks = [json.loads(line) for line in f if line.strip()]
    values = [t["Timing/sec_per_kimg"]["mean"] for t in ticks[1:] if "Timing/sec_per_kimg" in t]
    kimg = ticks[-1]["Progress/kimg"]["mean"] if ticks and "Progress/kimg" in ticks[-1] else float("nan")
    return (statistics.median(values) if values else float("nan")), kimg, len(values)


def layer_layouts(size, batches, repeats, budget_s):
    """{(block, batch, channels_last): (median, min, max) s} of each synthesis block in both layouts."""
    from benchmarks.generator_speed import shhq_generator
    from training import networks
    G = shhq_generator(size)
    cases = {}
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{res}")
        height, width = networks.shape_at(res, G.synthesis.aspect_ratio)
        for batch in sorted({1, max(batches)}):
            for cl in (False, True):
                cases[(res, batch, cl)] = _block_case(block, height, width, batch, cl, G.synthesis.w_dim)
    median = timing.measure(cases, repeats, budget_s)
    return {key: (value, f"{getattr(G.synthesis, f'b{key[0]}').conv1.out_channels}x{networks.shape_at(key[0], (2, 1))}")
            for key, value in median.items()}


def _block_case(block, height, width, batch, channels_last, w_dim):
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = None if block.in_channels == 0 else torch.randn(batch, block.in_channels, height // 2,
                                                         width // 2).contiguous(memory_format=layout)
    img = None if block.in_channels == 0 else torch.randn(batch, 3, height // 2, width // 2)
    ws = torch.randn(batch, block.num_conv + block.num_torgb, w_dim)

    def run():
        with torch.no_grad():
            return timing.seconds(lambda: block(x, None if img is None else img.clone(), ws, noise_mode="const",
                                                channels_last=channels_last))
    return dict(run=run)


def layers_section(results):
    rows = []
    keys = sorted({(res, batch) for res, batch, _ in results.layers})
    for res, batch in keys:
        (nchw, shape), (nhwc, _) = results.layers[(res, batch, False)], results.layers[(res, batch, True)]
        rows.append([res, shape, batch, f"{nchw[0] * 1e3 / batch:.1f}", f"{nhwc[0] * 1e3 / batch:.1f}",
                     f"{nchw[0] / nhwc[0]:.2f}"])
    return ["## Synthesis blocks: NCHW vs channels_last (fp32)", "",
            markdown_table(["block", "C x [H, W]", "batch", "NCHW ms/img", "channels_last ms/img", "speedup"], rows),
            ""]
