"""Times the CUDA kernels against the reference paths at the shapes of the SHHQ 1024x512 generator
and discriminator (channel_base=32768, channel_max=512), and prints a Markdown table.

    PYTHONPATH=. python3 benchmarks/ops.py                 # GPU: kernels vs reference
    PYTHONPATH=. python3 benchmarks/ops.py --device=cpu    # CPU: reference only, reduced sizes

Each row times the forward pass and forward+backward of one op call as the networks make it.
"""

import os
import statistics
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sg2_cli.options import shared  # noqa: E402
from torch_utils import distributed  # noqa: E402
from torch_utils.ops import _kernels, bias_act, upfirdn2d  # noqa: E402


def shhq_layers(max_res, num_fp16_res=4):
    """(resolution height, width, channels, dtype) per block of the SHHQ 1024x512 networks."""
    layers, res = [], 4
    fp16_from = max_res >> (num_fp16_res - 1)
    while res <= max_res:
        channels = min(32768 // res, 512)
        layers.append((res, res // 2, channels, torch.float16 if res >= fp16_from else torch.float32))
        res *= 2
    return layers


def op_cases(batch, max_res, device):
    """(name, input shape, dtype, function(x, impl)) for each op call the networks make."""
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    cases = []
    for h, w, c, dtype in shhq_layers(max_res):
        if h >= 8:  # G: low-pass filter after the transposed conv of an up=2 layer
            cases.append((f'G up-conv filter {h}x{w}', [batch, c, h + 1, w + 1], dtype,
                          lambda x, impl: upfirdn2d.upfirdn2d(x, f, padding=1, gain=4, impl=impl)))
            cases.append((f'G skip upsample2d {h}x{w}', [batch, 3, h // 2, w // 2], torch.float32,
                          lambda x, impl: upfirdn2d.upsample2d(x, f, impl=impl)))
            cases.append((f'D conv filter {h}x{w}', [batch, c, h, w], dtype,
                          lambda x, impl: upfirdn2d.upfirdn2d(x, f, padding=2, impl=impl)))
            cases.append((f'D skip downsample2d {h}x{w}', [batch, c, h, w], dtype,
                          lambda x, impl: upfirdn2d.downsample2d(x, f, impl=impl)))
        b = torch.randn(c, device=device)
        cases.append((f'bias_act lrelu clamp {h}x{w}', [batch, c, h, w], dtype,
                      lambda x, impl, b=b: bias_act.bias_act(x, b.to(x.dtype), act='lrelu', clamp=256, impl=impl)))
    return cases


def time_ms(fn, device, iters, repeats=5):
    fn()  # warm-up (and build)
    results = []
    for _ in range(repeats):
        if device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize()
            results.append(start.elapsed_time(end) / iters)
        else:
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            results.append((time.perf_counter() - t0) * 1000 / iters)
    return statistics.median(results)


def bench_case(shape, dtype, op, impl, device, iters):
    x = torch.randn(shape, device=device, dtype=dtype)
    xg = x.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            op(x, impl)

    def fwd_bwd():
        y = op(xg, impl)
        y.backward(torch.ones_like(y))

    return time_ms(fwd, device, iters), time_ms(fwd_bwd, device, iters)


@click.command()
@shared('--device', param='device')
@click.option('--batch', default=4, show_default=True, help='Images per GPU.')
@click.option('--max-res', default=None, type=int, help='Largest image height [default: 1024 on GPU, 64 on CPU].')
@click.option('--iters', default=None, type=int, help='Timed calls per repeat [default: 20 on GPU, 2 on CPU].')
def main(device, batch, max_res, iters):
    os.environ[_kernels.ENV_DISPATCH] = '0'  # time the kernel itself, also where upfirdn2d would pick cuDNN
    device = distributed.resolve_device(device)
    gpu = device.type == 'cuda'
    max_res = max_res or (1024 if gpu else 64)
    iters = iters or (20 if gpu else 2)
    if not gpu:
        batch = min(batch, 2)
    kernels = gpu and _kernels.get_plugin('bias_act') is not None and _kernels.get_plugin('upfirdn2d') is not None
    what = torch.cuda.get_device_name(device) if gpu else 'CPU (reference paths only)'
    print(f'# torch_utils.ops benchmark: {what}, torch {torch.__version__}, batch {batch}, '
          f'SHHQ {max_res}x{max_res // 2} shapes, {time.strftime("%Y-%m-%d")}\n')
    print('| op | input shape | dtype | ref fwd ms | cuda fwd ms | fwd speedup | ref fwd+bwd ms | cuda fwd+bwd ms | fwd+bwd speedup |')
    print('|---|---|---|---|---|---|---|---|---|')
    for name, shape, dtype, op in op_cases(batch, max_res, device):
        if not gpu:
            dtype = torch.float32  # CPU half precision is not what anyone trains with
        ref = bench_case(shape, dtype, op, 'ref', device, iters)
        if kernels:
            cuda = bench_case(shape, dtype, op, 'cuda', device, iters)
            cells = [f'{ref[0]:.3f}', f'{cuda[0]:.3f}', f'{ref[0] / cuda[0]:.2f}x',
                     f'{ref[1]:.3f}', f'{cuda[1]:.3f}', f'{ref[1] / cuda[1]:.2f}x']
        else:
            cells = [f'{ref[0]:.3f}', 'n/a', '', f'{ref[1]:.3f}', 'n/a', '']
        dt = str(dtype).replace('torch.', '')
        print(f'| {name} | {"x".join(map(str, shape))} | {dt} | ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
    main()
