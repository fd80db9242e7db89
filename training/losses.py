"""Training losses by name, combined with weights and switched by epoch (tests/test_losses.py).

A loss is a weighted sum of named terms, e.g. ``{"bce": 0.3, "masked_mse": 0.7}`` (GLFER-Net) or
``{"mse": 1, "mspe": {"weight": 2, "normaliser": "all"}}`` (Stereo-RCnet); a term's value is its weight
or a mapping of its weight and options. A model's output format names its default loss; the model
card overrides it with its paper's, and the config with ``loss=...`` (and ``loss_weights``). A
:class:`LossSchedule` switches to other terms from a given epoch (M2M-AST: BCE first, then soft-F).

Terms that work on any format read its :class:`seld_edge.formats.LossView` (activity, direction
vectors, distances): ``bce``, ``soft_f``, ``mse``, ``masked_mse``, ``mspe``. Two are bound to their
format's arrays: ``adpit_mse`` (multi-ACCDOA output, ADPIT targets) and ``trackwise_pit`` (EINV2's sed and
doa tracks). Shapes: multi-ACCDOA output (B, T, 3 * A * C) with ADPIT targets (B, T, 6, 1 + A, C) (A = 3
axes, or 4 with distance); track-wise sed (B, T, K, C) and doa (B, T, K, 3).

Normalisers of the masked terms: ``active`` averages over the active target elements (every coordinate
of every active class and frame), ``all`` sums the masked errors (squared norms over coordinates) and
divides by frames x classes, as GLFER-Net's eq. 9 and Stereo-RCnet's eqs. 4-5 are written.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import Any

import torch
import torch.nn.functional as F

from seld_edge.errors import SeldEdgeError, unknown_name
from seld_edge.formats import LossView, OutputFormat

Tensors = Mapping[str, torch.Tensor]
NORMALISERS = ("active", "all")

# ADPIT: the 13 ways to lay the 6 target slots (A0, B0, B1, C0, C1, C2) over 3 output tracks: A0 on
# every track, the 6 two-source arrangements of B0/B1, the 6 orders of C0/C1/C2 (Shimada et al. 2022).
_ADPIT_ARRANGEMENTS = (
    [(0, 0, 0)]
    + [(1, 1, 2), (1, 2, 1), (1, 2, 2), (2, 1, 1), (2, 1, 2), (2, 2, 1)]
    + [tuple(3 + i for i in p) for p in permutations(range(3))]
)


def adpit_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Auxiliary duplicating permutation invariant MSE (the DCASE 2022-2024 baseline's loss).

    Per frame and class the loss is the minimum over the 13 arrangements of the MSE between the 3
    output tracks and the arranged slot vectors (activity * direction[, distance]). As in the
    baseline, each arrangement's target is padded with the slots of the other polyphony groups
    (A/B/C) so that an inactive group never pulls an output towards zero it should not.
    """
    batch, frames, _, axes_plus_one, classes = target.shape
    axes = axes_plus_one - 1
    slots = target[:, :, :, :1] * target[:, :, :, 1:]  # (B, T, 6, A, C)
    output = output.reshape(batch, frames, 3, axes, classes)
    group_of = {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 2}
    first_of_group = ((0, 0, 0), (1, 1, 2), (3, 4, 5))
    group_targets = [slots[:, :, list(idx)] for idx in first_of_group]  # each (B, T, 3, A, C)
    losses = []
    for arrangement in _ADPIT_ARRANGEMENTS:
        group = group_of[arrangement[0]]
        arranged = slots[:, :, list(arrangement)]
        padding = sum(group_targets[g] for g in range(3) if g != group)
        losses.append(F.mse_loss(output, arranged + padding, reduction="none").mean(dim=(2, 3)))  # (B, T, C)
    return torch.stack(losses).min(dim=0).values.mean()


def trackwise_pit_loss(
    sed: torch.Tensor,
    doa: torch.Tensor,
    sed_target: torch.Tensor,
    doa_target: torch.Tensor,
    sed_weight: float = 0.5,
) -> torch.Tensor:
    """Frame-level permutation invariant training over the K! track orders (EINV2's tPIT), as EIN-SELD computes it.

    sed (B, T, K, C) holds probabilities (after sigmoid), doa (B, T, K, 3); targets as the trackwise
    format (seld_edge.formats.trackwise) encodes them (an empty track: all-zero class and direction).
    For each frame and track order, the SED term is the binary cross-entropy averaged over tracks and
    classes and the DOA term the squared error averaged over tracks and x, y, z. The DOA term is not
    masked by activity: an empty track is pulled to the zero vector. Each frame takes the order with the
    smallest unweighted sum SED + DOA; the loss is sed_weight * mean SED + (1 - sed_weight) * mean DOA
    of the chosen orders, means over batch and frames.

    This is the loss of Jinbo-Hu/DCASE2022-TASK3 (the conformer EINV2 the MFF-EINV2 paper builds on):
    code/methods/ein_seld/losses.py, Losses.tPIT (lines 31-74) and line 22 (loss_beta = 0.5 in
    configs/ein_seld/seld.yaml), with the per-frame reductions of code/methods/utils/loss_utilities.py
    lines 7-36 (MSELoss and BCEWithLogitsLoss, reduction 'PIT': mean over all dimensions after the
    frame axis). One difference: there the SED output is a logit (ConvConformer.py line 77 leaves
    out the sigmoid) and the loss is BCE-with-logits; here the model's sigmoid output goes through
    BCE, the same value except where float32 saturates (binary_cross_entropy clamps log at -100).
    """
    tracks = sed.shape[2]
    sed_terms, doa_terms = [], []
    for order in permutations(range(tracks)):
        sed_terms.append(F.binary_cross_entropy(sed, sed_target[:, :, list(order)], reduction="none").mean(dim=(2, 3)))
        doa_terms.append(F.mse_loss(doa, doa_target[:, :, list(order)], reduction="none").mean(dim=(2, 3)))
    sed_per_order, doa_per_order = torch.stack(sed_terms), torch.stack(doa_terms)  # (K!, B, T)
    best = (sed_per_order + doa_per_order).argmin(dim=0, keepdim=True)
    sed_loss = sed_per_order.gather(0, best).mean()
    doa_loss = doa_per_order.gather(0, best).mean()
    return sed_weight * sed_loss + (1.0 - sed_weight) * doa_loss


def masked_mse(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    normaliser: str = "active",
    axis_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Squared error counted where mask is 1 (e.g. DOA of active classes only).

    prediction and target are (..., A, C) with A coordinates on axis -2, mask broadcasts to them;
    ``active`` averages over the mask's elements, ``all`` divides the summed squared norms by the number
    of (frame, class) positions. ``axis_weights`` (one per coordinate) scales each coordinate's error.
    """
    mask = mask.expand_as(target).to(prediction.dtype)
    squared = (prediction - target) ** 2 * mask
    if axis_weights is not None:
        if len(axis_weights) != target.shape[-2]:
            raise SeldEdgeError(f"masked_mse: {len(axis_weights)} axis_weights for {target.shape[-2]} coordinates")
        squared = squared * torch.tensor(axis_weights, dtype=squared.dtype, device=squared.device)[:, None]
    if normaliser == "active":
        return squared.sum() / mask.sum().clamp_min(1.0)
    return squared.sum(dim=-2).mean()


def soft_f_loss(probabilities: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - soft F1 over the whole batch (M2M-AST's second SED stage): differentiable counts."""
    tp = (probabilities * target).sum()
    fp = (probabilities * (1.0 - target)).sum()
    fn = ((1.0 - probabilities) * target).sum()
    return 1.0 - 2.0 * tp / (2.0 * tp + fp + fn + eps)


def mspe(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, normaliser: str = "active", eps: float = 1e-3
) -> torch.Tensor:
    """Mean squared percentage error of distances (..., C) on active events (Stereo-RCnet's eq. 5):
    ((d - d_hat) / d)^2 where mask is 1. eps keeps an inactive zero distance from dividing by zero."""
    mask = mask.expand_as(target).to(prediction.dtype)
    relative = (target - prediction) / (target + eps) * mask
    if normaliser == "active":
        return (relative**2).sum() / mask.sum().clamp_min(1.0)
    return (relative**2).mean()


# --------------------------------------------------------------------------------------------------
# terms by name


def _view(fmt: OutputFormat, outputs: Tensors, targets: Tensors) -> LossView:
    return fmt.loss_view(outputs, targets)


def _activity(fmt: OutputFormat, outputs: Tensors, targets: Tensors, term: str) -> tuple[torch.Tensor, torch.Tensor]:
    view = _view(fmt, outputs, targets)
    if view.activity is None:
        raise SeldEdgeError(f"{term} needs class activity, which the {fmt.name} format does not predict")
    return view.activity


def _bce(fmt: OutputFormat, outputs: Tensors, targets: Tensors) -> torch.Tensor:
    return F.binary_cross_entropy(*_activity(fmt, outputs, targets, "bce"))


def _soft_f(fmt: OutputFormat, outputs: Tensors, targets: Tensors) -> torch.Tensor:
    return soft_f_loss(*_activity(fmt, outputs, targets, "soft_f"))


def _vectors(fmt: OutputFormat, outputs: Tensors, targets: Tensors, term: str) -> LossView:
    view = _view(fmt, outputs, targets)
    if view.vectors is None:
        raise SeldEdgeError(f"{term} needs direction vectors, which the {fmt.name} format does not predict")
    return view


def _mse(fmt: OutputFormat, outputs: Tensors, targets: Tensors) -> torch.Tensor:
    """Squared norm of the vector error averaged over frames x classes (Stereo-RCnet's eq. 4)."""
    prediction, target = _vectors(fmt, outputs, targets, "mse").vectors
    return ((prediction - target) ** 2).sum(dim=-2).mean()


def _masked_mse(
    fmt: OutputFormat,
    outputs: Tensors,
    targets: Tensors,
    normaliser: str = "active",
    axis_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    view = _vectors(fmt, outputs, targets, "masked_mse")
    return masked_mse(*view.vectors, view.active, normaliser, axis_weights)


def _mspe(fmt: OutputFormat, outputs: Tensors, targets: Tensors, normaliser: str = "active") -> torch.Tensor:
    view = _view(fmt, outputs, targets)
    if view.distance is None:
        raise SeldEdgeError(f"mspe needs distances, which the {fmt.name} format does not predict")
    return mspe(*view.distance, view.active[..., 0, :], normaliser)


def _adpit(fmt: OutputFormat, outputs: Tensors, targets: Tensors) -> torch.Tensor:
    if "adpit" not in targets:
        raise SeldEdgeError(f"adpit_mse needs ADPIT targets (the multi_accdoa format), not {fmt.name}'s")
    return adpit_loss(outputs["accdoa"], targets["adpit"])


def _trackwise(fmt: OutputFormat, outputs: Tensors, targets: Tensors, sed_weight: float = 0.5) -> torch.Tensor:
    if targets["sed"].ndim != 4:
        raise SeldEdgeError(f"trackwise_pit needs track-wise targets (the trackwise format), not {fmt.name}'s")
    return trackwise_pit_loss(outputs["sed"], outputs["doa"], targets["sed"], targets["doa"], sed_weight)


LOSS_TERMS: dict[str, Callable[..., torch.Tensor]] = {
    "adpit_mse": _adpit,
    "trackwise_pit": _trackwise,
    "bce": _bce,
    "soft_f": _soft_f,
    "mse": _mse,
    "masked_mse": _masked_mse,
    "mspe": _mspe,
}
_OPTIONS: dict[str, dict[str, tuple[type, ...]]] = {
    "masked_mse": {"normaliser": (str,), "axis_weights": (list,)},
    "mspe": {"normaliser": (str,)},
    "trackwise_pit": {"sed_weight": (int, float)},
}


@dataclass(frozen=True)
class Term:
    name: str
    weight: float
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Loss:
    """A weighted sum of named terms for one output format; call it with outputs and targets by name."""

    fmt: OutputFormat
    terms: tuple[Term, ...]

    @classmethod
    def from_spec(cls, fmt: OutputFormat, spec: Mapping[str, Any] | str) -> "Loss":
        """Terms from a spec (a term name, or name -> weight | {weight, options}); every name, option and
        weight is checked here, before any data is loaded."""
        if isinstance(spec, str):
            spec = {spec: 1.0}
        if not isinstance(spec, Mapping) or not spec:
            raise SeldEdgeError(f"loss must be a loss name or a mapping of names to weights, got {spec!r}")
        terms = []
        for name, value in spec.items():
            if name not in LOSS_TERMS:
                raise unknown_name("loss", str(name), LOSS_TERMS)
            options = dict(value) if isinstance(value, Mapping) else {"weight": value}
            weight = options.pop("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
                raise SeldEdgeError(f"loss {name}: weight must be a number, got {weight!r}")
            allowed = _OPTIONS.get(name, {})
            for key, option in options.items():
                if key not in allowed:
                    raise unknown_name(f"{name} option", key, ["weight", *allowed])
                if not isinstance(option, allowed[key]) or isinstance(option, bool):
                    raise SeldEdgeError(f"loss {name}: {key} must be {allowed[key][0].__name__}, got {option!r}")
                if key == "normaliser" and option not in NORMALISERS:
                    raise unknown_name(f"{name} normaliser", option, NORMALISERS)
                if key == "axis_weights" and not all(
                    isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                    for w in option
                ):
                    raise SeldEdgeError(f"loss {name}: axis_weights must be numbers >= 0, got {option!r}")
            terms.append(Term(name, float(weight), options))
        return cls(fmt, tuple(terms))

    def __call__(self, outputs: Tensors, targets: Tensors) -> torch.Tensor:
        return sum(
            term.weight * LOSS_TERMS[term.name](self.fmt, outputs, targets, **term.options) for term in self.terms
        )

    def describe(self) -> str:
        return " + ".join(f"{term.weight:g} {term.name}" for term in self.terms)


@dataclass(frozen=True)
class LossSchedule:
    """The loss of each epoch: ``first`` until the first switch, then each switch's loss from its epoch on.

    Switch points are epochs counted from 1, or fractions of the planned epochs in (0, 1) (a 10-minute
    run re-plans its epochs, and "halfway" stays halfway).
    """

    first: Loss
    switches: tuple[tuple[float, Loss], ...] = ()

    def at(self, epoch: int, total_epochs: int) -> Loss:
        """The loss of 0-based ``epoch`` of ``total_epochs``."""
        current = self.first
        for point, loss in self.switches:
            start = math.floor(point * total_epochs) if point < 1 else int(point) - 1
            if epoch >= start:
                current = loss
        return current


def _switch_point(at: Any) -> float:
    try:
        point = float(at)
    except (TypeError, ValueError):
        raise SeldEdgeError(f"loss_schedule: {at!r} is not an epoch number or a fraction of the epochs") from None
    if not (0 < point < 1 or (point >= 1 and point == int(point))):
        raise SeldEdgeError(f"loss_schedule: {at!r} must be an epoch (1, 2, ...) or a fraction in (0, 1)")
    return point


def loss_schedule(fmt: OutputFormat, config: Any) -> LossSchedule:
    """The losses a training config asks for: ``config.loss`` (the output format's default when None),
    its terms re-weighted by ``config.loss_weights``, switched by ``config.loss_schedule``."""
    spec = fmt.default_loss if config.loss is None else config.loss
    spec = {spec: 1.0} if isinstance(spec, str) else dict(spec)
    for name, weight in config.loss_weights.items():
        if name not in spec:
            raise SeldEdgeError(f"loss_weights: {name!r} is not a term of the loss ({', '.join(spec)})")
        spec[name] = {**spec[name], "weight": weight} if isinstance(spec[name], Mapping) else weight
    switches = sorted(
        ((_switch_point(at), Loss.from_spec(fmt, later)) for at, later in config.loss_schedule.items()),
        key=lambda switch: switch[0],
    )
    return LossSchedule(Loss.from_spec(fmt, spec), tuple(switches))
