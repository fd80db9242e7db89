"""The model zoo (torch). ``create("seldnet")``; ``list_models()``; each model has a ModelCard."""

from seld_edge.models import einv2, ffmamba, seldnet  # noqa: F401  (registers)
from seld_edge.models._registry import ModelCard, create, list_models, model_card, register_model, resolved_config
from seld_edge.models.system import SeldSystem

__all__ = ["ModelCard", "SeldSystem", "create", "list_models", "model_card", "register_model", "resolved_config"]
