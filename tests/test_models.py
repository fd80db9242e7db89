"""The model registry and every registered model: shapes, parameter counts, gradients, no NaNs."""

import pytest

torch = pytest.importorskip("torch")

from seld_edge.errors import SeldEdgeError  # noqa: E402
from seld_edge.formats.labels import get_output_format  # noqa: E402
from seld_edge.models import create, list_models, model_card, resolved_config  # noqa: E402


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("with_distance", "published"), [(False, 0.737e6), (True, 0.742e6)])
def test_seldnet_has_the_published_size(with_distance, published):
    count = n_params(create("seldnet", with_distance=with_distance))
    print(f"seldnet with_distance={with_distance}: {count} parameters")
    assert abs(count - published) / published < 0.01


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_and_every_parameter_gets_a_gradient(name):
    card = model_card(name)
    config = card.feature_config()
    model = create(name)
    features = torch.randn(2, config.out_channels, 50, config.n_bins)
    out = model(features)
    assert torch.isfinite(out).all()
    assert out.shape[:2] == (2, 10), "one output frame per 100 ms label (5 feature frames)"
    get_output_format(card.output_format)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_seldnet_batch_items_are_independent_in_eval_mode():
    model = create("seldnet").eval()
    features = torch.randn(3, 7, 50, 64)
    with torch.no_grad():
        batched = model(features)
        single = model(features[1:2])
    torch.testing.assert_close(batched[1:2], single, rtol=1e-4, atol=1e-5)


def test_unknown_names_and_settings_get_suggestions():
    with pytest.raises(SeldEdgeError, match="did you mean seldnet"):
        create("seldnt")
    with pytest.raises(SeldEdgeError, match=r"rnn_sise \(did you mean rnn_size\?\)"):
        resolved_config("seldnet", rnn_sise=64)
