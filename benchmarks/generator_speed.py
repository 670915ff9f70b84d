"""Generator speed, measured in a fresh process (benchmarks/cpu.py runs this as a child on the CPU).

    python -m benchmarks.generator_speed --size=512 --dtype=fp32 --batches=1,4,16          # a plain G(z, c)
    python -m benchmarks.generator_speed --size=512 --dtype=fp32 --batches=4 --levers      # the forms, batch 4
    python -m benchmarks.generator_speed --size=512 --dtype=fp32 --batches=1,16 --tools    # generate.py's path
    python -m benchmarks.generator_speed --device=cuda --tools --batches=1,4,16,32         # the tools on a GPU

The network is the SHHQ config (z/w 512, 8 mapping layers, channel_base 32768, channel_max 512, 2:1) with random
weights, called as a library user calls a loaded checkpoint: eval mode, no parameter needing gradients, no
allocator setting made by the caller. The matmul peak of the dtype is measured in the same interleaved rounds.
Prints one JSON line: {"peaks": {dtype: FLOP/s}, "flops_per_image": ..., "cases": {name: [median, min, max]}},
each case in seconds per image.
"""
import json

import click
import numpy as np
import torch

from benchmarks import flops as flop_count
from benchmarks import timing
from latent import generation, space
from sg2_cli.options import shared
from torch_utils import distributed, precision
from torch_utils.precision import PRECISIONS
from training import networks

# The original implementation's inference form on any device: the fused (grouped) modulated convolution, NCHW.
ORIGINAL_FORM = dict(fused_modconv=True, channels_last=False)

# Other forms of a batch, for the levers table (issue 22): each given explicitly, so the batch runs at once.
BATCHED_FORMS = {
    "grouped, NCHW (the original form)": ORIGINAL_FORM,
    "grouped, channels_last where planned": dict(fused_modconv=True),
    "activation scaling, channels_last where planned (issue 16)": dict(fused_modconv=False),
}


def shhq_generator(resolution):
    torch.manual_seed(0)
    return networks.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                              mapping_kwargs=dict(num_layers=8), aspect_ratio=(2, 1),
                              synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4,
                                                    conv_clamp=256)).eval().requires_grad_(False)


def dtype_kwargs(dtype_name):
    # fp32: no keyword at all, the call any StyleGAN2 code accepts.
    return {} if dtype_name == "fp32" else dict(dtype=PRECISIONS[dtype_name])


def call_case(G, batch, **kwargs):
    """G(z, c) on a batch on G's device, seconds per image."""
    device = next(G.parameters()).device
    z, c = torch.randn(batch, G.z_dim, device=device), torch.zeros(batch, 0, device=device)
    call = timing.finished(lambda: G(z, c, noise_mode="const", **kwargs), device)
    return dict(run=lambda: timing.seconds(call) / batch)


def plain_cases(G, batches, dtype_name):
    return {f"G batch {batch}": call_case(G, batch, **dtype_kwargs(dtype_name)) for batch in batches}


def lever_cases(G, batches, dtype_name):
    """The batched forms at each batch, and at batch 1 the per-sample form in NCHW and without the in-place
    layer epilogue (the two other levers)."""
    cases = {"per-sample (the default), batch 1": call_case(G, 1, **dtype_kwargs(dtype_name))}
    for batch in batches:
        cases[f"per-sample (the default), batch {batch}"] = call_case(G, batch, **dtype_kwargs(dtype_name))
        for name, form in BATCHED_FORMS.items():
            cases[f"{name}, batch {batch}"] = call_case(G, batch, **form, **dtype_kwargs(dtype_name))
    cases["per-sample, NCHW everywhere, batch 1"] = call_case(G, 1, channels_last=False, **dtype_kwargs(dtype_name))
    cases["per-sample, epilogue as separate passes, batch 1"] = without_in_place_epilogue(
        call_case(G, 1, **dtype_kwargs(dtype_name)))
    cases["the original form at batch 1 (NCHW, epilogue as separate passes)"] = without_in_place_epilogue(
        call_case(G, 1, channels_last=False, **dtype_kwargs(dtype_name)))
    cases["per-sample, activation scaling where a block's weights outnumber its activations, batch 1"] = \
        scaling_small_maps(call_case(G, 1, **dtype_kwargs(dtype_name)))
    return cases


def scaling_small_maps(case):
    """The case with the unfused form (activation scaling) in the blocks whose modulated weights (C * 3 * 3 per
    output channel) outnumber their feature-map pixels (4x2 to 64x32 in the SHHQ configs); not taken, since it
    changes those blocks' pixels from the original form's at batch 1."""
    run, plan = case["run"], networks.modconv_plan

    def small_maps_unfused(device, training, batch_size, dtype, channels, height, width):
        fused, channels_last = plan(device, training, batch_size, dtype, channels, height, width)
        return fused and channels * 9 <= height * width, channels_last

    def patched():
        networks.modconv_plan = small_maps_unfused
        try:
            return run()
        finally:
            networks.modconv_plan = plan
    return dict(run=patched)


def without_in_place_epilogue(case):
    """The case with the layers' noise/bias/activation/clamp as the plain separate passes (as before issue 22)."""
    run = case["run"]

    def patched():
        saved = networks._epilogue_in_place
        networks._epilogue_in_place = lambda *args: False
        try:
            return run()
        finally:
            networks._epilogue_in_place = saved
    return dict(run=patched)


def tool_cases(G, batches, dtype_name):
    """What the tools run: generate.py's generate_images (17 seeds, as the issue timed it) and the one-image
    passes of style_mixing.py and the web app (latent.space.synthesize)."""
    seeds = list(range(17))
    dtype = PRECISIONS[dtype_name]
    device = next(G.parameters()).device
    cases = {}
    for batch in batches:
        def run(batch=batch):  # the images come back as numpy arrays, so the device has finished
            return timing.seconds(lambda: list(generation.generate_images(G, seeds, batch_size=batch, dtype=dtype,
                                                                          device=device))) / len(seeds)
        cases[f"generate.py --batch={batch}"] = dict(run=run)
    ws = G.mapping(torch.from_numpy(np.random.RandomState(0).randn(2, G.z_dim).astype(np.float32)).to(device), None)
    synthesize = timing.finished(lambda: space.synthesize(G, ws, dtype=dtype), device)
    cases["style_mixing.py / app (one image per pass)"] = dict(run=lambda: timing.seconds(synthesize) / len(ws))
    return cases


@click.command()
@click.option("--size", type=click.IntRange(min=8), default=512, show_default=True,
              help="Image height (SHHQ: 512 or 1024)")
@shared("--dtype")
@click.option("--batches", default="1,4,16", callback=timing.int_list, show_default=True)
@click.option("--clock", type=click.Choice(list(timing.CLOCKS)), default="wall", show_default=True,
              help="wall time, or the process's CPU time (steadier on a busy machine; use with one thread)")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--budget", "budget_s", type=float, default=60.0, show_default=True,
              help="A case slower than this many seconds is measured once")
@click.option("--levers", is_flag=True, help="The other forms of a batch instead of the plain call")
@click.option("--tools", is_flag=True, help="The tools' paths instead of the plain call")
@shared("--device", param="device_name", default="cpu", note=None)
def main(size, dtype, batches, clock, repeats, budget_s, levers, tools, device_name):
    """Seconds per image of the SHHQ generator, with the same-run matmul peak; one JSON line."""
    dtype_name = precision.name_of(dtype)
    timing.use_clock(clock)
    device = distributed.resolve_device(device_name)
    G = shhq_generator(int(size)).to(device)
    make = lever_cases if levers else tool_cases if tools else plain_cases
    cases = {f"peak {dtype_name}": timing.matmul_case(dtype_name, device), **make(G, batches, dtype_name)}
    median = timing.measure(cases, repeats, budget_s)
    print(json.dumps(dict(peaks=timing.peaks_of(median, [dtype_name]), clock=clock, threads=torch.get_num_threads(),
                          device=str(device), default_batch=generation.default_batch(device),
                          flops_per_image=flop_count.generator_flops(G),
                          cases={name: list(v) for name, v in median.items() if not name.startswith("peak")})))


if __name__ == "__main__":
    main()
