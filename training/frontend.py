"""Torch twin of :mod:`seld_edge.features`: the same features from torch ops, batched, on any device.

Training itself reads features that the numpy front end computed once and cached (training/data.py).
The twin is what `seld-edge parity` and `seld-edge bench features` hold the numpy definition against,
and what a GPU training loop computing features on the fly would use. It takes its window and mel
matrix from the numpy definition (one definition of each), so only the STFT, dB and intensity-vector
arithmetic are re-expressed; tests/test_features.py holds the two to 1e-3 dB on log-mel and 1e-4 on the
intensity vector.
"""

import torch
from torch import nn

from seld_edge.features import FeatureConfig
from seld_edge.features.extract import filterbank_for, window_for
from seld_edge.features.functional import AMIN, IV_EPS


class FeatureExtractor(nn.Module):
    """(B, in_channels, N) audio -> (B, out_channels, T, F) features for one FeatureConfig."""

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("window", torch.from_numpy(window_for(config).copy()), persistent=False)
        fb = filterbank_for(config)
        self.register_buffer("filterbank", None if fb is None else torch.from_numpy(fb.copy()), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        batch, channels, n_samples = audio.shape
        if channels != cfg.in_channels:
            raise ValueError(f"expected {cfg.in_channels} channels, got {channels}")
        spec = torch.stft(
            audio.reshape(batch * channels, n_samples).float(),
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        spec = spec.reshape(batch, channels, *spec.shape[-2:]).transpose(-1, -2)[:, :, : cfg.n_frames(n_samples)]
        power = spec.real.square() + spec.imag.square()
        linear = torch.cat([power, self._intensity_vector(spec, power)], dim=1) if cfg.iv_norm else power
        projected = linear if self.filterbank is None else linear @ self.filterbank
        log = 10.0 * torch.log10(projected[:, :channels].clamp_min(AMIN))
        if cfg.top_db is not None:
            log = torch.maximum(log, log.amax(dim=(-2, -1), keepdim=True) - cfg.top_db)
        return torch.cat([log, projected[:, channels:]], dim=1)

    def _intensity_vector(self, spec: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
        w = spec[:, 0:1]
        xyz = spec[:, [3, 1, 2]]
        iv = w.real * xyz.real + w.imag * xyz.imag
        if self.config.iv_norm == "energy":
            denominator = IV_EPS + power[:, 0:1] + power[:, 1:4].sum(dim=1, keepdim=True) / 3.0
        else:
            denominator = IV_EPS + iv.square().sum(dim=1, keepdim=True).sqrt()
        return iv / denominator
