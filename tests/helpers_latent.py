"""Shared pieces of the latent-tool tests: tiny generators, their checkpoints, independent reference renders."""
import os
import subprocess
import sys

import numpy as np
import torch

import legacy
from training import networks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_generator(aspect_ratio=(2, 1), res=32, seed=0, w_dim=16):
    """A thin random generator (num_ws = 2 * log2(res) - 2) whose noise strengths and w_avg matter."""
    torch.manual_seed(seed)
    G = networks.Generator(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=res, img_channels=3,
                           mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=0, conv_clamp=256),
                           aspect_ratio=aspect_ratio)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(0.1)
        G.mapping.w_avg.normal_(0, 0.3)
    return G.eval().requires_grad_(False)


def save_generator(G, path):
    legacy.save_network_pkl(str(path), dict(G_ema=G))
    return str(path)


def reference_ws(G, seed, psi=1.0):
    """ws of a seed computed here, independently of latent.space."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
    return G.mapping(z, torch.zeros([1, 0]), truncation_psi=psi)


def reference_image(G, ws, noise_mode="const"):
    """The ecosystem's uint8 conversion of G.synthesis(ws), HWC, computed here."""
    img = G.synthesis(ws, noise_mode=noise_mode)
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def run_tool(script, *args):
    """Run a top-level script on the CPU; returns the CompletedProcess."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, capture_output=True,
                          text=True, env=env)
