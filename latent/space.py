"""Seeds, latents and layers: what the generation, mixing, video, editing and projection tools share.

Conventions of the StyleGAN2-ADA ecosystem, kept so that seeds and files mean the same everywhere:
- seed s -> z = np.random.RandomState(s).randn(1, z_dim);
- z -> ws = G.mapping(z, c, truncation_psi, truncation_cutoff), shape [N, num_ws, w_dim];
- a saved latent is `projected_w.npz` with key `w` of shape [1, num_ws, w_dim] (also .npy and .pt).

Layers are indices into ws. Named bands follow the StyleGAN papers' two styles per resolution (ws 2k and
2k+1 belong to resolution 4 * 2**k, the larger side): `coarse` = 4-8 (ws 0-3), `middle` = 16-32 (ws 4-7),
`fine` = 64 and up (ws 8 to num_ws - 1). A 2:1 network has the same bands (4x2 .. 8x4 is coarse).
"""
import contextlib
import os
import re
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

import dnnlib
from dnnlib import array_files
from dnnlib.util import UserError
from torch_utils import precision

LAYER_BANDS = {"coarse": (0, 3), "middle": (4, 7), "fine": (8, None)}  # inclusive ws ranges; None = the last
NOISE_PREFIX = "noise."  # keys of optimised noise maps in a latent .npz, e.g. noise.synthesis.b8.conv0.noise_const
LATENT_EXTENSIONS = array_files.EXTENSIONS
PathLike = Union[str, os.PathLike]


MAX_SEED = 2 ** 32 - 1      # numpy.random.RandomState takes 32-bit seeds.
MAX_SEED_COUNT = 1_000_000  # Images in one call; a typo like 0-99999999999 should not fill the memory.


def parse_range(text: Union[str, List[int]]) -> List[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]; seeds from 0 to 2**32-1, at most MAX_SEED_COUNT of them."""
    if isinstance(text, list):
        return text
    values = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        numbers = [int(n) for n in match.groups()] if match else [int(part)] if re.fullmatch(r"\d+", part) else []
        if any(n > MAX_SEED for n in numbers):
            raise ValueError(f"'{part}': seeds go from 0 to {MAX_SEED}")
        if match:
            lo, hi = numbers
            if hi < lo:
                raise ValueError(f"range '{part}' runs backwards")
            if len(values) + hi - lo + 1 > MAX_SEED_COUNT:
                raise ValueError(f"more than {MAX_SEED_COUNT} seeds")
            values.extend(range(lo, hi + 1))
        elif numbers:
            values.append(numbers[0])
        else:
            raise ValueError(f"'{part}' is not a number or a range like 0-9")
    return values


def parse_layers(text: str, num_ws: int) -> List[int]:
    """'coarse', 'middle,fine', '0-3,8', 'all' or '' (no layers) -> sorted ws indices below num_ws."""
    layers = set()
    for part in filter(None, (p.strip().lower() for p in str(text).split(","))):
        if part == "all":
            layers.update(range(num_ws))
        elif part in LAYER_BANDS:
            lo, hi = LAYER_BANDS[part]
            hi = num_ws - 1 if hi is None else min(hi, num_ws - 1)
            if lo > hi:
                raise ValueError(f"'{part}' is empty for this network ({num_ws} ws: layers 0-{num_ws - 1})")
            layers.update(range(lo, hi + 1))
        else:
            values = parse_range(part)
            if max(values) >= num_ws:
                raise ValueError(f"layer {max(values)} does not exist; this network has layers 0-{num_ws - 1}")
            layers.update(values)
    return sorted(layers)


def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    """The latent of a seed, as every tool of the ecosystem computes it."""
    return np.random.RandomState(seed).randn(1, z_dim)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """NCHW float in [-1, 1] -> NHWC uint8, the ecosystem's conversion."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def class_label(G: torch.nn.Module, class_idx: Optional[int], device: torch.device) -> torch.Tensor:
    """One-hot label row for conditional networks; an empty row for unconditional ones."""
    label = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim == 0:
        return label
    if class_idx is None:
        raise UserError("--class: this network is conditional; pass a class index with --class")
    if not 0 <= class_idx < G.c_dim:
        raise UserError(f"--class: {class_idx} is out of range; this network has classes 0-{G.c_dim - 1}")
    label[:, class_idx] = 1
    return label


@torch.no_grad()
def seeds_to_ws(G: torch.nn.Module, seeds: Sequence[int], truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, class_idx: Optional[int] = None,
                device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """ws [len(seeds), num_ws, w_dim] of the seeds, through G.mapping with truncation (as G(z, c) computes them)."""
    z = torch.from_numpy(np.concatenate([seed_to_z(seed, G.z_dim) for seed in seeds])).to(device)
    label = class_label(G, class_idx, device).repeat([len(seeds), 1])
    return G.mapping(z, label, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)


def mix_styles(row_ws: torch.Tensor, col_ws: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    """Style mixing (StyleGAN paper, section 3.1): row_ws with the ws at `layers` taken from col_ws."""
    mixed = row_ws.clone()
    mixed[:, layers] = col_ws[:, layers]
    return mixed


def style_mixing(G: torch.nn.Module, row_seeds: Sequence[int], col_seeds: Sequence[int], layers: Sequence[int],
                 truncation_psi: float = 1.0, noise_mode: str = "const", class_idx: Optional[int] = None,
                 device: torch.device = torch.device("cpu")
                 ) -> Tuple[List[np.ndarray], List[np.ndarray], Dict[Tuple[int, int], np.ndarray]]:
    """(row images, column images, {(row seed, col seed): image}): rows take the columns' ws at `layers`."""
    row_ws = seeds_to_ws(G, row_seeds, truncation_psi, None, class_idx, device)
    col_ws = seeds_to_ws(G, col_seeds, truncation_psi, None, class_idx, device)
    pairs = {}
    for row_seed, row_w in zip(row_seeds, row_ws.split(1)):
        for col_seed, col_w in zip(col_seeds, col_ws.split(1)):
            pairs[(row_seed, col_seed)] = synthesize(G, mix_styles(row_w, col_w, layers), noise_mode)[0]
    return synthesize(G, row_ws, noise_mode), synthesize(G, col_ws, noise_mode), pairs


def style_mixing_cells(row_images: Sequence[np.ndarray], col_images: Sequence[np.ndarray],
                       pairs: Dict[Tuple[int, int], np.ndarray], row_seeds: Sequence[int],
                       col_seeds: Sequence[int]) -> List[np.ndarray]:
    """The style-mixing sheet's cells in (rows + 1) x (cols + 1) order: a black corner, the column sources
    along the top, each row's source on the left followed by its mixes."""
    cells = [np.zeros_like(row_images[0])] + list(col_images)
    for row_seed, row_image in zip(row_seeds, row_images):
        cells += [row_image] + [pairs[(row_seed, col_seed)] for col_seed in col_seeds]
    return cells


@contextlib.contextmanager
def noise_maps(G: torch.nn.Module, noise: Dict[str, torch.Tensor]) -> Iterator[torch.nn.Module]:
    """Run G with the given noise maps ({buffer name: tensor}) in its noise_const buffers, then restore them."""
    buffers = dict(G.named_buffers())
    saved = {name: buffers[name].clone() for name in noise}
    try:
        with torch.no_grad():
            for name, value in noise.items():
                buffers[name].copy_(value)
        yield G
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                buffers[name].copy_(value)


@torch.no_grad()
def synthesize(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str = "const", noise: Optional[Dict[str, torch.Tensor]] = None,
               dtype: torch.dtype = torch.float32, style_offsets: Optional[list] = None) -> List[np.ndarray]:
    """HWC uint8 numpy images of ws [N, num_ws, w_dim], one forward pass per image (results do not depend on N).
    style_offsets: per style layer, None or a [C] tensor added to its styles (latent.stylespace)."""
    device = next(G.parameters()).device
    extra = precision.synthesis_kwargs(dtype)
    if style_offsets is not None:  # only then: foreign generators need not know the argument
        extra["style_offsets"] = style_offsets
    images = []
    with noise_maps(G, noise or {}):
        for w in ws.to(device, torch.float32).split(1):
            img = G.synthesis(w, noise_mode=noise_mode, **extra)
            images.append(to_uint8(img.float())[0].cpu().numpy())
    return images


# ----------------------------------------------------------------------------
# Latent files: read safely (arrays and tensors only, never pickled objects), written atomically.


def read_arrays(path: PathLike, choose: Optional[Callable[[List[str]], List[str]]] = None) -> Dict[str, np.ndarray]:
    """The arrays of a latent or direction file as float32 (dnnlib/array_files.py: bounded, plain arrays and
    tensors only, never pickled objects; `choose(names)` picks the ones to decode); each must be finite."""
    arrays = array_files.read_arrays(os.fspath(path), choose)
    for key, value in arrays.items():
        if not np.isfinite(value).all():  # after the cast: a float64 of 1e300 is inf in float32
            raise UserError(f"{path}: array '{key}' holds NaN or infinite values (or numbers too large for float32)")
    return arrays


def _as_ws(w, num_ws, w_dim, path):
    """[w_dim], [N, w_dim] (W: broadcast), [num_ws, w_dim] or [N, num_ws, w_dim] -> [N, num_ws, w_dim]."""
    if w.ndim == 1:
        w = w[None]
    if w.ndim == 2 and w.shape[0] == num_ws and w.shape[-1] == w_dim and num_ws > 1:
        w = w[None]
    if w.ndim == 2:
        w = np.repeat(w[:, None], num_ws, axis=1)
    if w.ndim != 3 or w.shape[1:] != (num_ws, w_dim) or w.shape[0] < 1:
        raise UserError(f"{path}: latent of shape {list(w.shape)} does not fit this network, which takes "
                        f"[N, {num_ws}, {w_dim}] (W+) or [N, {w_dim}] (W)")
    return w


def latent_inputs(G: torch.nn.Module, seeds: Optional[Sequence[int]], latent_files: Sequence[PathLike],
                  truncation_psi: float, device: torch.device) -> List[Tuple[str, torch.Tensor, Optional[Dict[str, torch.Tensor]]]]:
    """[(output name, ws [1, num_ws, w_dim], noise maps)] of the seeds (mapped, truncated) or of every latent in
    the files, in order: the --seeds / --latents inputs of edit.py and gen_video.py."""
    if (seeds is None) == (not latent_files):
        raise UserError("--seeds or --latents: give exactly one of them")
    if seeds is not None:
        ws = seeds_to_ws(G, seeds, truncation_psi, device=device)
        return [(f"seed{seed:04d}", w, None) for seed, w in zip(seeds, ws.split(1))]
    items, stems = [], set()
    for file_idx, path in enumerate(latent_files):
        ws, noise = load_latents(path, G)
        stem = os.path.splitext(os.path.basename(path))[0]
        stem = stem if stem not in stems else f"{stem}{file_idx}"  # a/projected_w.npz, b/projected_w.npz
        stems.add(stem)
        names = [stem] if len(ws) == 1 else [f"{stem}-{idx:02d}" for idx in range(len(ws))]
        items += [(name, w.to(device), noise) for name, w in zip(names, ws.split(1))]
    return items


def _latent_names(path: PathLike, names: List[str]) -> List[str]:
    """The arrays a latent file's ws and noise maps come from: 'w' and 'noise.*', or its only array."""
    if "w" not in names and len(names) == 1:
        return names
    if "w" not in names:
        raise UserError(f"{path}: no array named 'w' (found {', '.join(names[:10]) or 'none'})")
    others = [name for name in names if name != "w" and not name.startswith(NOISE_PREFIX)]
    if others:
        raise UserError(f"{path}: array '{others[0]}' is neither 'w' nor a noise map")
    return names


def load_latents(path: PathLike, G: torch.nn.Module) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """(ws [N, num_ws, w_dim] float32 tensor, {noise buffer name: tensor}) from a saved latent file."""
    arrays = read_arrays(path, lambda names: _latent_names(path, names))
    w = arrays.pop("w") if "w" in arrays else arrays.popitem()[1]
    ws = torch.from_numpy(_as_ws(w, G.num_ws, G.w_dim, path))
    buffers = dict(G.named_buffers())
    noise = {}
    for key, value in arrays.items():
        name = key[len(NOISE_PREFIX):]
        if name not in buffers or tuple(buffers[name].shape) != value.shape:
            raise UserError(f"{path}: array '{key}' is neither 'w' nor a noise map of this network")
        noise[name] = torch.from_numpy(value)
    return ws, noise


def write_arrays(path: PathLike, key: str, main: torch.Tensor, extra: Optional[Dict[str, np.ndarray]] = None) -> str:
    """Write a float32 tensor atomically: .npz holds it as `key` beside the `extra` arrays; .npy and .pt hold
    it alone (a plain array / tensor, readable without pickles)."""
    path = os.fspath(path)
    main = main.detach().cpu().to(torch.float32)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        arrays = {key: main.numpy(), **(extra or {})}
        dnnlib.util.atomic_write(path, lambda f: np.savez(f, **arrays))
    elif ext == ".npy":
        dnnlib.util.atomic_write(path, lambda f: np.save(f, main.numpy(), allow_pickle=False))
    elif ext in (".pt", ".pth"):
        dnnlib.util.atomic_write(path, lambda f: torch.save(main.clone(), f))
    else:
        raise UserError(f"{path}: unknown file type '{ext}'; use .npz, .npy or .pt")
    return path


def save_latents(path: PathLike, ws: torch.Tensor, noise: Optional[Dict[str, torch.Tensor]] = None) -> str:
    """Write ws [N, num_ws, w_dim] as .npz (key `w`, plus the noise maps), .npy or .pt, atomically."""
    noise_arrays = {NOISE_PREFIX + name: t.detach().cpu().float().numpy() for name, t in (noise or {}).items()}
    return write_arrays(path, "w", ws, noise_arrays)
