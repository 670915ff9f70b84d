"""Custom ops of StyleGAN2: fused bias+activation, upfirdn2d resampling, resampling convolution.

Every op has a pure PyTorch reference path and, for bias_act and upfirdn2d, an optional
CUDA kernel built on first use (see torch_utils/custom_ops.py). `impl='cuda'` uses the
kernel when the input is on a CUDA device and the kernel built; `impl='ref'` or the
environment variable SG2_OPS_IMPL=ref force the reference path.
"""
