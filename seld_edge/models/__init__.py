"""The model zoo (torch). ``create("seldnet")``; ``list_models()``; each model has a ModelCard."""

from seld_edge.models import einv2, ffmamba, glfer_net, m2m_ast, seldnet, stereo_rcnet  # noqa: F401  (registers)
from seld_edge.models._registry import (
    CompositeCard,
    ModelCard,
    create,
    list_models,
    model_card,
    network_card,
    register_composite,
    register_model,
    resolved_config,
)
from seld_edge.models.system import CompositeSystem, SeldSystem, Systems, build_system, new_system, system_metadata

__all__ = [
    "CompositeCard",
    "CompositeSystem",
    "ModelCard",
    "SeldSystem",
    "Systems",
    "build_system",
    "create",
    "list_models",
    "model_card",
    "network_card",
    "new_system",
    "register_composite",
    "register_model",
    "resolved_config",
    "system_metadata",
]
