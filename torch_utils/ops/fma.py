"""Fused multiply-add a * b + c with broadcasting (used by the modulated convolution)."""

import torch


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c in one kernel. Autograd sums each gradient over the dimensions its operand
    was broadcast along, so the gradients have the operands' shapes."""
    return torch.addcmul(c, a, b)
