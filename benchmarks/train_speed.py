"""CPU training speed at SHHQ size (benchmarks/cpu.py runs this as a child): each phase of one training step.

    python -m benchmarks.train_speed --size=512 --batch=4

The networks are the shhq preset's (channel_base 32768, channel_max 512, 8 mapping layers, conv_clamp 256,
minibatch-stddev group 4, 2:1), the loss is training.loss.StyleGAN2Loss with the preset's settings (style mixing
0.9, path length weight 2 on half the batch, R1 gamma by the auto rule). Each phase runs as the training loop
runs it: its network's parameters require gradients, the others' do not. A step with both regularisers is
Gmain + Greg + Dmain + Dreg. FLOPs are torch's FLOP counter over one run of the phase (forward, backward and the
double backward of R1 and path length). Prints one JSON line: {"peaks": {"fp32": FLOP/s},
"phases": {name: {"seconds": [median, min, max], "flops": ...}}}.
"""
import json

import click
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import timing
from training import loss as training_loss
from training import networks

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


def shhq_networks(resolution):
    torch.manual_seed(0)
    common = dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256)
    G = networks.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                           mapping_kwargs=dict(num_layers=8), aspect_ratio=(2, 1), synthesis_kwargs=common)
    D = networks.Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, architecture="resnet",
                               aspect_ratio=(2, 1), epilogue_kwargs=dict(mbstd_group_size=4), **common)
    return G.train().requires_grad_(False), D.train().requires_grad_(False)


def phase_cases(resolution, batch):
    """{phase: case} for one training step; each case runs the phase once (gradients accumulate, no step)."""
    G, D = shhq_networks(resolution)
    gamma = 0.0002 * resolution ** 2 / batch  # the auto rule of training/presets.py
    loss = training_loss.StyleGAN2Loss(torch.device("cpu"), G, D, r1_gamma=gamma, style_mixing_prob=0.9,
                                       pl_weight=2, pl_batch_shrink=2, pl_decay=0.01)
    gen = torch.Generator().manual_seed(1)
    real_img = torch.rand([batch, 3, resolution, resolution // 2], generator=gen) * 2 - 1
    inputs = dict(real_img=real_img, real_c=torch.zeros(batch, 0), gen_z=torch.randn([batch, 512], generator=gen),
                  gen_c=torch.zeros(batch, 0))

    def run_phase(name):
        module = G if name.startswith("G") else D
        module.requires_grad_(True)
        try:
            loss.accumulate_gradients(name, **inputs)
        finally:
            module.requires_grad_(False)
            module.zero_grad(set_to_none=True)

    cases = {}
    for name in PHASES:
        count = (lambda: run_phase(name)) if name != "Dreg" else (lambda: dreg_equivalent(D, real_img))
        cases[name] = dict(flops=counted_flops(count), run=lambda name=name: timing.seconds(lambda: run_phase(name)))
    return cases


def counted_flops(fn):
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def dreg_equivalent(D, real_img):
    # Dreg's work (D forward, the R1 gradient with create_graph, the backward into D) on a non-leaf copy of the
    # images: torch's FLOP counter cannot follow autograd.grad() to a leaf, which is what the loss uses.
    D.requires_grad_(True)
    try:
        x = real_img.detach().requires_grad_(True) * 1
        penalty = training_loss.r1_penalty_from_logits(D(x, torch.zeros(len(x), 0)), x, create_graph=True)
        penalty.sum().backward()
    finally:
        D.requires_grad_(False)
        D.zero_grad(set_to_none=True)


@click.command()
@click.option("--size", type=click.IntRange(min=8), default=512, show_default=True,
              help="Image height (SHHQ: 512 or 1024)")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--clock", type=click.Choice(list(timing.CLOCKS)), default="wall", show_default=True,
              help="wall time, or the process's CPU time (steadier on a busy machine; use with one thread)")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--budget", "budget_s", type=float, default=600.0, show_default=True,
              help="A phase slower than this many seconds is measured once")
def main(size, batch, clock, repeats, budget_s):
    """Seconds and FLOPs of each phase of one SHHQ training step on the CPU, with the same-run peak."""
    timing.use_clock(clock)
    cases = {"peak fp32": timing.matmul_case("fp32"), **phase_cases(int(size), batch)}
    median = timing.measure(cases, repeats, budget_s)
    phases = {name: dict(seconds=list(median[name]), flops=cases[name]["flops"]) for name in PHASES}
    print(json.dumps(dict(peaks=timing.peaks_of(median, ["fp32"]), clock=clock, threads=torch.get_num_threads(),
                          size=int(size), batch=batch, phases=phases)))


if __name__ == "__main__":
    main()
