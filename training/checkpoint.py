"""Checkpoints: weights as safetensors plus a JSON of everything needed to rebuild and use them.

Nothing is unpickled from a checkpoint. The JSON holds the model name and settings, its inputs'
feature configs, class names, output format, label rate, post-processing and the git revision. The
resume state of a run (optimizer, scheduler, gradient scaler, counters) is a pair of the same kind,
``last_state.safetensors`` (its tensors) and ``last_state.json`` (everything else, tensors named),
read back by a strict decoder (:func:`read_resume_state`), so a crafted file can only be refused. A
composite model's checkpoint (``seld-edge compose``) is the same pair of files, its settings and weights
those of its parts. Weights that are NaN or infinite are refused on loading: they give no events.
"""

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from seld_edge import __version__
from seld_edge.errors import SeldEdgeError
from seld_edge.io import OutputSet, file_sha256
from seld_edge.model_metadata import ModelMetadata
from seld_edge.models import Systems, build_system
from seld_edge.models.system import system_metadata
from seld_edge.postprocess import PostProcessing
from training.config import TrainConfig

CHECKPOINT_FORMAT = "seld-edge-checkpoint/1"


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def save_checkpoint(stem: Path, system: Systems, info: dict[str, Any], outputs: OutputSet | None = None) -> None:
    """Write STEM.safetensors and STEM.json as one set: into outputs (to be committed with the rest of a
    run folder's files), or on their own."""
    if outputs is None:
        with OutputSet(stem.parent) as own:
            save_checkpoint(stem, system, info, own)
        return
    tensors = {k: v.detach().cpu().contiguous() for k, v in system.state_dict().items()}
    outputs.write(stem.with_suffix(".safetensors"), lambda h: h.write(save(tensors)))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "package_version": __version__,
        "git_revision": git_revision(),
        "model": system.name,
        "model_args": system.model_args,
        "inputs": [i.to_dict() for i in system.inputs],
        "output_format": system.format.name,
        "format_options": system.format.options(),
        "label_rate_hz": system.card.label_rate_hz,
        **info,
    }
    outputs.write_text(stem.with_suffix(".json"), json.dumps(meta, indent=2, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory means its best checkpoint; a .json or .safetensors path means that checkpoint."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.json"
    stem = path.with_suffix("")
    if not stem.with_suffix(".json").is_file() or not stem.with_suffix(".safetensors").is_file():
        raise SeldEdgeError(f"{path}: not a seld-edge checkpoint (needs {stem.name}.json and {stem.name}.safetensors)")
    return stem


def read_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    """(stem, JSON metadata, weights) of a checkpoint, each checked enough to use: one line on any fault."""
    stem = resolve_checkpoint(path)
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SeldEdgeError(f"{stem}.json: unreadable checkpoint metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise SeldEdgeError(f"{stem}.json: not a {CHECKPOINT_FORMAT} checkpoint")
    for key, kind in (("model", str), ("model_args", dict)):
        if not isinstance(meta.get(key), kind):
            raise SeldEdgeError(f"{stem}.json: {key!r} is missing or not a {kind.__name__}")
    return stem, meta, read_tensors(stem.with_suffix(".safetensors"), "weights", device)


def read_tensors(path: Path, what: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, each finite: one line naming the file on any fault."""
    try:
        tensors = load_file(path, device=device)
    except (SafetensorError, OSError) as err:
        raise SeldEdgeError(f"{path}: unreadable {what} ({err})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise SeldEdgeError(f"{path}: {what} {name!r} holds NaN or infinite values")
    return tensors


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Systems, dict[str, Any]]:
    """Rebuild the system of a checkpoint (file or run directory) and return it with its metadata."""
    stem, meta, state = read_checkpoint(path, device)
    try:
        system = build_system(meta["model"], meta["model_args"], state)
    except SeldEdgeError as err:
        raise SeldEdgeError(f"{stem}: {err}") from None
    load_weights(system, state, f"{stem}.safetensors", strict=True)
    return system.to(device).eval(), meta


def load_weights(system: nn.Module, state: Mapping[str, torch.Tensor], source: str, strict: bool = True) -> list[str]:
    """Copy the tensors of state whose names and shapes fit into system.

    Returns what did not fit, by name: missing, unexpected and mis-shaped tensors. With strict, any of
    these is an error naming them (a checkpoint of another model or other settings).
    """
    own = system.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = (
        [f"missing {k}" for k in missing]
        + [f"unexpected {k}" for k in unexpected]
        + [f"{k} is {tuple(state[k].shape)}, the model's {tuple(own[k].shape)}" for k in misshaped]
    )
    if problems and strict:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise SeldEdgeError(f"{source}: the weights do not fit {getattr(system, 'name', 'the model')} ({shown})")
    fitting = {k: v for k, v in state.items() if k in own and k not in misshaped}
    system.load_state_dict({**own, **fitting})
    return problems


def chunk_seconds_of(meta: Mapping[str, Any]) -> Any:
    """The training chunk (the inference window) in a checkpoint's train_config; the default if unset."""
    train_config = meta.get("train_config", {})
    return train_config.get("chunk_seconds", TrainConfig.chunk_seconds) if isinstance(train_config, dict) else None


def checkpoint_metadata(stem: Path, system: Systems, meta: dict[str, Any]) -> ModelMetadata:
    """The runtime's view of a checkpoint: what an exported model carries, and what predict runs on."""
    class_names = meta.get("class_names")
    if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
        raise SeldEdgeError(f"{stem}.json: checkpoint has no list of class_names")
    chunk_seconds = chunk_seconds_of(meta)
    if isinstance(chunk_seconds, bool) or not isinstance(chunk_seconds, int | float) or chunk_seconds <= 0:
        raise SeldEdgeError(f"{stem}.json: train_config.chunk_seconds must be a positive number, got {chunk_seconds!r}")
    try:
        postprocess = PostProcessing.from_dict(meta.get("postprocess", {}))
        return system_metadata(
            system, class_names, chunk_seconds, postprocess, file_sha256(stem.with_suffix(".safetensors"))
        )
    except (SeldEdgeError, ValueError) as err:
        raise SeldEdgeError(f"{stem}.json: {err}") from None


RESUME_FORMAT = "seld-edge-resume/1"


def save_resume_state(stem: Path, state: Mapping[str, Any], outputs: OutputSet) -> None:
    """Stage STEM.safetensors (every tensor of state) and STEM.json (the rest) into outputs.

    state is what a run needs to continue: state dicts of the optimizer, scheduler and gradient scaler,
    and counters, made of dicts, lists, tuples, tensors, numbers, strings and None. Each value becomes a
    one-key object naming its kind ({"tensor": name}, {"tuple": [...]}, {"int_keys": [[k, v], ...]}, ...),
    so the optimizer's integer parameter ids and tuples (Adam's betas) come back as they were.
    """
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, "state", tensors)
    outputs.write(stem.with_suffix(".safetensors"), lambda h: h.write(save(tensors)))
    outputs.write_text(stem.with_suffix(".json"), json.dumps({"format": RESUME_FORMAT, "state": tree}, indent=1))


def read_resume_state(stem: Path, device: str = "cpu") -> dict[str, Any]:
    """The state :func:`save_resume_state` wrote, rebuilt with its tensors on device; one line on any fault
    (a damaged or crafted file, tensors missing or left over)."""
    path = stem.with_suffix(".json")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SeldEdgeError(f"{path}: unreadable resume state ({err})") from None
    if not isinstance(data, dict) or data.get("format") != RESUME_FORMAT or "state" not in data:
        raise SeldEdgeError(f"{path}: not a {RESUME_FORMAT} resume state")
    tensors = read_tensors(stem.with_suffix(".safetensors"), "resume state tensor", device)
    used: set[str] = set()
    try:
        state = _decode(data["state"], "state", tensors, used)
    except (ValueError, TypeError) as err:
        raise SeldEdgeError(f"{path}: malformed resume state ({err})") from None
    if set(tensors) - used:
        raise SeldEdgeError(f"{path}: the resume state does not name tensors {sorted(set(tensors) - used)[:3]}")
    if not isinstance(state, dict):
        raise SeldEdgeError(f"{path}: malformed resume state (not a mapping)")
    return state


def _encode(value: Any, where: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    if isinstance(value, torch.Tensor):
        tensors[where] = value.detach().cpu().contiguous()
        return {"tensor": where}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"dict": {k: _encode(v, f"{where}.{k}", tensors) for k, v in value.items()}}
        if all(isinstance(k, int) and not isinstance(k, bool) for k in value):
            return {"int_keys": [[k, _encode(v, f"{where}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        items = [_encode(v, f"{where}.{i}", tensors) for i, v in enumerate(value)]
        return {"tuple" if isinstance(value, tuple) else "list": items}
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    raise TypeError(f"resume state {where}: cannot store a {type(value).__name__}")


def _decode(node: Any, where: str, tensors: Mapping[str, torch.Tensor], used: set[str]) -> Any:
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError(f"{where} is not a one-key object")
    ((kind, value),) = node.items()
    if kind == "tensor":
        if not isinstance(value, str) or value not in tensors:
            raise ValueError(f"{where} names no stored tensor")
        used.add(value)
        return tensors[value]
    if kind == "value":
        if value is not None and not isinstance(value, bool | int | float | str):
            raise ValueError(f"{where} is not a number, string, boolean or null")
        return value
    if kind == "dict" and isinstance(value, dict):
        return {k: _decode(v, f"{where}.{k}", tensors, used) for k, v in value.items()}
    if kind == "int_keys" and isinstance(value, list):
        if not all(isinstance(p, list) and len(p) == 2 and type(p[0]) is int for p in value):
            raise ValueError(f"{where} is not a list of [integer, value] pairs")
        return {k: _decode(v, f"{where}.{k}", tensors, used) for k, v in value}
    if kind in ("list", "tuple") and isinstance(value, list):
        items = [_decode(v, f"{where}.{i}", tensors, used) for i, v in enumerate(value)]
        return tuple(items) if kind == "tuple" else items
    raise ValueError(f"{where} has an unknown kind {kind!r}")
