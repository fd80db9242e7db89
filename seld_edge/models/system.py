"""What is trained, checkpointed and exported: feature normalisation + a zoo network, or a composite.

Baking the normaliser into the module means an exported graph takes raw features from
seld_edge.features, so the runtime needs no per-model statistics file. Outputs are a dict keyed by
the output format's names (``accdoa``; ``sed`` and ``doa``), the names the ONNX graph uses. Both kinds
of system share one interface: ``name``, ``card``, ``format``, ``inputs`` (graph input names and their
features), ``output_names``, and ``forward(*features)`` with one tensor per input in ``inputs`` order.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from seld_edge import __version__
from seld_edge.errors import SeldEdgeError
from seld_edge.formats import OutputFormat
from seld_edge.model_metadata import INPUT_NAME, ModelInput, ModelMetadata
from seld_edge.models._registry import CompositeCard, ModelCard, create, model_card, network_card, resolved_config
from seld_edge.postprocess import PostProcessing


class SeldSystem(nn.Module):
    """One network of the zoo with its feature normaliser (mean, std of shape (C, 1, F)).

    ``initialise`` False rebuilds a trained model: settings the card marks as init-only (a pretrained
    weight file) take their defaults, because the checkpoint's weights replace whatever they would load,
    and settings the card added after the checkpoint was made (absent from its model_args) take the
    value that built it (``ModelCard.settings_added``), not today's default.
    """

    def __init__(
        self, name: str, model_args: Mapping[str, Any], mean: np.ndarray, std: np.ndarray, initialise: bool = True
    ) -> None:
        super().__init__()
        self.name = name
        self.card: ModelCard = network_card(name)
        if not initialise:
            model_args = {**self.card.settings_added, **model_args}
        self.model_args = resolved_config(name, **model_args)
        init_only = {} if initialise else {key: self.card.defaults[key] for key in self.card.init_args}
        build_args = {**self.model_args, **init_only}
        self.format: OutputFormat = self.card.format(self.model_args)
        self.output_names = self.format.outputs
        self.inputs = (ModelInput(INPUT_NAME, self.card.feature_config()),)
        self.net = create(name, **build_args)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    @property
    def dynamic_time(self) -> bool:
        """Whether the network takes any whole number of label frames, or only its window (its card says)."""
        return self.card.dynamic_time

    @property
    def num_classes(self) -> int:
        return self.model_args["num_classes"]

    @classmethod
    def unnormalised(cls, name: str, **model_args: Any) -> "SeldSystem":
        """A freshly built system whose normaliser is the identity (tests, parameter counts, benchmarks)."""
        config = network_card(name).feature_config()
        shape = (config.out_channels, 1, config.n_bins)
        return cls(name, model_args, np.zeros(shape, np.float32), np.ones(shape, np.float32))

    def forward(self, *features: torch.Tensor) -> dict[str, torch.Tensor]:
        """One feature tensor (B, C, T, F): the common interface takes one per input."""
        (x,) = features
        out = self.net((x - self.mean) / self.std)
        outputs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
        return dict(zip(self.output_names, outputs, strict=True))


class CompositeSystem(nn.Module):
    """Several trained systems run as one model (M2M-AST: a SED network on the MIC array, a DOA network
    on FOA). Each part reads its own input; the composite's outputs are the union of the parts'."""

    def __init__(self, name: str, parts: Mapping[str, SeldSystem]) -> None:
        super().__init__()
        card = model_card(name)
        if not isinstance(card, CompositeCard):
            raise SeldEdgeError(f"{name} is not a composite model")
        if set(parts) != set(card.parts):
            raise SeldEdgeError(f"{name} is made of parts {sorted(card.parts)}, got {sorted(parts)}")
        for part, system in parts.items():
            if system.name != card.parts[part]:
                raise SeldEdgeError(f"{name}'s {part} part is a {card.parts[part]}, got a {system.name}")
        self.name = name
        self.card = card
        self.format = card.format()
        self.output_names = self.format.outputs
        self.parts = nn.ModuleDict({part: parts[part] for part in card.parts})
        self.inputs = tuple(
            ModelInput(f"{INPUT_NAME}_{part}", system.inputs[0].feature_config) for part, system in self.parts.items()
        )
        self.model_args = {part: {"model": s.name, "model_args": s.model_args} for part, s in self.parts.items()}

    @property
    def dynamic_time(self) -> bool:
        return all(system.dynamic_time for system in self.parts.values())

    @property
    def num_classes(self) -> int:
        return next(iter(self.parts.values())).num_classes

    def forward(self, *features: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs: dict[str, torch.Tensor] = {}
        for system, x in zip(self.parts.values(), features, strict=True):
            outputs.update(system(x))
        return {name: outputs[name] for name in self.output_names}


Systems = SeldSystem | CompositeSystem


def new_system(name: str) -> Systems:
    """A freshly built system of any registered model, its normalisers the identity (parameter counts,
    benchmarks, tests): a composite is built of fresh parts."""
    card = model_card(name)
    if isinstance(card, CompositeCard):
        return CompositeSystem(name, {part: SeldSystem.unnormalised(model) for part, model in card.parts.items()})
    return SeldSystem.unnormalised(name)


def build_system(name: str, model_args: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> Systems:
    """Rebuild a trained system from a checkpoint's model name, settings and weights (normalisers included).

    A composite's model_args hold each part's model and settings (as ``CompositeSystem.model_args``), its
    weights each part's under ``parts.{part}.``.
    """
    card = model_card(name)
    if not isinstance(card, CompositeCard):
        return SeldSystem(name, model_args, _tensor(state, "mean"), _tensor(state, "std"), initialise=False)
    parts = {}
    for part in card.parts:
        spec = model_args.get(part)
        if not isinstance(spec, Mapping) or not isinstance(spec.get("model_args"), Mapping):
            raise SeldEdgeError(f"{name}: the checkpoint has no settings for its {part} part")
        parts[part] = SeldSystem(
            card.parts[part],
            spec["model_args"],
            _tensor(state, f"parts.{part}.mean"),
            _tensor(state, f"parts.{part}.std"),
            initialise=False,
        )
    return CompositeSystem(name, parts)


def _tensor(state: Mapping[str, torch.Tensor], key: str) -> np.ndarray:
    if key not in state:
        raise SeldEdgeError(f"the weights have no {key!r} (the feature normaliser)")
    return state[key].cpu().numpy()


def system_metadata(
    system: Systems,
    class_names: Sequence[str],
    chunk_seconds: float,
    postprocess: PostProcessing,
    checkpoint_sha256: str = "",
) -> ModelMetadata:
    """What an exported model of this system carries, and what predict and validation run on: the
    inference window is the training chunk."""
    if len(class_names) != system.num_classes:
        raise ValueError(f"class_names: {len(class_names)} names for the {system.num_classes} classes of {system.name}")
    rate = system.card.label_rate_hz
    return ModelMetadata(
        model=system.name,
        model_args=json.loads(json.dumps(system.model_args)),  # tuples as lists, as they read back
        inputs=system.inputs,
        class_names=tuple(class_names),
        output_format=system.format.name,
        format_options=system.format.options(),
        output_names=tuple(system.output_names),
        label_rate_hz=rate,
        window_labels=round(chunk_seconds * rate),
        postprocess=postprocess,
        checkpoint_sha256=checkpoint_sha256,
        package_version=__version__,
    )
