"""Model registry in the spirit of timm: register by name, create with overrides.

Each model declares a :class:`ModelCard`: its feature kind (which says the input's channels, bins and
recording), output format and its options, label rate, default hyperparameters, and its paper's
training recipe (optimizer, learning rate, loss, augmentations). Training, export and the runtime read
everything from the card, so adding a model is its file, its blocks and its card. A composite model
(:class:`CompositeCard`) is several registered models trained apart and run as one (M2M-AST's SED and
DOA networks).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from seld_edge.errors import SeldEdgeError, unknown_name
from seld_edge.features import FeatureConfig, feature_config
from seld_edge.formats import OutputFormat, get_output_format
from seld_edge.formats.label_rate import rate_ratio


@dataclass(frozen=True)
class ModelCard:
    """What the rest of the package needs to know about a model, besides its weights.

    feature_kind: a key of seld_edge.features.FEATURE_KINDS; the network's input is (B, C, T, F) of it.
    output_format, format_options: the output format by name and its fixed options; format_args names
        model settings that are format options too (SELDnet's ``with_distance`` sizes its head and its
        labels alike).
    label_rate_hz: output frames per second (10 Hz is the DCASE grid; see seld_edge.formats.label_rate).
    dynamic_time: whether the network takes any whole number of label frames; False for a network
        whose time axis is fixed at its window (a Transformer over a fixed patch grid).
    defaults: the constructor's keyword arguments; ``model.KEY=VALUE`` overrides them.
    init_args: defaults that only matter when a model is first built (a pretrained weight file); a
        checkpoint rebuilds the model without them, since its own weights replace them.
    settings_added: settings added to the model after checkpoints of it were made, each with the value
        that rebuilds such a checkpoint as it was trained (a checkpoint stores the settings it had, so
        one that lacks a setting predates it and must not take a new default that changes the network).
    training: the paper's TrainConfig settings (optimizer, lr, batch_size, epochs, scheduler, loss, ...).
    augment: the paper's augmentations, by name (training.augment).
    """

    feature_kind: str
    output_format: str
    format_options: Mapping[str, Any] = field(default_factory=dict)
    format_args: tuple[str, ...] = ()
    label_rate_hz: float = 10.0
    dynamic_time: bool = True
    defaults: Mapping[str, Any] = field(default_factory=dict)
    init_args: tuple[str, ...] = ()
    settings_added: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    augment: Mapping[str, Any] = field(default_factory=dict)

    def feature_config(self) -> FeatureConfig:
        return feature_config(self.feature_kind)

    @property
    def feature_kinds(self) -> tuple[str, ...]:
        """The feature kind of each input (one for a single network)."""
        return (self.feature_kind,)

    def format(self, model_args: Mapping[str, Any]) -> OutputFormat:
        """The output format of a model built with model_args."""
        return get_output_format(
            self.output_format, **self.format_options, **{key: model_args[key] for key in self.format_args}
        )

    def check(self, name: str) -> None:
        """Fail at import time on a card that contradicts itself, not at the first forward or export."""
        config = self.feature_config()
        config.frames_per_label(self.label_rate_hz)
        rate_ratio(self.label_rate_hz)
        for key in ("num_classes", *self.format_args, *self.init_args, *self.settings_added):
            if key not in self.defaults:
                raise ValueError(f"model {name!r}: {key!r} is not one of its settings")
        self.format(self.defaults)


@dataclass(frozen=True)
class CompositeCard:
    """Several registered models run as one: each part reads its own input (possibly another recording)
    and gives some of the composite's outputs, which together are its output format's.

    parts: part name -> registered model; the exported graph's inputs are ``features_{part}``.
    """

    parts: Mapping[str, str]
    output_format: str
    format_options: Mapping[str, Any] = field(default_factory=dict)

    def format(self, model_args: Mapping[str, Any] | None = None) -> OutputFormat:
        return get_output_format(self.output_format, **self.format_options)

    def check(self, name: str) -> None:
        outputs = [
            out for part in self.parts.values() for out in model_card(part).format(model_card(part).defaults).outputs
        ]
        if sorted(outputs) != sorted(self.format().outputs):
            raise ValueError(
                f"composite {name!r}: its parts give {outputs}, its format needs {list(self.format().outputs)}"
            )
        rates = {model_card(part).label_rate_hz for part in self.parts.values()}
        if len(rates) != 1:
            raise ValueError(f"composite {name!r}: its parts run at different label rates {sorted(rates)}")

    @property
    def label_rate_hz(self) -> float:
        return model_card(next(iter(self.parts.values()))).label_rate_hz

    @property
    def feature_kinds(self) -> tuple[str, ...]:
        """The feature kind of each input, in the parts' order."""
        return tuple(network_card(part).feature_kind for part in self.parts.values())


_MODELS: dict[str, tuple[type[nn.Module] | None, ModelCard | CompositeCard]] = {}
M = TypeVar("M", bound=type[nn.Module])


def register_model(name: str, card: ModelCard) -> Callable[[M], M]:
    """Class decorator: make a model constructible as ``create(name, **overrides)``."""
    card.check(name)

    def decorator(cls: M) -> M:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = (cls, card)
        return cls

    return decorator


def register_composite(name: str, card: CompositeCard) -> None:
    """Register a composite of models registered before it."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} registered twice")
    card.check(name)
    _MODELS[name] = (None, card)


def _lookup(name: str) -> tuple[type[nn.Module] | None, ModelCard | CompositeCard]:
    if name not in _MODELS:
        raise unknown_name("model", name, sorted(_MODELS))
    return _MODELS[name]


def model_card(name: str) -> ModelCard | CompositeCard:
    return _lookup(name)[1]


def network_card(name: str) -> ModelCard:
    """The card of a single network; a composite is refused in one line naming its parts."""
    card = model_card(name)
    if isinstance(card, CompositeCard):
        parts = " and ".join(card.parts.values())
        raise SeldEdgeError(f"{name} is a composite of {parts}: train each part, then `seld-edge compose` them")
    return card


def resolved_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The model's default hyperparameters with overrides applied; unknown keys are refused."""
    card = network_card(name)
    for key, value in overrides.items():
        if key not in card.defaults:
            raise unknown_name(f"{name} setting", key, card.defaults)
        _check_setting(name, key, value, card.defaults[key])
    return {**card.defaults, **overrides}


def _check_setting(name: str, key: str, value: Any, default: Any) -> None:
    """A setting keeps its default's kind (a number stays a number, a list a list); None takes anything."""
    kinds: tuple[tuple[type, ...], str]
    if default is None:
        return
    if isinstance(default, bool):
        kinds = (bool,), "true or false"
    elif isinstance(default, int):
        kinds = (int,), "an integer"
    elif isinstance(default, float):
        kinds = (int, float), "a number"
    elif isinstance(default, list | tuple):
        kinds = (list, tuple), "a list"
    else:
        kinds = (type(default),), type(default).__name__
    if not isinstance(value, kinds[0]) or (isinstance(value, bool) and not isinstance(default, bool)):
        raise SeldEdgeError(f"{name} setting {key} must be {kinds[1]}, got {value!r}")


def create(name: str, **overrides: Any) -> nn.Module:
    """Build a registered network; ``overrides`` replace entries of its card's defaults."""
    cls, _ = _lookup(name)
    if cls is None:
        network_card(name)  # raises: a composite is built from its parts' checkpoints
    return cls(**resolved_config(name, **overrides))


def list_models() -> list[str]:
    return sorted(_MODELS)


__all__ = [
    "CompositeCard",
    "ModelCard",
    "create",
    "list_models",
    "model_card",
    "network_card",
    "register_composite",
    "register_model",
    "resolved_config",
]
