"""M2M-AST (seed 001): the Many-to-Many Audio Spectrogram Transformer, a two-stage ViT for SELD.

Park, Jeong and Lee adapt AST (a ViT over a spectrogram image) to SELD (sections 3.2-3.3, Figure 1):

- The feature image (C, T = 300, F = 128) is cut into 16x16 patches at stride 10 in time and frequency
  (overlap 6, Table 3): (300 - 16) // 10 + 1 = 29 by (128 - 16) // 10 + 1 = 12, n = 348 patches, each
  linearly projected (one strided conv) to d = 768.
- t' learned output ("classification") tokens are prepended: t' = 30 over a 3 s window gives one
  output frame per 100 ms, the label rate (section 3.2; Table 3 prints t' = 20, which would give
  150 ms frames and contradicts the text and Table 9, so 30 is used). A learned positional embedding
  covers all t' + n tokens.
- ViT-B encoder: 12 pre-norm blocks, 12 heads, MLP ratio 4, dropout 0.1 (Table 3); final LayerNorm.
- Each output token's final state goes through one dense layer and an activation (section 3.2): sigmoid
  for the SED network, tanh for the DOA network.

The input time axis is FIXED at 300 frames (3 s at the 10 ms hop): the positional embedding is learned
over a fixed patch grid, so no other length fits. Longer recordings are cut by the runtime into 3 s
sliding windows and the windows' outputs averaged where they overlap (the paper's post-processing,
section 3.4).

The two stages (Table 1, Table 5): ``m2m_ast_sed`` reads log-mel of the MIC recording and outputs
activity (B, 30, 13) after a sigmoid; ``m2m_ast_doa`` reads the 7-channel FOA log-mel + intensity
vectors and outputs ACCDOA-style vectors (B, 30, 3 * 13) ordered [coordinate][class] (an x block, a y
block, a z block) after a tanh. Table 1 gives the SED network C = 1: "logmel energy extracted from the
microphone array data segmented into a single channel". We read that as one shared encoder applied to
each capsule's log-mel image (``per_channel=True``) and the four capsules' activities averaged, which
is also what makes the parameter counts match: 85.58 M for SED and 86.78 M for DOA against the paper's
85 M and 86 M. Stacking the 4 capsules as 4 input channels instead would give 86.17 M (1.4 % over 85 M).
The counts differ by the patch projection of 6 more input channels (6 x 768 x 16 x 16 = 1,179,648)
and 26 more head outputs (26 x 769 = 19,994).

Choices where the paper is silent:
- Dropout 0.1 where timm's ``drop_rate`` acts (after the positional embedding, after the attention
  projection, inside the MLP); none on the attention weights (timm's separate ``attn_drop_rate``, 0).
- The head is one Linear on the final-norm output (the paper's "dense layer"), not AST's extra
  LayerNorm + Linear.
- Per-capsule SED averages the probabilities (after the sigmoid) over capsules, an ensemble of four views.
- ``m2m_ast_*_tiny`` uses DeiT-Tiny widths (192, 12 layers, 3 heads): 5.58 M (SED), 5.73 M (DOA). Its SED network
  stacks the four capsules as input channels (``per_channel=False``) so that it costs a quarter of the
  per-capsule form and trains on a CPU; ``per_channel=True`` gives the paper's form at this width.

Departures of the tiny cards, for a CPU and minutes (the published cards keep the paper's settings):
- Patches at stride 16, not 10: 18 x 8 = 144 patches instead of 348 (the same 16x16 patches, without the
  overlap), 2.5x less compute per window. No dropout: a run of minutes underfits, it does not overfit
  as a 50-epoch one may.
- AdamW 1e-3 (DOA) and 3e-4 (SED), weight decay 0.05, one warm-up epoch, cosine decay, batch 8, and
  ``cpu_amp`` (bfloat16 autocast where the CPU has AMX or AVX512-BF16) in place of Adam 1e-4 constant at
  batch 24, which in a 10-minute run made 4 epochs and a composite that scored 1.14 (the SED network
  calls every class active after the switch to the soft F-loss: ER 2.8). The DOA network trains with
  the 16 FOA rotations, as the other tiny cards; the paper uses them only at test time.
- Measured, both networks side by side for 10 minutes, one thread each (Intel Xeon with AMX), the
  default synthetic set, test split: 28-29 epochs each, composite SELD 0.815 (ER 1.02, F 0.06, LE 89,
  LR 0.19). The DOA network learns (validated with the reference activity: LE 37.1, SELD 0.38); the
  SED network underfits: its BCE falls from 0.39 to 0.21 in 13 epochs, and its best checkpoint tells
  active frames from silent ones on its own training chunks only weakly (mean probability 0.21 against
  0.13; frame F 0.17 at the 0.5 threshold), so validation F stays near 0.1. Other SED settings, each
  composed with the same DOA network: lr 1e-3, 0.866 (its BCE stayed near the class priors, 0.28-0.31,
  for 8 epochs); 5e-4, 0.863; batch 4, 0.888; the switch to the soft F-loss at 80 % of the epochs,
  0.810; SpecAugment with dropout 0.1, with and without frequency shifts, 0.92 and 0.94. Both networks
  with their positional embeddings started from 2-D sines and cosines (MAE's), each output token at its
  frame's time, so that a token starts nearest its own frame's patches: the SED loss fell faster (BCE
  0.16 at epoch 10), validation F did not (0.08, 5 of 13 classes ever found), composite 0.869 (24 and 21
  epochs; a later session, code not kept). The paper
  starts both networks from ImageNet DeiT (section 3.3), which is what a ViT lacks here;
  ``model.pretrained=PATH`` takes a DeiT-Tiny file where a user has one.

Cost per 3 s window (matmul and conv multiply-accumulates, tests/test_m2m_ast.py): SED 139.2 GMACs (four
capsule images of 34.8 each), DOA 35.2; tiny 1.09 (SED) and 1.11 (DOA), 2.73 and 2.78 at the paper's
stride. Attention over the 378 tokens is 8 % of a ViT-B block's MACs (2 N^2 D against 12 N D^2), so the
cost is nearly linear in the token count.

Weights: random init as timm's ViT (truncated normal, std 0.02, for the tokens, positional embedding and
Linear layers), or ImageNet DeiT through seld_edge.models.pretrained.load_deit (section 3.3).
"""

import torch
from torch import nn

from seld_edge.errors import SeldEdgeError, unknown_name
from seld_edge.features import feature_config
from seld_edge.formats.classes import NUM_CLASSES
from seld_edge.models._registry import CompositeCard, ModelCard, register_composite, register_model
from seld_edge.models.blocks.vit import LAYER_NORM_EPS, Block, PatchEmbed, init_vit_weights, patch_grid

TASKS = ("sed", "doa")
# The SED network reads the MIC array, the DOA network FOA (Table 1): 20 ms window, 10 ms hop, 128 mels.
FEATURE_KINDS = {"sed": "mic_logmel_ast", "doa": "foa_logmel_iv_ast"}
# Per task: output values per class (activity, or x, y, z) and the activation (section 3.2).
_HEAD = {"sed": (1, nn.Sigmoid), "doa": (3, nn.Tanh)}


class M2MAST(nn.Module):
    """One M2M-AST network: (B, C, n_frames, n_mels) features -> (B, output_tokens, per_class * num_classes).

    ``n_frames`` is fixed by the positional embedding (300 for the paper's 3 s windows); see the module
    docstring. With ``per_channel`` each input channel is its own single-channel image through the shared
    encoder and the outputs are averaged over channels.
    """

    def __init__(
        self,
        task: str,
        num_classes: int,
        per_channel: bool,
        n_frames: int,
        patch_size: int,
        patch_stride: int,
        output_tokens: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        dropout: float,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise unknown_name("task", task, TASKS)
        config = feature_config(FEATURE_KINDS[task])
        in_channels, n_mels = config.out_channels, config.n_bins
        self.in_channels, self.per_channel = in_channels, per_channel
        self.n_frames, self.n_mels = n_frames, n_mels
        self.grid = patch_grid((n_frames, n_mels), patch_size, patch_stride)  # (time, frequency)
        self.num_output_tokens = output_tokens
        self.patch_embed = PatchEmbed(1 if per_channel else in_channels, embed_dim, patch_size, patch_stride)
        self.output_tokens = nn.Parameter(torch.zeros(1, output_tokens, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, output_tokens + self.grid[0] * self.grid[1], embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        per_class, activation = _HEAD[task]
        self.head = nn.Linear(embed_dim, per_class * num_classes)
        self.activation = activation()
        nn.init.trunc_normal_(self.output_tokens, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(init_vit_weights)
        if pretrained is not None:  # ``model.pretrained=PATH``: a timm-format DeiT file (section 3.3)
            from seld_edge.models.pretrained import load_deit

            load_deit(self, pretrained)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if tuple(features.shape[1:]) != (self.in_channels, self.n_frames, self.n_mels):
            raise SeldEdgeError(
                f"M2M-AST takes (batch, {self.in_channels}, {self.n_frames}, {self.n_mels}) features (its positional "
                f"embedding fixes the window length); got {tuple(features.shape)}"
            )
        if not self.per_channel:
            return self.encode(features)
        # (B, C, T, F) -> (B * C, 1, T, F): one image per channel through the shared encoder, then averaged.
        outputs = self.encode(features.flatten(0, 1).unsqueeze(1))
        return outputs.unflatten(0, (-1, self.in_channels)).mean(dim=1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, channels, T, F) images -> (N, output_tokens, outputs) after the head's activation."""
        patches = self.patch_embed(images)
        tokens = torch.cat([self.output_tokens.expand(patches.shape[0], -1, -1), patches], dim=1)
        tokens = self.blocks(self.pos_drop(tokens + self.pos_embed))
        # The final LayerNorm acts per token, so only the output tokens need it.
        return self.activation(self.head(self.norm(tokens[:, : self.num_output_tokens])))


# ---------------------------------------------------------------------------------------------------
# Cards. Training (Tables 4 and 5): Adam at 1e-4, batch 24, 50 epochs per model. The paper trains four
# models: AST1 (SED, from DeiT, BCE), AST2 (fine-tuned from AST1 with the soft F-loss), AST3 (DOA, from
# DeiT, MSE), AST4 (fine-tuned from AST3 with masked MSE); the best system is AST2 & AST4, and the
# second stage is where the gain comes from (Table 10: SED F 74.0 -> 75.8, DOA LE 21.8 -> 19.1 deg).
# Table 4's 50 epochs applies to each model, so one run here is both stages back to back: 100 epochs,
# the loss switching halfway (a fraction, so a time-budgeted run that re-plans its epochs still
# switches halfway). The paper starts each fine-tune from a saved model, with no learning-rate schedule
# mentioned, hence the constant rate. Masked MSE is normalised by the active (frame, class) count, so it
# is the mean squared DOA error of the events the LE metric scores. Training chunks are the 3 s windows
# the network takes. No training augmentation is mentioned (the 16 FOA rotations are used at test time).
# ---------------------------------------------------------------------------------------------------

_VIT_B = {"embed_dim": 768, "depth": 12, "num_heads": 12}  # ViT-B/16 = DeiT-B (Table 3)
_VIT_TINY = {"embed_dim": 192, "depth": 12, "num_heads": 3}  # DeiT-Ti
_COMMON = {
    "num_classes": NUM_CLASSES,
    "n_frames": 300,
    "patch_size": 16,
    "patch_stride": 10,
    "output_tokens": 30,
    "mlp_ratio": 4.0,
    "dropout": 0.1,
    "pretrained": None,
}
_TRAINING = {"optimizer": "adam", "lr": 1e-4, "batch_size": 24, "epochs": 100, "scheduler": "constant",
             "chunk_seconds": 3.0}  # fmt: skip
_LOSSES = {"sed": ("bce", "soft_f"), "doa": ("mse", "masked_mse")}
# The tiny cards' CPU recipe (module docstring): non-overlapping patches and no dropout, AdamW with a
# warm-up and cosine decay at batch 8, bfloat16 autocast where the CPU has it, and for the DOA network
# the 16 FOA rotations. The SED network's BCE stays at the class priors for epochs at 1e-3, not at 3e-4.
_TINY = {"patch_stride": 16, "dropout": 0.0}
_TINY_TRAINING = {**_TRAINING, "optimizer": "adamw", "weight_decay": 0.05, "warmup_epochs": 1.0, "scheduler": "cosine",
                  "batch_size": 8, "cpu_amp": True}  # fmt: skip


def _card(task: str, defaults: dict, training: dict, augment: dict) -> ModelCard:
    first, second = _LOSSES[task]
    return ModelCard(
        FEATURE_KINDS[task],
        task,
        dynamic_time=False,
        defaults={"task": task, **_COMMON, **defaults},
        init_args=("pretrained",),
        training={**training, "loss": first, "loss_schedule": {0.5: second}},
        augment=augment,
    )


register_model("m2m_ast_sed", _card("sed", {**_VIT_B, "per_channel": True}, _TRAINING, {}))(M2MAST)
register_model("m2m_ast_doa", _card("doa", {**_VIT_B, "per_channel": False}, _TRAINING, {}))(M2MAST)
register_model("m2m_ast_sed_tiny", _card("sed", {**_VIT_TINY, "per_channel": False, **_TINY},
                                         {**_TINY_TRAINING, "lr": 3e-4}, {}))(M2MAST)  # fmt: skip
register_model("m2m_ast_doa_tiny", _card("doa", {**_VIT_TINY, "per_channel": False, **_TINY},
                                         {**_TINY_TRAINING, "lr": 1e-3}, {"foa_rotation": True}))(M2MAST)  # fmt: skip
# The paper's best system, AST2 & AST4: SED on the MIC array, DOA on FOA, composed (seld-edge compose).
register_composite("m2m_ast", CompositeCard({"sed": "m2m_ast_sed", "doa": "m2m_ast_doa"}, "sed_doa"))
register_composite("m2m_ast_tiny", CompositeCard({"sed": "m2m_ast_sed_tiny", "doa": "m2m_ast_doa_tiny"}, "sed_doa"))
