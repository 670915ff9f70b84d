"""Editing directions in W: closed-form ones from the weights (SeFa), direction files, and applying them.

SeFa (Shen & Zhou, "Closed-Form Factorization of Latent Semantics in GANs", CVPR 2021, section 3.2): the
style affine layers map w to styles, s = A w + b. The unit directions n that change the styles most maximise
|A n|^2, i.e. they are the eigenvectors of A^T A with the largest eigenvalues. A stacks the affine weight
rows of the chosen layers' convolutions, each row scaled to unit length (as the SeFa authors do, so that wide
and narrow layers weigh the same per style channel).

Sign rule: an eigenvector's sign is arbitrary, so each direction is flipped to make its component of largest
magnitude positive (the first such component on a tie). The same weights then always give the same file.

A direction file holds a [w_dim] or [1, w_dim] array or tensor (.npy, .npz, .pt), e.g. StyleGAN-Human's
`latent_direction/sefa/upper_length.pt`, or [K, w_dim] with one direction per row (what `edit.py sefa`
writes); `FILE:INDEX` picks a row.
"""
import math
import os
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from dnnlib.image_grid import make_grid
from dnnlib.util import UserError

from . import space
from .space import PathLike


def style_layers(G: torch.nn.Module) -> Dict[int, list]:
    """{ws index: [(name, layer)]} of every style-modulated layer of G.synthesis, in the order ws feeds them."""
    by_index = {}
    w_idx = 0
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{res}")
        names = [name for name in ("conv0", "conv1") if hasattr(block, name)]
        names += ["torgb"] if block.num_torgb else []
        for offset, name in enumerate(names):
            by_index.setdefault(w_idx + offset, []).append((f"b{res}.{name}", getattr(block, name)))
        w_idx += block.num_conv
    return by_index


def stacked_affine_weights(G: torch.nn.Module, layers: Sequence[int]) -> torch.Tensor:
    """A: the affine weight rows (unit length) of the convolutions that read the given ws indices, float64."""
    rows = []
    for idx in layers:
        for name, layer in style_layers(G).get(idx, []):
            if "torgb" not in name:  # SeFa factorises the convolutions' styles; toRGB styles only tint
                rows.append(layer.affine.weight.detach().to(torch.float64).cpu())
    if not rows:
        raise UserError(f"--layers: layers {layers} feed no convolution (only toRGB); pick others")
    A = torch.cat(rows)
    return A / A.norm(dim=1, keepdim=True)


def sign_normalise(directions: torch.Tensor) -> torch.Tensor:
    """Flip each row so that its component of largest magnitude is positive (see the module docstring)."""
    peak = directions.abs().argmax(dim=1, keepdim=True)
    return directions * directions.gather(1, peak).sign()


def sefa(G: torch.nn.Module, layers: Sequence[int], num: int = 10) -> Tuple[torch.Tensor, torch.Tensor]:
    """(directions [num, w_dim] float32, eigenvalues [num] float64): the top eigenvectors of A^T A, largest first."""
    A = stacked_affine_weights(G, layers)
    eigenvalues, eigenvectors = torch.linalg.eigh(A.T @ A)  # ascending; columns are the eigenvectors
    order = eigenvalues.argsort(descending=True)[:num]
    directions = sign_normalise(eigenvectors[:, order].T.contiguous())
    return directions.to(torch.float32), eigenvalues[order]


def save_directions(path: PathLike, directions: torch.Tensor, eigenvalues: Optional[Sequence[float]] = None,
                    layers: Optional[Sequence[int]] = None) -> str:
    """Write directions [K, w_dim]: .npz (keys directions, eigenvalues, layers), .npy or .pt; atomically."""
    extra = {}
    if eigenvalues is not None:
        extra["eigenvalues"] = np.asarray(eigenvalues, dtype=np.float64)
    if layers is not None:
        extra["layers"] = np.asarray(layers, dtype=np.int64)
    return space.write_arrays(path, "directions", directions, extra)


def split_spec(spec: str) -> Tuple[str, Optional[int]]:
    """'FILE:INDEX' -> (FILE, INDEX); 'FILE' -> (FILE, None). Only a trailing ':digits' is an index."""
    match = re.fullmatch(r"(.+):(\d+)", str(spec))
    if match and not os.path.exists(spec):
        return match.group(1), int(match.group(2))
    return str(spec), None


def _direction_names(path: PathLike, names: List[str]) -> List[str]:
    """The one array a direction file's rows come from: 'directions', else 'w', else its only array."""
    for key in ("directions", "w"):
        if key in names:
            return [key]
    if len(names) != 1:
        raise UserError(f"{path}: expected one array or one named 'directions' (found {', '.join(names[:10])})")
    return names


def load_directions(path: PathLike, w_dim: int) -> torch.Tensor:
    """Every direction [K, w_dim] (float32 tensor) of a direction file, loaded safely (arrays only)."""
    arrays = space.read_arrays(path, lambda names: _direction_names(path, names))
    rows = next(iter(arrays.values()))
    rows = rows[None] if rows.ndim == 1 else rows
    if rows.ndim != 2 or rows.shape[1] != w_dim:
        raise UserError(f"{path}: a direction of shape {list(rows.shape)} does not fit w_dim={w_dim}; expected "
                        f"[{w_dim}], [1, {w_dim}] or [K, {w_dim}]")
    if rows.shape[0] == 0:
        raise UserError(f"{path}: holds no directions (shape {list(rows.shape)})")
    return torch.from_numpy(rows.copy())


def load_direction(spec: str, w_dim: int) -> torch.Tensor:
    """One direction [w_dim] (float32 tensor) from 'FILE' or 'FILE:INDEX', loaded safely (arrays only)."""
    path, index = split_spec(spec)
    rows = load_directions(path, w_dim)
    if index is None and rows.shape[0] > 1:
        raise UserError(f"{path}: holds {rows.shape[0]} directions; pick one with {path}:INDEX")
    index = 0 if index is None else index
    if index >= rows.shape[0]:
        raise UserError(f"{path}: index {index} is out of range; the file holds directions 0-{rows.shape[0] - 1}")
    return rows[index].clone()


def apply_direction(ws: torch.Tensor, direction: torch.Tensor, strength: float, layers: Sequence[int]) -> torch.Tensor:
    """ws + strength * direction at the given ws indices (the other layers are left as they are)."""
    edited = ws.clone()
    edited[:, layers] = ws[:, layers] + strength * direction.to(ws.device, ws.dtype)
    return edited


def edit_strip(G: torch.nn.Module, ws: torch.Tensor, direction: torch.Tensor, strengths: Sequence[float], layers: Sequence[int],
               noise_mode: str = "const", noise: Optional[Dict[str, torch.Tensor]] = None,
               dtype: torch.dtype = torch.float32) -> np.ndarray:
    """One HWC uint8 strip: the image of ws [1, num_ws, w_dim] edited at each strength, side by side."""
    edited = torch.cat([apply_direction(ws, direction, strength, layers) for strength in strengths])
    return make_grid(space.synthesize(G, edited, noise_mode, noise, dtype), 1, len(strengths))


def sweep(strengths: Sequence[float], num_frames: int) -> List[float]:
    """A loop of strengths from the smallest to the largest and back, cosine-eased, num_frames long."""
    lo, hi = min(strengths), max(strengths)
    return [lo + (hi - lo) * (1 - math.cos(2 * math.pi * i / num_frames)) / 2 for i in range(num_frames)]


def sweep_frames(G: torch.nn.Module, ws_list: Sequence[torch.Tensor], direction: torch.Tensor, strengths: Sequence[float], layers: Sequence[int],
                 num_frames: int, noise_mode: str = "const", noises: Optional[Sequence[Optional[dict]]] = None
                 ) -> Iterator[np.ndarray]:
    """Yield video frames: every latent of ws_list side by side, edited at the sweep's strength."""
    noises = noises or [None] * len(ws_list)
    for strength in sweep(strengths, num_frames):
        images = [space.synthesize(G, apply_direction(ws, direction, strength, layers), noise_mode, noise)[0]
                  for ws, noise in zip(ws_list, noises)]
        yield make_grid(images, 1, len(images))
