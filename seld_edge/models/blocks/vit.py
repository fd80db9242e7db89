"""Vision Transformer (ViT) encoder blocks, laid out and named as timm's ``vision_transformer.py``.

Parameter names follow timm (``patch_embed.proj``, ``blocks.N.norm1``, ``blocks.N.attn.qkv``,
``blocks.N.attn.proj``, ``blocks.N.norm2``, ``blocks.N.mlp.fc1``/``fc2``) so that an ImageNet DeiT
state dict maps onto these modules by name (seld_edge.models.pretrained). As in ViT/DeiT: pre-norm
residual blocks, ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``; LayerNorm with eps 1e-6; one fused
``qkv`` projection whose output rows are ordered [q | k | v], each split into heads of ``dim / heads``;
a GELU MLP of hidden width ``mlp_ratio * dim``.

Attention is written out as matmul, softmax, matmul rather than through
``F.scaled_dot_product_attention``: at opset 18 both export to MatMul/Softmax, but the explicit form
keeps the graph independent of which fused path (or opset-23 ``Attention`` node) a torch version picks,
and TensorRT 10.3 has no importer for ``Attention`` (export/graph_check.py).
"""

import torch
from torch import nn

LAYER_NORM_EPS = 1e-6  # timm's ViT/DeiT LayerNorm


def patch_grid(size: tuple[int, int], patch_size: int, stride: int) -> tuple[int, int]:
    """Patches along each axis of a ``size`` image cut into ``patch_size`` squares ``stride`` apart (no padding)."""
    return ((size[0] - patch_size) // stride + 1, (size[1] - patch_size) // stride + 1)


class PatchEmbed(nn.Module):
    """Overlapping square patches, each linearly projected to ``embed_dim``: one strided conv.

    (B, C, H, W) -> (B, H' * W', embed_dim), patches in row-major order (the last image axis fastest).
    A stride below ``patch_size`` overlaps neighbouring patches, as AST does with stride 10 for 16x16.

    Under CPU autocast the projection runs in float32. torch 2.13's oneDNN (3.12) computes some bfloat16
    convolutions whose stride is a large kernel's wrongly, with a relative error near 1, not 1e-3: 4 input
    channels at 16x16 stride 16 (the tiny SED network's MIC image), 8 at 8x8/8 or 16x16/8 or 16x16/16
    (stride 10 is right). Its weight gradient is right, so a network trains on the garbage and fits it:
    bfloat16 training of ``m2m_ast_sed_tiny`` made a model that float32 inference cannot use (frame AUC
    0.64 on its own training chunks). The projection is about 3 % of a tiny ViT's MACs.
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.patch_size, self.stride = patch_size, stride
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return self.proj(x.float()).flatten(2).transpose(1, 2)
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm's names and head layout)."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, N, 3 * dim) -> 3 x (B, heads, N, head_dim); unflatten keeps the batch axis symbolic in export.
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4).unbind(0)
        attn = self.attn_drop(torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).flatten(2)))


class Mlp(nn.Module):
    """fc1, GELU, dropout, fc2, dropout (timm's Mlp)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm Transformer encoder block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_vit_weights(module: nn.Module) -> None:
    """timm's default ViT init for ``module.apply``: Linear weights truncated normal (std 0.02), biases zero;
    LayerNorm and the patch conv keep torch's defaults."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
