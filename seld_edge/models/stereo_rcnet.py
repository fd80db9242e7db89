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
  of width 128, on the input averaged over each label frame's 5 feature frames (``input_pool`` (5, 1);
  (1, 1) in ``stereo_rcnet``, the paper's): 1,104,007 parameters, 0.34 GMAC per 5 s clip (1.75 unpooled).
  (torch.utils.flop_counter, MACs = FLOPs / 2; tests/test_stereo_rcnet.py prints both.)
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

``stereo_rcnet_tiny`` departs from the paper where a CPU budget of minutes needs it, as the other tiny
scales do. Its backbone keeps the 20 ms frames of the input through every stage (it pools frequency only),
so a training step took 173 ms per 5 s chunk unpooled (one core, batch 8) and ten minutes made one epoch.
Averaging the input over each 100 ms label frame, the output's own resolution, makes it 36 ms; the
conformer then runs at 10 Hz and T-Pooling has nothing left to do. (Pooling frequency by 2 as well would
make it 21 ms; not needed.) Its card trains stage 1 with Adam 2e-3, cosine decay and batch 8, and without
the paper's four augmentations, which cost little (0.6 ms per chunk) but slow learning at this budget
(below); stage 2 starts from it at 4e-4, a fifth of stage 1's rate as in the paper (2e-5 after 1e-4). The
two stages, 6 + 4 minutes on the whole 2-core development machine, synthetic stereo scenes for stage 1 and
scenes with reflections (standing in for real data) for both:

    seld-edge synth synth --format stereo --no-reflections --seed 2
    seld-edge synth real --format stereo --seed 1
    python -m training.fit --model stereo_rcnet_tiny --data synth --data real --out st1 --max-minutes 6
    python -m training.fit --model stereo_rcnet_tiny --data real --out st2 --max-minutes 4 \
        init_from=st1 lr=4e-4 patience=20

score on the test split of the scenes with reflections (dcase2025; thresholds at 0.5 for the first two):
stage 1 (12 epochs) F 0.628, AE 14.4, RDE 0.268; stage 2 (16 epochs) F 0.676, AE 13.2, RDE 0.271; stage 2
with per-class thresholds F 0.690, AE 13.4, RDE 0.272 (a second run, ``seed=1`` in both stages: F 0.593,
0.644, 0.658; AE 15.0, 14.2, 14.1; RDE 0.257, 0.266, 0.265). The thresholds are tuned on the validation
split, which for these synthetic sets is the test split itself, so the last gain is an upper bound. With
the paper's augmentations on in both stages (``augment.augmix=true`` and the rest), the same 10 minutes
reached stage 2 + thresholds F 0.527, AE 18.4, RDE 0.301. Unpooled, with the paper's learning rates and
augmentations (batch 8), the two stages made one epoch each in 6 + 4 minutes on one core and reached F
0.09, AE 47.4, RDE 0.30.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seld_edge.features import feature_config
from seld_edge.formats.classes import NUM_CLASSES
from seld_edge.models._registry import ModelCard, register_model
from seld_edge.models.blocks.conformer import ConformerLayer
from seld_edge.models.blocks.pooling import TimePooling, average_pooling
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
        input_pool: tuple[int, int],
    ) -> None:
        super().__init__()
        config = feature_config(FEATURE_KIND)
        time_pool, freq_pool = input_pool
        if FRAMES_PER_LABEL % time_pool:
            raise ValueError(f"input_pool={input_pool}: time pool must divide the {FRAMES_PER_LABEL} frames of a label")
        self.num_classes = num_classes
        self.input_pool = average_pooling(input_pool)
        self.backbone = MCSANet(1, widths, blocks_per_stage, attention_reduction)
        bins = config.n_bins // freq_pool
        if config.n_bins % freq_pool or bins % self.backbone.frequency_factor:
            raise ValueError(f"input_pool={input_pool} and {len(widths)} frequency poolings do not divide "
                             f"{config.n_bins} mel bins")  # fmt: skip
        self.fusion = StereoFusion(widths[-1], attention_reduction)
        self.embed = nn.Linear(widths[-1] * (bins // self.backbone.frequency_factor), d_model)
        self.time_encoding = SinusoidalTimeEncoding(d_model)
        self.conformer = nn.Sequential(
            *(ConformerLayer(d_model, heads, ff_expansion, conv_kernel, dropout) for _ in range(layers))
        )
        # T-Pooling takes the conformer to the label rate; an input pooled by a whole label frame is there.
        rest = FRAMES_PER_LABEL // time_pool
        self.time_pooling = TimePooling(rest) if rest > 1 else nn.Identity()
        self.head = nn.Linear(d_model, 3 * num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = self.input_pool(features)  # (B, 2, T', F): T' = T / the input's time pool
        maps = self.backbone(pooled.flatten(0, 1).unsqueeze(1))  # (2B, C, T', F'): L and R of each clip in turn
        maps = maps.unflatten(0, (-1, 2))  # (B, 2, C, T', F')
        fused = self.fusion(maps[:, 0], maps[:, 1])  # (B, C, T', F')
        h = self.time_encoding(self.embed(fused.transpose(1, 2).flatten(2)))  # (B, T', d_model)
        out = self.head(self.time_pooling(self.conformer(h)))  # (B, T / 5, 3C)
        xy, distance = out.split((2 * self.num_classes, self.num_classes), dim=-1)
        return torch.cat([xy.tanh(), F.softplus(distance)], dim=-1)


_CONFORMER = {"ff_expansion": 4, "conv_kernel": 31, "dropout": 0.1}
_STEREO_RCNET = {"widths": (24, 48, 96, 192), "blocks_per_stage": 2, "attention_reduction": 4,
                 "d_model": 192, "heads": 4, "layers": 4, "input_pool": (1, 1), **_CONFORMER}  # fmt: skip
# The same blocks at reduced widths: one residual block per stage, two conformer layers of width 128, on the
# input averaged over each label frame's 5 feature frames (module docstring).
_TINY = {**_STEREO_RCNET, "widths": (16, 32, 64, 96), "blocks_per_stage": 1, "d_model": 128, "layers": 2,
         "input_pool": (5, 1)}  # fmt: skip
# Checkpoints made before the input pooling existed saw every frame.
_ADDED = {"input_pool": (1, 1)}

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
# stereo_rcnet_tiny's stage 1 for a CPU budget of minutes (module docstring); stage 2 is init_from=RUN lr=4e-4.
_TINY_TRAINING = {**_TRAINING, "lr": 2e-3, "scheduler": "cosine", "batch_size": 8}


def _card(defaults: dict, training: dict, augment: dict) -> ModelCard:
    return ModelCard(
        FEATURE_KIND,
        "stereo_accdoa",
        label_rate_hz=LABEL_RATE_HZ,
        defaults={"num_classes": NUM_CLASSES, **defaults},
        settings_added=_ADDED,
        training=training,
        augment=augment,
    )


register_model("stereo_rcnet", _card(_STEREO_RCNET, _TRAINING, _AUGMENT))(StereoRCnet)
register_model("stereo_rcnet_tiny", _card(_TINY, _TINY_TRAINING, {}))(StereoRCnet)
