"""Training configuration: defaults in code, then the model's card, a YAML file, then key=value.

Resolution order (later wins): TrainConfig defaults < the model card's ``training`` defaults <
``--config FILE`` (YAML) < command-line ``key=value`` overrides. Dotted keys reach into the nested
sections (``model.rnn_size=64``, ``augment.foa_rotation=true``); unknown keys are refused with a
suggestion, in the spirit of Ultralytics' check_dict_alignment. Every value is checked against its
type and range, and the model settings, augmentations and loss are built once, before any data is
read, so a mistake costs one line and no time. The resolved config is saved in the run directory, so a
run can be reproduced and resumed from it alone.
"""

import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from seld_edge.errors import SeldEdgeError, unknown_name
from seld_edge.metrics import METRICS
from seld_edge.models import network_card, resolved_config


@dataclass
class TrainConfig:
    model: str
    data: str | list[str]  # one data set folder, or several whose clips are mixed (train and validation alike)
    out: str
    epochs: int = 50
    max_minutes: float | None = None
    # A number, or auto: the largest batch whose forward and backward pass fits a share of the memory
    # free when training starts (training.memory), up to max_batch_size (a card's published batch) when
    # set, else the training set's size; the choice is printed and saved in the run's config.json.
    batch_size: int | Literal["auto"] = 32
    max_batch_size: int | None = None
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "cosine"  # cosine | linear | constant
    lr_end_factor: float = 0.01  # cosine and linear end at lr * lr_end_factor (FFMamba: 3e-4 -> 1e-4)
    warmup_epochs: float = 0.0
    grad_clip: float | None = 5.0
    # The loss: a name or {name: weight | {weight, options}} (training.losses); None is the output format's
    # default unless the model card names its paper's. loss_weights re-weights its terms by name;
    # loss_schedule switches to other losses from an epoch (or a fraction of the epochs) on.
    loss: str | dict[str, Any] | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    loss_schedule: dict[Any, Any] = field(default_factory=dict)
    chunk_seconds: float = 5.0
    train_hop_seconds: float = 1.0  # training chunks overlap; an epoch is then long enough that validation is cheap
    eval_hop_seconds: float = 2.5
    metric: str = "dcase2023"
    # Tune per-class thresholds on the validation split after training (Stereo-RCnet's dynamic
    # thresholds) and store them in the best checkpoint. With DCASE dev data the validation split is
    # the test fold, so tuned scores on it are optimistic: tune on a separate split for reporting.
    tune_thresholds: bool = False
    val_split: str = "test"  # DCASE dev sets have train/test folds only; the baselines validate on test
    # Training stages: start from another run's weights (all of them, unless init_strict is false),
    # keep modules with these name prefixes fixed, stop when validation has not improved for patience epochs.
    init_from: str | None = None
    init_strict: bool = True
    freeze: list[str] = field(default_factory=list)
    patience: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # float16 autocast with a gradient scaler; only on CUDA
    # bfloat16 autocast on a CPU that computes in bfloat16 natively (AMX or AVX512-BF16; elsewhere it would
    # be emulated and slower, so training stays float32 and says so). Transformers' matmuls gain most.
    cpu_amp: bool = False
    seed: int = 0
    num_workers: int = 0
    cache_dir: str | None = None  # default: DATA/.seld_cache
    model_args: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


_SECTIONS = {"model": "model_args", "augment": "augment", "postprocess": "postprocess"}
_FIELDS = {f.name: f for f in fields(TrainConfig)}
_CHOICES = {
    "optimizer": ("adam", "adamw"),
    "scheduler": ("cosine", "linear", "constant"),
    "device": ("auto", "cpu", "cuda"),
    "metric": METRICS,
    "val_split": ("train", "test"),
}
# Lowest allowed value (inclusive unless in _POSITIVE) of numeric settings.
_POSITIVE = ("epochs", "max_minutes", "batch_size", "max_batch_size", "lr", "grad_clip", "chunk_seconds",
             "train_hop_seconds", "eval_hop_seconds", "patience", "lr_end_factor")  # fmt: skip
_NON_NEGATIVE = ("weight_decay", "warmup_epochs", "seed", "num_workers")


def parse_value(text: str) -> Any:
    """Command-line values are YAML scalars: 3, 1e-3, true, null, [5, 1, 1], cosine."""
    return _numeric(yaml.safe_load(text))


def _numeric(value: Any) -> Any:
    """PyYAML follows YAML 1.1, which reads 3e-3 (no dot) as a string; users mean a number."""
    if isinstance(value, str):
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                pass
    if isinstance(value, dict):
        return {k: _numeric(v) for k, v in value.items()}
    return value


def _apply(config: dict[str, Any], key: str, value: Any, source: str) -> None:
    head, _, rest = key.partition(".")
    if rest:
        section = _SECTIONS.get(head, head)
        if section not in _SECTIONS.values():
            raise SeldEdgeError(f"{source}: {key!r} is not a known section.key (sections: {', '.join(_SECTIONS)})")
        config[section] = _nested_set(config[section], rest.split("."), value)
        return
    if key in _SECTIONS and isinstance(value, dict):
        config[_SECTIONS[key]] = {**config[_SECTIONS[key]], **value}
        return
    if key not in _FIELDS:
        raise SeldEdgeError(f"{source}: {unknown_name('config key', key, [*_FIELDS, *_SECTIONS])}")
    config[key] = value


def _nested_set(mapping: dict[str, Any], keys: list[str], value: Any) -> dict[str, Any]:
    """A copy of mapping with mapping[k0][k1]...[kn] = value (a True/False leaf becomes a dict)."""
    head, *rest = keys
    if not rest:
        return {**mapping, head: value}
    inner = mapping.get(head)
    return {**mapping, head: _nested_set(inner if isinstance(inner, dict) else {}, rest, value)}


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SeldEdgeError(f"{path}: cannot read config ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SeldEdgeError(f"{path}: a config file must be a mapping of key: value")
    return data


def resolve_config(
    model: str,
    data: str | list[str],
    out: str,
    file: str | Path | None = None,
    overrides: list[str] | None = None,
    **flags: Any,
) -> TrainConfig:
    """Merge defaults, the model card, an optional YAML file and key=value overrides; validate."""
    card = network_card(model)
    config: dict[str, Any] = {**asdict(TrainConfig(model, data, out)), "augment": dict(card.augment)}
    for key, value in card.training.items():
        _apply(config, key, value, f"{model} defaults")
    if file is not None:
        for key, value in load_yaml(file).items():
            _apply(config, key, _numeric(value), str(file))
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SeldEdgeError(f"override {item!r} is not of the form key=value")
        _apply(config, key.strip(), parse_value(text), "command line")
    for key, value in flags.items():
        if value is not None:
            config[key] = value
    return validated(TrainConfig(**config))


def validated(config: TrainConfig) -> TrainConfig:
    """The config if every value has its declared type and range, and the model settings, augmentations,
    loss and post-processing can be built from it; otherwise one SeldEdgeError naming the key."""
    for name in _FIELDS:
        value = getattr(config, name)
        if not _has_type(value, typing.get_type_hints(TrainConfig)[name]):
            raise SeldEdgeError(f"{name} must be {_type_name(typing.get_type_hints(TrainConfig)[name])}, got {value!r}")
        if name in _CHOICES and value not in _CHOICES[name]:
            raise SeldEdgeError(unknown_name(name, str(value), _CHOICES[name]).args[0])
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value) or (name in _POSITIVE and value <= 0) or (name in _NON_NEGATIVE and value < 0):
                bound = "positive" if name in _POSITIVE else "0 or more"
                hint = ", or auto to fit the memory" if name == "batch_size" else ""
                raise SeldEdgeError(f"{name} must be {bound} and finite{hint}, got {value!r}")
    from seld_edge.formats.output_format import class_thresholds
    from seld_edge.postprocess import PostProcessing
    from training.augment import build_augmentations
    from training.losses import loss_schedule

    card = network_card(config.model)
    model_args = resolved_config(config.model, **config.model_args)  # unknown or mistyped settings fail here
    try:
        build_augmentations(config.augment, card.feature_kind)
    except (ValueError, SeldEdgeError) as err:
        raise SeldEdgeError(f"augment: {err}") from None
    loss_schedule(card.format(model_args), config)
    try:
        class_thresholds(PostProcessing.from_dict(config.postprocess).thresholds, model_args["num_classes"])
    except SeldEdgeError as err:
        raise SeldEdgeError(f"postprocess: {err}") from None
    return config


def _has_type(value: Any, annotation: Any) -> bool:
    """isinstance for the annotations TrainConfig uses (unions, None, list[str], dict[...], float taking int)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_has_type(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    """The annotation in words, for error messages: "an integer or null", "a list of names"."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is list:
        return "a list of names"
    if origin is Literal:
        return " or ".join(str(arg) for arg in typing.get_args(annotation))
    if origin is dict or annotation is dict:
        return "a mapping"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    return names.get(annotation, str(annotation))
