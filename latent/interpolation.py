"""Looping through keyframe latents: the frames of an interpolation video, alone or in a grid of loops.

Each loop visits its K keyframes in order and returns to the first, w_frames frames per keyframe, so a
video has K * w_frames frames and frame i * w_frames is keyframe i exactly. Kinds:
- linear: straight lines between consecutive keyframes;
- cubic: a periodic cubic spline through the keyframes (smooth, no stop at a keyframe);
- slerp: spherical interpolation of each layer's offset from the mean w (w - w_avg), its length interpolated
  linearly, so that paths keep away from the mean, where images are bland.
"""
from typing import Iterator, Optional

import numpy as np
import scipy.interpolate
import torch

from dnnlib.image_grid import make_grid

from . import space

KINDS = ("linear", "cubic", "slerp")


def assign_keyframes(ws: torch.Tensor, num_cells: int, num_keyframes: Optional[int] = None) -> torch.Tensor:
    """ws [M, num_ws, w_dim] -> [num_cells, K, num_ws, w_dim]: cell c loops through entries c*K .. c*K+K-1,
    taken cyclically from ws (K = M // num_cells by default, at least 1)."""
    if num_keyframes is None:
        num_keyframes = max(len(ws) // num_cells, 1)
    order = [i % len(ws) for i in range(num_cells * num_keyframes)]
    return ws[order].reshape(num_cells, num_keyframes, *ws.shape[1:])


def _slerp(a, b, t, center):
    """Spherical interpolation of a - center to b - center, per row, with lengths interpolated linearly."""
    a, b = a - center, b - center
    len_a, len_b = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    unit_a, unit_b = a / len_a.clamp_min(1e-12), b / len_b.clamp_min(1e-12)
    omega = (unit_a * unit_b).sum(dim=-1, keepdim=True).clamp(-1, 1).acos()
    sin_omega = omega.sin()
    near = sin_omega < 1e-6  # (anti)parallel: fall back to a straight line between the unit vectors
    coef_a = torch.where(near, 1 - t, ((1 - t) * omega).sin() / sin_omega.clamp_min(1e-6))
    coef_b = torch.where(near, torch.full_like(omega, t), (t * omega).sin() / sin_omega.clamp_min(1e-6))
    return center + (coef_a * unit_a + coef_b * unit_b) * torch.lerp(len_a, len_b, t)


class LoopPath:
    """ws at any frame of one loop through keyframes [K, num_ws, w_dim]."""

    def __init__(self, keyframes, w_frames, kind="cubic", w_avg=None):
        if kind not in KINDS:
            raise ValueError(f"kind '{kind}' is not one of {', '.join(KINDS)}")
        self.keyframes, self.w_frames, self.kind = keyframes, w_frames, kind
        self.center = torch.zeros_like(keyframes[0, 0]) if w_avg is None else w_avg.to(keyframes)
        if kind == "cubic":
            closed = torch.cat([keyframes, keyframes[:1]]).double().cpu().numpy()
            self.spline = scipy.interpolate.CubicSpline(np.arange(len(closed)), closed, axis=0, bc_type="periodic")

    def __call__(self, frame):
        num_keys = len(self.keyframes)
        key, step = divmod(frame % (num_keys * self.w_frames), self.w_frames)
        if step == 0:
            return self.keyframes[key]  # exactly the keyframe, whatever the kind
        t = step / self.w_frames
        a, b = self.keyframes[key], self.keyframes[(key + 1) % num_keys]
        if self.kind == "linear":
            return torch.lerp(a, b, t)
        if self.kind == "slerp":
            return _slerp(a, b, t, self.center)
        return torch.from_numpy(self.spline(key + t)).to(a)


def loop_frames(G: torch.nn.Module, cells: torch.Tensor, rows: int, cols: int, w_frames: int, kind: str = "cubic",
                noise_mode: str = "const", dtype: torch.dtype = torch.float32) -> Iterator[np.ndarray]:
    """Yield the HWC uint8 frames of a rows x cols grid of loops; cells [rows*cols, K, num_ws, w_dim]."""
    w_avg = getattr(G.mapping, "w_avg", None)
    paths = [LoopPath(keyframes, w_frames, kind, w_avg) for keyframes in cells]
    for frame in range(cells.shape[1] * w_frames):
        ws = torch.stack([path(frame) for path in paths])
        yield make_grid(space.synthesize(G, ws, noise_mode, dtype=dtype), rows, cols)
