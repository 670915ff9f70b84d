"""Projecting a photo into a generator: the target's fit, the latent search in W or W+, and pivotal tuning.

Latent search: the StyleGAN2 projector (Karras et al. 2020, section 5 and appendix D): Adam on w, starting
at the mean w; the loss is the LPIPS distance through the VGG16 detector of the metrics (plus an optional
pixel term); the noise maps are optimised too, with a multi-scale autocorrelation penalty and renormalised
after each step; the learning rate ramps up and down (cosine) and w gets Gaussian noise that fades out.
In W+ each of the num_ws layers has its own w.

Pivotal tuning (Roich et al., "Pivotal Tuning for Latent-based Editing of Real Images", 2022): the latent
found (the pivot) is frozen and the synthesis network's weights are tuned for a few steps with LPIPS + L2,
so that the pivot reproduces the photo while the rest of the latent space stays where it was.

Images reach the detector as in the metrics (metrics/perceptual_path_length.py): floats in [0, 255],
downsampled (area) to 256 pixels high when larger, keeping the aspect ratio, with `resize_images=False`.
"""
import copy
import math
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dnnlib import image_files
from dnnlib.util import UserError
from metrics import detectors
from torch_utils import precision

from . import space

FITS = ("pad", "crop", "stretch")
NAMED_COLORS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128)}

# The StyleGAN2-ADA projector's hyper-parameters.
W_AVG_SAMPLES = 10000
INITIAL_LR = 0.1
INITIAL_NOISE_FACTOR = 0.05
NOISE_RAMP_LENGTH = 0.75
LR_RAMPDOWN_LENGTH = 0.25
LR_RAMPUP_LENGTH = 0.05
NOISE_REG_WEIGHT = 1e5
# Pivotal tuning's (PTI's defaults: Adam at 3e-4, LPIPS and L2 weighted 1:1).
PTI_LR = 3e-4
PTI_L2_WEIGHT = 1.0
LOSS_HEIGHT = 256


# ----------------------------------------------------------------------------
# The target.


def parse_color(text: str) -> Tuple[int, int, int]:
    """'white', '#ffffff' or '255,255,255' -> (r, g, b)."""
    text = str(text).strip().lower()
    if text in NAMED_COLORS:
        return NAMED_COLORS[text]
    if text.startswith("#") and len(text) == 7:
        try:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            pass
    parts = text.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)
    raise ValueError(f"'{text}' is not a colour (white, black, gray, #rrggbb or r,g,b)")


def fit_target(image: PIL.Image.Image, height: int, width: int, fit: str = "pad",
               pad_color: Tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A PIL image fitted to height x width -> HWC uint8 RGB.

    pad: scaled to fit inside the frame and centred on pad_color (nothing is cut off); crop: scaled to cover
    the frame and centre-cropped; stretch: resized to the frame, aspect ignored.
    """
    if fit not in FITS:
        raise ValueError(f"fit '{fit}' is not one of {', '.join(FITS)}")
    if image.mode in ("RGBA", "LA", "P"):  # cut-outs: transparent pixels take the pad colour
        image = image.convert("RGBA")
        background = PIL.Image.new("RGBA", image.size, tuple(pad_color) + (255,))
        image = PIL.Image.alpha_composite(background, image)
    image = image.convert("RGB")
    if fit == "stretch":
        return np.array(image.resize((width, height), PIL.Image.LANCZOS))
    scale_of = min if fit == "pad" else max
    scale = scale_of(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, PIL.Image.LANCZOS)
    canvas = PIL.Image.new("RGB", (width, height), tuple(pad_color))
    canvas.paste(image, ((width - size[0]) // 2, (height - size[1]) // 2))
    return np.array(canvas)


def load_target(path: str, height: int, width: int, fit: str = "pad",
                pad_color: Tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Read a photo (PNG or JPEG, with the limits of every image read: dnnlib.image_files.open_user_image) and fit
    it to the generator's frame; a file that is not such an image is a UserError naming it."""
    with image_files.open_user_image(path) as image:
        image.load()
        return fit_target(image, height, width, fit, pad_color)


def to_channels(target: np.ndarray, channels: int) -> np.ndarray:
    """HWC uint8 RGB -> HWC uint8 with the generator's channel count (1 = gray, 3 = RGB)."""
    if channels == 3:
        return target
    if channels == 1:
        return np.array(PIL.Image.fromarray(target).convert("L"))[:, :, None]
    raise UserError(f"a generator with {channels} image channels cannot be fitted to a photo")


# ----------------------------------------------------------------------------
# Loss pieces.


def detector_input(img):
    """[-1, 1] NCHW -> [0, 255], area-downsampled to 256 high when taller (aspect kept)."""
    img = (img + 1) * (255 / 2)
    height, width = img.shape[2:]
    if height > LOSS_HEIGHT:
        img = F.interpolate(img, size=(LOSS_HEIGHT, max(1, round(width * LOSS_HEIGHT / height))), mode="area")
    return img


class ReconstructionLoss:
    """LPIPS distance to a fixed target through the VGG16 detector, plus pixel_weight * mean squared error."""

    def __init__(self, vgg16, target, pixel_weight=0.0, device=torch.device("cpu")):
        self.vgg16 = vgg16
        self.pixel_weight = pixel_weight
        pixels = torch.as_tensor(target, device=device).permute(2, 0, 1)[None].to(torch.float32)
        self.target = detector_input(pixels / 127.5 - 1)
        with torch.no_grad():
            self.target_features = self._features(self.target)

    def _features(self, img):
        return detectors.run_detector(self.vgg16, img, dict(resize_images=False, return_lpips=True))

    def __call__(self, img):
        """(total, lpips, pixel) for generator output img [1, C, H, W] in [-1, 1]."""
        img = detector_input(img.to(torch.float32))
        lpips = (self.target_features - self._features(img)).square().sum()
        pixel = ((img - self.target) / 127.5).square().mean()
        return lpips + self.pixel_weight * pixel, lpips, pixel


def noise_regularisation(noise_bufs):
    """Sum over noise maps and scales of squared autocorrelations at a one-pixel shift (StyleGAN2, app. D)."""
    reg = 0.0
    for buf in noise_bufs:
        noise = buf[None, None, :, :]
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if max(noise.shape[2:]) <= 8:  # down to 8 pixels on the larger side, as 8x8 for square maps
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg


def learning_rate(t, initial_lr=INITIAL_LR):
    """Cosine ramp-down over the last quarter and linear ramp-up over the first 5% of the run (t in [0, 1))."""
    ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN_LENGTH)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return initial_lr * ramp * min(1.0, t / LR_RAMPUP_LENGTH)


@torch.no_grad()
def w_statistics(G: torch.nn.Module, num_samples: int = W_AVG_SAMPLES, seed: int = 123,
                 device: torch.device = torch.device("cpu")) -> Tuple[torch.Tensor, float]:
    """(mean w [1, 1, w_dim], scalar spread) of num_samples mapped z, as the projector's start and noise scale."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, G.z_dim)).to(device, torch.float32)
    c = torch.zeros([num_samples, G.c_dim], device=device)
    w = G.mapping(z, c)[:, :1]
    w_avg = w.mean(dim=0, keepdim=True)
    return w_avg, float(((w - w_avg).square().sum() / num_samples) ** 0.5)


def noise_buffers(G: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """{name: noise_const buffer} of the synthesis layers (names relative to G)."""
    return {name: buf for name, buf in G.named_buffers() if name.endswith("noise_const")}


# ----------------------------------------------------------------------------
# Latent search.


def _start_latent(G, space_name, init_ws, w_avg):
    """The variable optimised: [1, 1, w_dim] in W, [1, num_ws, w_dim] in W+ (from init_ws or the mean)."""
    if space_name == "w":
        start = w_avg if init_ws is None else init_ws[:, :1]
    elif space_name == "wplus":
        start = w_avg.repeat([1, G.num_ws, 1]) if init_ws is None else init_ws
    else:
        raise ValueError(f"space '{space_name}' is not w or wplus")
    return start.detach().clone().to(torch.float32).requires_grad_(True)


def _random_noise(noise_bufs, generator, init_noise=None):
    """Fresh unit Gaussian noise maps (the original projector's start), or a copy of init_noise."""
    maps = {}
    for name, buf in noise_bufs.items():
        start = init_noise[name] if init_noise is not None and name in init_noise else \
            torch.randn(buf.shape, generator=generator, device=buf.device)
        maps[name] = start.to(buf.device, torch.float32).clone().requires_grad_(True)
    return maps


def _set_noise(G, maps):
    """Put tensors (possibly requiring grad) in place of G's noise_const buffers."""
    for name, value in maps.items():
        module_name, _, buf_name = name.rpartition(".")
        G.get_submodule(module_name)._buffers[buf_name] = value


def project(G: torch.nn.Module, target: np.ndarray, vgg16: torch.nn.Module, space_name: str = "w", num_steps: int = 1000,
            init_ws: Optional[torch.Tensor] = None, init_noise: Optional[Dict[str, torch.Tensor]] = None, pixel_weight: float = 0.0,
            seed: int = 0, device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32,
            on_step: Optional[Callable] = None, progress: bool = False) -> dict:
    """Find ws [1, num_ws, w_dim] and noise maps that make G render `target` (HWC uint8 at G's size).

    Returns dict(ws, noise {name: tensor}, losses [per step], final_loss). `on_step(step, ws, loss, noise)` is
    called after each step. G itself is not changed (a copy is optimised). init_ws / init_noise continue an
    earlier search (e.g. W+ from the W result).
    """
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    criterion = ReconstructionLoss(vgg16, target, pixel_weight, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    w_avg, w_std = w_statistics(G, device=device)
    w_opt = _start_latent(G, space_name, None if init_ws is None else init_ws.to(device), w_avg)
    noise = _random_noise(noise_buffers(G), generator, init_noise)
    _set_noise(G, noise)
    optimizer = torch.optim.Adam([w_opt] + list(noise.values()), betas=(0.9, 0.999), lr=INITIAL_LR)
    losses = []
    bar = tqdm(range(num_steps), desc=f"project {space_name}", disable=not progress, dynamic_ncols=True)
    for step in bar:
        t = step / num_steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(t)
        w_noise_scale = w_std * INITIAL_NOISE_FACTOR * max(0.0, 1.0 - t / NOISE_RAMP_LENGTH) ** 2
        w_noise = torch.randn(w_opt.shape, generator=generator, device=device) * w_noise_scale
        ws = (w_opt + w_noise).expand([1, G.num_ws, G.w_dim])
        img = G.synthesis(ws, noise_mode="const", **precision.synthesis_kwargs(dtype))
        total, _lpips, _pixel = criterion(img)
        loss = total + NOISE_REG_WEIGHT * noise_regularisation(noise.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # unit-variance, zero-mean noise maps after every step
            for buf in noise.values():
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
        losses.append(float(total.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4g}")
        if on_step is not None:
            on_step(step, w_opt.detach().expand([1, G.num_ws, G.w_dim]), losses[-1],
                    {name: buf.detach() for name, buf in noise.items()})
    ws = w_opt.detach().expand([1, G.num_ws, G.w_dim]).clone()
    noise = {name: buf.detach().clone() for name, buf in noise.items()}
    return dict(ws=ws, noise=noise, losses=losses, final_loss=evaluate(G, ws, criterion, noise, device, dtype))


def project_stages(G: torch.nn.Module, target: np.ndarray, vgg16: torch.nn.Module, space_name: str = "w", num_steps: int = 1000,
                   wplus_init: str = "w", seed: int = 0, on_step: Optional[Callable] = None, **project_kwargs) -> dict:
    """projector.py's search: W; or W+ started from a W search (wplus_init='w', twice num_steps in all) or from
    the mean w. The W stage uses `seed`, the W+ stage seed + 1. `on_step(stage, step, ws, loss, noise)` after
    each step. Returns the last stage's project() dict."""
    stages = ["w", "wplus"] if space_name == "wplus" and wplus_init == "w" else [space_name]
    result = None
    for stage in stages:
        init = dict(init_ws=result["ws"], init_noise=result["noise"]) if result else {}
        callback = None if on_step is None else (lambda *args, stage=stage: on_step(stage, *args))
        result = project(G, target, vgg16, stage, num_steps, seed=seed + (stage == "wplus"), on_step=callback,
                         **init, **project_kwargs)
    return result


@torch.no_grad()
def evaluate(G: torch.nn.Module, ws: torch.Tensor, criterion: Callable, noise: Optional[Dict[str, torch.Tensor]] = None,
             device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32) -> float:
    """The reconstruction loss (LPIPS + pixel term) of ws with the given noise maps, without latent noise.

    G is the caller's working copy on `device` (project's and pivotal_tuning's): the noise maps are set in it.
    """
    if noise:
        _set_noise(G, {name: value.detach().to(device) for name, value in noise.items()})
    img = G.synthesis(ws.to(device), noise_mode="const", **precision.synthesis_kwargs(dtype))
    return float(criterion(img)[0])


# ----------------------------------------------------------------------------
# Pivotal tuning.


def pivotal_tuning(G: torch.nn.Module, ws: torch.Tensor, target: np.ndarray, vgg16: torch.nn.Module, num_steps: int,
                   noise: Optional[Dict[str, torch.Tensor]] = None, lr: float = PTI_LR, l2_weight: float = PTI_L2_WEIGHT,
                   pixel_weight: float = 0.0, device: torch.device = torch.device("cpu"),
                   dtype: torch.dtype = torch.float32, on_step: Optional[Callable] = None,
                   progress: bool = False) -> Tuple[torch.nn.Module, dict]:
    """Tune a copy of G's synthesis weights so that the frozen pivot ws renders `target`; returns (G, info).

    The loss is LPIPS + l2_weight * mean squared error (images in [-1, 1]), as in PTI; the noise maps (e.g. the
    ones the latent search found) are stored in the copy's noise buffers, so the tuned G alone reproduces the
    photo from ws. info = dict(losses [per step], final_loss). `on_step(step, G, loss)` after each step.
    """
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    if noise:
        with torch.no_grad():
            for name, buf in noise_buffers(G).items():
                buf.copy_(noise[name])
    criterion = ReconstructionLoss(vgg16, target, pixel_weight + l2_weight, device)
    G.synthesis.requires_grad_(True)  # the mapping stays as it was, so seeds keep their w
    optimizer = torch.optim.Adam(G.synthesis.parameters(), lr=lr)
    pivot = ws.detach().to(device, torch.float32)
    losses = []
    bar = tqdm(range(num_steps), desc="pivotal tuning", disable=not progress, dynamic_ncols=True)
    for step in bar:
        img = G.synthesis(pivot, noise_mode="const", **precision.training_synthesis_kwargs(dtype))
        loss = criterion(img)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4g}")
        if on_step is not None:
            on_step(step, G, losses[-1])
    G.requires_grad_(False)
    return G, dict(losses=losses, final_loss=evaluate(G, pivot, criterion, None, device, dtype))
