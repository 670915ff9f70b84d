"""conv2d / conv_transpose2d entry points kept for checkpoint and ecosystem compatibility.

The original code base replaced PyTorch's convolution with custom autograd functions because
old PyTorch versions could not differentiate convolutions twice (needed by the R1 and path
length regularizers). Current PyTorch can, so these are thin wrappers around
torch.nn.functional.

`no_weight_gradients()` is kept as an API but changes nothing: when the regularizers call
torch.autograd.grad(outputs, inputs=[images]), PyTorch's autograd engine already skips the
weight gradients that the call does not ask for, while second-order gradients with respect to
the weights (through the input gradient) stay correct. Skipping them ourselves, e.g. by
detaching the weights, would break exactly those second-order gradients.
"""

import contextlib

import torch

enabled = False                    # Kept for compatibility; the wrappers below never need a custom op.
weight_gradients_disabled = False  # True inside no_weight_gradients(); informational only.


@contextlib.contextmanager
def no_weight_gradients(disable=True):
    global weight_gradients_disabled
    old = weight_gradients_disabled
    if disable:
        weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = old


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return torch.nn.functional.conv2d(input, weight, bias=bias, stride=stride, padding=padding,
                                      dilation=dilation, groups=groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return torch.nn.functional.conv_transpose2d(input, weight, bias=bias, stride=stride, padding=padding,
                                                output_padding=output_padding, groups=groups, dilation=dilation)
