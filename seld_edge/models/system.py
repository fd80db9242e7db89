"""SeldSystem: what is trained, checkpointed and exported. Feature normalisation + a zoo model.

Baking the normaliser into the module means an exported graph takes raw features from
seld_edge.features, so the runtime needs no per-model statistics file. Outputs are a dict keyed by
the model's output format names (``accdoa``; ``sed`` and ``doa``), the names the ONNX graph uses.
"""

from typing import Any

import numpy as np
import torch
from torch import nn

from seld_edge.formats.labels import get_output_format
from seld_edge.models._registry import create, model_card, resolved_config


class SeldSystem(nn.Module):
    def __init__(self, name: str, model_args: dict[str, Any], mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.name = name
        self.model_args = resolved_config(name, **model_args)
        self.card = model_card(name)
        self.output_names = get_output_format(self.card.output_format).outputs
        self.net = create(name, **self.model_args)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    @property
    def label_options(self) -> dict[str, Any]:
        """Options the output format's encoder needs for this model (e.g. with_distance)."""
        return getattr(self.net, "label_options", {})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net((features - self.mean) / self.std)
        outputs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
        return dict(zip(self.output_names, outputs, strict=True))
