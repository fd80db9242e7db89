"""Training configuration: defaults in code, then the model's card, a YAML file, then key=value.

Resolution order (later wins): TrainConfig defaults < the model card's ``training`` defaults <
``--config FILE`` (YAML) < command-line ``key=value`` overrides. Dotted keys reach into the nested
sections (``model.rnn_size=64``, ``augment.foa_rotation=true``); unknown keys are refused with a
suggestion, in the spirit of Ultralytics' check_dict_alignment. The resolved config is saved in the
run directory, so a run can be reproduced and resumed from it alone.
"""

import json
from dataclasses import asdict, dataclass, field, fields
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import yaml

from seld_edge.errors import SeldEdgeError
from seld_edge.models import model_card, resolved_config


@dataclass
class TrainConfig:
    model: str
    data: str
    out: str
    epochs: int = 50
    max_minutes: float | None = None
    batch_size: int = 32
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "cosine"  # cosine | linear | constant
    warmup_epochs: float = 0.0
    grad_clip: float | None = 5.0
    chunk_seconds: float = 5.0
    train_hop_seconds: float = 1.0  # training chunks overlap; an epoch is then long enough that validation is cheap
    eval_hop_seconds: float = 2.5
    metric: str = "dcase2023"
    # Tune per-class thresholds on the validation split after training (Stereo-RCnet's dynamic
    # thresholds) and store them in the best checkpoint. With DCASE dev data the validation split is
    # the test fold, so tuned scores on it are optimistic: tune on a separate split for reporting.
    tune_thresholds: bool = False
    val_split: str = "test"  # DCASE dev sets have train/test folds only; the baselines validate on test
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # only on CUDA
    seed: int = 0
    num_workers: int = 0
    cache_dir: str | None = None  # default: DATA/.seld_cache
    audio_folder: str = "foa_dev"
    model_args: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


_SECTIONS = {"model": "model_args", "augment": "augment", "postprocess": "postprocess"}
_FIELDS = {f.name: f for f in fields(TrainConfig)}


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
        if section not in ("model_args", "augment", "postprocess"):
            raise SeldEdgeError(f"{source}: {key!r} is not a known section.key (sections: {', '.join(_SECTIONS)})")
        config[section] = _nested_set(config[section], rest.split("."), value)
        return
    if key in _SECTIONS and isinstance(value, dict):
        config[_SECTIONS[key]] = {**config[_SECTIONS[key]], **value}
        return
    if key not in _FIELDS:
        close = get_close_matches(key, list(_FIELDS) + list(_SECTIONS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SeldEdgeError(f"{source}: unknown config key {key!r}{hint}")
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
    data: str,
    out: str,
    file: str | Path | None = None,
    overrides: list[str] | None = None,
    **flags: Any,
) -> TrainConfig:
    """Merge defaults, the model card, an optional YAML file and key=value overrides; validate."""
    card = model_card(model)
    config: dict[str, Any] = {
        **asdict(TrainConfig(model, data, out)),
        "augment": dict(card.augment),
    }
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
    resolved_config(model, **config["model_args"])  # unknown model settings fail here, with suggestions
    return _validated(TrainConfig(**config))


def _validated(config: TrainConfig) -> TrainConfig:
    choices = {"optimizer": ("adam", "adamw"), "scheduler": ("cosine", "linear", "constant"),
               "device": ("auto", "cpu", "cuda")}  # fmt: skip
    for key, allowed in choices.items():
        if getattr(config, key) not in allowed:
            raise SeldEdgeError(f"{key} must be one of {', '.join(allowed)}, got {getattr(config, key)!r}")
    if config.epochs < 1 or config.batch_size < 1 or config.lr <= 0:
        raise SeldEdgeError("epochs and batch_size must be >= 1 and lr > 0")
    if config.max_minutes is not None and config.max_minutes <= 0:
        raise SeldEdgeError("--max-minutes must be positive")
    return config
