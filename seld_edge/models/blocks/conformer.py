"""Conformer layer (Gulati et al. 2020) with Transformer-XL relative positional self-attention.

One layer, pre-norm residual units, on sequences (B, T, d_model):

    x = x + 1/2 FeedForward(x)        macaron: half a feed-forward before and after
    x = x + RelPositionSelfAttention(x)
    x = x + ConvModule(x)
    x = x + 1/2 FeedForward(x)
    x = LayerNorm(x)

FeedForward: LayerNorm, Linear d -> e*d, Swish, dropout, Linear e*d -> d, dropout. ConvModule:
LayerNorm, pointwise conv d -> 2d, GLU, depthwise conv (kernel 31 by default, no bias: batch norm
follows), batch norm, Swish, pointwise conv d -> d, dropout. The parameter layout is that of the
conformer in the public EINV2 code, so parameter counts agree with it.

Relative positions (Dai et al. 2019, Transformer-XL section 3.3): the attention logit of query i and
key j is

    ((q_i + u) . k_j + (q_i + v) . W_p r_(i-j)) / sqrt(d_head)

with r_(i-j) a sinusoidal encoding of the signed distance i - j, W_p a learned projection and u, v
learned per-head biases. Nothing depends on the absolute position, so the logits of a pair depend only
on the two frames and their distance: shifting a window along a sequence shifts its logits with it,
and a model trained on 5 s clips runs unchanged on 60 s ones. The encodings of the 2T - 1 distances
are built inside forward from ``arange`` over the actual length, so an exported graph keeps a dynamic
time axis (Range, Sin, Cos and MatMul in ONNX; no table of a fixed length). The distance-indexed
logits (B, H, T, 2T - 1) are turned into query-key logits (B, H, T, T) by the pad-and-reshape "skew"
of Transformer-XL: plain Pad, Reshape and Slice.

Where this departs from the code the EINV2 family uses (Soohwan Kim's conformer): that code encodes
only the T distances 0 .. T - 1 and shifts them with a pad-and-reshape sized for T, so keys after the
query get the encodings of the wrong distances; here all 2T - 1 signed distances are encoded, which
is what makes the logits translation-equivariant (tested). Logits are scaled by 1/sqrt(d_head) as in
Transformer-XL, where that code divides by sqrt(d_model). Parameter counts are unchanged.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from seld_edge.models.blocks.positional import sinusoidal_encoding


class FeedForward(nn.Sequential):
    """LayerNorm, Linear d -> expansion * d, Swish, dropout, Linear back to d, dropout."""

    def __init__(self, d_model: int, expansion: int, dropout: float) -> None:
        super().__init__(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, expansion * d_model),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(expansion * d_model, d_model),
            nn.Dropout(dropout),
        )


class ConvModule(nn.Module):
    """Conformer convolution module on (B, T, d): pointwise + GLU, depthwise over time, BN, Swish, pointwise."""

    def __init__(self, d_model: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"the conformer's depthwise kernel must be odd to keep the length, got {kernel_size}")
        self.norm = nn.LayerNorm(d_model)
        self.convs = nn.Sequential(
            nn.Conv1d(d_model, 2 * d_model, 1),
            nn.GLU(dim=1),
            nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model, bias=False),
            nn.BatchNorm1d(d_model),
            nn.SiLU(),
            nn.Conv1d(d_model, d_model, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.norm(x).transpose(1, 2)).transpose(1, 2)


def relative_position_encoding(length: int | torch.SymInt, d_model: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal encodings (2 * length - 1, d_model) of the distances length - 1, ..., 0, ..., -(length - 1):
    the fixed encoding of blocks.positional (Vaswani et al.), applied to distances instead of positions."""
    distances = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    return sinusoidal_encoding(distances, d_model)


def skew(by_distance: torch.Tensor) -> torch.Tensor:
    """(B, H, T, 2T - 1) logits indexed by distance column k (distance T - 1 - k) -> (B, H, T, T) by key j.

    out[..., i, j] = by_distance[..., i, T - 1 - i + j], the column of distance i - j, by padding one zero
    column in front, reading the (T, 2T) block as (2T, T), dropping the first row and reading the rest
    back as (T, 2T - 1): each row then starts at its own offset.
    """
    batch, heads, length, _ = by_distance.shape
    padded = F.pad(by_distance, (1, 0))
    shifted = padded.reshape(batch, heads, 2 * length, length)[:, :, 1:]
    return shifted.reshape(batch, heads, length, 2 * length - 1)[..., :length]


class RelPositionSelfAttention(nn.Module):
    """Multi-head self-attention with relative positional logits (see the module docstring); input pre-normed."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by the number of heads ({heads})")
        self.heads = heads
        self.d_head = d_model // heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.position = nn.Linear(d_model, d_model, bias=False)
        self.content_bias = nn.Parameter(nn.init.xavier_uniform_(torch.empty(heads, self.d_head)))  # u
        self.position_bias = nn.Parameter(nn.init.xavier_uniform_(torch.empty(heads, self.d_head)))  # v
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, H, T, d_head)."""
        return x.unflatten(-1, (self.heads, self.d_head)).transpose(1, 2)

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention logits (B, H, T, T), query by key, and the values (B, H, T, d_head)."""
        length = x.shape[1]
        q = self.query(x).unflatten(-1, (self.heads, self.d_head))  # (B, T, H, d_head): the biases add per head
        k, v = self._split_heads(self.key(x)), self._split_heads(self.value(x))
        r = self.position(relative_position_encoding(length, self.heads * self.d_head, x.device))
        r = r.unflatten(-1, (self.heads, self.d_head)).permute(1, 2, 0)  # (H, d_head, 2T - 1)
        content = (q + self.content_bias).transpose(1, 2) @ k.transpose(2, 3)
        position = skew((q + self.position_bias).transpose(1, 2) @ r)
        return (content + position) / math.sqrt(self.d_head), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, v = self.logits(x)
        weights = self.dropout(logits.softmax(-1))
        return self.dropout(self.out((weights @ v).transpose(1, 2).flatten(2)))


class ConformerLayer(nn.Module):
    """One conformer layer on (B, T, d_model); see the module docstring for the order of its parts."""

    def __init__(
        self, d_model: int, heads: int, ff_expansion: int = 4, conv_kernel: int = 31, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.ff_in = FeedForward(d_model, ff_expansion, dropout)
        self.attention_norm = nn.LayerNorm(d_model)
        self.attention = RelPositionSelfAttention(d_model, heads, dropout)
        self.conv = ConvModule(d_model, conv_kernel, dropout)
        self.ff_out = FeedForward(d_model, ff_expansion, dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff_in(x)
        x = x + self.attention(self.attention_norm(x))
        x = x + self.conv(x)
        x = x + 0.5 * self.ff_out(x)
        return self.norm(x)
