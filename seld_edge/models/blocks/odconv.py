"""Omni-dimensional dynamic convolution (ODConv; Li, Zhou and Yao, ICLR 2022), in a form TensorRT can build.

ODConv convolves the input with a kernel built per sample from n static kernels W_1..W_n:

    y = (sum_i a_w[i] * a_f * a_c * a_s * W_i) conv x

where four attentions, all from one squeeze of the input (global average pool, FC without bias, BN,
ReLU), weight the kernel along its four dimensions: a_s (k x k, sigmoid) its spatial positions,
a_c (C_in, sigmoid) its input channels, a_f (C_out, sigmoid) its filters, a_w (n, softmax) the
kernels. As in the authors' code, a_s, a_c and a_f are shared by the n kernels (the paper writes
one per kernel); the attention width is max(C_in * reduction, 16). The authors' code can divide the
attention logits by a temperature (1 by default); it is not a setting here. GLFER-Net (section 3.2.1)
uses one 3 x 3 kernel with reduction 1/4.

Written literally, the kernel depends on the sample, so an ONNX graph gets a convolution whose
weight is computed from the batch, which TensorRT cannot build. Every attention enters linearly, so
the same output comes from plain operators with static weights:

- a_c scales the input channels before the convolution;
- a_s scales the k x k positions of each input patch: the k x k shifted copies of the zero-padded
  input are stacked (an im2col written as Pad and Slice), weighted per position, and one 1 x 1
  convolution with the static kernels, stored as (n * C_out, C_in * k * k), does the sum over
  channels and positions;
- a_w mixes the n kernels' outputs;
- a_f scales the output channels.

The cost is that of the convolution (the same multiply-adds as im2col + GEMM), plus k * k copies of
the input. Stride 1, dilation 1, one group and "same" padding: what GLFER-Net uses.
"""

import torch
import torch.nn.functional as F
from torch import nn


class ODConvAttention(nn.Module):
    """The four attentions of ODConv (Li et al. 2022) from one squeeze of the input."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, kernel_num: int, reduction: float, min_width: int
    ) -> None:
        super().__init__()
        width = max(int(in_channels * reduction), min_width)
        self.squeeze = nn.Sequential(nn.Linear(in_channels, width, bias=False), nn.BatchNorm1d(width), nn.ReLU())
        self.channel = nn.Linear(width, in_channels)
        self.filter = nn.Linear(width, out_channels)
        # As in the authors' code: no spatial attention for a 1 x 1 kernel, no kernel attention for one kernel.
        self.spatial = nn.Linear(width, kernel_size * kernel_size) if kernel_size > 1 else None
        self.kernel = nn.Linear(width, kernel_num) if kernel_num > 1 else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """a_c (B, C_in), a_f (B, C_out), a_s (B, k * k) or None, a_w (B, n) or None."""
        z = self.squeeze(x.mean((2, 3)))
        spatial = torch.sigmoid(self.spatial(z)) if self.spatial is not None else None
        kernel = torch.softmax(self.kernel(z), dim=1) if self.kernel is not None else None
        return torch.sigmoid(self.channel(z)), torch.sigmoid(self.filter(z)), spatial, kernel


class ODConv2d(nn.Module):
    """ODConv with static weights only (see the module docstring); no bias, as in the authors' code."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        kernel_num: int = 1,
        reduction: float = 0.0625,
        min_width: int = 16,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ODConv2d pads to the same size and needs an odd kernel size, got {kernel_size}")
        self.kernel_size = kernel_size
        self.kernel_num = kernel_num
        self.out_channels = out_channels
        self.attention = ODConvAttention(in_channels, out_channels, kernel_size, kernel_num, reduction, min_width)
        # The n static kernels stored as the 1 x 1 convolution over patches uses them, so that the graph
        # has them as initializers (a Reshape in the graph would leave the Conv weight computed):
        # (n * C_out, C_in * k * k, 1, 1), rows kernel-major, columns (channel, row, column) row-major.
        self.weight = nn.Parameter(torch.empty(kernel_num * out_channels, in_channels * kernel_size**2, 1, 1))
        for kernel in self.kernels:
            nn.init.kaiming_normal_(kernel, mode="fan_out", nonlinearity="relu")

    @property
    def kernels(self) -> torch.Tensor:
        """The n kernels in the textbook layout (n, C_out, C_in, k, k), a view of ``weight``."""
        k = self.kernel_size
        return self.weight.view(self.kernel_num, self.out_channels, -1, k, k)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, F) -> (B, C, k * k, T, F): the input shifted to each kernel position (row-major)."""
        k = self.kernel_size
        padded = F.pad(x, (k // 2,) * 4)
        # Constant slice bounds (negative ends), so nothing depends on the dynamic T and F.
        shifted = [
            padded[:, :, dt : dt - (k - 1) or None, df : df - (k - 1) or None] for dt in range(k) for df in range(k)
        ]
        return torch.stack(shifted, dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel, filter_, spatial, kernel = self.attention(x)
        x = x * channel[:, :, None, None]
        if spatial is not None:
            x = (self.patches(x) * spatial[:, None, :, None, None]).flatten(1, 2)  # (B, C_in * k * k, T, F)
        y = F.conv2d(x, self.weight)  # (B, n * C_out, T, F)
        if kernel is not None:
            y = (y.unflatten(1, (self.kernel_num, self.out_channels)) * kernel[:, :, None, None, None]).sum(1)
        return y * filter_[:, :, None, None]
