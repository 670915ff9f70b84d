"""Images of seeds and of saved latents, batched, as generate.py writes them (and the app shows them)."""
import os
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from dnnlib import progress as progress_report
from torch_utils import precision

from . import space


def default_batch(device: Union[str, torch.device]) -> int:
    """Seeds per generator call unless the caller says otherwise: the fastest per image on `device`.

    CPU: 1. A batch runs one sample at a time there (networks.runs_per_sample), so every batch size costs the
    same per image (generate.py timed at batch 1, 4 and 16 in benchmarks/RESULTS.md, issue 22) and batch 1
    holds the least memory. CUDA: 16, where a batch fills the GPU (the tools' earlier default; not measured
    against other sizes yet, since no GPU was lent for issue 22: benchmarks/gpu_session.sh's step 3b does it).
    """
    return 1 if torch.device(device).type == "cpu" else 16


@torch.no_grad()
def generate_images(G: torch.nn.Module, seeds: Sequence[int], truncation_psi: float = 1.0,
                    truncation_cutoff: Optional[int] = None, noise_mode: str = "const", class_idx: Optional[int] = None,
                    batch_size: Optional[int] = None, device: torch.device = torch.device("cpu"),
                    progress: bool = False, dtype: torch.dtype = torch.float32) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield (seed, HWC uint8 image) for each seed through G(z, c), batch_size seeds per forward pass (None:
    default_batch(device)).

    z of seed s is np.random.RandomState(s).randn(1, z_dim), as in every tool of the ecosystem; on the CPU the
    images are bitwise the same at any batch_size (networks.runs_per_sample). dtype=torch.bfloat16 runs the
    synthesis in bfloat16 (torch_utils.precision).
    """
    batch_size = batch_size or default_batch(device)
    label = space.class_label(G, class_idx, device)
    kwargs = precision.synthesis_kwargs(dtype)
    batches = [seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)]
    with progress_report.bar(total=len(seeds), desc="images", unit="img", disable=not progress) as bar:
        for batch in batches:
            z = torch.from_numpy(np.concatenate([space.seed_to_z(seed, G.z_dim) for seed in batch])).to(device)
            img = G(z, label.repeat([len(batch), 1]), truncation_psi=truncation_psi,
                    truncation_cutoff=truncation_cutoff, noise_mode=noise_mode, **kwargs)
            for seed, pixels in zip(batch, space.to_uint8(img).cpu().numpy()):
                yield seed, pixels
            bar.update(len(batch))


def render_projected(G: torch.nn.Module, path: Union[str, os.PathLike], noise_mode: str = "const",
                     dtype: torch.dtype = torch.float32) -> List[np.ndarray]:
    """HWC uint8 images of the latents in a saved file (projected_w.npz, generate.py --save-w output, .npy, .pt),
    in order, with the noise maps the file holds."""
    ws, noise = space.load_latents(path, G)
    return space.synthesize(G, ws, noise_mode=noise_mode, noise=noise, dtype=dtype)
