"""CPU speed of the package against the matmul peak measured in the same run; prints Markdown.

    python benchmarks/cpu.py                                  # every section at SHHQ sizes (1-2 hours on 2 cores)
    python benchmarks/cpu.py --quick                          # small sizes (~20 min on 2 cores, mostly emulated bf16)
    python benchmarks/cpu.py --quick --threads=1 --clock=cpu  # steadier ratios on a machine shared with other jobs
    python benchmarks/cpu.py --sections=generator,levers --sizes=512 --out=cpu.md
    python benchmarks/cpu.py --sections=layers                # each synthesis block in NCHW vs channels_last

Sections (issue 22's goals; each figure is read against the peak of its own process and rounds):
  generator  a plain G(z, c) in a fresh process (no allocator setting by the caller) for each size, dtype and
             batch: s/img, share of the same-run matmul peak, and s/img against batch 1 (goals 1, 3, 4);
  tools      the same generator through generate.py's generate_images and the one-image passes of
             style_mixing.py and the web app (goal 1);
  levers     what was measured to pick the CPU form: the batched forms (grouped, activation scaling), NCHW,
             the layer epilogue as separate passes, torch.compile for it, and glibc's allocator left alone;
  train      one SHHQ 512x256 training step at batch 4 (shhq preset, R1 and path length), per phase (goal 5);
  demo       `make demo`'s training sec/kimg (goal 5), beside an earlier checkout's with --demo-baseline;
  fid        FID's generator, detector (Inception-v3 shapes) and overlapped pipeline (goal 6);
  layers     each synthesis block in NCHW and channels_last (the measurement behind the layout rule).
The generator, tools, levers, train and fid sections run in fresh child processes (benchmarks/*_speed.py).
Other work on the machine slows everything down: the repeats are interleaved, medians are reported with their
range, and the load average is printed so a busy run can be recognised.
"""

import os
import sys
import time

import click
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import dnnlib  # noqa: E402
from benchmarks import cpu_report  # noqa: E402
from benchmarks import timing  # noqa: E402
from sg2_cli import outputs  # noqa: E402
from sg2_cli.options import shared  # noqa: E402
from torch_utils import cpu_tuning  # noqa: E402
from torch_utils.precision import PRECISIONS  # noqa: E402

SECTIONS = ("generator", "tools", "levers", "train", "demo", "fid", "layers")
DEFAULT_SECTIONS = ("generator", "tools", "levers", "train", "demo", "fid")
# --quick: small sizes for the options not given on the command line (the generator at 256x128, 4.7x fewer
# FLOPs than 512x256; training at 128x64; a 1.5-minute demo run; fewer FID images). Batches stay 1, 4, 16.
QUICK = dict(sizes=[256], repeats=1, budget_s=10.0, train_size=128, train_minutes=1.5, fid_images=16)


def header_lines(clock):
    isa = cpu_tuning.instruction_sets()
    bf16 = "bf16 runs in hardware" if cpu_tuning.bf16_is_fast() else "bf16 is emulated in software"
    return [f"# CPU benchmark, {time.strftime('%Y-%m-%d %H:%M')}", "",
            f"- CPU: {cpu_tuning.cpu_name()}; {os.cpu_count()} logical CPUs; torch threads {torch.get_num_threads()}; "
            f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}",
            f"- instruction sets (/proc/cpuinfo): {', '.join(isa) if isa is not None else 'unknown'} ({bf16})",
            f"- clock: {'wall time' if clock == 'wall' else 'process CPU time'} (FID: wall time)",
            f"- load average at start: {timing.load_average()}", ""]


def generator_runs(sizes, batches, dtypes, repeats, budget_s, clock):
    """{(size, dtype): child result} of the plain-call measurement. Where bf16 is emulated it runs at the
    smallest size and the two smallest batches only (minutes per image)."""
    runs = {}
    for dtype_name in dtypes:
        emulated = dtype_name == "bf16" and not cpu_tuning.bf16_is_fast()
        for size in (sizes[:1] if emulated else sizes):
            use = batches[:2] if emulated else batches
            runs[(size, dtype_name)] = timing.run_child("generator_speed", [
                f"--size={size}", f"--dtype={dtype_name}", f"--batches={','.join(map(str, use))}",
                f"--repeats={repeats}", f"--budget={budget_s}", f"--clock={clock}"])
    return runs


def levers_runs(size, batches, repeats, budget_s, clock):
    """The levers child (the batched forms at the first batch above 1), a plain child with the allocator left
    alone, and the epilogue child."""
    lever_batch = next((b for b in batches if b > 1), 4)  # the first batch above 1
    common = [f"--size={size}", f"--repeats={repeats}", f"--budget={budget_s}", f"--clock={clock}"]
    levers = timing.run_child("generator_speed", common + ["--levers", f"--batches={lever_batch}"])
    malloc_off = timing.run_child("generator_speed", common + [f"--batches={','.join(map(str, batches))}"],
                                  env={cpu_tuning.ENV_MALLOC: "0"})
    epilogue = timing.run_child("epilogue_speed", [f"--repeats={max(repeats, 3)}", f"--clock={clock}"])
    return levers, malloc_off, epilogue


def _sections(ctx, param, value):
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise click.BadParameter(f"'{value}': choose from {', '.join(SECTIONS)}")
    return names


@click.command()
@click.option("--sections", default=",".join(DEFAULT_SECTIONS), callback=_sections, show_default=True,
              help=f"Comma list of {', '.join(SECTIONS)}")
@click.option("--sizes", default="512,1024", callback=timing.int_list, show_default=True, help="Generator heights")
@click.option("--batches", default="1,4,16", callback=timing.int_list, show_default=True)
@click.option("--dtypes", default="fp32,bf16", show_default=True, help="Comma list of fp32, bf16")
@click.option("--repeats", default=3, type=click.IntRange(min=1), show_default=True, help="Interleaved rounds")
@click.option("--budget", "budget_s", default=60.0, show_default=True,
              help="A case slower than this many seconds is measured once")
@click.option("--threads", type=click.IntRange(min=1),
              help="torch threads, here and in the children  [default: torch's]")
@click.option("--clock", type=click.Choice(["wall", "cpu"]), default="wall", show_default=True,
              help="What the generator, levers and training sections time: wall time, or the process's CPU time "
                   "(steadier on a busy machine; with --threads=1 it is the work itself). FID is always wall time")
@click.option("--train-size", default=512, type=click.IntRange(min=8), show_default=True,
              help="Image height of the training-step section (SHHQ: 512)")
@click.option("--train-minutes", default=3.0, show_default=True, help="Length of the demo training run")
@click.option("--demo-baseline", type=click.Path(file_okay=False, exists=True),
              help="An earlier checkout (git worktree add DIR COMMIT): the demo section alternates its train.py with "
                   "this one's, --repeats runs each")
@click.option("--fid-images", default=256, type=click.IntRange(min=4), show_default=True,
              help="Generated images per FID timing")
@click.option("--quick", is_flag=True, help="Small sizes, for a check in minutes (explicit options still apply)")
@shared("--out", param="out", type=click.Path(dir_okay=False), required=False, detail="also the Markdown")
@shared("--force")
@click.pass_context
def main(ctx, sections, dtypes, threads, clock, quick, out, force, **sizes_and_lengths):
    """Time the generator, the tools, training and FID on the CPU against the same-run matmul peaks."""
    outputs.check_new([out] if out else [], force, "--out")
    dtypes = [d.strip() for d in dtypes.split(",") if d.strip()]
    if not dtypes or any(d not in PRECISIONS for d in dtypes) or "fp32" not in dtypes:
        raise click.BadParameter("--dtypes: give fp32 and optionally bf16")
    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the children's torch reads it
    given = {name for name in sizes_and_lengths
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    settings = dnnlib.EasyDict(sizes_and_lengths)
    if quick:
        settings.update({name: value for name, value in QUICK.items() if name not in given})
    mode = "--quick: small sizes, not the SHHQ figures" if quick else "full SHHQ sizes"
    header = header_lines(clock)[:-1] + [f"- {mode}; sizes {settings.sizes}, batches {settings.batches}", ""]

    def report(results):  # after each section, so a run cut short keeps what it measured in --out
        text = "\n".join(header + cpu_report.sections(results) + [f"- load average: {timing.load_average()}", ""])
        if out:
            dnnlib.util.atomic_write(out, lambda f: f.write((text + "\n").encode("utf-8")))
        return text
    print(report(run_sections(sections, dtypes, clock, settings, report)))


def run_sections(sections, dtypes, clock, settings, report):
    """The results of each section asked for, each from its own child process where it runs one; report(results)
    after each."""
    sizes, batches, repeats, budget_s = settings.sizes, settings.batches, settings.repeats, settings.budget_s
    common = [f"--repeats={repeats}", f"--budget={budget_s}", f"--clock={clock}"]
    results = dnnlib.EasyDict(sizes=sizes, batches=batches, dtypes=dtypes)
    steps = dict(
        generator=lambda: generator_runs(sizes, batches, dtypes, repeats, budget_s, clock),
        tools=lambda: timing.run_child("generator_speed", [f"--size={sizes[0]}", "--tools",
                                                           f"--batches={','.join(map(str, sorted({1, *batches})))}",
                                                           *common]),
        levers=lambda: levers_runs(sizes[0], batches, repeats, budget_s, clock),
        train=lambda: timing.run_child("train_speed", [f"--size={settings.train_size}", "--batch=4",
                                                       f"--clock={clock}"]),
        demo=lambda: cpu_report.demo_sec_per_kimg(settings.train_minutes, settings.demo_baseline,
                                                  repeats if settings.demo_baseline else 1),
        fid=lambda: timing.run_child("fid_speed", [f"--images={settings.fid_images}", f"--repeats={min(repeats, 2)}"]),
        layers=lambda: cpu_report.layer_layouts(sizes[0], batches, repeats, budget_s))
    for name in SECTIONS:
        if name in sections:
            if name == "levers":
                results.levers, results.malloc_off, results.epilogue = steps[name]()
            else:
                results[name] = steps[name]()
            report(results)
    return results

if __name__ == "__main__":
    main()
