"""M2M-AST (seed 001): the ViT blocks, the SED and DOA networks at both scales, and the DeiT transfer."""

import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

from seld_edge.errors import SeldEdgeError
from seld_edge.models import create, model_card
from seld_edge.models.blocks.vit import Attention, PatchEmbed, patch_grid
from seld_edge.models.m2m_ast import M2MAST
from seld_edge.models.pretrained import load_deit, read_state_dict
from seld_edge.models.system import SeldSystem
from training.autocast_check import autocast_faults

NETWORKS = ("m2m_ast_sed", "m2m_ast_doa", "m2m_ast_sed_tiny", "m2m_ast_doa_tiny")

FRAMES, MELS, CLASSES = 300, 128, 13


def network(name: str, seed: int = 0, **overrides: object) -> M2MAST:
    torch.manual_seed(seed)
    return create(name, **overrides)


def channels_of(name: str) -> int:
    return model_card(name).feature_config().out_channels


def features(name: str, batch: int, seed: int = 1) -> torch.Tensor:
    channels = channels_of(name)
    return torch.randn(batch, channels, FRAMES, MELS, generator=torch.Generator().manual_seed(seed))


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- blocks ---------------------------------------------------------------------------------------


def test_patch_grid_is_29_by_12_time_major():
    assert patch_grid((FRAMES, MELS), 16, 10) == (29, 12)
    embed = PatchEmbed(4, 8, patch_size=16, stride=10)
    x = torch.randn(2, 4, FRAMES, MELS)
    tokens = embed(x)
    assert tokens.shape == (2, 348, 8)
    # Token i * 12 + j is the 16x16 patch at time 10 i, frequency 10 j (time-major, frequency fastest).
    for i, j in [(0, 0), (0, 11), (7, 3), (28, 11)]:
        patch = x[:, :, 10 * i : 10 * i + 16, 10 * j : 10 * j + 16]
        expected = torch.einsum("bchw,dchw->bd", patch, embed.proj.weight) + embed.proj.bias
        torch.testing.assert_close(tokens[:, i * 12 + j], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 4, 7, 8])
@pytest.mark.parametrize("stride", [10, 16])
def test_patch_projection_is_right_under_cpu_bfloat16_autocast(channels, stride):
    """oneDNN 3.12 gets some bfloat16 convolutions with a stride above 1 wrong (4 channels at 16x16/16:
    relative error about 1) where the CPU has AMX; the projection runs in float32 under autocast."""
    torch.manual_seed(0)
    embed = PatchEmbed(channels, 192, patch_size=16, stride=stride)
    x = torch.randn(2, channels, FRAMES, MELS)
    with torch.no_grad():
        reference = embed(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tokens = embed(x).float()
    error = ((tokens - reference).norm() / reference.norm()).item()
    print(f"{channels} channels, stride {stride}: relative error under bfloat16 autocast {error:.1e}")
    assert error < 1e-2


@pytest.mark.parametrize("name", ["m2m_ast_sed_tiny", "m2m_ast_doa_tiny"])
def test_tiny_networks_have_no_layer_that_autocast_gets_wrong(name):
    """The tiny cards train under bfloat16 autocast (cpu_amp): every layer must compute what it does in
    float32 (training.autocast_check; the SED network's 4-channel patch projection did not)."""
    system = SeldSystem.unnormalised(name)
    channels = system.inputs[0].feature_config.out_channels
    assert autocast_faults(system, (torch.randn(1, channels, FRAMES, MELS),), "cpu", torch.bfloat16) == []


def test_attention_equals_torch_multihead_attention():
    """The fused qkv rows are [q | k | v], heads contiguous: the layout of nn.MultiheadAttention's in_proj."""
    torch.manual_seed(0)
    ours = Attention(48, num_heads=4).eval()
    reference = torch.nn.MultiheadAttention(48, 4, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(ours.qkv.weight)
        reference.in_proj_bias.copy_(ours.qkv.bias)
        reference.out_proj.weight.copy_(ours.proj.weight)
        reference.out_proj.bias.copy_(ours.proj.bias)
        x = torch.randn(3, 17, 48)
        error = (ours(x) - reference(x, x, x, need_weights=False)[0]).abs().max().item()
    print(f"attention vs nn.MultiheadAttention: max abs error {error:.2e}")
    assert error < 1e-5


# ---- the networks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "width", "outputs"),
    [("m2m_ast_sed_tiny", 13, (0, 1)), ("m2m_ast_doa_tiny", 39, (-1, 1))],
)
def test_tiny_networks_give_30_frames(name, width, outputs):
    """The tiny cards cut the same 16x16 patches without overlap (18 x 8); the paper's stride 10 (29 x 12)
    is a setting away."""
    model = network(name).eval()
    assert model.grid == (18, 8) and model.num_patches == 144 and model.num_output_tokens == 30
    assert model.pos_embed.shape == (1, 30 + 144, 192)
    assert network(name, patch_stride=10).num_patches == 348
    with torch.no_grad():
        y = model(features(name, 2))
    assert y.shape == (2, 30, width)
    assert outputs[0] <= y.min() and y.max() <= outputs[1]


def test_per_channel_network_is_a_capsule_average():
    """With per_channel (the paper's C = 1 SED network) the output does not depend on the order of the
    capsules, and four copies of one capsule give that capsule's own output."""
    model = network("m2m_ast_sed_tiny", per_channel=True).eval()
    assert model.patch_embed.proj.in_channels == 1
    x = features("m2m_ast_sed_tiny", 2)
    with torch.no_grad():
        y = model(x)
        shuffled = model(x[:, [2, 0, 3, 1]])
        single = model.encode(x[:, :1])
        copies = model(x[:, :1].expand(-1, 4, -1, -1))
    assert y.shape == (2, 30, CLASSES)
    torch.testing.assert_close(shuffled, y, rtol=0, atol=1e-6)
    torch.testing.assert_close(copies, single, rtol=0, atol=1e-6)


def test_other_window_lengths_are_refused():
    model = network("m2m_ast_doa_tiny")
    with pytest.raises(SeldEdgeError, match=r"\(batch, 7, 300, 128\)"):
        model(torch.randn(1, 7, 500, MELS))


def test_parameter_counts_match_the_paper():
    """Paper section 4: SED 85 M, DOA 86 M (Table 6: 172 M together)."""
    sed, doa = n_params(network("m2m_ast_sed")), n_params(network("m2m_ast_doa"))
    tiny_sed, tiny_doa = n_params(network("m2m_ast_sed_tiny")), n_params(network("m2m_ast_doa_tiny"))
    print(f"parameters: sed {sed:,} ({sed / 85e6 - 1:+.2%} vs 85 M), doa {doa:,} ({doa / 86e6 - 1:+.2%} vs 86 M)")
    print(f"tiny: sed {tiny_sed:,}, doa {tiny_doa:,}")
    assert abs(sed / 85e6 - 1) < 0.01 and abs(doa / 86e6 - 1) < 0.01
    # The difference: 6 more input channels in the patch projection, 26 more head outputs.
    assert doa - sed == 6 * 768 * 16 * 16 + 26 * (768 + 1)
    assert 5e6 < tiny_sed < tiny_doa < 6e6


@pytest.mark.parametrize("name", ["m2m_ast_sed_tiny", "m2m_ast_doa_tiny"])
def test_every_parameter_gets_a_gradient(name):
    model = network(name).train()
    model(features(name, 2)).square().sum().backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


@pytest.mark.parametrize("name", ["m2m_ast_sed_tiny", "m2m_ast_doa_tiny"])
def test_training_steps_lower_the_loss_on_a_fixed_batch(name):
    """The card's optimiser (AdamW at its rate) on one batch: BCE for SED, MSE for DOA (the first-stage losses)."""
    model = network(name)
    x = features(name, 2)
    g = torch.Generator().manual_seed(2)
    if model_card(name).defaults["task"] == "sed":
        target = (torch.rand(2, 30, CLASSES, generator=g) < 0.2).float()
        loss_fn = F.binary_cross_entropy
    else:
        target = F.normalize(torch.randn(2, 30, 3, CLASSES, generator=g), dim=2).flatten(2)
        loss_fn = F.mse_loss
    optimizer = torch.optim.AdamW(model.parameters(), lr=model_card(name).training["lr"], weight_decay=0.05)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return loss_fn(model(x), target).item()

    before = eval_loss()
    model.train()
    for _ in range(5):
        optimizer.zero_grad()
        loss_fn(model(x), target).backward()
        optimizer.step()
    after = eval_loss()
    print(f"{name}: loss {before:.4f} -> {after:.4f} after 5 steps")
    assert after < 0.9 * before


def test_cards_schedule_the_paper_two_stages():
    from training.config import resolve_config
    from training.losses import loss_schedule

    for name in NETWORKS:
        card = model_card(name)
        config = resolve_config(name, "data", "run")
        recipe = (config.optimizer, config.lr, config.batch_size, config.epochs, config.scheduler, config.cpu_amp)
        if name.endswith("_tiny"):  # the CPU recipe (module docstring)
            lr = {"m2m_ast_sed_tiny": 3e-4, "m2m_ast_doa_tiny": 1e-3}[name]
            assert recipe == ("adamw", lr, 8, 100, "cosine", True) and config.warmup_epochs == 1
            assert config.augment == ({"foa_rotation": True} if name == "m2m_ast_doa_tiny" else {})
        else:  # Tables 4 and 5
            assert recipe == ("adam", 1e-4, 24, 100, "constant", False) and config.augment == {}
        assert config.chunk_seconds == 3.0 and not card.dynamic_time
        task = card.defaults["task"]
        assert card.output_format == task
        schedule = loss_schedule(card.format(card.defaults), config)
        first, second = ("1 bce", "1 soft_f") if task == "sed" else ("1 mse", "1 masked_mse")
        assert [schedule.at(epoch, 100).describe() for epoch in (0, 49, 50, 99)] == [first, first, second, second]


def analytic_macs(model: M2MAST, channels: int) -> int:
    """Multiply-accumulates of the matmuls and the patch conv, counted by hand: per block 12 N D^2 (qkv 3,
    proj 1, MLP 8) + 2 N^2 D (scores and weighted sum) over N = t' + n tokens."""
    width, tokens, depth = model.pos_embed.shape[-1], model.pos_embed.shape[1], len(model.blocks)
    images = channels if model.per_channel else 1
    patch = model.num_patches * model.patch_embed.proj.in_channels * 16 * 16 * width
    blocks = depth * (12 * tokens * width**2 + 2 * tokens**2 * width)
    head = model.num_output_tokens * width * model.head.out_features
    return images * (patch + blocks + head)


@pytest.mark.parametrize("name", NETWORKS)
def test_macs_per_window(name):
    """FlopCounterMode on meta tensors (nothing is computed); MACs = FLOPs / 2. A 5 s clip takes three
    3 s windows at a 1 s hop (two at the 2 s hop that just covers it)."""
    with torch.device("meta"):
        model = network(name).eval()
        x = torch.empty(1, channels_of(name), FRAMES, MELS)
    with FlopCounterMode(display=False) as counter:
        model(x)
    macs = counter.get_total_flops() // 2
    print(f"{name}: {macs / 1e9:.2f} GMACs per 3 s window, {3 * macs / 1e9:.1f} per 5 s clip (1 s hop)")
    assert macs == analytic_macs(model, x.shape[1])


# ---- ONNX export --------------------------------------------------------------------------------


def composite_checkpoint(root: Path, name: str) -> Path:
    """The composite ``name`` composed (seld-edge compose) from random-weight checkpoints of its parts, each
    with a random normaliser and the card's 3 s window."""
    from dataclasses import asdict

    from seld_edge.models import SeldSystem
    from training.checkpoint import save_checkpoint
    from training.compose import compose_checkpoint
    from training.config import TrainConfig

    rng = np.random.default_rng(0)
    parts = {}
    for part, network_name in model_card(name).parts.items():
        torch.manual_seed(len(parts))
        config = model_card(network_name).feature_config()
        shape = (config.out_channels, 1, config.n_bins)
        mean, std = rng.standard_normal(shape), rng.uniform(0.5, 1.5, shape)
        system = SeldSystem(network_name, {}, mean.astype(np.float32), std.astype(np.float32)).eval()
        info = {
            "class_names": [f"class_{i}" for i in range(CLASSES)],
            "postprocess": {"thresholds": 0.3, "median_size": 3},
            "train_config": asdict(TrainConfig(network_name, "data", "run", chunk_seconds=3.0)),
        }
        parts[part] = root / part / "best"
        save_checkpoint(parts[part], system, info)
    return compose_checkpoint(name, parts, root / name).parent


def export_run_and_compare(name: str, tmp_path: Path, data: Path | None) -> None:
    """The composite through the command line: export --strict (two inputs, a fixed 300-frame axis),
    parity against PyTorch, and with data `run` and `predict` writing the same events."""
    from click.testing import CliRunner

    from seld_edge.cli import main
    from seld_edge.formats import read_events

    cli = CliRunner()
    checkpoint = composite_checkpoint(tmp_path / "runs", name)
    model = tmp_path / f"{name}.onnx"
    start = time.perf_counter()
    done = cli.invoke(main, ["export", str(checkpoint), "-o", str(model), "--strict"])
    assert done.exit_code == 0, done.output
    export_s = time.perf_counter() - start
    proto = onnx.load(model, load_external_data=False)
    shapes = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input]
    assert [i.name for i in proto.graph.input] == ["features_sed", "features_doa"]
    assert [s[1:] for s in shapes] == [[4, FRAMES, MELS], [7, FRAMES, MELS]] and all(
        isinstance(s[0], str) for s in shapes
    )
    ops = {node.op_type for node in proto.graph.node}
    assert {"MatMul", "Softmax"} <= ops and "Attention" not in ops
    args = ["parity", str(checkpoint), str(model), "--json"] + (["--data", str(data)] if data else [])
    done = cli.invoke(main, args)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    size = model.stat().st_size / 1e6
    print(f"{name}: export {export_s:.1f} s, {size:.1f} MB, parity max abs {report['max_abs_error']:.2e}")
    assert report["max_abs_error"] <= 1e-4
    if data is None:
        return
    for command, source, out in (("run", model, "rt"), ("predict", checkpoint, "pt")):
        done = cli.invoke(main, [command, str(source), str(data), "-o", str(tmp_path / out)])
        assert done.exit_code == 0, done.output
    written = sorted(p.name for p in (tmp_path / "rt").glob("*.csv"))
    assert written and written == sorted(p.name for p in (tmp_path / "pt").glob("*.csv"))
    for csv_name in written:
        runtime, torch_events = read_events(tmp_path / "rt" / csv_name), read_events(tmp_path / "pt" / csv_name)
        assert [(e.frame, e.class_index, e.source) for e in runtime] == [
            (e.frame, e.class_index, e.source) for e in torch_events
        ]


@pytest.fixture(scope="module")
def foa_mic(tmp_path_factory) -> Path:
    from seld_edge.synth import generate_dataset

    root = tmp_path_factory.mktemp("foa_mic")
    generate_dataset(root, fmt="foa,mic", n_train=0, n_test=2, seconds=7.0, seed=5, progress=False)
    return root


def test_tiny_composite_exports_runs_on_mic_and_foa_and_matches_pytorch(tmp_path, foa_mic):
    """m2m_ast_tiny: SED on the MIC array, DOA on FOA, one graph; `run DATA/` on the STARSS layout."""
    export_run_and_compare("m2m_ast_tiny", tmp_path, foa_mic)


@pytest.mark.slow
def test_published_composite_exports_and_matches_pytorch(tmp_path):
    """m2m_ast at its published size (85.6 M + 86.8 M parameters), once: export --strict and parity."""
    export_run_and_compare("m2m_ast", tmp_path, None)


# ---- DeiT transfer ----------------------------------------------------------------------------------

# timm's deit.py: (width, depth, image size, distilled); 16x16 patches, MLP ratio 4, 1000 ImageNet classes.
DEIT = {
    "deit_base_distilled_patch16_384": (768, 12, 384, True),
    "deit_base_distilled_patch16_224": (768, 12, 224, True),
    "deit_tiny_patch16_224": (192, 12, 224, False),
    "deit_tiny_distilled_patch16_224": (192, 12, 224, True),
}


def deit_state_dict(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under timm's key names and shapes for ``variant`` (written from timm's layout)."""
    width, depth, image, distilled = DEIT[variant]
    side, hidden = image // 16, 4 * width
    shapes = {
        "cls_token": (1, 1, width),
        "pos_embed": (1, (2 if distilled else 1) + side * side, width),
        "patch_embed.proj.weight": (width, 3, 16, 16),
        "patch_embed.proj.bias": (width,),
    }
    if distilled:
        shapes["dist_token"] = (1, 1, width)
    for i in range(depth):
        shapes |= {
            f"blocks.{i}.norm1.weight": (width,),
            f"blocks.{i}.norm1.bias": (width,),
            f"blocks.{i}.attn.qkv.weight": (3 * width, width),
            f"blocks.{i}.attn.qkv.bias": (3 * width,),
            f"blocks.{i}.attn.proj.weight": (width, width),
            f"blocks.{i}.attn.proj.bias": (width,),
            f"blocks.{i}.norm2.weight": (width,),
            f"blocks.{i}.norm2.bias": (width,),
            f"blocks.{i}.mlp.fc1.weight": (hidden, width),
            f"blocks.{i}.mlp.fc1.bias": (hidden,),
            f"blocks.{i}.mlp.fc2.weight": (width, hidden),
            f"blocks.{i}.mlp.fc2.bias": (width,),
        }
    shapes |= {"norm.weight": (width,), "norm.bias": (width,), "head.weight": (1000, width), "head.bias": (1000,)}
    if distilled:
        shapes |= {"head_dist.weight": (1000, width), "head_dist.bias": (1000,)}
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=g) for key, shape in shapes.items()}


def save(state: dict[str, torch.Tensor], path) -> str:
    if str(path).endswith(".safetensors"):
        save_file(state, path)
    else:
        torch.save(state, path)
    return str(path)


def expected_patch_pos(pos_embed: torch.Tensor, n_prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """AST's mapping, computed in AST's own image layout (frequency rows, time columns): cut the frequency
    rows to the middle ``freq``, then interpolate the time columns to ``time``. Returned time-major,
    (time * freq, D); the paper's grid is (29, 12)."""
    time, freq = grid
    side = round((pos_embed.shape[1] - n_prefix) ** 0.5)
    image = pos_embed[0, n_prefix:].reshape(side, side, -1).permute(2, 0, 1).unsqueeze(0)  # (1, D, freq, time)
    start = side // 2 - freq // 2
    image = F.interpolate(image[:, :, start : start + freq], size=(freq, time), mode="bilinear", align_corners=False)
    return image[0].permute(2, 1, 0).reshape(time * freq, -1)


@pytest.mark.parametrize(
    ("variant", "name", "suffix"),
    [
        pytest.param("deit_base_distilled_patch16_384", "m2m_ast_doa", ".safetensors", marks=pytest.mark.slow),
        pytest.param("deit_base_distilled_patch16_384", "m2m_ast_sed", ".pth", marks=pytest.mark.slow),
        pytest.param("deit_base_distilled_patch16_224", "m2m_ast_doa", ".pth", marks=pytest.mark.slow),
        pytest.param("deit_base_distilled_patch16_224", "m2m_ast_sed", ".safetensors", marks=pytest.mark.slow),
        ("deit_tiny_patch16_224", "m2m_ast_sed_tiny", ".safetensors"),
        ("deit_tiny_patch16_224", "m2m_ast_doa_tiny", ".pth"),
        ("deit_tiny_distilled_patch16_224", "m2m_ast_doa_tiny", ".safetensors"),
    ],
)
def test_deit_transfer_maps_every_tensor(variant, name, suffix, tmp_path):
    state = deit_state_dict(variant)
    path = save(state, tmp_path / f"{variant}{suffix}")
    model = network(name)
    head_before = model.head.weight.detach().clone()
    load_deit(model, path)

    in_channels = model.patch_embed.proj.in_channels
    rgb = state["patch_embed.proj.weight"]
    rgb_mean = (rgb[:, 0] + rgb[:, 1] + rgb[:, 2]) / 3
    for channel in range(in_channels):
        torch.testing.assert_close(model.patch_embed.proj.weight[:, channel], rgb_mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.patch_embed.proj.bias, state["patch_embed.proj.bias"], rtol=0, atol=0)
    stride = model_card(name).defaults["patch_stride"]  # 10 (the paper's), 16 on the tiny cards
    assert model.patch_embed.proj.stride == (stride, stride) and model.patch_embed.proj.kernel_size == (16, 16)

    distilled = "dist_token" in state
    n_prefix = 2 if distilled else 1
    pos = state["pos_embed"][0]
    token = (state["cls_token"][0, 0] + state["dist_token"][0, 0]) / 2 if distilled else state["cls_token"][0, 0]
    token_pos = (pos[0] + pos[1]) / 2 if distilled else pos[0]
    for i in (0, 17, 29):
        torch.testing.assert_close(model.output_tokens[0, i], token, rtol=0, atol=1e-6)
        torch.testing.assert_close(model.pos_embed[0, i], token_pos, rtol=0, atol=1e-6)
    patch_pos = model.pos_embed[0, 30:]
    error = (patch_pos - expected_patch_pos(state["pos_embed"], n_prefix, model.grid)).abs().max().item()
    print(f"{variant} -> {name} ({suffix}), grid {model.grid}: patch positional embedding max abs error {error:.2e}")
    assert error < 1e-5

    for key in ("blocks.0.attn.qkv.weight", "blocks.5.mlp.fc1.bias", "blocks.11.norm2.weight", "norm.bias"):
        assert torch.equal(model.state_dict()[key], state[key]), key
    assert torch.equal(model.head.weight, head_before)  # DeiT's heads are not used


def test_position_mapping_by_hand(tmp_path):
    """A positional embedding holding each patch's own column (DeiT width) and row (height) index: after the
    transfer the time axis holds the bilinear source position (t + 0.5) * 14 / 29 - 0.5 clamped to
    [0, 13] (linear interpolation is exact on a ramp) and the frequency axis the cut rows 1..12."""
    state = deit_state_dict("deit_tiny_patch16_224")
    rows, cols = torch.meshgrid(torch.arange(14.0), torch.arange(14.0), indexing="ij")
    state["pos_embed"][0, 1:, 0] = cols.flatten()
    state["pos_embed"][0, 1:, 1] = rows.flatten()
    model = network("m2m_ast_doa_tiny", patch_stride=10)  # the paper's grid
    load_deit(model, save(state, tmp_path / "deit.safetensors"))
    grid = model.pos_embed[0, 30:, :2].reshape(29, 12, 2)
    source = ((torch.arange(29.0) + 0.5) * 14 / 29 - 0.5).clamp(0, 13)
    torch.testing.assert_close(grid[..., 0], source[:, None].expand(29, 12), rtol=0, atol=1e-5)
    torch.testing.assert_close(grid[..., 1], (torch.arange(12.0) + 1)[None].expand(29, 12), rtol=0, atol=1e-5)


def test_published_checkpoint_wrapper_is_unwrapped(tmp_path):
    """The DeiT authors' .pth files hold {"model": state_dict, ...}."""
    state = deit_state_dict("deit_tiny_patch16_224")
    path = tmp_path / "deit_tiny.pth"
    torch.save({"model": state, "epoch": 300}, path)
    assert read_state_dict(path).keys() == state.keys()


def one_line_error(model: M2MAST, path) -> str:
    with pytest.raises(SeldEdgeError) as caught:
        load_deit(model, path)
    message = str(caught.value)
    print(message)
    assert "\n" not in message
    return message


def test_missing_keys_are_named_compactly(tmp_path):
    state = deit_state_dict("deit_tiny_patch16_224")
    del state["blocks.3.mlp.fc2.bias"], state["norm.bias"]
    for key in [k for k in state if k.startswith(("blocks.10.", "blocks.11."))]:
        del state[key]
    message = one_line_error(network("m2m_ast_sed_tiny"), save(state, tmp_path / "deit.safetensors"))
    assert message.endswith("12 blocks: missing norm.bias, blocks.{10-11}.*, blocks.3.mlp.fc2.bias")


def test_wrong_shapes_and_unexpected_keys_are_named(tmp_path):
    state = deit_state_dict("deit_tiny_patch16_224")
    state["pos_embed"] = torch.randn(1, 200, 192)
    state["blocks.2.attn.qkv.weight"] = torch.randn(192, 576)
    state["blocks.0.ls1.gamma"] = torch.ones(192)  # a DeiT-III block: layer scale we do not have
    message = one_line_error(network("m2m_ast_sed_tiny"), save(state, tmp_path / "deit.pth"))
    assert "blocks.2.attn.qkv.weight (192, 576) for (576, 192)" in message
    assert "pos_embed (1, 200, 192) for (1, 1 + N*N, 192)" in message
    assert "unexpected blocks.0.ls1.gamma" in message


def test_a_file_of_another_width_is_refused_in_one_short_line(tmp_path):
    """A DeiT-Ti file for a network of DeiT-S width (384): every tensor is mis-shaped, named in a few groups."""
    model = network("m2m_ast_doa_tiny", embed_dim=384, num_heads=6)
    message = one_line_error(model, save(deit_state_dict("deit_tiny_patch16_224"), tmp_path / "deit.pt"))
    assert "blocks.{0-11}.attn.qkv.weight (576, 192) for (1152, 384)" in message
    names = "norm1.weight,norm1.bias,attn.proj.bias,norm2.weight,norm2.bias,mlp.fc2.bias"
    assert f"blocks.{{0-11}}.{{{names}}} (192) for (384)" in message
    assert len(message) < 1000


def mark_unpickled(path: str) -> None:
    """Run only if a file is unpickled: leaves a trace."""
    with open(path, "w") as trace:
        trace.write("unpickled")


class Payload:
    def __init__(self, trace: str) -> None:
        self.trace = trace

    def __reduce__(self):
        return (mark_unpickled, (self.trace,))


def test_a_pickle_with_objects_is_refused_without_unpickling(tmp_path):
    trace = tmp_path / "trace.txt"
    state = deit_state_dict("deit_tiny_patch16_224")
    path = tmp_path / "deit.pth"
    torch.save({**state, "extra": Payload(str(trace))}, path)
    message = one_line_error(network("m2m_ast_sed_tiny"), path)
    assert "refused" in message and "mark_unpickled" in message
    assert not trace.exists()


@pytest.mark.parametrize("file_name", ["deit.bin", "absent.safetensors"])
def test_other_files_are_refused(file_name, tmp_path):
    (tmp_path / "deit.bin").write_bytes(b"weights")
    one_line_error(network("m2m_ast_sed_tiny"), tmp_path / file_name)


def test_the_pretrained_setting_loads_deit_once_and_checkpoints_do_not_need_the_file(tmp_path):
    """``model.pretrained=PATH`` initialises a new system from DeiT; a checkpoint of it rebuilds without
    the file (its own weights replace DeiT's), so the file may be gone on the machine that runs it."""
    from seld_edge.models import SeldSystem, build_system

    path = Path(save(deit_state_dict("deit_tiny_patch16_224"), tmp_path / "deit.safetensors"))
    shape = (7, 1, 128)
    system = SeldSystem("m2m_ast_doa_tiny", {"pretrained": str(path)}, np.zeros(shape), np.ones(shape))
    deit = read_state_dict(path)
    torch.testing.assert_close(system.net.blocks[3].attn.qkv.weight, deit["blocks.3.attn.qkv.weight"])
    state = system.state_dict()
    path.unlink()
    rebuilt = build_system("m2m_ast_doa_tiny", system.model_args, state)
    assert rebuilt.model_args["pretrained"] == str(path), "the checkpoint records where it started from"
