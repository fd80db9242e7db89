"""GLFER-Net's multi-scale feature extraction (MSFE) module and its cross-scale shuffle (CSS) unit (section 3.2.2).

MSFE follows EPSANet's pyramid split attention (Zhang et al., ACCV 2022). The C input channels are cut
into four segments of C/4; segment i goes through a grouped convolution of kernel K_i with
g_i = 2^((K_i - 1) / 2) groups (GLFER-Net's equation for g_i, taken from EPSANet); an SE weight
module (global average pool, FC C/4 -> C/4/r, ReLU, FC back, sigmoid; Hu et al. 2018) gives each
branch's channel weights Z_i, a softmax across the four branches turns them into att_i, and the
branches, each scaled by its att_i, are concatenated (GLFER-Net eq. 5-6).

Choices where the paper leaves room:
- Kernels (1, 3, 5, 7) with groups (1, 2, 4, 8): these satisfy g = 2^((K-1)/2) exactly and are what the
  authors' public code uses. EPSANet's own (3, 5, 7, 9) with groups (1, 4, 8, 16) does not satisfy it,
  and a 9 x 9 kernel is wider than the 16 x 16 maps the last stage sees over a second of audio.
- Segments: each branch convolves its own C/4 input channels, as the paper says ("split ... to
  mitigate computational complexity"); EPSANet's and GLFER-Net's public code feed all C channels to
  every branch (four times the multiply-adds of this layer).
- One SE module shared by the four branches, reduction 16 (EPSANet's code, the authors' code), with a
  hidden width of at least 4 (ours): at 64 channels C/4 / 16 is 1, and a single ReLU unit that is
  negative for every input (it happens at initialisation) leaves the branch attention constant for good.

CSS shuffles the channels (ShuffleNet's reshape-transpose-reshape, GLFER-Net's "group size" g_s = 8 being
the number of groups: the paper's section 5.1 has n / g_s channels per group), concatenates the
shuffled and the original maps, and aggregates them by 1 x 1 conv 2C -> C, BN, GELU, 1 x 1 conv C -> C;
the CSS input is added back (the residual "after the CSS unit"). The residual after the whole MSFE
module is GLF's y1 = MSFE(x) + x and is added by the caller. The authors' public code shuffles with
4 groups; the paper's ablation (Fig. 6) picks 8, used here.
"""

import torch
from torch import nn

BRANCHES = 4


def branch_groups(kernel_size: int) -> int:
    """GLFER-Net's (and EPSANet's) group count for a branch of kernel K: 2^((K - 1) / 2)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"MSFE kernels must be odd and positive, got {kernel_size}")
    return 2 ** ((kernel_size - 1) // 2)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, n, T, F): reshape the channels to (groups, n / groups), transpose, flatten (ShuffleNet).

    A permutation of the channels: channel a * groups + b of the output is channel b * (n / groups) + a
    of the input, and ``channel_shuffle(channel_shuffle(x, g), n // g)`` is x.
    """
    channels = x.shape[1]
    if channels % groups:
        raise ValueError(f"channel shuffle needs channels ({channels}) divisible by groups ({groups})")
    return x.unflatten(1, (groups, channels // groups)).transpose(1, 2).flatten(1, 2)


class SEWeight(nn.Module):
    """SE weights (B, C) in (0, 1) of a map (B, C, T, F): pool, FC, ReLU, FC, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16, min_width: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, min_width)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


class MultiScaleBranches(nn.Module):
    """The four grouped-convolution branches of MSFE with their softmax attention across branches."""

    def __init__(self, channels: int, kernels: tuple[int, ...] = (1, 3, 5, 7), se_reduction: int = 16) -> None:
        super().__init__()
        if len(kernels) != BRANCHES or channels % BRANCHES:
            raise ValueError(f"MSFE needs {BRANCHES} kernels and channels divisible by {BRANCHES}")
        width = channels // BRANCHES
        for k in kernels:
            if width % branch_groups(k):
                raise ValueError(f"MSFE: {width} channels per branch do not split into {branch_groups(k)} groups")
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, k, padding=k // 2, groups=branch_groups(k), bias=False) for k in kernels
        )
        self.se = SEWeight(width, se_reduction)

    def branch_weights(self, branches: list[torch.Tensor]) -> torch.Tensor:
        """att (B, 4, C/4): the shared SE's weights of each branch, softmax-normalised across branches."""
        return torch.stack([self.se(f) for f in branches], dim=1).softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        segments = x.chunk(BRANCHES, dim=1)
        branches = [conv(segment) for conv, segment in zip(self.convs, segments, strict=True)]
        att = self.branch_weights(branches)
        return torch.cat([f * att[:, i, :, None, None] for i, f in enumerate(branches)], dim=1)


class CrossScaleShuffle(nn.Module):
    """CSS: x + aggregate(concat(shuffle(x), x)), the aggregation 1x1 2C -> C, BN, GELU, 1x1 C -> C."""

    def __init__(self, channels: int, shuffle_groups: int = 8) -> None:
        super().__init__()
        if channels % shuffle_groups:
            raise ValueError(f"CSS needs channels ({channels}) divisible by its shuffle groups ({shuffle_groups})")
        self.shuffle_groups = shuffle_groups
        self.aggregate = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.aggregate(torch.cat([channel_shuffle(x, self.shuffle_groups), x], dim=1))


class MSFE(nn.Sequential):
    """MSFE module: multi-scale branches, then CSS; (B, C, T, F) -> (B, C, T, F)."""

    def __init__(
        self, channels: int, kernels: tuple[int, ...] = (1, 3, 5, 7), se_reduction: int = 16, shuffle_groups: int = 8
    ) -> None:
        branches = MultiScaleBranches(channels, kernels, se_reduction)
        super().__init__(branches, CrossScaleShuffle(channels, shuffle_groups))
