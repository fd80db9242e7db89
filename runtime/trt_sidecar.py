"""The JSON sidecar next to every TensorRT engine (``model.engine.json``).

An engine file carries no seld-edge metadata and runs only with the TensorRT version and the GPU it
was built for, so the sidecar records them with the model metadata (the same key/values the ONNX
file carries), the build flags and profile, the plugin, and the hashes of the ONNX source and of the
engine itself. The runtime refuses an engine whose sidecar does not match it, in one line: another
engine copied over this one, another TensorRT, another GPU, or a build that never finished.
Torch-free; pycuda is imported only to name the GPU.
"""

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from seld_edge.errors import SeldEdgeError
from seld_edge.model_metadata import ModelMetadata

SIDECAR_VERSION = "1"
PLUGIN_ENV = "SELD_SCAN_PLUGIN"  # a plugin library to use instead of the one the sidecar names (build and run)
PRECISIONS = ("fp32", "fp16", "int8")


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


@dataclass(frozen=True)
class Sidecar:
    metadata: ModelMetadata
    tensorrt_version: str | None  # None until the engine is built (build_engine.sh fills it)
    gpu: str | None
    precision: str
    profile: dict[str, list[int]]  # min / opt / max (batch, C, T, F) of the features input
    plugin: str | None  # the SelectiveScan plugin library the engine needs, None if none
    workspace_gb: float
    onnx_sha256: str
    engine_sha256: str | None

    def to_json(self) -> str:
        fields = asdict(self)
        fields["metadata"] = self.metadata.to_props()
        return json.dumps({"sidecar_version": SIDECAR_VERSION, **fields}, indent=2) + "\n"

    @classmethod
    def read(cls, engine: Path) -> "Sidecar":
        path = sidecar_path(engine)
        if not path.is_file():
            raise SeldEdgeError(f"{engine}: no {path.name} beside it (engines are made by `seld-edge export --trt`)")
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
            if raw.pop("sidecar_version", None) != SIDECAR_VERSION:
                raise ValueError(f"sidecar_version is not {SIDECAR_VERSION}")
            raw["metadata"] = ModelMetadata.from_props(raw["metadata"], str(path))
            sidecar = cls(**raw)
        except (ValueError, TypeError, KeyError) as err:
            raise SeldEdgeError(f"{path}: malformed engine sidecar ({err})") from None
        if sidecar.precision not in PRECISIONS:
            raise SeldEdgeError(f"{path}: unknown precision {sidecar.precision!r}")
        return sidecar

    def built(self, tensorrt_version: str, gpu: str, engine_sha256: str) -> "Sidecar":
        return replace(self, tensorrt_version=tensorrt_version, gpu=gpu, engine_sha256=engine_sha256)

    @property
    def frame_range(self) -> tuple[int, int]:
        """The fewest and most feature frames the engine's profile accepts."""
        return self.profile["min"][2], self.profile["max"][2]

    def check(self, engine: Path, engine_sha256: str, tensorrt_version: str, gpu: str) -> None:
        """Refuse an engine this sidecar does not describe, or one built for another TensorRT or GPU."""
        if self.engine_sha256 is None or self.tensorrt_version is None:
            raise SeldEdgeError(f"{engine}: its build never finished (run build_engine.sh to the end)")
        if engine_sha256 != self.engine_sha256:
            raise SeldEdgeError(
                f"{engine}: not the engine its sidecar describes ({self.metadata.model}); rebuild or copy both files"
            )
        if tensorrt_version != self.tensorrt_version:
            raise SeldEdgeError(
                f"{engine}: built with TensorRT {self.tensorrt_version}, this machine has {tensorrt_version}; "
                "rebuild it here (build_engine.sh)"
            )
        if gpu != self.gpu:
            raise SeldEdgeError(f"{engine}: built for {self.gpu}, this GPU is {gpu}; rebuild it here (build_engine.sh)")


def gpu_name() -> str:
    """This machine's GPU: pycuda's device 0, else nvidia-smi, else the Jetson's device-tree model."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        return cuda.Device(0).name()
    except ImportError:
        pass
    if shutil.which("nvidia-smi"):
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.splitlines()[0].strip()
    model = Path("/proc/device-tree/model")
    if model.is_file():
        return model.read_text().strip("\x00\n ")
    raise SeldEdgeError("cannot name this machine's GPU: install pycuda (pip install 'seld-edge[trt]')")
