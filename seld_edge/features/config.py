"""Feature configurations: small frozen dataclasses that travel inside exported models as JSON.

Each *kind* is a named default (DCASE 2023 baseline, EINV2, GLFER-Net, DCASE 2025 stereo); a model
declares its kind and the exact config is stored with checkpoints and ONNX files, so the runtime
computes the same features without any per-model code.
"""

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from seld_edge.errors import SeldEdgeError, unknown_name

if TYPE_CHECKING:
    from seld_edge.foa_transforms import FoaTransform

IV_NORMS = ("energy", "l2")
AUDIO_FORMATS = {"foa": 4, "mic": 4, "stereo": 2}
"""The recording formats a feature kind can read, with their channel counts: first-order ambisonics
(ACN/SN3D, W Y Z X), the tetrahedral microphone array, and the DCASE 2025 stereo pair."""


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that determines a feature tensor (C_out, T, F) from audio (C_in, N).

    audio_format says which recording the features are computed from (a data set's ``{format}_dev``
    folder). n_mels None means a linear-frequency spectrogram. iv_norm None means no intensity vector;
    "energy" divides by the DCASE energy term, "l2" by the vector's own norm (EINV2, GLFER-Net).
    crop_frames keeps ceil(N / hop) frames (the DCASE baseline's alignment: a whole number of frames
    per 100 ms label); otherwise all 1 + N // hop centred frames are kept.
    """

    kind: str
    audio_format: str = "foa"
    sample_rate: int = 24000
    in_channels: int = 4
    n_fft: int = 1024
    win_length: int = 960
    hop_length: int = 480
    n_mels: int | None = 64
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float | None = 80.0
    iv_norm: str | None = "energy"
    crop_frames: bool = True

    def __post_init__(self) -> None:
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio_format must be one of {', '.join(AUDIO_FORMATS)}, got {self.audio_format!r}")
        if self.in_channels != AUDIO_FORMATS[self.audio_format]:
            raise ValueError(
                f"{self.audio_format} audio has {AUDIO_FORMATS[self.audio_format]} channels, not {self.in_channels}"
            )
        if self.iv_norm is not None and self.iv_norm not in IV_NORMS:
            raise ValueError(f"iv_norm must be one of {IV_NORMS} or None, got {self.iv_norm!r}")
        if self.iv_norm is not None and self.audio_format != "foa":
            raise ValueError("intensity vectors need FOA input")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError("win_length must be in (0, n_fft]")

    @property
    def out_channels(self) -> int:
        return self.in_channels + (3 if self.iv_norm else 0)

    @property
    def n_bins(self) -> int:
        """Frequency size F of the feature tensor."""
        return self.n_mels if self.n_mels else self.n_fft // 2 + 1

    @property
    def min_samples(self) -> int:
        """The shortest audio a centred, reflect-padded STFT of this config can take."""
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Number of feature frames T for a clip of n_samples."""
        return -(-n_samples // self.hop_length) if self.crop_frames else 1 + n_samples // self.hop_length

    def frames_per_label(self, label_rate_hz: float) -> int:
        """Feature frames per label frame (5 for hop 480 at 24 kHz and 10 Hz labels); must be whole."""
        ratio = self.sample_rate / (self.hop_length * label_rate_hz)
        if abs(ratio - round(ratio)) > 1e-9:
            raise SeldEdgeError(f"{self.kind}: hop {self.hop_length} does not divide the {label_rate_hz} Hz label rate")
        return round(ratio)

    @property
    def audio_folder(self) -> str:
        """The data set folder of this recording format (STARSS23 layout): foa_dev, mic_dev, stereo_dev."""
        return f"{self.audio_format}_dev"

    @property
    def spatial_transforms(self) -> tuple["FoaTransform", ...]:
        """The FOA transforms these features can undergo exactly, for augmentation and test-time augmentation:
        all 16 for FOA (channels permute and change sign), the identity and the left-right mirror for stereo
        (L and R swap), only the identity for the tetrahedral array (no transform maps capsules onto capsules
        and directions onto directions the way ambisonic channels do)."""
        from seld_edge.foa_transforms import FOA_TRANSFORMS, STEREO_TRANSFORMS

        return {"foa": FOA_TRANSFORMS, "stereo": STEREO_TRANSFORMS, "mic": FOA_TRANSFORMS[:1]}[self.audio_format]

    def transform(self, features: np.ndarray, transform: "FoaTransform") -> np.ndarray:
        """Features (C, T, F) of this config as if the scene had been transformed (see spatial_transforms)."""
        if not any(np.array_equal(transform.matrix, t.matrix) for t in self.spatial_transforms):
            raise SeldEdgeError(f"{self.kind} features have no transform {transform.name}")
        if self.audio_format == "stereo":
            return transform.stereo_features(features)
        return transform.features(features) if self.audio_format == "foa" else features.copy()

    def to_json(self) -> str:
        return json.dumps({"type": "FeatureConfig", **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureConfig":
        data: dict[str, Any] = json.loads(text)
        if data.pop("type", None) != "FeatureConfig":
            raise SeldEdgeError("feature config JSON has no 'type': 'FeatureConfig' tag")
        known = [f.name for f in fields(cls)]
        for key in sorted(set(data) - set(known)):
            raise unknown_name("feature config key", key, known)
        return cls(**data)


FEATURE_KINDS: dict[str, FeatureConfig] = {
    # DCASE 2023/2024 baseline: 4 log-mel (W, Y, Z, X) + 3 energy-normalised IV, 7 x T x 64.
    "foa_logmel_iv": FeatureConfig("foa_logmel_iv"),
    # EINV2 / MFF-EINV2: hop 300, 128 mels 20 Hz .. 12 kHz, IV divided by its own L2 norm.
    "foa_logmel_iv_128": FeatureConfig(
        "foa_logmel_iv_128", win_length=1024, hop_length=300, n_mels=128, fmin=20.0, fmax=12000.0,
        top_db=None, iv_norm="l2",
    ),
    # GLFER-Net: log-linear spectrogram + L2-normalised IV, nfft 512, hop 300, 7 x T x 257.
    "foa_linspec_iv": FeatureConfig(
        "foa_linspec_iv", n_fft=512, win_length=512, hop_length=300, n_mels=None, top_db=None, iv_norm="l2",
    ),
    # FFMamba: Hann window 512 = nfft, hop 300, 128 mels; 4 log-mel + 3 IV, 7 x T x 128 (80 frames/s).
    "foa_logmel_iv_512": FeatureConfig("foa_logmel_iv_512", n_fft=512, win_length=512, hop_length=300, n_mels=128),
    # DCASE 2025 stereo: 40 ms window, 20 ms hop, nfft 1024, 64 mels; 2 x 251 x 64 for 5 s.
    "stereo_logmel": FeatureConfig("stereo_logmel", "stereo", in_channels=2, iv_norm=None, crop_frames=False),
    # MIC format (tetrahedral array), DCASE baseline STFT: 4 log-mel channels, one per capsule, 4 x 250 x 64.
    "mic_logmel": FeatureConfig("mic_logmel", "mic", iv_norm=None),
    # M2M-AST (seed 001, Table 2): 20 ms Hann window, 10 ms hop, 128 mels; 300 frames = 3 s, 10 per label.
    # nfft 512: the next power of two above the 480-sample window, as AST's Kaldi fbank rounds it.
    # SED network input: MIC log-mel, 4 x 300 x 128 per 3 s.
    "mic_logmel_ast": FeatureConfig("mic_logmel_ast", "mic", n_fft=512, win_length=480, hop_length=240, n_mels=128,
                                    iv_norm=None),
    # DOA network input: FOA log-mel + energy-normalised IV (DCASE), 7 x 300 x 128 per 3 s.
    "foa_logmel_iv_ast": FeatureConfig("foa_logmel_iv_ast", n_fft=512, win_length=480, hop_length=240, n_mels=128),
}  # fmt: skip


def feature_config(kind: str, **overrides: Any) -> FeatureConfig:
    """The config of a named feature kind, with optional field overrides."""
    if kind not in FEATURE_KINDS:
        raise unknown_name("feature kind", kind, FEATURE_KINDS)
    return replace(FEATURE_KINDS[kind], **overrides)
