"""Shared fixtures: small deterministic signals and a CLI runner."""

import os
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from seld_edge.geometry import polar_to_unit
from tests.faults import FullDisk, ReadOnly

SAMPLE_RATE = 24000


def plane_wave_foa(seconds: float, azimuth: float, elevation: float, seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """4-channel ACN/SN3D FOA (W, Y, Z, X) of band-limited noise arriving from one direction, plus a
    little independent noise per channel so no bin is exactly zero."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    source = np.convolve(rng.standard_normal(n), np.hanning(9) / 4.5, mode="same")
    x, y, z = polar_to_unit(azimuth, elevation)
    foa = np.stack([source, y * source, z * source, x * source]) * 0.3
    return (foa + noise * rng.standard_normal(foa.shape)).astype(np.float32)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs one worker per core), each worker computes on one thread, in its
    own process and in the processes it starts, so that the workers do not fight over the cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for pool in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[pool] = "1"
        try:
            import torch
        except ImportError:
            return
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`make test` runs pytest-xdist with --dist loadfile (a file stays on one worker, so its module fixtures
    are built once). tests/test_export.py holds every user of the session's `exports` (each model exported
    once, minutes) and is the longest file: it goes first, so that it does not start last and leave the
    other worker idle at the end."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] != "tests/test_export.py")


@pytest.fixture(scope="module")
def toys():
    """The toy models of tests/toy_models.py in the registry for one test module, and out of it after, so
    that the registry-wide tests and the help texts see the zoo a user sees."""
    from tests.toy_models import registered_toys

    with registered_toys():
        yield


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder on a nearly full disk (tests/faults.py): put content in, then call fill()."""
    disk = FullDisk(tmp_path / "disk", monkeypatch)
    yield disk
    disk.close()


@pytest.fixture
def read_only(tmp_path):
    """A folder whose content becomes read-only on lock() (tests/faults.py)."""
    folder = ReadOnly(tmp_path / "locked")
    yield folder
    folder.close()


# Prepended to a subprocess script: any import of torch fails, as on a machine without it. An import
# hook rather than sys.modules["torch"] = None, which breaks scipy's array-API helpers (they look
# torch up in sys.modules) in a way no torch-free machine does.
BLOCK_TORCH = textwrap.dedent(
    """
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torch":
                raise ImportError("torch is not installed here")

    sys.meta_path.insert(0, BlockTorch())
    """
)


def zoo_under_test() -> list[str]:
    """The registered networks the registry-wide tests (every model runs, exports, matches PyTorch) loop
    over: a family's ``_tiny`` scale stands in for its published size, which its own test file checks
    once (the published EINV2 and M2M-AST networks have some 85 M parameters). Networks that give half
    of SELD or take a fixed window (M2M-AST's SED and DOA Transformers) and composites are built, run
    and exported through their own test file (tests/test_m2m_ast.py), as their users meet them."""
    from seld_edge.models import ModelCard, list_models, model_card

    names = list_models()

    def tested_here(name: str) -> bool:
        card = model_card(name)
        return isinstance(card, ModelCard) and card.dynamic_time and card.format(card.defaults).decodable

    return [n for n in names if tested_here(n) and f"{n}_tiny" not in names]


def export_random_checkpoint(root, name: str) -> tuple:
    """A random-weight checkpoint of a registered model under root/run, exported through the command line
    with --strict (the graph check finds nothing TensorRT 10.3 cannot build): (system, checkpoint meta, run
    folder, model file, export output)."""
    from seld_edge.cli import main
    from tests.test_export import make_checkpoint

    system, meta = make_checkpoint(root / "run" / "best", name)
    model = root / "out" / f"{name}.onnx"
    result = CliRunner().invoke(main, ["export", str(root / "run"), "-o", str(model), "--strict"])
    assert result.exit_code == 0, result.output
    return system, meta, root / "run", model, result.output


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Every model under test exported once per session: name -> export_random_checkpoint's tuple. The
    Mamba models take about a minute each to export on one core, so the export and parity tests share them."""
    return {name: export_random_checkpoint(tmp_path_factory.mktemp(name), name) for name in zoo_under_test()}
