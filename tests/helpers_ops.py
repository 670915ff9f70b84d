"""Whole networks through the custom ops, for the kernel-against-reference tests on the GPU (test_cuda_ops.py) and
their CPU twin through the test-only kernel build (test_ops_cpu_kernels.py)."""
import torch

from training import networks
from training.loss import r1_penalty_from_logits


def small_networks(device):
    """A thin 64x32 G and D (fp16 in the top 4 resolutions on CUDA, clamped), in eval mode without gradients."""
    sizes = dict(img_resolution=64, img_channels=3)
    g_kwargs = dict(z_dim=64, c_dim=0, w_dim=64, mapping_kwargs=dict(num_layers=2),
                    synthesis_kwargs=dict(channel_base=1024, channel_max=64, num_fp16_res=4, conv_clamp=256), **sizes)
    d_kwargs = dict(c_dim=0, architecture='resnet', channel_base=1024, channel_max=64, num_fp16_res=4, conv_clamp=256,
                    **sizes)
    G = networks.Generator(aspect_ratio=(2, 1), **g_kwargs)
    D = networks.Discriminator(aspect_ratio=(2, 1), **d_kwargs)
    return G.to(device).eval().requires_grad_(False), D.to(device).eval().requires_grad_(False)


def outputs_to_second_order(G, D, z, force_fp32):
    """(image, logits, R1 penalty, gradient of the R1 penalty w.r.t. all of D's weights), all float32."""
    c = torch.zeros(len(z), G.c_dim, device=z.device)
    img = G(z, c, noise_mode='const', force_fp32=force_fp32)
    x = img.detach().float().requires_grad_(True)
    logits = D(x, c, force_fp32=force_fp32)
    r1_penalty = r1_penalty_from_logits(logits, x)
    # Second order through the kernels: gradient of the R1 penalty w.r.t. all of D's weights.
    params = list(D.parameters())
    for p in params:
        p.requires_grad_(True)
    x2 = img.detach().float().requires_grad_(True)
    penalty = r1_penalty_from_logits(D(x2, c, force_fp32=force_fp32), x2, create_graph=True)
    w_grads = torch.autograd.grad(penalty.sum(), params, allow_unused=True, materialize_grads=True)
    for p in params:
        p.requires_grad_(False)
    return img.float(), logits.float(), r1_penalty.float(), torch.cat([g.flatten().float() for g in w_grads])
