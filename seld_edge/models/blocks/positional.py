"""Fixed sinusoidal position encodings (Vaswani et al. 2017, section 3.5).

For a position p (a frame index, or a signed distance between two frames) and d channels,

    PE[p, i] = sin(p * w_i),  PE[p, d/2 + i] = cos(p * w_i),  w_i = 10000^(-2i / d),  i = 0 .. d/2 - 1.

Vaswani et al. interleave the pairs (sin in channel 2i, cos in 2i + 1); here they are stored as two halves,
as tensor2tensor does. The two layouts differ by a fixed permutation of channels, which the learned layer
in front of (or behind) the encoding absorbs; the halves are also the layout of the conformer's relative
encodings (blocks/conformer.py, ``relative_position_encoding``), so both are this one function.

Nothing here is learned and nothing is stored: the encodings are computed in ``forward`` from ``arange``
over the actual length (Range, Sin, Cos in ONNX), so an exported graph keeps a dynamic time axis and a
checkpoint holds no table of a fixed length.
"""

import math

import torch
from torch import nn


def sinusoidal_encoding(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """(N,) positions -> (N, d_model) encodings, sin in the first half of the channels, cos in the second."""
    if d_model % 2:
        raise ValueError(f"a sinusoidal encoding needs an even number of channels, got {d_model}")
    frequencies = torch.exp(
        torch.arange(0, d_model, 2, device=positions.device, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )
    angles = positions.to(torch.float32)[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class SinusoidalTimeEncoding(nn.Module):
    """Adds the fixed encoding of each frame's index t = 0, 1, ... to a sequence (B, T, d_model).

    Stereo-RCnet's "T-Encoding" (its eq. 2, H = Embed(F) + P): absolute time positions, not learned.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        if d_model % 2:
            raise ValueError(f"a sinusoidal encoding needs an even number of channels, got {d_model}")
        self.d_model = d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        return x + sinusoidal_encoding(positions, self.d_model).to(x.dtype)
