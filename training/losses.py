"""Training losses of the zoo, each unit-tested on hand-made cases (tests/test_losses.py).

Shapes follow seld_edge.formats.labels: multi-ACCDOA output (B, T, 3 * A * C) with ADPIT targets
(B, T, 6, 1 + A, C) (A = 3 axes, or 4 with distance); track-wise sed (B, T, K, C) and doa (B, T, K, 3).
"""

from collections.abc import Mapping
from itertools import permutations

import torch
import torch.nn.functional as F

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

    sed (B, T, K, C) holds probabilities (after sigmoid), doa (B, T, K, 3); targets as
    seld_edge.formats.labels.encode_trackwise makes them (an empty track: all-zero class and direction).
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


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE counted where mask is 1 (e.g. DOA of active classes only), averaged over the mask's mass."""
    mask = mask.expand_as(target).to(prediction.dtype)
    return ((prediction - target) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)


def soft_f_loss(probabilities: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - soft F1 over the whole batch (M2M-AST's second SED stage): differentiable counts."""
    tp = (probabilities * target).sum()
    fp = (probabilities * (1.0 - target)).sum()
    fn = ((1.0 - probabilities) * target).sum()
    return 1.0 - 2.0 * tp / (2.0 * tp + fp + fn + eps)


def mspe(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean squared percentage error of distances on active events (Stereo-RCnet's distance loss)."""
    return masked_mse(prediction / (target + eps), torch.ones_like(target), mask)


def format_loss(
    output_format: str, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """The loss each output format trains with (the papers' choices; reference/models.md).

    multi_accdoa: ADPIT MSE. accdoa: MSE. trackwise: frame-level PIT 0.5 BCE + 0.5 MSE (EINV2).
    sed_doa: 0.3 BCE + 0.7 MSE on active classes only (GLFER-Net, FFMamba).
    """
    if output_format == "multi_accdoa":
        return adpit_loss(outputs["accdoa"], targets["adpit"])
    if output_format == "accdoa":
        return F.mse_loss(outputs["accdoa"], targets["accdoa"])
    if output_format == "trackwise":
        return trackwise_pit_loss(outputs["sed"], outputs["doa"], targets["sed"], targets["doa"])
    if output_format == "sed_doa":
        sed_target = targets["sed"]
        mask = sed_target.repeat(1, 1, 3)  # doa is [coordinate][class]: x block, y block, z block
        bce = F.binary_cross_entropy(outputs["sed"], sed_target)
        return 0.3 * bce + 0.7 * masked_mse(outputs["doa"], targets["doa"], mask)
    raise ValueError(f"no loss for output format {output_format!r}")
