"""Model registry in the spirit of timm: register by name, create with overrides.

Each model class declares a :class:`ModelCard` (feature kind, input channels, output format, label
rate, default hyperparameters) so that training, export and the runtime need no per-model code.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any, TypeVar

from torch import nn

from seld_edge.errors import SeldEdgeError, unknown_name
from seld_edge.features import FeatureConfig, feature_config
from seld_edge.formats.labels import get_output_format


@dataclass(frozen=True)
class ModelCard:
    """What the rest of the package needs to know about a model, besides its weights."""

    feature_kind: str
    output_format: str
    label_rate_hz: float = 10.0
    defaults: dict[str, Any] = field(default_factory=dict)
    # Training settings the model's paper uses (TrainConfig keys) and its augmentations.
    training: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)

    def feature_config(self) -> FeatureConfig:
        return feature_config(self.feature_kind)


_MODELS: dict[str, tuple[type[nn.Module], ModelCard]] = {}
M = TypeVar("M", bound=type[nn.Module])


def register_model(name: str, card: ModelCard) -> Callable[[M], M]:
    """Class decorator: make a model constructible as ``create(name, **overrides)``."""
    get_output_format(card.output_format)  # fail at import time on a typo, not at export time

    def decorator(cls: M) -> M:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = (cls, card)
        return cls

    return decorator


def _lookup(name: str) -> tuple[type[nn.Module], ModelCard]:
    if name not in _MODELS:
        raise unknown_name("model", name, sorted(_MODELS))
    return _MODELS[name]


def model_card(name: str) -> ModelCard:
    return _lookup(name)[1]


def resolved_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The model's default hyperparameters with overrides applied; unknown keys are refused."""
    _, card = _lookup(name)
    unknown = sorted(set(overrides) - set(card.defaults))
    if unknown:
        suggestions = {k: get_close_matches(k, card.defaults, n=1) for k in unknown}
        described = ", ".join(f"{k} (did you mean {s[0]}?)" if s else k for k, s in suggestions.items())
        raise SeldEdgeError(f"unknown {name} setting(s): {described}; known: {', '.join(card.defaults)}")
    return {**card.defaults, **overrides}


def create(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; ``overrides`` replace entries of its card's defaults."""
    cls, _ = _lookup(name)
    return cls(**resolved_config(name, **overrides))


def list_models() -> list[str]:
    return sorted(_MODELS)


__all__ = ["ModelCard", "create", "list_models", "model_card", "register_model", "resolved_config"]
