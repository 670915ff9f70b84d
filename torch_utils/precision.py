"""The one table of precisions: command-line names to torch dtypes, and what a generator call needs for each.

Below the command line every function takes a `torch.dtype`; `--dtype=bf16` becomes `torch.bfloat16` here
and nowhere else. (training/networks.py checks the dtypes it is given itself: its source is embedded in
checkpoints, which must run where this module does not exist.)
"""
from typing import Dict, Union

import torch

# Command-line names, in the order the options list them; fp32 is the default everywhere.
PRECISIONS: Dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
DEFAULT = "fp32"
_LONG_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16}  # torch's own spelling, for library callers


def as_dtype(value: Union[str, torch.dtype]) -> torch.dtype:
    """A precision name ('fp32', 'bf16', 'float32', 'bfloat16') or one of those torch dtypes, as a torch.dtype."""
    if isinstance(value, torch.dtype) and value in PRECISIONS.values():
        return value
    if isinstance(value, str) and value in {**PRECISIONS, **_LONG_NAMES}:
        return {**PRECISIONS, **_LONG_NAMES}[value]
    raise ValueError(f"dtype={value!r}: expected one of {', '.join(PRECISIONS)} or "
                     f"{', '.join('torch.' + str(d).split('.')[-1] for d in PRECISIONS.values())}")


def name_of(dtype: torch.dtype) -> str:
    """The command-line name of a precision (torch.bfloat16 -> 'bf16')."""
    dtype = as_dtype(dtype)
    return next(name for name, value in PRECISIONS.items() if value == dtype)


def synthesis_kwargs(dtype: Union[str, torch.dtype] = torch.float32) -> dict:
    """Keyword arguments of G / G.synthesis for a precision.

    float32: none, so that generators of other code bases (loaded with allow_code=True) run as they are and
    CUDA networks keep their float16 blocks, as in the original tools. bfloat16: dtype=torch.bfloat16, the
    network's bfloat16 synthesis (demodulation, noise and toRGB stay in float32).
    """
    dtype = as_dtype(dtype)
    return {} if dtype == torch.float32 else dict(dtype=dtype)


def training_synthesis_kwargs(dtype: Union[str, torch.dtype] = torch.float32) -> dict:
    """Keyword arguments of G.synthesis when its weights are tuned (pivotal tuning): float32 means float32 in
    every block (force_fp32, no float16 blocks on CUDA); bfloat16 as in synthesis_kwargs."""
    dtype = as_dtype(dtype)
    return dict(force_fp32=True) if dtype == torch.float32 else dict(dtype=dtype)
