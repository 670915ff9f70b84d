"""StyleGAN2 generator and discriminator, for square and non-square (e.g. 2:1 full-body) images.

Paper: Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), with the
training-time details of "Training Generative Adversarial Networks with Limited Data" (NeurIPS 2020).

Parameter and buffer names follow the checkpoint layout of the StyleGAN2-ADA ecosystem, so
`state_dict()` keys match the released checkpoints (e.g. `synthesis.b8.conv0.affine.weight`).
This module's source is embedded in the checkpoints the package writes, so it imports nothing
beyond numpy, torch and torch_utils.

Non-square images: `aspect_ratio=(H, W)` (height:width, powers of two, at most 4:1 either way).
`img_resolution` is the larger side; every feature map keeps the aspect ratio, so the constant
input of a 2:1 generator is 4x2 and the discriminator's last layer sees 4x2 features. The
StyleGAN-Human argument `square=False` means `aspect_ratio=(2, 1)` and is still accepted.
"""
import math

import numpy as np
import torch

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import conv2d_resample
from torch_utils.ops import fma
from torch_utils.ops import upfirdn2d

try:  # this package's CPU settings; absent from the original torch_utils, which runs this module's source
    from torch_utils import cpu_tuning  # when it loads a checkpoint written here
except ImportError:
    cpu_tuning = None

# ----------------------------------------------------------------------------
# Image shapes for any power-of-two aspect ratio.


def resolve_aspect_ratio(aspect_ratio=None, square=None):
    """(H, W) ratio in lowest terms from `aspect_ratio` or the legacy `square` flag; validated."""
    if aspect_ratio is None:
        aspect_ratio = (1, 1) if square is None or square else (2, 1)
    ratio_h, ratio_w = (int(v) for v in aspect_ratio)
    if ratio_h <= 0 or ratio_w <= 0:
        raise ValueError(f"aspect_ratio must be positive, got {aspect_ratio}")
    divisor = math.gcd(ratio_h, ratio_w)
    ratio_h, ratio_w = ratio_h // divisor, ratio_w // divisor
    if ratio_h & (ratio_h - 1) or ratio_w & (ratio_w - 1) or max(ratio_h, ratio_w) > 4:
        raise ValueError(f"aspect_ratio must be a power-of-two ratio of at most 4:1, got {aspect_ratio}")
    if square is not None and bool(square) != (ratio_h == ratio_w):
        raise ValueError(f"square={square} contradicts aspect_ratio={aspect_ratio}")
    return ratio_h, ratio_w


def shape_at(resolution, aspect_ratio):
    """[height, width] of a feature map whose larger side is `resolution`."""
    ratio_h, ratio_w = aspect_ratio
    longest = max(ratio_h, ratio_w)
    return [resolution * ratio_h // longest, resolution * ratio_w // longest]


# ----------------------------------------------------------------------------
# Pixel/feature normalisation of the mapping network input (StyleGAN paper, section 2).


@misc.profiled_function
def normalize_2nd_moment(x, dim=1, eps=1e-8):
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# ----------------------------------------------------------------------------
# Modulation/demodulation (StyleGAN2 paper, section 2.2, eq. 1-3).


@misc.profiled_function
def modulated_conv2d(
    x,                  # Input tensor of shape [batch_size, in_channels, in_height, in_width].
    weight,             # Weight tensor of shape [out_channels, in_channels, kernel_height, kernel_width].
    styles,             # Modulation coefficients of shape [batch_size, in_channels].
    noise=None,         # Optional noise tensor to add to the output activations.
    up=1,               # Integer upsampling factor.
    down=1,             # Integer downsampling factor.
    padding=0,          # Padding with respect to the upsampled image.
    resample_filter=None,  # Low-pass filter to apply when resampling activations.
    demodulate=True,    # Apply weight demodulation?
    flip_weight=True,   # False = convolution, True = correlation (matches torch.nn.functional.conv2d).
    fused_modconv=True,  # Perform modulation, convolution, and demodulation as a single fused operation?
):
    """The modulated convolution in one of two forms with the same result up to float rounding.

    Fused: one convolution with a weight per sample (a grouped convolution for batch > 1).
    Unfused: scale the activations by the styles, one convolution with the shared weight, then
    scale by the demodulation coefficients. A bfloat16 `x` runs only the convolution in bfloat16;
    modulation, demodulation and noise are computed in float32 and the result is float32.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(weight, [out_channels, in_channels, kh, kw])
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    # In float16, scale weights and styles to unit max-norm first so the products cannot overflow;
    # demodulation removes the scale again.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    # Per-sample weights w' = w * s (eq. 1) and demodulation coefficients 1/sigma (eq. 3). The unfused form on
    # the CPU sums sigma^2 = sum_i s_i^2 sum_k w_oik^2 without the [N, O, I, k, k] weights, which cost a tenth
    # of a CPU training step at 512x256 with their backward passes (benchmarks/RESULTS.md).
    w = None
    dcoefs = None
    if fused_modconv or (demodulate and x.device.type != "cpu"):
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    if demodulate and w is not None:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    elif demodulate:
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    conv_kwargs = dict(f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)
    if x.dtype == torch.bfloat16:
        return _modulated_conv2d_bf16(x, weight, styles, w, dcoefs, noise, fused_modconv, conv_kwargs)

    # Unfused: scale activations instead of weights (cheaper in training, where batches are large).
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), **conv_kwargs)
        if demodulate and noise is not None:
            x = fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        elif noise is not None:
            x = x.add_(noise.to(x.dtype))
        return x

    # Fused: one grouped convolution with a weight per sample.
    x = _grouped_conv(x, w, batch_size, conv_kwargs)
    if noise is not None:
        x = x.add_(noise)
    return x


def _grouped_conv(x, w, batch_size, conv_kwargs):
    # The batch folds into the channels: sample i convolves its own weight w[i]. Batch 1 is a plain
    # convolution; x is then passed as it is, since a reshape may restride the batch dimension and a
    # channels_last tensor would no longer be recognised as one (and get copied twice).
    with misc.suppress_tracer_warnings():
        batch_size = int(batch_size)
    in_channels, kh, kw = w.shape[2:]
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    w = w.reshape(-1, in_channels, kh, kw)
    if batch_size == 1:
        return conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), **conv_kwargs)
    x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), groups=batch_size, **conv_kwargs)
    return x.reshape(batch_size, -1, *x.shape[2:])


def _modulated_conv2d_bf16(x, weight, styles, w, dcoefs, noise, fused_modconv, conv_kwargs):
    # Only the convolution runs in bfloat16; everything it is scaled by, and the noise, in float32.
    batch_size = x.shape[0]
    if fused_modconv:
        x = _grouped_conv(x, w, batch_size, conv_kwargs).float()
    else:
        x = (x * styles.reshape(batch_size, -1, 1, 1)).to(torch.bfloat16)
        x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), **conv_kwargs).float()
        if dcoefs is not None:
            x = x * dcoefs.reshape(batch_size, -1, 1, 1)
    if noise is not None:
        x = x.add_(noise)
    return x


# ----------------------------------------------------------------------------
# Fully connected layer with equalized learning rate (ProGAN paper, section 4.1).


@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(
        self,
        in_features,        # Number of input features.
        out_features,       # Number of output features.
        bias=True,          # Apply additive bias before the activation function?
        activation="linear",  # Activation function: 'relu', 'lrelu', etc.
        lr_multiplier=1,    # Learning rate multiplier.
        bias_init=0,        # Initial value for the additive bias.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        # On the CPU, inference multiplies one row at a time: a matrix product's rounding depends on how many
        # rows it has (measured: 1 row vs 4 differ), and w must not depend on the batch.
        by_row = runs_per_sample(x.device, self.training, x.shape[0])
        if self.activation == "linear" and b is not None:
            return _rows_apart(lambda rows: torch.addmm(b.unsqueeze(0), rows, w.t()), x, by_row)
        x = _rows_apart(lambda rows: rows.matmul(w.t()), x, by_row)
        return bias_act.bias_act(x, b, act=self.activation)

    def extra_repr(self):
        return f"in_features={self.in_features:d}, out_features={self.out_features:d}, activation={self.activation:s}"


def _rows_apart(fn, x, by_row):
    # fn(x), or fn of each row of x concatenated.
    return torch.cat([fn(row) for row in x.split(1)]) if by_row else fn(x)


# ----------------------------------------------------------------------------
# Convolution with equalized learning rate and optional FIR resampling (StyleGAN2 paper, appendix B).


@persistence.persistent_class
class Conv2dLayer(torch.nn.Module):
    def __init__(
        self,
        in_channels,        # Number of input channels.
        out_channels,       # Number of output channels.
        kernel_size,        # Width and height of the convolution kernel.
        bias=True,          # Apply additive bias before the activation function?
        activation="linear",  # Activation function: 'relu', 'lrelu', etc.
        up=1,               # Integer upsampling factor.
        down=1,             # Integer downsampling factor.
        resample_filter=[1, 3, 3, 1],  # Low-pass filter to apply when resampling activations.
        conv_clamp=None,    # Clamp the output to +-X, None = disable clamping.
        channels_last=False,  # Expect the input to have memory_format=channels_last?
        trainable=True,     # Update the weights of this layer during training?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer("weight", weight)
            if bias is not None:
                self.register_buffer("bias", bias)
            else:
                self.bias = None

    def forward(self, x, gain=1):
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = (self.up == 1)  # slightly faster
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter, up=self.up,
                                            down=self.down, padding=self.padding, flip_weight=flip_weight)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return (f"in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, "
                f"activation={self.activation:s}, up={self.up}, down={self.down}")


# ----------------------------------------------------------------------------
# Mapping network z -> w (StyleGAN paper, section 2), with the running average of w used for
# the truncation trick (StyleGAN paper, appendix B).


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(
        self,
        z_dim,              # Input latent (Z) dimensionality, 0 = no latent.
        c_dim,              # Conditioning label (C) dimensionality, 0 = no label.
        w_dim,              # Intermediate latent (W) dimensionality.
        num_ws,             # Number of intermediate latents to output, None = do not broadcast.
        num_layers=8,       # Number of mapping layers.
        embed_features=None,  # Label embedding dimensionality, None = same as w_dim.
        layer_features=None,  # Number of intermediate features in the mapping layers, None = same as w_dim.
        activation="lrelu",  # Activation function: 'relu', 'lrelu', etc.
        lr_multiplier=0.01,  # Learning rate multiplier for the mapping layers.
        w_avg_beta=0.995,   # Decay for tracking the moving average of W during training, None = do not track.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features_list = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features_list[idx], features_list[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)

        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1,
                truncation_cutoff: "int | None" = None, skip_w_avg_update: bool = False) -> torch.Tensor:
        """ws [N, num_ws, w_dim] of z [N, z_dim] and labels c [N, c_dim]; truncation_psi < 1 pulls the first
        truncation_cutoff ws (None: all) towards w_avg, which training updates unless skip_w_avg_update."""
        # Embed, normalize, and concatenate inputs.
        x = None
        with torch.autograd.profiler.record_function("input"):
            if self.z_dim > 0:
                misc.assert_shape(z, [None, self.z_dim])
                x = normalize_2nd_moment(z.to(torch.float32))
            if self.c_dim > 0:
                misc.assert_shape(c, [None, self.c_dim])
                y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
                x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        # Track the average w for truncation; only while training.
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            with torch.autograd.profiler.record_function("update_w_avg"):
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        # One w per synthesis layer.
        if self.num_ws is not None:
            with torch.autograd.profiler.record_function("broadcast"):
                x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        # Truncation trick: w' = w_avg + psi * (w - w_avg), optionally on the first layers only.
        if truncation_psi != 1:
            with torch.autograd.profiler.record_function("truncate"):
                assert self.w_avg_beta is not None
                if self.num_ws is None or truncation_cutoff is None:
                    x = self.w_avg.lerp(x, truncation_psi)
                else:
                    x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self):
        return f"z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws}"


# ----------------------------------------------------------------------------
# Style-modulated 3x3 convolution with per-pixel noise (StyleGAN2 paper, figure 2c-d).


@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(
        self,
        in_channels,        # Number of input channels.
        out_channels,       # Number of output channels.
        w_dim,              # Intermediate latent (W) dimensionality.
        resolution,         # Resolution of this layer (the larger side of its feature map).
        kernel_size=3,      # Convolution kernel size.
        up=1,               # Integer upsampling factor.
        use_noise=True,     # Enable noise input?
        activation="lrelu",  # Activation function: 'relu', 'lrelu', etc.
        resample_filter=[1, 3, 3, 1],  # Low-pass filter to apply when resampling activations.
        conv_clamp=None,    # Clamp the output of convolution layers to +-X, None = disable clamping.
        channels_last=False,  # Use channels_last format for the weights?
        aspect_ratio=None,  # Image height:width, e.g. (2, 1); None = from `square`, else square.
        square=None,        # Legacy StyleGAN-Human flag: False = 2:1.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.aspect_ratio = resolve_aspect_ratio(aspect_ratio, square)
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(shape_at(resolution, self.aspect_ratio)))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True, gain=1, style_offset=None, random_noise=None):
        # style_offset: None, or [in_channels] / [N, in_channels] added to the styles (S-space edits).
        # random_noise: N(0, 1) maps [N, 1, H, W] for noise_mode='random' drawn by the caller; None = drawn here.
        assert noise_mode in ["random", "const", "none"]
        out_h, out_w = shape_at(self.resolution, self.aspect_ratio)
        misc.assert_shape(x, [None, self.in_channels, out_h // self.up, out_w // self.up])
        styles = self.affine(w)
        if style_offset is not None:
            styles = styles + style_offset.to(styles.dtype)

        noise = None
        if self.use_noise and noise_mode == "random":
            if random_noise is None:
                random_noise = torch.randn([x.shape[0], 1, out_h, out_w], device=x.device)
            misc.assert_shape(random_noise, [x.shape[0], 1, out_h, out_w])
            noise = random_noise * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength

        # The fused form adds the noise after the convolution, so it can join bias_act's pass below.
        flip_weight = (self.up == 1)  # slightly faster
        dtype = x.dtype
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=None if fused_modconv else noise,
                             up=self.up, padding=self.padding, resample_filter=self.resample_filter,
                             flip_weight=flip_weight, fused_modconv=fused_modconv)
        addend = noise if fused_modconv else None

        # Noise, bias, activation and clamp in the precision modulated_conv2d returns (float32 for bfloat16 input).
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        bias = self.bias.to(x.dtype)
        if _epilogue_in_place(x, bias, addend):
            return bias_act.bias_act_(x, bias, act=self.activation, gain=act_gain, clamp=act_clamp, addend=addend,
                                      out_dtype=dtype)
        x = x.add_(addend) if addend is not None else x
        x = bias_act.bias_act(x, bias, act=self.activation, gain=act_gain, clamp=act_clamp)
        return x.to(dtype)

    def extra_repr(self):
        return (f"in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, w_dim={self.w_dim:d}, "
                f"resolution={self.resolution:d}, up={self.up}, activation={self.activation:s}")


def _epilogue_in_place(x, *operands):
    # Where a layer adds noise and bias, activates and clamps in place, in one pass (bias_act.bias_act_): CPU
    # tensors without autograd, with this package's torch_utils. The original torch_utils, which runs this
    # module's source when it loads a checkpoint written here, has no bias_act_ and takes the plain path.
    # A traced or exported graph (ONNX) takes the plain path too: the slices loop over concrete sizes.
    records_graph = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *operands))
    return x.device.type == "cpu" and not records_graph and not _recording_graph() and hasattr(bias_act, "bias_act_")


# ----------------------------------------------------------------------------
# Modulated 1x1 convolution to RGB without demodulation (StyleGAN2 paper, section 4.1, "skip" generator).


@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    def __init__(
        self,
        in_channels,        # Number of input channels.
        out_channels,       # Number of output (image) channels.
        w_dim,              # Intermediate latent (W) dimensionality.
        kernel_size=1,      # Convolution kernel size.
        conv_clamp=None,    # Clamp the output to +-X, None = disable clamping.
        channels_last=False,  # Use channels_last format for the weights?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        if x.dtype == torch.bfloat16:
            x = x.float()  # the image is summed in float32, and this 1x1 convolution costs little
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self):
        return f"in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, w_dim={self.w_dim:d}"


# ----------------------------------------------------------------------------
# One resolution of the synthesis network: upsampling conv, conv, toRGB (StyleGAN2 paper, figure 7).


def _block_dtype(use_fp16, force_fp32, device, dtype=None):
    # Mixed precision (StyleGAN2-ADA paper, appendix D.2) only on CUDA: CPU float16 convolutions are
    # slow or unsupported, so CPU runs use float32 everywhere. A dtype the caller asks for (bfloat16)
    # applies to every block; force_fp32 overrides both.
    if force_fp32:
        return torch.float32
    if dtype is not None:
        return _as_dtype(dtype)
    return torch.float16 if use_fp16 and device.type == "cuda" else torch.float32


def _as_dtype(dtype):
    # A torch dtype only: precision names ('bf16') are turned into dtypes at the command line
    # (torch_utils/precision.py), which this module cannot import (its source is embedded in checkpoints).
    if dtype not in (torch.bfloat16, torch.float32, torch.float16):
        raise ValueError(f"dtype={dtype!r}: expected torch.float32, torch.bfloat16 or torch.float16 "
                         "(names such as 'bf16' go through torch_utils.precision.as_dtype)")
    return dtype


def runs_per_sample(device, training, batch_size):
    """True where the generator computes a batch one sample at a time: CPU inference with batch > 1.

    Each sample then takes batch 1's path, which on the CPU is already the fast form (one plain convolution
    with the modulated weight), so an image costs the same at any batch size, its pixels are bitwise those
    of batch 1 whatever batch computed them, and the working set is one image's, whatever the allocator.
    Measured against the grouped and the activation-scaling forms in benchmarks/RESULTS.md (issue 22).
    A graph being traced or exported (ONNX, torch.compile) keeps the batched form: a loop over a symbolic
    batch size cannot be recorded.
    """
    return device.type == "cpu" and not training and not _recording_graph() and int(batch_size) > 1


def _recording_graph():
    # torch.compiler.is_compiling() is newer than some torch versions the original code runs on.
    compiler = getattr(torch, "compiler", None)
    compiling = getattr(compiler, "is_compiling", None)
    return torch.jit.is_tracing() or bool(compiling is not None and compiling())


def _sample_of(style_offsets, index, batch_size):
    # Sample `index`'s entries of per-convolution style offsets: [N, C] rows are sliced, [C] ones shared.
    if style_offsets is None:
        return None
    return [t[index:index + 1] if t is not None and t.ndim == 2 and t.shape[0] == batch_size else t
            for t in style_offsets]


# Where channels_last is faster for float32 on the CPU (measured per synthesis block by `benchmarks/cpu.py
# --layers`, benchmarks/RESULTS.md): feature maps of at least this many elements per image, 1.1-1.6x from
# 2M (SHHQ 128x64) up to 16M (1024x512); below that NCHW is as fast or faster.
CPU_CHANNELS_LAST_MIN_ELEMENTS = 1 << 21


def cpu_channels_last(channels, height, width, weights_need_grad):
    """Whether a float32 layer on the CPU runs channels_last: for large feature maps, unless the layer's weights
    get a gradient. oneDNN's forward pass and input gradient run 1.6x faster channels_last on large maps, but
    its weight gradient 3x slower (3x3, 64 channels at 512x256: 14 against 43 GFLOP/s; benchmarks/RESULTS.md),
    so the network being trained keeps NCHW and the other one of the phase goes channels_last."""
    return not weights_need_grad and channels * height * width >= CPU_CHANNELS_LAST_MIN_ELEMENTS


def trains_weights(module, weight):
    """Whether this call computes a gradient for `weight`: training mode, autograd on, the weight trainable."""
    return module.training and torch.is_grad_enabled() and weight.requires_grad


def modconv_plan(device, training, batch_size, dtype, channels, height, width, weights_need_grad=False):
    """(fused_modconv, channels_last) that a synthesis block uses when the caller leaves them open.

    CUDA keeps the original choice: the fused form for inference in float32 or at batch 1, NCHW unless
    the network was built with fp16_channels_last. On the CPU the fused form runs only for inference at
    batch 1, where it is a plain convolution; larger batches, and training, share one convolution
    (grouped convolutions are slow on CPUs). Float32 follows cpu_channels_last() (large maps channels_last,
    except in the phases that train the generator), all bfloat16 maps run channels_last; float32 at batch 1
    with smaller maps is exactly the original form.
    """
    if device.type != "cpu":
        return (not training) and (dtype == torch.float32 or batch_size == 1), None
    fused = (not training) and batch_size == 1
    if dtype == torch.bfloat16:
        return fused, True  # oneDNN's bfloat16 convolutions (AMX, AVX512_BF16) want channels_last
    return fused, cpu_channels_last(channels, height, width, weights_need_grad)


@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    def __init__(
        self,
        in_channels,        # Number of input channels, 0 = first block.
        out_channels,       # Number of output channels.
        w_dim,              # Intermediate latent (W) dimensionality.
        resolution,         # Resolution of this block (the larger side).
        img_channels,       # Number of output color channels.
        is_last,            # Is this the last block?
        architecture="skip",  # Architecture: 'orig', 'skip', 'resnet'.
        resample_filter=[1, 3, 3, 1],  # Low-pass filter to apply when resampling activations.
        conv_clamp=None,    # Clamp the output of convolution layers to +-X, None = disable clamping.
        use_fp16=False,     # Use FP16 for this block (CUDA only)?
        fp16_channels_last=False,  # Use channels-last memory format with FP16?
        aspect_ratio=None,  # Image height:width, e.g. (2, 1); None = from `square`, else square.
        square=None,        # Legacy StyleGAN-Human flag: False = 2:1.
        **layer_kwargs,     # Arguments for SynthesisLayer.
    ):
        assert architecture in ["orig", "skip", "resnet"]
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.aspect_ratio = resolve_aspect_ratio(aspect_ratio, square)
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        layer_kwargs = dict(layer_kwargs, aspect_ratio=self.aspect_ratio)

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, *shape_at(resolution, self.aspect_ratio)]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1

        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1

        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1

        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, channels_last=None, dtype=None,
                style_offsets=None, random_noise=None, **layer_kwargs):
        # fused_modconv, channels_last: None = as modconv_plan() picks for this device, batch and shape.
        # dtype: None = float16 in use_fp16 blocks on CUDA, else float32; or torch.bfloat16 for every block.
        # style_offsets: None, or one entry (None or a tensor) per convolution of the block (S-space edits).
        # random_noise: {layer name: N(0, 1) maps} for noise_mode='random' drawn by the caller; None = here.
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        offsets = iter(style_offsets if style_offsets is not None else [None] * self.num_conv)
        dtype = _block_dtype(self.use_fp16, force_fp32, ws.device, dtype)
        height, width = shape_at(self.resolution, self.aspect_ratio)
        if fused_modconv is None or channels_last is None:
            with misc.suppress_tracer_warnings():
                fused, cl = modconv_plan(ws.device, self.training, int(ws.shape[0]), dtype,
                                         self.conv1.out_channels, height, width,
                                         weights_need_grad=trains_weights(self, self.conv1.weight))
            fused_modconv = fused if fused_modconv is None else fused_modconv
            channels_last = cl if channels_last is None else channels_last
        if channels_last is None:
            channels_last = self.channels_last and not force_fp32
        memory_format = torch.channels_last if channels_last else torch.contiguous_format

        # Input.
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=memory_format)
        else:
            misc.assert_shape(x, [None, self.in_channels, height // 2, width // 2])
            x = x.to(dtype=dtype, memory_format=memory_format)

        # Main layers.
        random_noise = random_noise or {}

        def conv_kwargs(name):  # called in convolution order, so the offsets pair up with conv0, conv1
            return dict(layer_kwargs, fused_modconv=fused_modconv, style_offset=next(offsets),
                        random_noise=random_noise.get(name))
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), **conv_kwargs("conv1"))
        elif self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), **conv_kwargs("conv0"))
            x = self.conv1(x, next(w_iter), gain=np.sqrt(0.5), **conv_kwargs("conv1"))
            x = y.add_(x)
        else:
            x = self.conv0(x, next(w_iter), **conv_kwargs("conv0"))
            x = self.conv1(x, next(w_iter), **conv_kwargs("conv1"))

        # ToRGB, summed over resolutions in the skip architecture.
        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, height // 2, width // 2])
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y

        assert x.dtype == dtype
        assert img is None or img.dtype == torch.float32
        return x, img

    def extra_repr(self):
        return f"resolution={self.resolution:d}, architecture={self.architecture:s}"


# ----------------------------------------------------------------------------
# Synthesis network: w -> image, from a learned constant (StyleGAN2 paper, figure 7, "skip" generator).


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(
        self,
        w_dim,              # Intermediate latent (W) dimensionality.
        img_resolution,     # Output image resolution (the larger side).
        img_channels,       # Number of color channels.
        channel_base=32768,  # Overall multiplier for the number of channels.
        channel_max=512,    # Maximum number of channels in any layer.
        num_fp16_res=0,     # Use FP16 for the N highest resolutions (CUDA only).
        aspect_ratio=None,  # Image height:width, e.g. (2, 1); None = from `square`, else square.
        square=None,        # Legacy StyleGAN-Human flag: False = 2:1.
        **block_kwargs,     # Arguments for SynthesisBlock.
    ):
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.aspect_ratio = resolve_aspect_ratio(aspect_ratio, square)
        self.img_height, self.img_width = shape_at(img_resolution, self.aspect_ratio)
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res // 2] if res > 4 else 0
            out_channels = channels_dict[res]
            use_fp16 = (res >= fp16_resolution)
            is_last = (res == self.img_resolution)
            block = SynthesisBlock(in_channels, out_channels, w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, use_fp16=use_fp16,
                                   aspect_ratio=self.aspect_ratio, **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, style_offsets=None, random_noise=None, **block_kwargs) -> torch.Tensor:
        """Images [N, img_channels, img_height, img_width], roughly in [-1, 1], of ws [N, num_ws, w_dim].

        block_kwargs: noise_mode ('random', 'const', 'none'), force_fp32, and dtype (a torch.dtype, e.g.
        torch.bfloat16 for every block; torch_utils.precision turns --dtype names into it).
        style_offsets: None, or one entry (None or [C] / [N, C]) per modulated convolution in synthesis order,
        toRGB excluded (b4.conv1, b8.conv0, b8.conv1, ...), added to that convolution's styles (S-space edits).
        random_noise: {block resolution: {layer name: N(0, 1) maps}} for noise_mode='random'; None = drawn
        by the layers. A batch on the CPU runs one image at a time (runs_per_sample) unless the caller
        chooses the form (fused_modconv or channels_last)."""
        if ws.device.type == "cpu" and not self.training and cpu_tuning is not None:
            cpu_tuning.reuse_freed_memory_once()  # what the tools set on the CPU (README, Speed), once per process
        form_open = block_kwargs.get("fused_modconv") is None and block_kwargs.get("channels_last") is None
        if form_open and random_noise is None and runs_per_sample(ws.device, self.training, ws.shape[0]):
            return self._forward_per_sample(ws, style_offsets, **block_kwargs)
        noise = random_noise or {}

        # Consecutive blocks share one w: block i's toRGB uses the same w as block i+1's first conv.
        block_offsets = self._split_style_offsets(style_offsets)
        block_ws = []
        with torch.autograd.profiler.record_function("split_ws"):
            misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
            ws = ws.to(torch.float32)
            w_idx = 0
            for res in self.block_resolutions:
                block = getattr(self, f"b{res}")
                block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
                w_idx += block.num_conv

        x = img = None
        for res, cur_ws, offsets in zip(self.block_resolutions, block_ws, block_offsets):
            block = getattr(self, f"b{res}")
            x, img = block(x, img, cur_ws, style_offsets=offsets, random_noise=noise.get(res), **block_kwargs)
        return img

    def _split_style_offsets(self, style_offsets):
        # One tuple of offsets per block (None per block when there are none), checked for length.
        num_convs = [getattr(self, f"b{res}").num_conv for res in self.block_resolutions]
        if style_offsets is None:
            return [None] * len(num_convs)
        if len(style_offsets) != sum(num_convs):
            raise ValueError(f"style_offsets: {len(style_offsets)} entries; this network has {sum(num_convs)} "
                             "modulated convolutions (toRGB excluded)")
        bounds = np.cumsum([0] + num_convs)
        return [tuple(style_offsets[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]

    def _forward_per_sample(self, ws, style_offsets, noise_mode="random", **block_kwargs):
        # Each image as at batch 1, so its pixels do not depend on the batch and only one image's feature maps
        # are held at a time. Random noise is drawn first, in the order and shapes of the batched pass, so the
        # images are also those of the batched pass with the same random state.
        batch_size = int(ws.shape[0])
        drawn = self._draw_random_noise(batch_size, ws.device) if noise_mode == "random" else {}
        images = []
        for i in range(batch_size):
            noise = {res: {name: maps[i:i + 1] for name, maps in layers.items()} for res, layers in drawn.items()}
            offsets = _sample_of(style_offsets, i, batch_size)
            images.append(self(ws[i:i + 1], offsets, noise_mode=noise_mode, random_noise=noise, **block_kwargs))
        return torch.cat(images)

    def _draw_random_noise(self, batch_size, device):
        # {block resolution: {layer name: [N, 1, H, W]}}, as SynthesisLayer draws them for noise_mode='random'.
        drawn = {}
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            for name in ("conv0", "conv1"):
                layer = getattr(block, name, None)
                if layer is not None and layer.use_noise:
                    shape = [batch_size, 1, *shape_at(layer.resolution, layer.aspect_ratio)]
                    drawn.setdefault(res, {})[name] = torch.randn(shape, device=device)
        return drawn

    def extra_repr(self):
        return (f"w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, img_resolution={self.img_resolution:d}, "
                f"aspect_ratio={self.aspect_ratio}")


# ----------------------------------------------------------------------------
# The generator: mapping network followed by synthesis network (StyleGAN2 paper, figure 1).


@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(
        self,
        z_dim,              # Input latent (Z) dimensionality.
        c_dim,              # Conditioning label (C) dimensionality.
        w_dim,              # Intermediate latent (W) dimensionality.
        img_resolution,     # Output resolution (the larger side).
        img_channels,       # Number of output color channels.
        mapping_kwargs={},  # Arguments for MappingNetwork.
        synthesis_kwargs={},  # Arguments for SynthesisNetwork.
        aspect_ratio=None,  # Image height:width, e.g. (2, 1) for 1024x512; None = from `square`, else square.
        square=None,        # Legacy StyleGAN-Human flag: False = 2:1 (img_resolution x img_resolution/2).
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.aspect_ratio = resolve_aspect_ratio(aspect_ratio, square)
        self.img_height, self.img_width = shape_at(img_resolution, self.aspect_ratio)
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          aspect_ratio=self.aspect_ratio, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1,
                truncation_cutoff: "int | None" = None, skip_w_avg_update: bool = False,
                **synthesis_kwargs) -> torch.Tensor:
        """G(z, c): self.synthesis(self.mapping(z, c, ...), **synthesis_kwargs), images NCHW in about [-1, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          skip_w_avg_update=skip_w_avg_update)
        return self.synthesis(ws, **synthesis_kwargs)


# ----------------------------------------------------------------------------
# One resolution of the discriminator: fromRGB, conv, downsampling conv, residual skip
# (StyleGAN2 paper, figure 7, "resnet" discriminator).


@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    def __init__(
        self,
        in_channels,        # Number of input channels, 0 = first block.
        tmp_channels,       # Number of intermediate channels.
        out_channels,       # Number of output channels.
        resolution,         # Resolution of this block (the larger side).
        img_channels,       # Number of input color channels.
        first_layer_idx,    # Index of the first layer.
        architecture="resnet",  # Architecture: 'orig', 'skip', 'resnet'.
        activation="lrelu",  # Activation function: 'relu', 'lrelu', etc.
        resample_filter=[1, 3, 3, 1],  # Low-pass filter to apply when resampling activations.
        conv_clamp=None,    # Clamp the output of convolution layers to +-X, None = disable clamping.
        use_fp16=False,     # Use FP16 for this block (CUDA only)?
        fp16_channels_last=False,  # Use channels-last memory format with FP16?
        freeze_layers=0,    # Freeze-D: Number of layers to freeze.
        aspect_ratio=None,  # Image height:width, e.g. (2, 1); None = from `square`, else square.
        square=None,        # Legacy StyleGAN-Human flag: False = 2:1.
    ):
        assert in_channels in [0, tmp_channels]
        assert architecture in ["orig", "skip", "resnet"]
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.aspect_ratio = resolve_aspect_ratio(aspect_ratio, square)
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))

        self.num_layers = 0

        def trainable_gen():
            while True:
                layer_idx = self.first_layer_idx + self.num_layers
                trainable = (layer_idx >= freeze_layers)
                self.num_layers += 1
                yield trainable
        trainable_iter = trainable_gen()

        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                       trainable=next(trainable_iter), conv_clamp=conv_clamp,
                                       channels_last=self.channels_last)

        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                                 trainable=next(trainable_iter), conv_clamp=conv_clamp,
                                 channels_last=self.channels_last)

        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                                 trainable=next(trainable_iter), resample_filter=resample_filter,
                                 conv_clamp=conv_clamp, channels_last=self.channels_last)

        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    trainable=next(trainable_iter), resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def forward(self, x, img, force_fp32=False):
        device = (x if x is not None else img).device
        dtype = _block_dtype(self.use_fp16, force_fp32, device)
        height, width = shape_at(self.resolution, self.aspect_ratio)
        channels_last = self.channels_last and not force_fp32
        if device.type == "cpu" and dtype == torch.float32:
            channels_last = cpu_channels_last(self.conv0.in_channels, height, width,
                                              trains_weights(self, self.conv0.weight))
        memory_format = torch.channels_last if channels_last else torch.contiguous_format

        # Input.
        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, height, width])
            x = x.to(dtype=dtype, memory_format=memory_format)

        # FromRGB.
        if self.in_channels == 0 or self.architecture == "skip":
            misc.assert_shape(img, [None, self.img_channels, height, width])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == "skip" else None

        # Main layers.
        if self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)

        assert x.dtype == dtype
        return x, img

    def extra_repr(self):
        return f"resolution={self.resolution:d}, architecture={self.architecture:s}"


# ----------------------------------------------------------------------------
# Minibatch standard deviation (ProGAN paper, section 3; StyleGAN2-ADA grouping).


@persistence.persistent_class
class MinibatchStdLayer(torch.nn.Module):
    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        N, C, H, W = x.shape
        with misc.suppress_tracer_warnings():
            G = torch.min(torch.as_tensor(self.group_size), torch.as_tensor(N)) if self.group_size is not None else N
        F = self.num_channels
        c = C // F

        y = x.reshape(G, -1, F, c, H, W)    # [GnFcHW] Split minibatch N into n groups of size G.
        y = y - y.mean(dim=0)               # [GnFcHW] Subtract the group mean.
        y = y.square().mean(dim=0)          # [nFcHW]  Variance over the group.
        y = (y + 1e-8).sqrt()               # [nFcHW]  Standard deviation.
        y = y.mean(dim=[2, 3, 4])           # [nF]     Average over channels and pixels.
        y = y.reshape(-1, F, 1, 1)          # [nF11]
        y = y.repeat(G, 1, H, W)            # [NFHW]   Replicate over group and pixels.
        return torch.cat([x, y], dim=1)     # [NCHW]   Append as new channels.

    def extra_repr(self):
        return f"group_size={self.group_size}, num_channels={self.num_channels:d}"


# ----------------------------------------------------------------------------
# Discriminator output at 4x4 (or 4x2, ...): minibatch stddev, conv, fc, projection onto the
# class embedding when conditional (Miyato & Koyama, "cGANs with Projection Discriminator").


@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    def __init__(
        self,
        in_channels,        # Number of input channels.
        cmap_dim,           # Dimensionality of mapped conditioning label, 0 = no label.
        resolution,         # Resolution of this block (the larger side).
        img_channels,       # Number of input color channels.
        architecture="resnet",  # Architecture: 'orig', 'skip', 'resnet'.
        mbstd_group_size=4,  # Group size for the minibatch standard deviation layer, None = entire minibatch.
        mbstd_num_channels=1,  # Number of features for the minibatch standard deviation layer, 0 = disable.
        activation="lrelu",  # Activation function: 'relu', 'lrelu', etc.
        conv_clamp=None,    # Clamp the output of convolution layers to +-X, None = disable clamping.
        aspect_ratio=None,  # Image height:width, e.g. (2, 1); None = from `square`, else square.
        square=None,        # Legacy StyleGAN-Human flag: False = 2:1.
    ):
        assert architecture in ["orig", "skip", "resnet"]
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        self.aspect_ratio = resolve_aspect_ratio(aspect_ratio, square)
        height, width = shape_at(resolution, self.aspect_ratio)

        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) \
            if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * height * width, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        height, width = shape_at(self.resolution, self.aspect_ratio)
        misc.assert_shape(x, [None, self.in_channels, height, width])
        _ = force_fp32  # the epilogue always runs in float32
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)

        if self.architecture == "skip":
            misc.assert_shape(img, [None, self.img_channels, height, width])
            img = img.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            x = x + self.fromrgb(img)

        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)

        if self.cmap_dim > 0:
            misc.assert_shape(cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))

        assert x.dtype == torch.float32
        return x

    def extra_repr(self):
        return f"resolution={self.resolution:d}, architecture={self.architecture:s}"


# ----------------------------------------------------------------------------
# The discriminator (StyleGAN2 paper, figure 7, "resnet" discriminator).


@persistence.persistent_class
class Discriminator(torch.nn.Module):
    def __init__(
        self,
        c_dim,              # Conditioning label (C) dimensionality.
        img_resolution,     # Input resolution (the larger side).
        img_channels,       # Number of input color channels.
        architecture="resnet",  # Architecture: 'orig', 'skip', 'resnet'.
        channel_base=32768,  # Overall multiplier for the number of channels.
        channel_max=512,    # Maximum number of channels in any layer.
        num_fp16_res=0,     # Use FP16 for the N highest resolutions (CUDA only).
        conv_clamp=None,    # Clamp the output of convolution layers to +-X, None = disable clamping.
        cmap_dim=None,      # Dimensionality of mapped conditioning label, None = default.
        block_kwargs={},    # Arguments for DiscriminatorBlock.
        mapping_kwargs={},  # Arguments for MappingNetwork.
        epilogue_kwargs={},  # Arguments for DiscriminatorEpilogue.
        aspect_ratio=None,  # Image height:width, e.g. (2, 1) for 1024x512; None = from `square`, else square.
        square=None,        # Legacy StyleGAN-Human flag: False = 2:1 (img_resolution x img_resolution/2).
    ):
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.aspect_ratio = resolve_aspect_ratio(aspect_ratio, square)
        self.img_height, self.img_width = shape_at(img_resolution, self.aspect_ratio)
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0

        common_kwargs = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp,
                             aspect_ratio=self.aspect_ratio)
        cur_layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            tmp_channels = channels_dict[res]
            out_channels = channels_dict[res // 2]
            use_fp16 = (res >= fp16_resolution)
            block = DiscriminatorBlock(in_channels, tmp_channels, out_channels, resolution=res,
                                       first_layer_idx=cur_layer_idx, use_fp16=use_fp16,
                                       **block_kwargs, **common_kwargs)
            setattr(self, f"b{res}", block)
            cur_layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=4,
                                        **epilogue_kwargs, **common_kwargs)

    def forward(self, img: torch.Tensor, c: torch.Tensor, **block_kwargs) -> torch.Tensor:
        """Logits [N, 1] of images NCHW and labels c [N, c_dim]; block_kwargs: force_fp32."""
        x = None
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, **block_kwargs)

        cmap = None
        if self.c_dim > 0:
            cmap = self.mapping(None, c)
        return self.b4(x, img, cmap)

    def extra_repr(self):
        return (f"c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, "
                f"aspect_ratio={self.aspect_ratio}")
