"""Checkpoints: weights as safetensors plus a JSON of everything needed to rebuild and use them.

Nothing is unpickled from a checkpoint. The JSON holds the model name and settings, the feature
config, class names, output format, label rate, post-processing and the git revision; resume state
(optimizer, scheduler) is a separate file loaded with torch.load(weights_only=True).
"""

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from seld_edge import __version__
from seld_edge.errors import SeldEdgeError
from seld_edge.io import atomic_write, atomic_write_text, file_sha256
from seld_edge.model_metadata import ModelMetadata
from seld_edge.models import SeldSystem
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


def save_checkpoint(stem: Path, system: SeldSystem, info: dict[str, Any]) -> None:
    """Write STEM.safetensors and STEM.json atomically (weights first, so the JSON never dangles)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in system.state_dict().items()}
    atomic_write(stem.with_suffix(".safetensors"), lambda h: h.write(save(tensors)))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "package_version": __version__,
        "git_revision": git_revision(),
        "model": system.name,
        "model_args": system.model_args,
        "feature_config": system.card.feature_config().to_json(),
        "output_format": system.card.output_format,
        "label_rate_hz": system.card.label_rate_hz,
        **info,
    }
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=2, default=_jsonable))


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


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[SeldSystem, dict[str, Any]]:
    """Rebuild the SeldSystem of a checkpoint (file or run directory) and return it with its metadata."""
    stem = resolve_checkpoint(path)
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SeldEdgeError(f"{stem}.json: unreadable checkpoint metadata ({err})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise SeldEdgeError(f"{stem}.json: not a {CHECKPOINT_FORMAT} checkpoint")
    try:
        state = load_file(stem.with_suffix(".safetensors"), device=device)
    except (SafetensorError, OSError) as err:
        raise SeldEdgeError(f"{stem}.safetensors: unreadable weights ({err})") from None
    system = SeldSystem(meta["model"], meta["model_args"], state["mean"].cpu().numpy(), state["std"].cpu().numpy())
    try:
        system.load_state_dict(state)
    except RuntimeError as err:
        reason = str(err).splitlines()[0]
        raise SeldEdgeError(f"{stem}.safetensors: weights do not fit {meta['model']} ({reason})") from None
    return system.to(device).eval(), meta


def checkpoint_metadata(stem: Path, system: SeldSystem, meta: dict[str, Any]) -> ModelMetadata:
    """The runtime's view of a checkpoint: what an exported model carries, and what predict runs on."""
    card = system.card
    if "class_names" not in meta:
        raise SeldEdgeError(f"{stem}.json: checkpoint has no class_names")
    frames_per_label = card.feature_config().frames_per_label(card.label_rate_hz)
    chunk_seconds = meta.get("train_config", {}).get("chunk_seconds", TrainConfig.chunk_seconds)
    return ModelMetadata(
        model=system.name,
        model_args=json.loads(json.dumps(system.model_args)),  # tuples as lists, as they read back
        feature_config=card.feature_config(),
        class_names=tuple(meta["class_names"]),
        output_format=card.output_format,
        output_names=tuple(system.output_names),
        label_rate_hz=card.label_rate_hz,
        window_frames=round(chunk_seconds * card.label_rate_hz) * frames_per_label,
        postprocess=PostProcessing.from_dict(meta.get("postprocess", {})),
        checkpoint_sha256=file_sha256(stem.with_suffix(".safetensors")),
        package_version=__version__,
    )
