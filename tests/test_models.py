"""The model registry and every registered model: shapes, parameter counts, gradients, no NaNs."""

import pytest

torch = pytest.importorskip("torch")

from seld_edge.errors import SeldEdgeError  # noqa: E402
from seld_edge.formats import get_output_format  # noqa: E402
from seld_edge.models import create, model_card, resolved_config  # noqa: E402
from tests.conftest import zoo_under_test  # noqa: E402


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("with_distance", "published"), [(False, 0.737e6), (True, 0.742e6)])
def test_seldnet_has_the_published_size(with_distance, published):
    count = n_params(create("seldnet", with_distance=with_distance))
    print(f"seldnet with_distance={with_distance}: {count} parameters")
    assert abs(count - published) / published < 0.01


@pytest.mark.parametrize("name", zoo_under_test())
def test_every_model_runs_and_every_parameter_gets_a_gradient(name):
    card = model_card(name)
    config = card.feature_config()
    model = create(name)
    frames_per_label = config.frames_per_label(card.label_rate_hz)
    features = torch.randn(2, config.out_channels, 10 * frames_per_label, config.n_bins)
    out = model(features)
    outputs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
    assert len(outputs) == len(get_output_format(card.output_format).outputs)
    for tensor in outputs:
        assert torch.isfinite(tensor).all()
        assert tensor.shape[:2] == (2, 10), "one output frame per label frame"
    sum(t.square().mean() for t in outputs).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", zoo_under_test())
def test_batch_items_are_independent_in_eval_mode(name):
    card = model_card(name)
    config = card.feature_config()
    model = create(name).eval()
    features = torch.randn(3, config.out_channels, 10 * config.frames_per_label(card.label_rate_hz), config.n_bins)
    with torch.no_grad():
        batched = model(features)
        single = model(features[1:2])
    batched = (batched,) if isinstance(batched, torch.Tensor) else batched
    single = (single,) if isinstance(single, torch.Tensor) else single
    for b, s in zip(batched, single, strict=True):
        torch.testing.assert_close(b[1:2], s, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "published"), [("ffmamba", 2.66e6), ("vmamba_seld", 2.12e6)])
def test_mamba_models_have_the_documented_size(name, published):
    count = n_params(create(name))
    print(f"{name}: {count} parameters")
    assert abs(count - published) / published < 0.01


def test_unknown_names_and_settings_get_suggestions():
    with pytest.raises(SeldEdgeError, match="did you mean seldnet"):
        create("seldnt")
    with pytest.raises(SeldEdgeError, match=r"rnn_sise.; did you mean rnn_size\?"):
        resolved_config("seldnet", rnn_sise=64)
