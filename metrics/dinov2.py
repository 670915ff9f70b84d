"""DINOv2 ViT-L/14 as a feature detector (Oquab et al. 2023, "DINOv2: Learning Robust Visual Features without
Supervision"), written here from the published architecture so that no downloaded code runs.

The official `dinov2_vitl14_pretrain.pth` is a plain state dict; `load_dinov2_detector` reads it with
`torch.load(weights_only=True)` (tensors only, no objects) and checks every key and shape before use. It is the
loader of the "dinov2" entry of metrics/detectors.py, which downloads the file and names it in error messages.
The detector does what EDM2's calculate_metrics.py does before the network: uint8 images to float, resized to
224x224 (torch bicubic with antialiasing), scaled to [0, 1] and normalised with ImageNet's mean and std; it
returns the 1024-dim CLS token after the final LayerNorm, the features FD-DINOv2 (Stein et al. 2023) uses.
"""
import math
import re

import torch
import torch.nn.functional as F

import dnnlib

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = (224, 224)         # (H, W) the images are resized to, as in EDM2 and dgm-eval
HEAD_DIM = 64                   # every released DINOv2 ViT (S, B, L, g) has 64 channels per attention head
POS_INTERPOLATE_OFFSET = 0.1    # DINOv2 scales its position grid by (n + 0.1) / m, not n / m
LAYER_NORM_EPS = 1e-6
MAX_DEPTH, MAX_WIDTH, MAX_GRID = 64, 4096, 128   # bounds on what a state dict may ask us to build

# ----------------------------------------------------------------------------
# The network. Module and parameter names follow the official state dict's keys.


class PatchEmbed(torch.nn.Module):
    """Non-overlapping patches, linearly embedded (ViT paper, Dosovitskiy et al. 2021, eq. 1)."""

    def __init__(self, patch_size, embed_dim, in_channels=3):
        super().__init__()
        self.proj = torch.nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [N, tokens, C], tokens in row-major grid order


class Attention(torch.nn.Module):
    """Multi-head self-attention with one fused qkv projection (Vaswani et al. 2017, section 3.2)."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = torch.nn.Linear(dim, dim * 3)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class LayerScale(torch.nn.Module):
    """Learned per-channel scale of a residual branch (CaiT, Touvron et al. 2021, section 2.1)."""

    def __init__(self, dim):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(torch.nn.Module):
    """Two-layer feed-forward network with GELU (ViT paper, eq. 3)."""

    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = torch.nn.Linear(dim, hidden_dim)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(torch.nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches (DINOv2 paper, appendix)."""

    def __init__(self, dim, num_heads, hidden_dim):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = torch.nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, hidden_dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def interpolate_pos_embed(pos_embed, grid):
    """Position embeddings [1, 1 + m*m, C] learned on an m x m grid, moved to `grid` (rows, cols) of patches.

    As DINOv2 does it: bicubic, no antialiasing, with the scale factor (n + 0.1) / m rather than the output
    size, which decides where the samples fall; the class token's embedding is kept as it is.
    """
    num_patches = pos_embed.shape[1] - 1
    side = math.isqrt(num_patches)
    if tuple(grid) == (side, side):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:].float()
    patch_pos = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    scale = tuple(float(n + POS_INTERPOLATE_OFFSET) / side for n in grid)
    patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic", antialias=False)
    assert tuple(patch_pos.shape[-2:]) == tuple(grid)
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)


class VisionTransformer(torch.nn.Module):
    """DINOv2's ViT without register tokens; forward(normalised images) -> CLS token after the final norm."""

    def __init__(self,
        embed_dim       = 1024,     # Token width (ViT-L: 1024).
        depth           = 24,       # Transformer blocks (ViT-L: 24).
        num_heads       = 16,       # Attention heads (ViT-L: 16, i.e. 64 channels each).
        mlp_ratio       = 4,        # Hidden width of the MLPs over the token width.
        patch_size      = 14,       # Side of the square patches (ViT-L/14: 14).
        pos_grid        = 37,       # Side of the grid the position embeddings were learned on (518 / 14 = 37).
    ):
        super().__init__()
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, embed_dim))
        self.mask_token = torch.nn.Parameter(torch.zeros(1, embed_dim))  # used in training only; kept for the keys
        self.blocks = torch.nn.ModuleList([Block(embed_dim, num_heads, embed_dim * mlp_ratio) for _ in range(depth)])
        self.norm = torch.nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)

    def forward(self, x):
        grid = (x.shape[2] // self.patch_size, x.shape[3] // self.patch_size)
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = tokens + interpolate_pos_embed(self.pos_embed, grid)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


# ----------------------------------------------------------------------------
# The detector: EDM2's preprocessing in front of the network.


class DINOv2Detector(torch.nn.Module):
    """uint8 (or float in [0, 255]) NCHW RGB images of any size -> [N, embed_dim] DINOv2 CLS features."""

    def __init__(self, vit, input_size=INPUT_SIZE):
        super().__init__()
        self.vit = vit
        self.input_size = tuple(input_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, images):
        x = images.to(torch.float32)
        if tuple(x.shape[2:]) != self.input_size:  # already resized (--resize=clean): used as it is
            x = F.interpolate(x, size=self.input_size, mode="bicubic", antialias=True)
        x = (x / 255 - self.mean) / self.std
        return self.vit(x)


# ----------------------------------------------------------------------------
# Building the network from a state dict.


def architecture_of(state_dict):
    """VisionTransformer's constructor arguments read from the shapes of a DINOv2 state dict; UserError if the
    dict is not one (keys missing or left over, shapes that do not fit, sizes beyond the bounds). The messages
    say what is wrong, not where: the caller names the file."""
    def shape(key):
        value = state_dict.get(key)
        if not isinstance(value, torch.Tensor):
            raise dnnlib.util.UserError(f"no tensor '{key}', so not a DINOv2 ViT state dict")
        return tuple(value.shape)

    embed_dim = shape("cls_token")[-1]
    patch_size = shape("patch_embed.proj.weight")[-1]
    depth = len({int(m.group(1)) for key in state_dict for m in [re.match(r"blocks\.(\d+)\.", str(key))] if m})
    hidden_dim = shape("blocks.0.mlp.fc1.weight")[0] if depth else 0
    pos_grid = math.isqrt(max(shape("pos_embed")[1] - 1, 0))
    if not (0 < embed_dim <= MAX_WIDTH and 0 < depth <= MAX_DEPTH and 0 < patch_size <= 64
            and 0 < pos_grid <= MAX_GRID and hidden_dim % embed_dim == 0):
        raise dnnlib.util.UserError(f"a ViT of width {embed_dim}, depth {depth}, patch {patch_size}, "
                                    f"position grid {pos_grid} is not a DINOv2 ViT this package builds")
    return dict(embed_dim=embed_dim, depth=depth, num_heads=max(1, embed_dim // HEAD_DIM),
                mlp_ratio=hidden_dim // embed_dim, patch_size=patch_size, pos_grid=pos_grid)


def vit_from_state_dict(state_dict):
    """A VisionTransformer holding exactly the tensors of `state_dict` (every key used, every shape checked)."""
    if not isinstance(state_dict, dict):
        raise dnnlib.util.UserError(f"holds a {type(state_dict).__name__}, not a state dict of tensors")
    vit = VisionTransformer(**architecture_of(state_dict))
    expected = vit.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(key for key in set(expected) & set(state_dict)
                   if not isinstance(state_dict[key], torch.Tensor) or state_dict[key].shape != expected[key].shape)
    if missing or unexpected or wrong:
        problems = [f"{name} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                    for name, keys in [("missing", missing), ("unexpected", unexpected), ("misshapen", wrong)] if keys]
        raise dnnlib.util.UserError(f"not a DINOv2 ViT without registers: {'; '.join(problems)}")
    vit.load_state_dict({key: value.to(torch.float32) for key, value in state_dict.items()})
    return vit


def load_dinov2_detector(path, device="cpu"):
    """DINOv2Detector from a state-dict file, read with weights_only=True: tensors only, no code runs."""
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle with objects, a zip that is not torch's, a truncated file
        raise dnnlib.util.UserError(f"{type(err).__name__}: {dnnlib.download.printable(str(err), 100)}") from None
    return DINOv2Detector(vit_from_state_dict(state_dict)).eval().requires_grad_(False).to(device)
