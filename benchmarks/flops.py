"""Analytic FLOP count of a StyleGAN2 generator forward pass, per image.

A multiply-add counts as 2 FLOPs. Counted, per image:
  - mapping and affine layers: 2 * in * out per fully connected layer;
  - modulated convolutions: 2 * C_in * C_out * k^2 per output pixel; an upsampling layer's strided
    transposed convolution does that per *input* pixel (StyleGAN2 appendix B), and its [1, 3, 3, 1]
    low-pass filter adds 2 * 16 per output element;
  - modulation and demodulation of the weights: w * s, w^2, the sum over inputs and w * d, 4 per weight
    (the same work whether the weights or the activations are scaled);
  - the skip generator's image upsampling: 2 * 16 per output element of the filter.
Not counted: bias, activation, noise, clamp and the image sum (a few FLOPs per element, memory-bound).

Everything but the modulation term is what torch.utils.flop_counter counts for the same pass
(tests/test_speed_paths.py checks that), so the figures can be reproduced with PyTorch's own counter.
"""


def _fc_flops(in_features, out_features):
    return 2 * in_features * out_features


def _layer_flops(layer, height, width):
    """(counter FLOPs, modulation FLOPs) of one SynthesisLayer or ToRGBLayer writing height x width."""
    out_ch, in_ch, kh, kw = layer.weight.shape
    taps = kh * kw
    flops = _fc_flops(layer.affine.in_features, layer.affine.out_features)
    up = getattr(layer, "up", 1)
    flops += 2 * in_ch * out_ch * taps * (height // up) * (width // up)
    if up > 1:
        flops += 2 * 16 * out_ch * height * width  # the 4x4 low-pass filter after the transposed convolution
    demodulates = hasattr(layer, "up")  # ToRGB only modulates
    modulation = (4 if demodulates else 1) * out_ch * in_ch * taps
    return flops, modulation


def generator_flops(G, split=False):
    """FLOPs of G(z, c) for one image; split=True returns (counter-comparable part, modulation part)."""
    mapping = G.mapping
    counted = sum(_fc_flops(getattr(mapping, f"fc{i}").in_features, getattr(mapping, f"fc{i}").out_features)
                  for i in range(mapping.num_layers))
    if mapping.c_dim > 0:
        counted += _fc_flops(mapping.embed.in_features, mapping.embed.out_features)
    modulation = 0
    synthesis = G.synthesis
    for res in synthesis.block_resolutions:
        block = getattr(synthesis, f"b{res}")
        height, width = _shape(res, synthesis.aspect_ratio)
        for name in ("conv0", "conv1", "torgb"):
            layer = getattr(block, name, None)
            if layer is not None:
                c, m = _layer_flops(layer, height, width)
                counted, modulation = counted + c, modulation + m
        if getattr(block, "torgb", None) is not None and res > 4:
            counted += 2 * 16 * block.img_channels * height * width  # upsample2d of the running image
    return (counted, modulation) if split else counted + modulation


def _shape(resolution, aspect_ratio):
    ratio_h, ratio_w = aspect_ratio
    longest = max(ratio_h, ratio_w)
    return resolution * ratio_h // longest, resolution * ratio_w // longest
