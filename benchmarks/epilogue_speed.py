"""The synthesis layers' elementwise epilogue on the CPU, three ways (benchmarks/cpu.py runs this as a child).

    python -m benchmarks.epilogue_speed

After its convolution a layer adds noise and bias, applies leaky ReLU, scales by the gain and clamps: five steps
over the feature map, on the 512x256 generator's largest one ([1, 64, 512, 256], channels_last, 32 MiB) here:
  separate    the five steps as separate PyTorch ops (the bias add writing a new tensor), as before issue 22;
  in place    torch_utils.ops.bias_act.bias_act_: the steps in place, slice by slice while a slice is in cache;
  compiled    the same five steps in one torch.compile'd function (one fused loop from Inductor's C++ code).
Prints one JSON line: {"cases": {name: [median, min, max] seconds}, "compile_seconds": first compiled call,
"bitwise": {name: equal to `separate`}}.
"""
import json
import math
import time

import click
import torch

from benchmarks import timing
from torch_utils.ops import bias_act

SHAPE = [1, 64, 512, 256]
GAIN, CLAMP = math.sqrt(2), 256.0


def separate(x, noise, bias):
    return bias_act.bias_act(x.add_(noise), bias, act="lrelu", gain=GAIN, clamp=CLAMP, impl="ref")


def in_place(x, noise, bias):
    return bias_act.bias_act_(x, bias, act="lrelu", gain=GAIN, clamp=CLAMP, addend=noise)


def steps(x, noise, bias):
    x = (x + noise) + bias.reshape(1, -1, 1, 1)
    return (torch.nn.functional.leaky_relu(x, 0.2) * GAIN).clamp(-CLAMP, CLAMP)


@click.command()
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--clock", type=click.Choice(list(timing.CLOCKS)), default="wall", show_default=True)
def main(repeats, clock):
    """Time the layer epilogue as separate ops, in place in slices, and compiled; one JSON line."""
    timing.use_clock(clock)
    torch.manual_seed(0)
    x = torch.randn(SHAPE).contiguous(memory_format=torch.channels_last)
    noise, bias = torch.randn(SHAPE[2:]), torch.randn(SHAPE[1])
    compiled = torch.compile(steps, dynamic=False)
    start = time.perf_counter()
    with torch.no_grad():
        compiled_out = compiled(x.clone(), noise, bias)
    compile_seconds = time.perf_counter() - start
    fns = dict(separate=separate, in_place=in_place, compiled=compiled)
    with torch.no_grad():
        reference = separate(x.clone(), noise, bias)
        bitwise = dict(in_place=torch.equal(in_place(x.clone(), noise, bias), reference),
                       compiled=torch.equal(compiled_out, reference))
        inputs = [x.clone() for _ in fns]  # each case writes into its own copy; the values do not matter
        cases = {name: dict(run=lambda fn=fn, t=t: timing.seconds(lambda: fn(t, noise, bias), min_time=0.2))
                 for (name, fn), t in zip(fns.items(), inputs)}
        median = timing.measure(cases, repeats, budget_s=1e9)
    print(json.dumps(dict(cases={name: list(v) for name, v in median.items()}, compile_seconds=compile_seconds,
                          bitwise=bitwise)))


if __name__ == "__main__":
    main()
