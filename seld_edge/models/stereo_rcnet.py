"""Stereo-RCnet (seed 003; Wu and Zhu, DCASE 2025 task 3 technical report): stereo SELD with distance.

Input ``stereo_logmel`` (B, 2, T, 64): log-mel of the left and right channel (L = W + Y, R = W - Y from
FOA), 24 kHz, 40 ms window, 20 ms hop, so 5 feature frames per 100 ms label frame. T must be a whole
number of label frames, T = 5k. A 5 s clip has 251 frames (centred STFT, no crop); the training chunks
cut it to 250 and the runtime (seld_edge.inference) zero-pads every clip to whole label frames (255 for
5 s) and runs it in windows of the training chunk. Output ``stereo_accdoa`` (B, T/5, 3 * 13): per class
x and y (tanh, activity = their norm) and a distance in metres, ordered [x][class], [y][class],
[distance][class]; decoding folds the azimuth to [-90, 90] and writes the DCASE 2025 CSV form.

The paper's path (section 2.2, Fig. 1a, eqs. 1-3):
- one backbone, MCSAnet, with the SAME weights on each channel, the two channels run as single-channel
  images (here as one batch of 2B images): a ResNet whose residual blocks carry MCSA, the MS-CAM of
  Dai et al. 2021 (the paper's ref. [10]), pooling frequency only (blocks/resnet.py);
- AFF fusion of the two maps, F = w L + (2 - w) R with w from an MS-CAM (eq. 1, blocks/stereo_fusion.py);
- an embedding per time frame plus a fixed sinusoidal time encoding, H = Embed(F) + P (eq. 2,
  blocks/positional.py);
- a stack of Conformer layers (Gulati et al. 2020; blocks/conformer.py, shared with EINV2);
- time pooling to 100 ms, then one FC layer to the ACCDOA output with distance (eq. 3).
Loss (eqs. 4-6): 1 x MSE of the (x, y) vectors + 2 x MSPE of the distances on active events, both
normalised by C x T (training.losses ``mse`` and ``mspe`` with the ``all`` normaliser; the output
format's default loss, named again in the card). Recipe (sections 2.4-2.6): stage 1 trains on synthetic
+ real data for 20 epochs with Adam at 1e-4, with random cutout, time-frequency masking, frequency shift
and AugMix; stage 2 fine-tunes on real data at 2e-5 until validation has not improved for 20 epochs
(``init_from``, ``lr=2e-5``, ``patience=20``); per-class thresholds tuned on validation (DT,
``tune_thresholds``).

What the paper leaves open, and what we chose:
- Sizes. No width, depth or parameter count is published. For scale: the task's audio baseline (a
  CRNN) has 0.73 M parameters; a public DCASE 2025 ResNet-Conformer has a frequency-pooling ResNet-18 at
  widths 24-192 (about 1.6 M by our count of its layout) before 8 conformer layers of width 256 (about
  12.6 M). ``stereo_rcnet`` takes that backbone layout, 4 stages of 2 blocks at widths 24, 48, 96, 192
  (64 mel bins to 4), and a shorter, narrower stack, 4 conformer layers of width 192 with 4 heads,
  feed-forward x4, kernel 31, for a few million parameters in all: 5,453,919 (backbone 1.67 M, conformer
  3.59 M), 10.4 GMAC per 5 s clip, of which the backbone, run at full time resolution on both channels,
  takes 9.2 G. ``stereo_rcnet_tiny``: widths 16, 32, 64, 96 with one block per stage, 2 conformer layers
  of width 128: 1,104,007 parameters, 1.75 GMAC per 5 s clip. (torch.utils.flop_counter, MACs = FLOPs / 2;
  tests/test_stereo_rcnet.py prints both.)
- MCSA sits on each residual branch before the sum, as SE-ResNet places its attention (the figure that
  shows it is not reproduced in the text); MS-CAM reduction 4, Dai et al.'s default.
- The fusion's MS-CAM sees L + R, as in AFF (the paper does not say); eq. 1's weights are taken as
  printed (blocks/stereo_fusion.py says what that implies).
- The embedding is one linear layer from the fused map's channels x frequency bins (192 x 4) per frame
  to the conformer width.
- The conformer keeps its relative positional self-attention (blocks/conformer.py). The paper's conformer
  is Gulati et al.'s, whose self-attention has this relative encoding (Transformer-XL's), and the
  T-Encoding of eq. 2 is added after the embedding as the paper says: absolute time on top of relative
  attention. The absolute encoding sees the positions of one window only: the runtime runs long clips in
  windows of the training chunk, so no position past those trained on ever reaches it.
- T-Pooling is the mean of each 5 frames (blocks/pooling.py), after the conformer, which therefore runs at
  the 20 ms frame rate.
- Output activations: tanh on x and y (ACCDOA vectors, norm <= sqrt 2 before the activity threshold);
  softplus on the distance. Both keep distances positive, but ReLU passes no gradient where its input
  is negative, and MSPE reaches a class's distance only on its active frames: a class whose distance
  input has gone negative on them answers 0 m and never learns again. Softplus is never flat, and its
  0.69 m at zero input is a small start for the 1-5 m of the data. The 2025 baseline has no output
  activation at all.
- Dropout 0.1 inside the conformer (its usual value); none in the backbone, the paper gives none.
- Batch size 64: the paper gives none; a public DCASE 2025 ResNet-Conformer trains at 64 with Adam (the
  audio baseline at 256 with a ten times larger learning rate). Learning rate constant: the paper
  gives only the starting value.
- AugMix without its Jensen-Shannon consistency loss (training.augment.AugMix says why).

Departures from the paper: none in the network. The paper trains on 90,000 5 s clips cut from the DCASE
2024 FOA synthetic set and converted to stereo: ``seld-edge convert stereo`` does that conversion for any
FOA data set in the STARSS layout, in consecutive clips (90,000 clips from 20 hours overlap some six
times; a longer ``--clip-seconds`` with training's overlapping chunks gives the same variety).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seld_edge.features import feature_config
from seld_edge.formats.classes import NUM_CLASSES
from seld_edge.models._registry import ModelCard, register_model
from seld_edge.models.blocks.conformer import ConformerLayer
from seld_edge.models.blocks.pooling import TimePooling
from seld_edge.models.blocks.positional import SinusoidalTimeEncoding
from seld_edge.models.blocks.resnet import MCSANet
from seld_edge.models.blocks.stereo_fusion import StereoFusion

FEATURE_KIND = "stereo_logmel"
LABEL_RATE_HZ = 10.0
FRAMES_PER_LABEL = feature_config(FEATURE_KIND).frames_per_label(LABEL_RATE_HZ)  # 5: hop 20 ms, labels 100 ms


class StereoRCnet(nn.Module):
    """Shared-weight MCSAnet per channel, stereo fusion, embedding + T-encoding, conformers, T-pooling, FC.

    (B, 2, T, 64) log-mel L and R -> (B, T / 5, 3 * num_classes) stereo ACCDOA: x, y (tanh), distance
    (softplus, metres), each a block of num_classes.
    """

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int],
        blocks_per_stage: int,
        attention_reduction: int,
        d_model: int,
        heads: int,
        layers: int,
        ff_expansion: int,
        conv_kernel: int,
        dropout: float,
    ) -> None:
        super().__init__()
        config = feature_config(FEATURE_KIND)
        self.num_classes = num_classes
        self.backbone = MCSANet(1, widths, blocks_per_stage, attention_reduction)
        if config.n_bins % self.backbone.frequency_factor:
            raise ValueError(f"{len(widths)} frequency poolings do not divide {config.n_bins} mel bins")
        self.fusion = StereoFusion(widths[-1], attention_reduction)
        self.embed = nn.Linear(widths[-1] * (config.n_bins // self.backbone.frequency_factor), d_model)
        self.time_encoding = SinusoidalTimeEncoding(d_model)
        self.conformer = nn.Sequential(
            *(ConformerLayer(d_model, heads, ff_expansion, conv_kernel, dropout) for _ in range(layers))
        )
        self.time_pooling = TimePooling(FRAMES_PER_LABEL)
        self.head = nn.Linear(d_model, 3 * num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(features.flatten(0, 1).unsqueeze(1))  # (2B, C, T, F'): L and R of each clip in turn
        maps = maps.unflatten(0, (-1, 2))  # (B, 2, C, T, F')
        fused = self.fusion(maps[:, 0], maps[:, 1])  # (B, C, T, F')
        h = self.time_encoding(self.embed(fused.transpose(1, 2).flatten(2)))  # (B, T, d_model)
        out = self.head(self.time_pooling(self.conformer(h)))  # (B, T / 5, 3C)
        xy, distance = out.split((2 * self.num_classes, self.num_classes), dim=-1)
        return torch.cat([xy.tanh(), F.softplus(distance)], dim=-1)


_CONFORMER = {"ff_expansion": 4, "conv_kernel": 31, "dropout": 0.1}
_STEREO_RCNET = {"widths": (24, 48, 96, 192), "blocks_per_stage": 2, "attention_reduction": 4,
                 "d_model": 192, "heads": 4, "layers": 4, **_CONFORMER}  # fmt: skip
# The same blocks at reduced widths: one residual block per stage, two conformer layers of width 128.
_TINY = {**_STEREO_RCNET, "widths": (16, 32, 64, 96), "blocks_per_stage": 1, "d_model": 128, "layers": 2}

# Stage 1 of the paper's recipe (module docstring); stage 2 is init_from=RUN lr=2e-5 patience=20 on real data.
_TRAINING = {
    "optimizer": "adam",
    "lr": 1e-4,
    "scheduler": "constant",
    "batch_size": 64,
    "epochs": 20,
    "metric": "dcase2025",
    "tune_thresholds": True,
    "loss": {"mse": 1.0, "mspe": {"weight": 2.0, "normaliser": "all"}},
}
# Random cutout, time-frequency masking, frequency shift, AugMix (section 2.4); no channel swap: the paper has none.
_AUGMENT = {"freq_shift": True, "augmix": True, "spec_augment": True, "cutout": True}


def _card(defaults: dict) -> ModelCard:
    return ModelCard(
        FEATURE_KIND,
        "stereo_accdoa",
        label_rate_hz=LABEL_RATE_HZ,
        defaults={"num_classes": NUM_CLASSES, **defaults},
        training=_TRAINING,
        augment=_AUGMENT,
    )


register_model("stereo_rcnet", _card(_STEREO_RCNET))(StereoRCnet)
register_model("stereo_rcnet_tiny", _card(_TINY))(StereoRCnet)
