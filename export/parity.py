"""`seld-edge parity CHECKPOINT MODEL [--data DIR] [--json]`: PyTorch vs the runtime, measured.

Three comparisons, reported like Polygraphy (max / p99 absolute and relative error per output):
- the model: PyTorch and the exported model on the SAME numpy features (windows of the clip), so
  export error is not mixed with feature error;
- the features: the torch twin (training.frontend) against the numpy front end the runtime uses;
- end to end, with --data: both pipelines from audio to DCASE events on the data set's held-out
  clips, scored with the DCASE metric; |delta SELD|, |delta F| and the number of differing
  detections.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from runtime.pipeline import Model, clip_events
from seld_edge.audio import read_audio
from seld_edge.errors import SeldEdgeError
from seld_edge.features import compute_features, feature_difference
from seld_edge.formats import Event, find_clips, read_events
from seld_edge.formats.dataset import recordings
from seld_edge.inference import hop_labels, n_label_frames
from seld_edge.metrics import evaluate, selection_score
from seld_edge.model_metadata import ModelMetadata
from seld_edge.models import Systems
from seld_edge.synth import scene_audio
from training.frontend import FeatureExtractor
from training.predict import TorchModel

REL_EPS = 1e-6  # relative errors of outputs near zero are measured against this floor
DELTA_SELD_BOUND = 0.005  # |delta SELD| end to end that any runtime model must stay within


def within_bounds(report: dict[str, Any], max_abs_bound: float) -> bool:
    """The verdict: outputs within the runtime model's bound (ONNX Runtime 1e-4; TensorRT FP32 1e-3,
    FP16 1e-2) and, when measured, |delta SELD| within DELTA_SELD_BOUND."""
    seld = report["delta_seld"]
    return report["max_abs_error"] <= max_abs_bound and (seld is None or seld <= DELTA_SELD_BOUND)


def error_stats(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max / p99 / mean absolute and max / p99 relative error of candidate against reference."""
    reference = np.asarray(reference, dtype=np.float64)
    absolute = np.abs(np.asarray(candidate, dtype=np.float64) - reference)
    relative = absolute / np.maximum(np.abs(reference), REL_EPS)
    return {
        "max_abs_error": float(absolute.max()),
        "p99_abs_error": float(np.percentile(absolute, 99)),
        "mean_abs_error": float(absolute.mean()),
        "max_rel_error": float(relative.max()),
        "p99_rel_error": float(np.percentile(relative, 99)),
    }


@dataclass
class ParityClip:
    """One clip: its audio for each input of the model (by input name), its reference events if known, and the
    file each input's audio was read from (none for a generated clip), for messages."""

    name: str
    audio: dict[str, np.ndarray]
    reference: list[Event] | None
    files: dict[str, Path] = field(default_factory=dict)


def generated_clip(meta: ModelMetadata, seconds: float = 10.0, seed: int = 0) -> ParityClip:
    """A synthetic scene in each input's recording format. Its labels are not used: without a data set,
    parity compares outputs and features only."""
    audio = {i.name: scene_audio(i.feature_config.audio_format, seconds, seed) for i in meta.inputs}
    return ParityClip("generated", audio, None)


def data_clips(data_dir: Path, meta: ModelMetadata, split: str = "test") -> list[ParityClip]:
    """The labelled clips of a data set's split, with each input's recording."""
    first = meta.inputs[0].feature_config
    clips = [c for c in find_clips(data_dir, first.audio_folder) if c.split == split and c.metadata is not None]
    formats = list(dict.fromkeys(i.feature_config.audio_format for i in meta.inputs))
    found = []
    for clip in clips:
        files = recordings(clip.audio, formats) if len(formats) > 1 else [{formats[0]: clip.audio}]
        audio, paths = {}, {}
        for model_input in meta.inputs:
            config = model_input.feature_config
            paths[model_input.name] = path = files[0][config.audio_format]
            audio[model_input.name] = read_audio(path, config.sample_rate, config.in_channels, config.min_samples)
        reference = read_events(clip.metadata, reference=True, num_classes=meta.num_classes)
        found.append(ParityClip(clip.name, audio, reference, paths))
    return found


def compare(
    system: Systems,
    torch_meta: ModelMetadata,
    runtime: Model,
    clips: Sequence[ParityClip],
    metric: str = "dcase2023",
    progress: bool = True,
) -> dict[str, Any]:
    """The parity report (design.md's --json keys). delta_seld is None without reference events.

    Each side runs with its own metadata: PyTorch with the checkpoint's (torch_meta: its features from the
    torch twin, its windows and post-processing), the runtime with the model file's, so metadata that lie
    show in the results. End to end, both sides run the runtime's offline pipeline
    (runtime.pipeline.clip_events): same windows, averaging and post-processing as `seld-edge run` and
    `seld-edge predict`. The outputs themselves are compared on the same windows of the runtime's features.
    A progress bar (stderr) counts the clips: a data set's held-out split takes minutes.
    """
    meta = runtime.metadata
    hop = hop_labels(meta)
    pytorch = TorchModel(system, torch_meta)
    twins = {i.name: FeatureExtractor(i.feature_config) for i in torch_meta.inputs}
    per_output: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in meta.output_names}
    feature_error = 0.0
    pairs_torch, pairs_runtime, differing = [], [], 0
    for clip in tqdm(clips, desc="parity", unit="clip", disable=not progress):
        features, twin_features = {}, {}
        for model_input in meta.inputs:
            audio = clip.audio[model_input.name]
            try:
                features[model_input.name] = compute_features(audio, model_input.feature_config)
            except SeldEdgeError as err:  # samples too loud for float32 power spectra
                raise SeldEdgeError(f"{clip.files.get(model_input.name, clip.name)}: {err}") from None
            with torch.no_grad():
                twin_features[model_input.name] = twins[model_input.name](torch.from_numpy(audio)[None])[0].numpy()
            twin, ours = twin_features[model_input.name], features[model_input.name]
            config = model_input.feature_config
            error = feature_difference(ours, twin, config) if twin.shape == ours.shape else np.inf  # other configs
            feature_error = max(feature_error, error)
        windows = _windows(features, meta, hop)
        torch_out, runtime_out = pytorch(windows), runtime(windows)
        for name in meta.output_names:
            per_output[name].append((torch_out[name], np.asarray(runtime_out[name])))
        if clip.reference is None:
            continue
        events_torch = clip_events(pytorch, twin_features)
        events_runtime = clip_events(runtime, features)
        differing += len(_keys(events_torch) ^ _keys(events_runtime))
        pairs_torch.append((clip.reference, events_torch))
        pairs_runtime.append((clip.reference, events_runtime))
    outputs = {
        name: error_stats(np.concatenate([a.ravel() for a, _ in pairs]), np.concatenate([b.ravel() for _, b in pairs]))
        for name, pairs in per_output.items()
    }
    report: dict[str, Any] = {
        "max_abs_error": max(o["max_abs_error"] for o in outputs.values()),
        "p99_abs_error": max(o["p99_abs_error"] for o in outputs.values()),
        "max_rel_error": max(o["max_rel_error"] for o in outputs.values()),
        "feature_max_abs_error": feature_error,
        "delta_seld": None,
        "outputs": outputs,
    }
    if pairs_torch:
        scores_torch = evaluate(pairs_torch, metric=metric, num_classes=meta.num_classes)
        scores_runtime = evaluate(pairs_runtime, metric=metric, num_classes=meta.num_classes)
        report["delta_seld"] = abs(selection_score(scores_torch) - selection_score(scores_runtime))
        report["delta_f"] = abs(scores_torch["F"] - scores_runtime["F"])
        report["differing_detections"] = differing
        report["scores_pytorch"], report["scores_runtime"] = scores_torch, scores_runtime
    return report


def _windows(features: dict[str, np.ndarray], meta: ModelMetadata, hop: int) -> dict[str, np.ndarray]:
    """Non-overlapping-or-hopped windows of the clip for each input (at least one, zero-padded if the
    clip is shorter), cut at the same label frames in every input."""
    n_labels = max(n_label_frames(features, meta), meta.window_labels)
    starts = range(0, n_labels - meta.window_labels + 1, hop)
    windows = {}
    for model_input in meta.inputs:
        per_label, array = meta.frames_per_label(model_input), features[model_input.name]
        array = np.pad(array, ((0, 0), (0, max(0, n_labels * per_label - array.shape[1])), (0, 0)))
        size = meta.window_labels * per_label
        windows[model_input.name] = np.stack([array[:, s * per_label : s * per_label + size] for s in starts])
    return windows


def _keys(events: Sequence[Event]) -> set[tuple[int, int, int]]:
    return {(e.frame, e.class_index, e.source) for e in events}
