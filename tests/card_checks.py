"""Checks that each model family's tests make of its cards: what its tiny scale changes, and that a
checkpoint made before a setting existed rebuilds as it was trained (``ModelCard.settings_added``)."""

import json
from typing import Any

import torch

from seld_edge.models import model_card
from seld_edge.models.system import SeldSystem, build_system
from training.checkpoint import load_weights


def tiny_changes(published: str, tiny: str) -> dict[str, tuple[Any, Any]]:
    """The settings the tiny card changes, each as (published value, tiny value)."""
    full, small = model_card(published).defaults, model_card(tiny).defaults
    changed = {key: (full[key], small[key]) for key in full if full[key] != small[key]}
    print(f"{published} -> {tiny}:", changed)
    return changed


def assert_rebuilds_as_trained(
    name: str, setting: str | tuple[str, ...], trained_args: dict[str, Any], features: torch.Tensor
) -> None:
    """A checkpoint of ``name`` trained with ``trained_args`` and made before ``setting`` (or each of several)
    existed (its stored settings lack it; its weights fit today's network too) rebuilds into the network
    that was trained."""
    settings = (setting,) if isinstance(setting, str) else setting
    stored = {**model_card(name).defaults, **trained_args}
    for key in settings:
        del stored[key]
    torch.manual_seed(0)
    trained = SeldSystem.unnormalised(name, **trained_args).eval()
    state = trained.state_dict()
    rebuilt = build_system(name, stored, state).eval()  # as training.checkpoint.load_checkpoint
    load_weights(rebuilt, state, "the old checkpoint", strict=True)
    as_json = json.dumps  # a tuple setting may come back as a list
    for key in settings:
        assert as_json(rebuilt.model_args[key]) == as_json(trained_args[key])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(features), trained(features))
