"""Perceptual path length (Karras et al. 2019, "A Style-Based Generator Architecture for Generative
Adversarial Networks", section 3.1, eq. 2 and 3).

The LPIPS distance between images at latent positions t and t + epsilon along random paths, divided
by epsilon^2. `ppl2_wend` is the StyleGAN2 variant (Karras et al. 2020, section 3.2): paths in W,
measured at their end (t = 0), without the face crop, 1% tails on either side dropped.
"""
import copy

import numpy as np
import torch

import dnnlib
from . import detectors
from . import metric_utils


# Spherical interpolation of normalised latents, for paths in Z (Karras et al. 2019, eq. 2).
def slerp(a, b, t):
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True)
    p = t * torch.acos(d)
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    d = a * torch.cos(p) + c * torch.sin(p)
    return d / d.norm(dim=-1, keepdim=True)


def path_endpoints(G, z0, z1, c, t, epsilon, space):
    """ws at t and t + epsilon: linear interpolation in W (eq. 3), spherical in Z (eq. 2)."""
    if space == "w":
        w0, w1 = G.mapping(z=torch.cat([z0, z1]), c=torch.cat([c, c])).chunk(2)
        t = t.unsqueeze(1).unsqueeze(2)
        return w0.lerp(w1, t), w0.lerp(w1, t + epsilon)
    zt0 = slerp(z0, z1, t.unsqueeze(1))
    zt1 = slerp(z0, z1, t.unsqueeze(1) + epsilon)
    return G.mapping(z=torch.cat([zt0, zt1]), c=torch.cat([c, c])).chunk(2)


def path_distances(G, vgg16, z0, z1, c, t, epsilon, space="w", crop=False):
    """LPIPS(g(t), g(t + epsilon)) / epsilon^2 per path, with G's current noise buffers (noise_mode='const')."""
    wt0, wt1 = path_endpoints(G, z0, z1, c, t, epsilon, space)
    img = G.synthesis(ws=torch.cat([wt0, wt1]), noise_mode="const", force_fp32=True)

    # The legacy face crop: the central [3/8, 7/8) rows and [2/8, 6/8) columns of a square image.
    if crop:
        if img.shape[2] != img.shape[3]:
            raise dnnlib.util.UserError(f"--metrics: the cropped PPL variants assume square face images; "
                                        f"these are {img.shape[2]}x{img.shape[3]}, use ppl2_wend")
        k = img.shape[2] // 8
        img = img[:, :, k * 3: k * 7, k * 2: k * 6]

    # Box-downsample to 256 on the larger side, as LPIPS was calibrated at 256x256.
    factor = G.img_resolution // 256
    if factor > 1:
        n, c, h, w = img.shape
        img = img.reshape([n, c, h // factor, factor, w // factor, factor]).mean([3, 5])

    img = (img + 1) * (255 / 2)  # [-1, 1] -> [0, 255], the detector's input range
    if img.shape[1] == 1:
        img = img.repeat([1, 3, 1, 1])
    lpips_t0, lpips_t1 = vgg16(img, resize_images=False, return_lpips=True).chunk(2)
    return (lpips_t0 - lpips_t1).square().sum(1) / epsilon ** 2


def filtered_mean(dist):
    """Mean of the distances between the 1st and 99th percentiles: the metric ignores outlier paths."""
    dist = np.asarray(dist)
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(np.extract(np.logical_and(dist >= lo, dist <= hi), dist).mean())


def compute_ppl(opts, num_samples, epsilon, space, sampling, crop, batch_size):
    """PPL over num_samples paths; noise buffers are redrawn for each batch. NaN on ranks other than 0."""
    assert space in ("z", "w") and sampling in ("full", "end")
    num_samples = metric_utils.capped(num_samples, opts.max_gen)
    dataset = metric_utils.label_source(opts)
    vgg16 = detectors.get_feature_detector(opts, "vgg16")
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)  # its noise buffers get overwritten
    noise_bufs = [buf for name, buf in G.named_buffers() if name.endswith(".noise_const")]
    gen = torch.Generator().manual_seed(metric_utils.mix_seed(opts.seed, opts.rank))

    dist = []
    progress = metric_utils.Progress(opts, "ppl paths", num_samples)
    with metric_utils.no_tf32(), torch.no_grad():
        for batch_start in range(0, num_samples, batch_size * opts.num_gpus):
            progress.update(batch_start)
            t = torch.rand([batch_size], generator=gen) * (1 if sampling == "full" else 0)
            z0, z1 = torch.randn([batch_size * 2, G.z_dim], generator=gen).chunk(2)
            label_idx = torch.randint(len(dataset), [batch_size], generator=gen)
            c = torch.from_numpy(np.stack([dataset.get_label(int(i)) for i in label_idx]).astype(np.float32))
            for buf in noise_bufs:
                buf.copy_(torch.randn(buf.shape, generator=gen))
            x = path_distances(G, vgg16, z0.to(opts.device), z1.to(opts.device), c.to(opts.device),
                               t.to(opts.device), epsilon, space, crop)
            if opts.num_gpus > 1:
                parts = [torch.empty_like(x) for _ in range(opts.num_gpus)]
                torch.distributed.all_gather(parts, x)
                dist.extend(parts)
            else:
                dist.append(x)
    progress.update(num_samples)
    progress.close()
    if opts.rank != 0:
        return float("nan")
    return filtered_mean(torch.cat(dist)[:num_samples].cpu().numpy())
