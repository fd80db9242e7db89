"""Stereo-RCnet and its blocks: the sinusoidal time encoding against its formula, the stereo fusion's
identity, the MCSA residual block and the frequency-only backbone, time pooling; the model's shapes at the
label rate (the runtime's padding of a 251-frame clip included), sizes and MACs, gradients, a training
step with the card's loss, and ONNX export against ONNX Runtime at 1, 5 and 60 s."""

import math
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from export.graph_check import check_for_tensorrt  # noqa: E402
from export.onnx_export import Exporter, ExportOptions  # noqa: E402
from seld_edge.features import feature_config  # noqa: E402
from seld_edge.formats import Event  # noqa: E402
from seld_edge.inference import windowed_outputs  # noqa: E402
from seld_edge.models import SeldSystem, create, model_card, system_metadata  # noqa: E402
from seld_edge.models.blocks.conformer import relative_position_encoding  # noqa: E402
from seld_edge.models.blocks.pooling import TimePooling  # noqa: E402
from seld_edge.models.blocks.positional import SinusoidalTimeEncoding, sinusoidal_encoding  # noqa: E402
from seld_edge.models.blocks.resnet import MCSABasicBlock, MCSANet  # noqa: E402
from seld_edge.models.blocks.stereo_fusion import StereoFusion  # noqa: E402
from seld_edge.models.complexity import count_parameters, model_complexity  # noqa: E402
from seld_edge.postprocess import PostProcessing  # noqa: E402
from tests.card_checks import assert_rebuilds_as_trained, tiny_changes  # noqa: E402
from tests.test_export import make_checkpoint  # noqa: E402
from tests.test_glfer_net import perturb_batch_norm, randomise  # noqa: E402
from training.checkpoint import save_checkpoint  # noqa: E402
from training.losses import Loss  # noqa: E402
from training.predict import TorchModel  # noqa: E402

NAMES = ("stereo_rcnet_tiny", "stereo_rcnet")
FRAMES_PER_SECOND = 50  # stereo_logmel: hop 480 at 24 kHz
CLASSES = 13


def each_model() -> list:
    """Both scales, the published one marked slow where a test is costly."""
    return ["stereo_rcnet_tiny", pytest.param("stereo_rcnet", marks=pytest.mark.slow)]


# ------------------------------------------------------------------------------ sinusoidal encoding


def test_sinusoidal_encoding_is_the_formula_and_holds_no_parameter():
    d, length = 12, 9
    expected = np.zeros((length, d))
    for p in range(length):
        for i in range(d // 2):
            angle = p / 10000 ** (2 * i / d)
            expected[p, i], expected[p, d // 2 + i] = math.sin(angle), math.cos(angle)
    got = sinusoidal_encoding(torch.arange(length), d).numpy()
    error = float(np.abs(got - expected).max())
    print(f"sinusoidal encoding against the formula: max abs error {error:.2e}")
    assert error <= 1e-6
    module = SinusoidalTimeEncoding(d)
    assert not list(module.parameters()) and not module.state_dict(), "fixed, not learned, not stored"
    x = torch.randn(2, length, d)
    torch.testing.assert_close(module(x) - x, torch.from_numpy(expected).float().expand(2, -1, -1))
    with pytest.raises(ValueError, match="even number of channels"):
        SinusoidalTimeEncoding(7)


def test_the_conformer_relative_encodings_are_the_same_function_of_the_distance():
    length, d = 6, 16
    distances = torch.arange(length - 1, -length, -1)
    torch.testing.assert_close(
        relative_position_encoding(length, d, torch.device("cpu")), sinusoidal_encoding(distances, d)
    )


# ----------------------------------------------------------------------------------- stereo fusion


@pytest.mark.parametrize("train", [False, True])
def test_stereo_fusion_is_eq_1_and_gives_twice_a_centred_map(train):
    fusion = randomise(StereoFusion(16, reduction=4)).train(train)
    left, right = torch.randn(2, 3, 16, 7, 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        w = fusion.attention.weights(left + right)
        torch.testing.assert_close(fusion(left, right), w * left + (2 - w) * right)
        error = float((fusion(left, left) - 2 * left).abs().max())
        asymmetry = float((fusion(left, right) - fusion(right, left)).abs().max())
    print(f"fusion(L, L) - 2 L, train={train}: max abs error {error:.2e}; weights spread {float(w.std()):.3f}")
    assert error <= 1e-6
    assert bool(((w > 0) & (w < 1)).all()) and float(w.std()) > 0.05, "w varies from point to point"
    assert asymmetry > 0.1, "eq. 1 weighs R more than L"


# --------------------------------------------------------------------------------- MCSA backbone


def test_mcsa_block_with_a_silent_branch_is_its_shortcut():
    """Zero last BN (weight and bias): the residual branch gives 0, MS-CAM of 0 is 0, the block is ReLU(shortcut)."""
    same = randomise(MCSABasicBlock(8, 8))
    wider = randomise(MCSABasicBlock(8, 16))
    x = torch.randn(2, 8, 11, 6)
    with torch.no_grad():
        assert float((same(x) - x.relu()).abs().max()) > 0.1, "the branch contributes while it is on"
        for block in (same, wider):
            block.residual[-1].weight.zero_()
            block.residual[-1].bias.zero_()
        torch.testing.assert_close(same(x), x.relu())
        torch.testing.assert_close(wider(x), wider.shortcut(x).relu())
    assert wider(x).shape == (2, 16, 11, 6)


@pytest.mark.parametrize("frames", [1, 7, 250])
def test_mcsanet_pools_frequency_only(frames):
    net = MCSANet(1, (4, 8, 8, 12), blocks_per_stage=2).eval()
    with torch.no_grad():
        out = net(torch.randn(3, 1, frames, 64))
    assert out.shape == (3, 12, frames, 4), "time resolution kept, 64 bins pooled to 4"
    pools = [m for m in net.modules() if isinstance(m, torch.nn.AvgPool2d)]
    assert len(pools) == 4 and all(tuple(p.kernel_size) == (1, 2) for p in pools)


def test_time_pooling_is_the_mean_of_each_five_frames():
    x = torch.randn(2, 15, 6)
    torch.testing.assert_close(TimePooling(5)(x), x.reshape(2, 3, 5, 6).mean(2))


# ------------------------------------------------------------------------------------------- model


@pytest.mark.parametrize("name", NAMES)
def test_sizes_and_macs(name):
    model = create(name)
    parameters = count_parameters(model)
    gmacs = model_complexity(name, 5.0).gmacs
    parts = {part: count_parameters(module) for part, module in model.named_children()}
    print(f"{name}: {parameters} parameters ({parts}), {gmacs:.2f} GMAC per 5 s clip")
    low, high = {"stereo_rcnet_tiny": (0.9e6, 1.3e6), "stereo_rcnet": (4e6, 7e6)}[name]
    assert low <= parameters <= high
    assert parts["time_encoding"] == 0


def test_the_tiny_scale_narrows_the_blocks_and_averages_each_label_frames_input():
    assert tiny_changes("stereo_rcnet", "stereo_rcnet_tiny") == {
        "widths": ((24, 48, 96, 192), (16, 32, 64, 96)),
        "blocks_per_stage": (2, 1),
        "d_model": (192, 128),
        "layers": (4, 2),
        "input_pool": ((1, 1), (5, 1)),
    }
    published, tiny = create("stereo_rcnet"), create("stereo_rcnet_tiny")
    assert isinstance(published.input_pool, torch.nn.Identity), "the paper's backbone sees every 20 ms frame"
    assert isinstance(published.time_pooling, TimePooling) and published.time_pooling.factor == 5
    assert isinstance(tiny.time_pooling, torch.nn.Identity), "the tiny conformer already runs at 100 ms"


def test_the_input_pooling_averages_frames_and_must_keep_whole_label_frames_and_bins():
    model = create("stereo_rcnet_tiny").eval()
    x = torch.randn(2, 2, 25, 64)
    torch.testing.assert_close(model.input_pool(x), x.reshape(2, 2, 5, 5, 64).mean(3))
    for pool in ((2, 1), (3, 1), (1, 3), (1, 8)):  # 5 frames per label; 64 bins pooled 4 times
        with pytest.raises(ValueError, match="input_pool"):
            create("stereo_rcnet_tiny", input_pool=pool)


def test_a_tiny_checkpoint_from_before_the_pooled_input_rebuilds_as_it_was_trained():
    """Such a checkpoint has no input_pool setting and the same weight shapes: it must not take today's (5, 1)."""
    features = torch.randn(1, 2, 50, 64)
    assert_rebuilds_as_trained("stereo_rcnet_tiny", "input_pool", {"input_pool": (1, 1)}, features)


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_stereo_accdoa_at_the_label_rate(name):
    card = model_card(name)
    assert (card.feature_kind, card.output_format, card.label_rate_hz) == ("stereo_logmel", "stereo_accdoa", 10.0)
    assert card.feature_config().frames_per_label(10.0) == 5
    model = create(name).eval()
    for frames in (FRAMES_PER_SECOND, 5 * FRAMES_PER_SECOND, 255):  # 1 s, 5 s, a 251-frame clip padded
        with torch.no_grad():
            out = model(torch.randn(2, 2, frames, 64))
        assert out.shape == (2, frames // 5, 3 * CLASSES)
        xy, distance = out[..., : 2 * CLASSES], out[..., 2 * CLASSES :]
        assert bool((xy.abs() < 1).all()) and bool((distance > 0).all()), "tanh on x, y; softplus on distance"


def test_a_5_second_clip_of_251_frames_runs_as_51_label_frames_in_the_runtime():
    """stereo_logmel keeps all 1 + N // hop centred frames: 251 for 5 s. The runtime zero-pads every clip to
    whole label frames (255) and runs it in windows of the training chunk."""
    config = feature_config("stereo_logmel")
    assert config.n_frames(5 * 24000) == 251
    system = SeldSystem.unnormalised("stereo_rcnet_tiny").eval()
    meta = system_metadata(system, [f"class_{i}" for i in range(CLASSES)], 5.0, PostProcessing())
    features = np.random.default_rng(0).standard_normal((2, 251, 64)).astype(np.float32)
    outputs = windowed_outputs(TorchModel(system, meta), {"features": features}, meta, hop=25)
    assert outputs["accdoa"].shape == (51, 3 * CLASSES)


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = create(name).train()
    out = model(torch.randn(2, 2, 20, 64))
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing


def fixed_batch() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Two 2 s chunks with events at folded azimuths and distances in metres, encoded by the format."""
    features = torch.randn(2, 2, 2 * FRAMES_PER_SECOND, 64, generator=torch.Generator().manual_seed(5))
    clips = [
        [Event(f, 3, 0, 40.0, 0.0, 2.0) for f in range(4, 15)],
        [Event(f, 0, 0, -70.0, 0.0, 1.2) for f in range(20)] + [Event(f, 7, 1, 150.0, 0.0, 3.5) for f in range(6)],
    ]
    fmt = model_card("stereo_rcnet_tiny").format({})
    targets = np.stack([fmt.encode(events, 20, CLASSES)["accdoa"] for events in clips])
    return features, {"accdoa": torch.from_numpy(targets)}


def test_a_training_step_with_the_card_loss_lowers_it():
    """The card's loss (1 x MSE eq. 4 + 2 x MSPE eq. 5) and optimiser (Adam at its learning rate), five steps
    on one batch."""
    card = model_card("stereo_rcnet_tiny")
    loss_fn = Loss.from_spec(card.format({}), card.training["loss"])
    assert loss_fn.describe() == "1 mse + 2 mspe"
    torch.manual_seed(0)
    model = create("stereo_rcnet_tiny").train()
    optimizer = torch.optim.Adam(model.parameters(), lr=card.training["lr"])
    features, targets = fixed_batch()
    losses = []
    for _ in range(6):
        loss = loss_fn({"accdoa": model(features)}, targets)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print("stereo_rcnet_tiny: loss " + " ".join(f"{v:.4f}" for v in losses))
    assert losses[-1] < 0.9 * losses[0]


# -------------------------------------------------------------------------------------------- ONNX


# The tiny scales are exported with --strict and held to the same bounds at 1, 5 and 60 s by the
# registry-wide tests (tests/test_export.py, tests/test_parity.py), on the session's one export of each.
@pytest.mark.parametrize("name", [pytest.param("stereo_rcnet", marks=pytest.mark.slow)])
def test_onnx_export_is_strict_clean_and_matches_pytorch_at_1_5_and_60_seconds(name, tmp_path):
    stem = tmp_path / "best"
    system, meta = make_checkpoint(stem, name)
    perturb_batch_norm(system)  # not a fresh model's identity normalisations
    save_checkpoint(stem, system, meta)
    model_file = tmp_path / f"{name}.onnx"
    started = time.perf_counter()
    result = Exporter(stem.with_suffix(".json"), ExportOptions(strict=True), log=lambda _: None)("onnx", model_file)
    seconds = time.perf_counter() - started
    print(f"{name}: ONNX {result.size_bytes / 1e6:.1f} MB, exported in {seconds:.1f} s")
    findings = check_for_tensorrt(onnx.load(model_file))
    for finding in findings:
        print(finding)
    assert not [f for f in findings if f.severity == "error"]
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    for clip_seconds, batch in ((1.0, 1), (5.0, 2), (60.0, 1)):
        features = torch.randn(batch, 2, round(clip_seconds * 10) * 5, 64)  # 5 feature frames per 100 ms
        with torch.no_grad():
            expected = system(features)["accdoa"].numpy()
        (got,) = session.run(["accdoa"], {"features": features.numpy()})
        error = float(np.abs(got - expected).max())
        print(f"{name} {clip_seconds:g} s x{batch} {got.shape}: max abs error {error:.2e}, spread {expected.std():.3f}")
        assert got.shape == expected.shape == (batch, round(clip_seconds * 10), 3 * CLASSES)
        assert expected.std() > 1e-3, "the outputs vary, so agreeing on them means something"
        assert error <= 1e-4
