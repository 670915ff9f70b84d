"""StyleGAN2 losses: R1 against the original code's fixture and a closed form, path lengths, phases, style mixing."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import legacy
from training import networks
from training.loss import StyleGAN2Loss, path_lengths, r1_penalty


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_nets(c_dim=0):
    torch.manual_seed(0)
    kwargs = dict(img_resolution=32, img_channels=3, aspect_ratio=(2, 1), channel_base=256, channel_max=16)
    G = networks.Generator(z_dim=32, c_dim=c_dim, w_dim=32, img_resolution=32, img_channels=3, aspect_ratio=(2, 1),
                           mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=256, channel_max=16))
    D = networks.Discriminator(c_dim=c_dim, epilogue_kwargs=dict(mbstd_group_size=2), **kwargs)
    return G.train().requires_grad_(False), D.train().requires_grad_(False)


def grads_of(module):
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def run_phase(loss, module, phase, real, gen_z, seed=0, gain=1):
    """Gradients of one phase, with the loss's internal randomness seeded."""
    for p in module.parameters():
        p.grad = None
    module.requires_grad_(True)
    torch.manual_seed(seed)
    c = torch.zeros([real.shape[0], 0])
    terms = loss.accumulate_gradients(phase, real, c, gen_z, c, gain=gain)
    module.requires_grad_(False)
    return grads_of(module), terms


def test_r1_penalty_matches_original_code(compat_dir):
    with open(os.path.join(compat_dir, "tiny_64x32.pkl"), "rb") as f:
        D = legacy.load_network_pkl(f)["D"]
    expected = np.load(os.path.join(compat_dir, "tiny_64x32_expected.npz"))
    x = torch.from_numpy(expected["D_input_rand"])
    c = torch.from_numpy(expected["c"]).reshape(x.shape[0], -1)
    penalty = r1_penalty(D, x, c, force_fp32=True).numpy()
    np.testing.assert_allclose(penalty, expected["r1_penalty_rand"], rtol=1e-3)


class LinearD(torch.nn.Module):
    """D(x) = <w, x> + <v, x^2>: its input gradient w + 2 v x is known in closed form."""

    def __init__(self, shape):
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.w = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=torch.float64))
        self.v = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=torch.float64))

    def forward(self, img, c, force_fp32=False):
        return (img * self.w + img.square() * self.v).sum(dim=[1, 2, 3]).unsqueeze(1)


def test_r1_penalty_closed_form_and_gradcheck():
    D = LinearD([3, 8, 4])
    x = torch.randn([5, 3, 8, 4], dtype=torch.float64)
    c = torch.zeros([5, 0], dtype=torch.float64)
    expected = (D.w + 2 * D.v * x).square().sum(dim=[1, 2, 3])
    torch.testing.assert_close(r1_penalty(D, x, c), expected.detach())
    # The penalty must be differentiable w.r.t. D's parameters (it is a training loss).
    torch.autograd.gradcheck(lambda w, v: r1_penalty(_with_params(D, w, v), x, c, create_graph=True),
                             (D.w.detach().clone().requires_grad_(True), D.v.detach().clone().requires_grad_(True)))


def _with_params(D, w, v):
    def forward(img, c, force_fp32=False):
        return (img * w + img.square() * v).sum(dim=[1, 2, 3]).unsqueeze(1)
    return forward


def test_path_lengths_closed_form_non_square():
    # img = A ws (a linear "generator"); then J^T y = A^T y, and the length is sqrt(mean over layers of |.|^2).
    torch.manual_seed(0)
    n, num_ws, w_dim, h, w = 3, 4, 5, 8, 4
    A = torch.randn([3 * h * w, num_ws * w_dim], dtype=torch.float64)
    ws = torch.randn([n, num_ws, w_dim], dtype=torch.float64, requires_grad=True)
    img = (ws.flatten(1) @ A.T).reshape(n, 3, h, w)
    torch.manual_seed(5)
    lengths = path_lengths(img, ws)
    torch.manual_seed(5)
    y = torch.randn_like(img) / np.sqrt(h * w)  # Scaled by the real height and width, not a square size.
    jty = (y.flatten(1) @ A).reshape(n, num_ws, w_dim)
    torch.testing.assert_close(lengths.detach(), jty.square().sum(2).mean(1).sqrt())


def test_dboth_is_dmain_plus_dreg_and_gain_scales():
    G, D = tiny_nets()
    loss = StyleGAN2Loss("cpu", G, D, r1_gamma=3.0, style_mixing_prob=0)
    real = torch.rand([4, 3, 32, 16]) * 2 - 1
    gen_z = torch.randn([4, G.z_dim])
    main, _ = run_phase(loss, D, "Dmain", real, gen_z)
    reg, terms = run_phase(loss, D, "Dreg", real, gen_z, gain=16)
    both, _ = run_phase(loss, D, "Dboth", real, gen_z)
    reg1, _ = run_phase(loss, D, "Dreg", real, gen_z, gain=1)
    for name in both:
        torch.testing.assert_close(both[name], main[name] + reg1[name], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(reg[name], 16 * reg1[name], rtol=1e-5, atol=1e-8)
    # The R1 term is gamma / 2 times the per-sample penalty, averaged over the batch.
    torch.testing.assert_close(terms["D/reg"], 1.5 * r1_penalty(D, real, torch.zeros([4, 0])).mean(), rtol=1e-5, atol=0)


def test_dmain_is_nonsaturating_logistic_loss():
    G, D = tiny_nets()
    loss = StyleGAN2Loss("cpu", G, D, style_mixing_prob=0)
    real = torch.rand([4, 3, 32, 16]) * 2 - 1
    gen_z = torch.randn([4, G.z_dim])
    c = torch.zeros([4, 0])
    grads, terms = run_phase(loss, D, "Dmain", real, gen_z, seed=3)
    # Independent computation: the same generated images (same seed), softplus(D(fake)) + softplus(-D(real)).
    D.requires_grad_(True)
    torch.manual_seed(3)
    with torch.no_grad():
        fake = G(gen_z, c, skip_w_avg_update=True)
    expected = F.softplus(D(fake, c)).mean() + F.softplus(-D(real, c)).mean()
    names, params = zip(*D.named_parameters())
    expected_grads = dict(zip(names, torch.autograd.grad(expected, list(params))))
    D.requires_grad_(False)
    torch.testing.assert_close(terms["D/loss"], expected.detach(), rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-6)


def test_pl_mean_running_average():
    G, D = tiny_nets()
    loss = StyleGAN2Loss("cpu", G, D, style_mixing_prob=0, pl_decay=0.25)
    loss.pl_mean.fill_(1.0)
    gen_z = torch.randn([4, G.z_dim])
    real = torch.zeros([4, 3, 32, 16])
    run_phase(loss, G, "Greg", real, gen_z, seed=7)
    run_phase(loss, G, "Greg", real, gen_z, seed=8)
    # Independently: lengths of the first pl_batch_shrink-th of each batch, same seeds.
    means = []
    for seed in (7, 8):
        torch.manual_seed(seed)
        ws = G.mapping(gen_z[:2], torch.zeros([2, 0]), skip_w_avg_update=True).requires_grad_(True)
        img = G.synthesis(ws)
        means.append(path_lengths(img, ws).mean())
    loss.update_pl_mean()
    expected = 1.0 + 0.25 * (torch.stack(means).mean() - 1.0)
    torch.testing.assert_close(loss.pl_mean, expected.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_style_mixing_switches_latents_at_a_cutoff(prob):
    G, D = tiny_nets()
    loss = StyleGAN2Loss("cpu", G, D, style_mixing_prob=prob)
    z = torch.randn([3, G.z_dim])
    c = torch.zeros([3, 0])
    base = G.mapping(z, c, skip_w_avg_update=True)
    for seed in range(8):
        torch.manual_seed(seed)
        _img, ws = loss.run_G(z, c, update_emas=False)
        same = (ws == base).all(dim=2).all(dim=0)  # [num_ws]: layers that use the original latent
        cutoff = int(same.long().sum())
        assert same[:cutoff].all() and not same[cutoff:].any(), "mixing must switch at one layer"
        if prob == 0:
            assert cutoff == G.num_ws
        else:
            assert 1 <= cutoff < G.num_ws
