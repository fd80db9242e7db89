"""Toy models that show what adding a model takes: this file and its registry import, nothing else.

Each is a few hundred parameters: average the feature frames of each output frame, mean over frequency,
one hidden layer, one head per output. Between them they use what the zoo's papers need beyond SELDnet:
an output at 5 Hz (GLFER-Net) and at 20 Hz, distance ACCDOA on stereo (Stereo-RCnet), a loss that
switches during training (M2M-AST), and a composite of two networks on two recordings (M2M-AST: SED
on the MIC array, DOA on FOA).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import torch
from torch import nn

from seld_edge.features import feature_config
from seld_edge.models import CompositeCard, ModelCard, _registry, register_composite, register_model

ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


class ToyNet(nn.Module):
    """(B, C, T, F) -> one (B, T / frames_per_label, width) output per head, each width * classes wide.

    heads: per output, the activation of each of its blocks of classes (e.g. ("tanh", "tanh", "relu") for
    x, y and a distance).
    """

    def __init__(
        self, num_classes: int, feature_kind: str, label_rate_hz: float, heads: list[list[str]], hidden: int
    ) -> None:
        super().__init__()
        config = feature_config(feature_kind)
        self.pool = nn.AvgPool2d((config.frames_per_label(label_rate_hz), 1))
        self.hidden = nn.Linear(config.out_channels, hidden)
        self.blocks, self.num_classes = heads, num_classes
        self.heads = nn.ModuleList(nn.Linear(hidden, len(blocks) * num_classes) for blocks in heads)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = torch.relu(self.hidden(self.pool(features).mean(3).transpose(1, 2)))
        outputs = []
        for head, blocks in zip(self.heads, self.blocks, strict=True):
            out = head(x).unflatten(-1, (len(blocks), self.num_classes))
            out = torch.stack([ACTIVATIONS[name](out[..., i, :]) for i, name in enumerate(blocks)], dim=-2)
            outputs.append(out.flatten(-2))
        return tuple(outputs)


def _card(kind: str, output_format: str, rate: float, heads: list[list[str]], **card: object) -> ModelCard:
    defaults = {"num_classes": 13, "feature_kind": kind, "label_rate_hz": rate, "heads": heads, "hidden": 16}
    return ModelCard(kind, output_format, label_rate_hz=rate, defaults=defaults, **card)


@contextmanager
def registered_toys() -> Iterator[None]:
    """The toy models are in the registry inside the with block only, so that the rest of the suite (the
    registry-wide tests, the help texts that list the models) sees the zoo as a user does."""
    with mock.patch.dict(_registry._MODELS):
        # GLFER-Net's rate (T0 = Te / 16) and loss normalisation (eq. 9: over frames x classes).
        register_model(
            "toy_sed_doa_5hz",
            _card("foa_logmel_iv", "sed_doa", 5.0, [["sigmoid"], ["tanh"] * 3],
                  training={"loss": {"bce": 0.3, "masked_mse": {"weight": 0.7, "normaliser": "all"}}}),
        )(ToyNet)  # fmt: skip
        register_model("toy_accdoa_20hz", _card("foa_logmel_iv_128", "accdoa", 20.0, [["tanh"] * 3]))(ToyNet)
        # Stereo-RCnet's output: x, y and a distance per class; its format's default loss is eqs. 4-6.
        register_model("toy_stereo", _card("stereo_logmel", "stereo_accdoa", 10.0, [["tanh", "tanh", "relu"]]))(ToyNet)
        # M2M-AST's two networks, each switching its loss halfway through training.
        register_model(
            "toy_sed",
            _card("mic_logmel", "sed", 10.0, [["sigmoid"]], training={"loss_schedule": {0.5: "soft_f"}}),
        )(ToyNet)
        register_model(
            "toy_doa",
            _card("foa_logmel_iv", "doa", 10.0, [["tanh"] * 3], training={"loss_schedule": {0.5: "masked_mse"}}),
        )(ToyNet)
        register_composite("toy_sed_doa", CompositeCard({"sed": "toy_sed", "doa": "toy_doa"}, "sed_doa"))
        yield
