"""Losses on small hand-made cases: values worked out by hand, permutation invariance, losses by name,
their options and weights, and the schedule that switches them."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from seld_edge.errors import SeldEdgeError  # noqa: E402
from seld_edge.formats import Event, get_output_format  # noqa: E402
from seld_edge.formats.accdoa import adpit_to_multi_accdoa  # noqa: E402
from training.losses import (  # noqa: E402
    Loss,
    adpit_loss,
    loss_schedule,
    masked_mse,
    mspe,
    soft_f_loss,
    trackwise_pit_loss,
)


def encode_adpit(events, n, c, with_distance=False):
    return get_output_format("multi_accdoa", with_distance=with_distance).encode(events, n, c)["adpit"]


def encode_trackwise(events, n, c):
    targets = get_output_format("trackwise").encode(events, n, c)
    return targets["sed"], targets["doa"]


def adpit_batch(events, n_frames=2, classes=2, with_distance=False):
    target = encode_adpit(events, n_frames, classes, with_distance=with_distance)
    perfect = adpit_to_multi_accdoa(target)
    return torch.from_numpy(target)[None], torch.from_numpy(perfect)[None]


def test_adpit_single_event_by_hand():
    # One event, class 0, frame 0, straight ahead: target (1, 0, 0) on all three tracks. Zero output:
    # 3 of the 9 (track, axis) entries of class 0 are off by 1 -> 1/3 for that (frame, class);
    # 0 elsewhere. Mean over 2 frames x 2 classes = (1/3) / 4.
    target, _ = adpit_batch([Event(0, 0, 0, 0.0, 0.0)])
    loss = adpit_loss(torch.zeros(1, 2, 3 * 3 * 2), target)
    assert loss.item() == pytest.approx(1 / 12)


@pytest.mark.parametrize("with_distance", [False, True])
def test_adpit_is_zero_for_the_perfect_output_and_invariant_to_track_order(with_distance):
    events = [Event(0, 1, 0, 40.0, 0.0, 2.0), Event(0, 1, 1, -100.0, 20.0, 3.0), Event(1, 0, 0, 10.0, 5.0, 1.5)]
    target, perfect = adpit_batch(events, with_distance=with_distance)
    assert adpit_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-12)
    axes = 4 if with_distance else 3
    tracks = perfect.reshape(1, 2, 3, axes, 2)
    for order in ([1, 0, 2], [2, 1, 0], [1, 2, 0]):
        permuted = tracks[:, :, order].reshape(1, 2, -1)
        assert adpit_loss(permuted, target).item() == pytest.approx(0.0, abs=1e-12)
    noisy = perfect + 0.1 * torch.randn(perfect.shape, generator=torch.Generator().manual_seed(0))
    noisy_permuted = noisy.reshape(1, 2, 3, axes, 2)[:, :, [2, 0, 1]].reshape(1, 2, -1)
    assert adpit_loss(noisy, target).item() == pytest.approx(adpit_loss(noisy_permuted, target).item(), rel=1e-6)


def test_trackwise_pit_permuted_target_gives_the_same_loss():
    events = [Event(0, 0, 0, 30.0, 0.0), Event(0, 2, 0, -60.0, 10.0), Event(1, 1, 0, 90.0, -5.0)]
    sed_t, doa_t = (torch.from_numpy(a)[None] for a in encode_trackwise(events, 2, 3))
    gen = torch.Generator().manual_seed(1)
    sed = torch.rand(sed_t.shape, generator=gen).clamp(0.05, 0.95)
    doa = torch.randn(doa_t.shape, generator=gen)
    order = [2, 0, 1]
    loss = trackwise_pit_loss(sed, doa, sed_t, doa_t)
    assert trackwise_pit_loss(sed, doa, sed_t[:, :, order], doa_t[:, :, order]).item() == pytest.approx(loss.item())
    perfect = trackwise_pit_loss(sed_t.clamp(1e-6, 1 - 1e-6), doa_t, sed_t[:, :, order], doa_t[:, :, order])
    assert perfect.item() < 1e-4 < loss.item()


def two_track_case(p0, p1, empty_track_doa):
    """One frame, one class, 2 tracks: track 0 active towards +x, track 1 empty. The output's track 0
    points to +x; its track 1 has the given direction."""
    sed_t = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1)
    doa_t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).reshape(1, 1, 2, 3)
    sed = torch.tensor([p0, p1]).reshape(1, 1, 2, 1)
    doa = torch.tensor([[1.0, 0.0, 0.0], empty_track_doa]).reshape(1, 1, 2, 3)
    return sed, doa, sed_t, doa_t


def test_trackwise_pit_counts_the_direction_of_empty_tracks_as_ein_seld():
    # Kept order: SED ln 2 (both tracks at 0.5), DOA = 0.6^2 / (2 tracks x 3 axes) = 0.06 from the EMPTY
    # track (EIN-SELD does not mask it). Swapped: DOA (1 + 1 + 0.36) / 6, larger, so the kept order wins.
    loss = trackwise_pit_loss(*two_track_case(0.5, 0.5, [0.0, 0.6, 0.0]))
    expected = 0.5 * math.log(2) + 0.5 * 0.06
    print(f"empty-track DOA counted: {loss.item():.6f}, by hand {expected:.6f}")
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_trackwise_pit_picks_the_order_by_the_unweighted_sum():
    # Kept order: SED (-ln 0.5 - ln 0.4) / 2 = 0.8047, DOA 0; swapped: SED (-ln 0.5 - ln 0.6) / 2 = 0.6020,
    # DOA (1 + 1) / 6 = 1/3. Unweighted sums 0.8047 < 0.9353: EIN-SELD keeps the order, and with
    # sed_weight 0.9 the loss is 0.9 * 0.8047 = 0.7242, although the swapped order would weigh in at only
    # 0.9 * 0.6020 + 0.1 / 3 = 0.5752.
    kept_sed = (math.log(2) - math.log(0.4)) / 2
    loss = trackwise_pit_loss(*two_track_case(0.5, 0.6, [0.0, 0.0, 0.0]), sed_weight=0.9)
    print(f"order by unweighted sum: {loss.item():.6f}, by hand {0.9 * kept_sed:.6f}")
    assert loss.item() == pytest.approx(0.9 * kept_sed, rel=1e-6)


def test_masked_mse_soft_f_and_mspe_by_hand():
    prediction = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # (A = 2 coordinates, C = 2 classes)
    target = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert masked_mse(prediction, target, mask).item() == pytest.approx((1.0 + 0.0) / 2)
    # "all": masked squared norms over coordinates, divided by the 2 classes: (1 + 0) / 2 per class column
    class_mask = torch.tensor([[1.0, 0.0]])  # class 0 active
    assert masked_mse(prediction, target, class_mask, "all").item() == pytest.approx((1.0 + 9.0) / 2)
    assert masked_mse(prediction, target, class_mask, "active").item() == pytest.approx((1.0 + 9.0) / 2)
    truth = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert soft_f_loss(truth, truth).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_f_loss(1.0 - truth, truth).item() == pytest.approx(1.0)
    # half-confident everywhere: tp 1, fp 1, fn 1 -> F = 2 / 4
    assert soft_f_loss(torch.full((4,), 0.5), truth).item() == pytest.approx(0.5)
    distance = torch.tensor([2.0, 4.0])
    assert mspe(2 * distance, distance, torch.ones(2), eps=0.0).item() == pytest.approx(1.0)
    assert mspe(distance, distance, torch.ones(2)).item() == pytest.approx(0.0, abs=1e-6)
    # one active of two: "active" averages over it, "all" over both positions
    assert mspe(2 * distance, distance, torch.tensor([1.0, 0.0]), eps=0.0).item() == pytest.approx(1.0)
    assert mspe(2 * distance, distance, torch.tensor([1.0, 0.0]), "all", eps=0.0).item() == pytest.approx(0.5)


def test_stereo_rcnet_loss_is_eqs_4_to_6_by_hand():
    """Stereo-RCnet: L = 1 x L_DOA + 2 x L_dist, L_DOA = 1/(CT) sum ||R - R_hat||^2 (eq. 4),
    L_dist = 1/(CT) sum ||a (d - d_hat) / d||^2 (eq. 5). One frame, two classes."""
    fmt = get_output_format("stereo_accdoa")
    # class 0 active at azimuth 0 (R = (1, 0)), 2 m; class 1 silent
    target = torch.from_numpy(fmt.encode([Event(0, 0, 0, 0.0, 0.0, 2.0)], 1, 2)["accdoa"])[None]
    output = torch.tensor([[[0.5, 0.2, 0.0, 0.3, 3.0, 1.0]]])  # x block, y block, distance block
    # eq. 4: class 0 ||(1,0) - (0.5,0)||^2 = 0.25, class 1 ||(0,0) - (0.2,0.3)||^2 = 0.13 -> /2 = 0.19
    # eq. 5: class 0 ((2 - 3) / 2)^2 = 0.25, class 1 inactive -> /2 = 0.125
    loss = Loss.from_spec(fmt, fmt.default_loss)
    assert loss.describe() == "1 mse + 2 mspe"
    assert loss({"accdoa": output}, {"accdoa": target}).item() == pytest.approx(0.19 + 2 * 0.125, rel=1e-3)


def test_glfer_loss_normalises_by_frames_times_classes():
    """GLFER-Net eqs. 8-10: 0.3 BCE + 0.7 (1/(T N)) sum over active ||doa - doa_hat||^2."""
    fmt = get_output_format("sed_doa")
    targets = {k: torch.from_numpy(v)[None] for k, v in fmt.encode([Event(0, 1, 0, 90.0, 0.0)], 2, 2).items()}
    sed = torch.full((1, 2, 2), 0.5)
    doa = torch.zeros(1, 2, 6)  # zero everywhere: the active (frame 0, class 1) is off by its unit vector
    spec = {"bce": 0.3, "masked_mse": {"weight": 0.7, "normaliser": "all"}}
    value = Loss.from_spec(fmt, spec)({"sed": sed, "doa": doa}, targets).item()
    assert value == pytest.approx(0.3 * np.log(2) + 0.7 * 1.0 / 4, rel=1e-5)
    # the format's default (FFMamba's): per active coordinate, as before: 1 / 3
    default = Loss.from_spec(fmt, fmt.default_loss)({"sed": sed, "doa": doa}, targets).item()
    assert default == pytest.approx(0.3 * np.log(2) + 0.7 / 3, rel=1e-5)


def test_masked_mse_axis_weights_scale_each_coordinate():
    """An event at azimuth 90, elevation 30 against a zero output: squared errors x 0, y 0.75, z 0.25."""
    fmt = get_output_format("sed_doa")
    targets = {k: torch.from_numpy(v)[None] for k, v in fmt.encode([Event(0, 1, 0, 90.0, 30.0)], 2, 2).items()}
    outputs = {"sed": torch.full((1, 2, 2), 0.5), "doa": torch.zeros(1, 2, 6)}
    plain = Loss.from_spec(fmt, "masked_mse")(outputs, targets).item()
    assert plain == pytest.approx((0.75 + 0.25) / 3, rel=1e-5)  # averaged over the active pair's 3 coordinates
    weighted = Loss.from_spec(fmt, {"masked_mse": {"axis_weights": [1, 1, 2]}})(outputs, targets).item()
    assert weighted == pytest.approx((0.75 + 2 * 0.25) / 3, rel=1e-5)
    same = Loss.from_spec(fmt, {"masked_mse": {"axis_weights": [1, 1, 1]}})(outputs, targets).item()
    assert same == pytest.approx(plain, rel=1e-6)
    with pytest.raises(SeldEdgeError, match="2 axis_weights for 3 coordinates"):
        Loss.from_spec(fmt, {"masked_mse": {"axis_weights": [1, 2]}})(outputs, targets)


def test_loss_specs_are_checked_by_name_option_and_weight():
    fmt = get_output_format("sed_doa")
    for spec, message in (
        ({"bcee": 1}, "did you mean bce"),
        ({"masked_mse": {"normalizer": "all"}}, "did you mean normaliser"),
        ({"masked_mse": {"normaliser": "some"}}, "unknown masked_mse normaliser 'some'"),
        ({"bce": "heavy"}, "weight must be a number"),
        ({"masked_mse": {"axis_weights": 2}}, "axis_weights must be list"),
        ({"masked_mse": {"axis_weights": [1, -1, 2]}}, "axis_weights must be numbers >= 0"),
        ([], "loss must be a loss name or a mapping"),
    ):
        with pytest.raises(SeldEdgeError, match=message):
            Loss.from_spec(fmt, spec)
    with pytest.raises(SeldEdgeError, match="mspe needs distances"):
        Loss.from_spec(fmt, "mspe")({"sed": torch.zeros(1, 1, 1), "doa": torch.zeros(1, 1, 3)},
                                    {"sed": torch.zeros(1, 1, 1), "doa": torch.zeros(1, 1, 3)})  # fmt: skip


def config(**values):
    return SimpleNamespace(**{"loss": None, "loss_weights": {}, "loss_schedule": {}, **values})


def test_loss_schedule_switches_at_an_epoch_or_a_fraction():
    fmt = get_output_format("sed")
    schedule = loss_schedule(fmt, config(loss="bce", loss_schedule={3: "soft_f"}))
    assert [schedule.at(e, 10).describe() for e in range(5)] == ["1 bce"] * 2 + ["1 soft_f"] * 3
    halfway = loss_schedule(fmt, config(loss_schedule={0.5: {"soft_f": 1.0}}))
    assert [halfway.at(e, 6).describe() for e in range(6)] == ["1 bce"] * 3 + ["1 soft_f"] * 3
    assert halfway.at(4, 10).describe() == "1 bce"  # re-planned to 10 epochs: halfway moved
    with pytest.raises(SeldEdgeError, match="an epoch"):
        loss_schedule(fmt, config(loss_schedule={1.5: "soft_f"}))


def test_loss_weights_reweight_the_terms_they_name():
    fmt = get_output_format("sed_doa")
    assert loss_schedule(fmt, config(loss_weights={"bce": 0.5})).first.describe() == "0.5 bce + 0.7 masked_mse"
    with pytest.raises(SeldEdgeError, match="'mse' is not a term"):
        loss_schedule(fmt, config(loss_weights={"mse": 1.0}))


def test_adpit_matches_the_baseline_shape_contract():
    target = torch.from_numpy(encode_adpit([], 5, 13, with_distance=True))[None]
    assert tuple(target.shape) == (1, 5, 6, 5, 13)
    assert adpit_loss(torch.zeros(1, 5, 156), target).item() == 0.0
    assert np.isfinite(adpit_loss(torch.ones(1, 5, 156), target).item())
