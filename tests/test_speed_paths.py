"""The fast CPU paths of the networks (speed only, issue 16) compute what the reference form computes.

Reference form: the fused modulated convolution in NCHW, float32 -- what the networks computed before
there were other forms, and what they still compute on CUDA and wherever modconv_plan() picks it.
"""
import copy
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import legacy
from benchmarks import flops
from torch_utils import precision
from torch_utils.ops import bias_act
from training import networks

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_generator(seed=0, resolution=32):
    torch.manual_seed(seed)
    return networks.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=resolution, img_channels=3,
                              mapping_kwargs=dict(num_layers=2), aspect_ratio=(2, 1),
                              synthesis_kwargs=dict(channel_base=256, channel_max=32, conv_clamp=256)).eval()


def to_uint8(img):
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).to(torch.int32)


@pytest.fixture(scope="module")
def fixture_G(compat_dir):
    with open(f"{compat_dir}/tiny_64x32.pkl", "rb") as f:
        return legacy.load_network_pkl(f)["G_ema"]


# ----------------------------------------------------------------------------
# Which form runs where.


def test_plan_keeps_the_original_choice_on_cuda_and_in_cpu_training():
    # CUDA: fused for float32 inference or batch 1, unfused for float16 batches and for training; layout untouched.
    assert networks.modconv_plan(CUDA, False, 4, torch.float32, 512, 64, 32) == (True, None)
    assert networks.modconv_plan(CUDA, False, 4, torch.float16, 512, 64, 32) == (False, None)
    assert networks.modconv_plan(CUDA, False, 1, torch.float16, 512, 64, 32) == (True, None)
    assert networks.modconv_plan(CUDA, True, 1, torch.float32, 512, 64, 32) == (False, None)
    assert networks.modconv_plan(CPU, True, 1, torch.float32, 8, 8, 4)[0] is False


def test_plan_on_cpu_fuses_only_batch_one_and_picks_the_layout_by_size():
    big = networks.CPU_CHANNELS_LAST_MIN_ELEMENTS
    assert networks.modconv_plan(CPU, False, 1, torch.float32, 8, 8, 4) == (True, False)
    assert networks.modconv_plan(CPU, False, 4, torch.float32, 8, 8, 4) == (False, False)
    assert networks.modconv_plan(CPU, False, 4, torch.float32, big // 16, 4, 4) == (False, True)
    assert networks.modconv_plan(CPU, False, 1, torch.float32, big // 16, 4, 4) == (True, True)
    assert networks.modconv_plan(CPU, False, 1, torch.float32, big // 32, 4, 4) == (True, False)  # the original
    assert networks.modconv_plan(CPU, False, 1, torch.bfloat16, 8, 8, 4) == (True, True)


def test_plan_on_cpu_keeps_nchw_for_the_network_whose_weights_train():
    # oneDNN's weight gradient is slow channels_last: the network being trained keeps NCHW, the other goes
    # channels_last on large maps.
    big = networks.CPU_CHANNELS_LAST_MIN_ELEMENTS
    assert networks.modconv_plan(CPU, True, 4, torch.float32, big // 16, 4, 4, weights_need_grad=True) == (False, False)
    assert networks.modconv_plan(CPU, True, 4, torch.float32, big // 16, 4, 4, weights_need_grad=False) == (False, True)
    assert networks.cpu_channels_last(big // 16, 4, 4, weights_need_grad=False)
    assert not networks.cpu_channels_last(big // 16, 4, 4, weights_need_grad=True)
    assert not networks.cpu_channels_last(big // 32, 4, 4, weights_need_grad=False)


def _layer_input_layouts(module, layer_class, run):
    """{'channels_last', 'nchw'} of the inputs that the `layer_class` layers inside `module`'s synthesis and
    discriminator blocks (not D's epilogue) saw while run() ran."""
    seen = set()

    def record(_layer, args):
        x = args[0]
        seen.add("channels_last" if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
                 else "nchw")
    blocks = [m for m in module.modules() if isinstance(m, (networks.SynthesisBlock, networks.DiscriminatorBlock))]
    handles = [m.register_forward_pre_hook(record) for block in blocks for m in block.modules()
               if isinstance(m, layer_class)]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_cpu_training_runs_the_trained_network_nchw_and_the_other_channels_last(monkeypatch):
    monkeypatch.setattr(networks, "CPU_CHANNELS_LAST_MIN_ELEMENTS", 1)  # every block counts as large
    torch.manual_seed(0)
    D = networks.Discriminator(c_dim=0, img_resolution=32, img_channels=3, aspect_ratio=(2, 1),
                               channel_base=256, channel_max=32).train()
    G = tiny_generator().train()
    img = torch.randn(2, 3, 32, 16)
    z, c = torch.randn(2, G.z_dim), torch.zeros(2, 0)

    def d_input_grad():
        x = img.clone().requires_grad_(True)
        D(x, c).sum().backward()
        return x.grad

    grads = {}
    for trains in (True, False):
        D.requires_grad_(trains)
        layouts = _layer_input_layouts(D, networks.Conv2dLayer, lambda: grads.setdefault(trains, d_input_grad()))
        assert layouts == ({"nchw"} if trains else {"channels_last"})  # Dmain/Dreg, then Gmain's pass through D
        G.requires_grad_(trains)
        layouts = _layer_input_layouts(G, networks.SynthesisLayer, lambda: G(z, c).sum().backward() if trains
                                       else G(z, c))
        assert layouts == ({"nchw"} if trains else {"channels_last"})  # Gmain/Greg, then Dmain's fakes
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-4, atol=1e-6)  # the layout changes no result
    D.requires_grad_(True).eval()
    assert _layer_input_layouts(D, networks.Conv2dLayer, lambda: D(img, c)) == {"channels_last"}  # not training


def test_default_fp32_path_is_bitwise_the_reference_form_at_batch_one(fixture_G):
    # The fixture's feature maps are below the channels_last size, so at batch 1 every block plans the fused
    # NCHW form, and nothing may change there.
    synthesis = fixture_G.synthesis
    for res in synthesis.block_resolutions:
        block = getattr(synthesis, f"b{res}")
        height, width = networks.shape_at(res, synthesis.aspect_ratio)
        assert networks.modconv_plan(CPU, False, 1, torch.float32, block.conv1.out_channels, height, width) == \
            (True, False)
    z = torch.from_numpy(np.random.RandomState(7).randn(1, 512).astype(np.float32))
    with torch.no_grad():
        default = fixture_G(z, torch.zeros(1, 0), noise_mode="const")
        reference = fixture_G(z, torch.zeros(1, 0), noise_mode="const", fused_modconv=True, channels_last=False)
    assert torch.equal(default, reference)


def test_in_place_layer_epilogue_is_bitwise_the_autograd_path(fixture_G):
    # Without autograd the CPU layers add noise and bias, activate and clamp in place, in cache-sized slices
    # (bias_act.bias_act_); with autograd they take the plain ops. Both must give the same bits.
    z = torch.from_numpy(np.random.RandomState(3).randn(1, 512).astype(np.float32))
    with torch.no_grad():
        in_place = fixture_G(z, torch.zeros(1, 0), noise_mode="const")
    G = copy.deepcopy(fixture_G).requires_grad_(True)
    recorded = G(z, torch.zeros(1, 0), noise_mode="const")
    assert recorded.requires_grad and torch.equal(in_place, recorded.detach())


# ----------------------------------------------------------------------------
# The forms agree.


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_forms_agree(up, demodulate):
    gen = torch.Generator().manual_seed(up + 2 * demodulate)
    x = torch.randn([3, 16, 8, 4], generator=gen)
    weight = torch.randn([24, 16, 3, 3], generator=gen)
    styles = torch.randn([3, 16], generator=gen) + 1
    noise = torch.randn([3, 1, 8 * up, 4 * up], generator=gen)
    f = networks.upfirdn2d.setup_filter([1, 3, 3, 1])
    kwargs = dict(weight=weight, styles=styles, noise=noise, up=up, padding=1, resample_filter=f,
                  demodulate=demodulate, flip_weight=(up == 1))
    reference = networks.modulated_conv2d(x=x, fused_modconv=True, **kwargs)
    scale = reference.abs().max()
    for fused in (True, False):
        for layout in (torch.contiguous_format, torch.channels_last):
            out = networks.modulated_conv2d(x=x.contiguous(memory_format=layout), fused_modconv=fused, **kwargs)
            torch.testing.assert_close(out, reference, atol=2e-6 * scale, rtol=1e-5)


def test_synthesis_forms_agree(fixture_G):
    ws = fixture_G.mapping(torch.randn(3, 512, generator=torch.Generator().manual_seed(3)), torch.zeros(3, 0))
    with torch.no_grad():
        reference = fixture_G.synthesis(ws, noise_mode="const", fused_modconv=True, channels_last=False)
        for fused in (True, False, None):
            for channels_last in (True, False, None):
                img = fixture_G.synthesis(ws, noise_mode="const", fused_modconv=fused, channels_last=channels_last)
                assert img.is_contiguous()
                torch.testing.assert_close(img, reference, atol=1e-4, rtol=0)


def test_channels_last_training_step_matches_nchw():
    # The layout must not change gradients either (CPU training uses the same plan).
    grads = []
    for channels_last in (False, True):
        G = tiny_generator(seed=1).train()
        ws = G.mapping(torch.randn(2, 32, generator=torch.Generator().manual_seed(0)), None)
        img = G.synthesis(ws, noise_mode="const", channels_last=channels_last)
        img.square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in G.synthesis.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], atol=1e-4 * grads[0].abs().max(), rtol=1e-4)


@pytest.mark.parametrize("act", ["lrelu", "relu", "linear", "tanh"])
def test_bias_act_without_autograd_is_bitwise_the_autograd_path(act):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 5, 6, 3], generator=gen) * 4
    b = torch.randn([5], generator=gen)
    x_before = x.clone()
    for kwargs in (dict(), dict(gain=0.7, clamp=1.5), dict(clamp=2.0), dict(gain=1)):
        for bias in (b, None):
            with torch.no_grad():
                fast = bias_act.bias_act(x, bias, act=act, impl="ref", **kwargs)
            slow = bias_act.bias_act(x.clone().requires_grad_(True), bias, act=act, impl="ref", **kwargs)
            assert torch.equal(fast, slow.detach())
    assert torch.equal(x, x_before)  # the caller's tensor is never written


# ----------------------------------------------------------------------------
# bfloat16: a precision option, within a stated distance of float32.

# bfloat16 keeps 8 significant bits (relative rounding error 2^-9). For images of magnitude up to ~3 a
# rounding moves a pixel by well under one 8-bit level, and only the convolutions round, so the mean
# stays below 1 level and no pixel moves by more than 8.
BF16_MAX_LSB = 8
BF16_MEAN_LSB = 1.0


@pytest.mark.parametrize("batch", [1, 3])
def test_bf16_images_within_lsb_bound_of_fp32(batch):
    G = tiny_generator(seed=2)
    z = torch.randn(batch, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        fp32 = G(z, None, noise_mode="const")
        bf16 = G(z, None, noise_mode="const", dtype=torch.bfloat16)
        by_name = G.synthesis(G.mapping(z, None), noise_mode="const", dtype=precision.as_dtype("bf16"))
    assert bf16.dtype == torch.float32 and torch.equal(bf16, by_name)
    diff = (to_uint8(bf16) - to_uint8(fp32)).abs()
    assert diff.max() <= BF16_MAX_LSB and diff.float().mean() <= BF16_MEAN_LSB
    assert not torch.equal(bf16, fp32)  # it did run in another precision


def test_bf16_keeps_demodulation_and_noise_in_fp32():
    # Same as the float32 computation on bfloat16-rounded convolution operands, up to the output rounding.
    gen = torch.Generator().manual_seed(5)
    x = torch.randn([2, 8, 6, 4], generator=gen)
    weight = torch.randn([8, 8, 3, 3], generator=gen)
    styles = torch.randn([2, 8], generator=gen) + 1
    noise = torch.randn([2, 1, 6, 4], generator=gen) * 1e-3  # far below bfloat16 resolution of the output
    out = networks.modulated_conv2d(x=x.bfloat16(), weight=weight, styles=styles, noise=noise, padding=1,
                                    fused_modconv=False)
    assert out.dtype == torch.float32
    w_rounded = weight.bfloat16().float()
    x_mod = (x.bfloat16().float() * styles.reshape(2, -1, 1, 1)).bfloat16().float()
    expected = torch.nn.functional.conv2d(x_mod, w_rounded, padding=1)
    dcoefs = ((weight.unsqueeze(0) * styles.reshape(2, 1, -1, 1, 1)).square().sum([2, 3, 4]) + 1e-8).rsqrt()
    expected = expected.bfloat16().float() * dcoefs.reshape(2, -1, 1, 1) + noise
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_unknown_dtype_is_refused():
    G = tiny_generator()
    with pytest.raises(ValueError, match="dtype"):
        G(torch.zeros(1, 32), None, dtype="int8")


# ----------------------------------------------------------------------------
# The benchmark's FLOP count.


def test_flop_count_matches_torch_counter():
    G = tiny_generator(resolution=64)
    counted, modulation = flops.generator_flops(G, split=True)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        G(torch.zeros(2, 32), None, noise_mode="const")
    assert counter.get_total_flops() == 2 * counted
    assert 0 < modulation < counted and flops.generator_flops(G) == counted + modulation


# ----------------------------------------------------------------------------
# upfirdn2d's reference path pads inside the convolution: bitwise the pad-then-convolve it replaced.


def pad_then_convolve(x, f, up, down, padding, gain):
    """The reference path as it was: zero insertion, F.pad, then an unpadded depthwise correlation."""
    n, c, h, w = x.shape
    if up > 1:
        x = torch.nn.functional.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = torch.nn.functional.pad(x, padding)
    weight = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    return torch.nn.functional.conv2d(x, weight, stride=down, groups=c)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_upfirdn2d_reference_is_bitwise_pad_then_convolve(layout):
    from torch_utils.ops import upfirdn2d
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    gen = torch.Generator().manual_seed(0)
    for up, down, padding in [(1, 1, [1, 1, 1, 1]), (1, 1, [2, 1, 2, 1]), (2, 1, [2, 1, 2, 1]), (1, 2, [1, 1, 1, 1]),
                              (1, 1, [-1, 2, 0, 3]), (1, 1, [3, 3, 0, 0])]:
        x = torch.randn([2, 5, 9, 7], generator=gen).contiguous(memory_format=layout)
        got = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, gain=up * up, impl="ref")
        assert torch.equal(got, pad_then_convolve(x, f, up, down, padding, up * up))


# ----------------------------------------------------------------------------
# The allocator setting of the tools, applied by the generator itself on the CPU.

_PAGE_FAULT_PROBE = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from tests.test_speed_paths import tiny_generator
G = tiny_generator().eval().requires_grad_(False)
with torch.no_grad():
    G(torch.randn(2, 32), None, noise_mode="const")
def faults_of_a_fresh_64mb_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 << 20)  # 64 MB, above glibc's largest mmap threshold (32 MB), freed at once
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_fresh_64mb_tensor()  # the first one grows the heap
print(min(faults_of_a_fresh_64mb_tensor() for _ in range(3)))  # glibc may still place one of these afresh
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's (Linux)")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_cpu_inference_keeps_freed_memory_for_reuse(setting):
    # A plain G(z, c) on the CPU sets glibc to keep freed memory (cpu_tuning.reuse_freed_memory_once), so a
    # large tensor made again reuses pages instead of faulting in 16k fresh ones; SG2_CPU_MALLOC=0 opts out.
    env = dict(os.environ, SG2_CPU_MALLOC=setting, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", _PAGE_FAULT_PROBE.format(root=ROOT)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    faults = int(result.stdout.split()[-1])
    pages = (64 << 20) // resource.getpagesize()
    assert faults < pages // 10 if setting == "1" else faults > pages // 2
