"""FFMamba at its published size, checked once here (the registry-wide tests run ``ffmamba_tiny`` in its
place): ONNX export against PyTorch from 1 to 60 s, the export's metadata contract and the parity
command; what ``ffmamba_tiny`` is, and that its checkpoints from before the strided stem still load."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from seld_edge.models import create  # noqa: E402
from seld_edge.models.blocks.msf import MSF  # noqa: E402
from seld_edge.models.blocks.wavelet import WTED  # noqa: E402
from tests import test_export as export_checks  # noqa: E402
from tests.card_checks import assert_rebuilds_as_trained, tiny_changes  # noqa: E402
from tests.conftest import export_random_checkpoint, zoo_under_test  # noqa: E402


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    return {"ffmamba": export_random_checkpoint(tmp_path_factory.mktemp("ffmamba"), "ffmamba")}


def test_the_tiny_scale_stands_in_for_ffmamba_in_the_registry_wide_tests():
    assert "ffmamba_tiny" in zoo_under_test() and "ffmamba" not in zoo_under_test()


def test_published_size_exports_one_graph_that_matches_pytorch_from_1_to_60_seconds(published):
    export_checks.test_one_graph_matches_pytorch_from_1_to_60_seconds(published, "ffmamba")


def test_published_size_export_is_one_file_with_the_metadata_contract(published):
    export_checks.test_export_is_one_file_with_the_metadata_contract(published, "ffmamba")


def test_published_size_matches_pytorch_through_the_parity_command(published, cli):
    export_checks.test_every_model_matches_pytorch_on_a_generated_scene("ffmamba", published, cli)


def test_tiny_is_the_same_blocks_at_the_documented_widths_and_depths():
    assert tiny_changes("ffmamba", "ffmamba_tiny") == {
        "stem_channels": (32, 16),
        "stem_freq_stride": (1, 4),
        "depths": ((1, 2, 2, 1), (1, 1, 1, 1)),
        "d_state": (4, 1),
        "ssm_ratio": (2.0, 1.0),
        "msf_groups": (32, 8),
        "rnn_size": (128, 64),
        "fc_size": (128, 64),
    }
    model = create("ffmamba_tiny")
    count = sum(p.numel() for p in model.parameters())
    print(f"ffmamba_tiny: {count} parameters")
    assert abs(count - 0.457e6) / 0.457e6 < 0.01
    assert sum(isinstance(m, MSF) for m in model.modules()) == 4, "one MSF-VSS block per stage"
    assert sum(isinstance(m, WTED) for m in model.modules()) == 3


def test_a_tiny_checkpoint_from_before_the_strided_stem_rebuilds_as_it_was_trained():
    """Such a checkpoint stores stem_freq_pool 16 and no stem_freq_stride: it must not take today's stride."""
    trained_args = {"stem_freq_stride": 1, "stem_freq_pool": 16}
    assert_rebuilds_as_trained("ffmamba_tiny", "stem_freq_stride", trained_args, torch.randn(1, 7, 80, 128))
