"""The blocks of FFMamba: the db4 DWT against PyWavelets, cross-scan/merge, WTED and MSF."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pywt = pytest.importorskip("pywt")

from seld_edge.models.blocks.msf import MSF  # noqa: E402
from seld_edge.models.blocks.ss2d import cross_merge, cross_scan  # noqa: E402
from seld_edge.models.blocks.wavelet import DB4_DEC_HI, DB4_DEC_LO, WTED, DWT2d  # noqa: E402


def test_db4_filters_are_pywavelets():
    wavelet = pywt.Wavelet("db4")
    np.testing.assert_allclose(DB4_DEC_LO, wavelet.dec_lo, rtol=0, atol=1e-15)
    np.testing.assert_allclose(DB4_DEC_HI, wavelet.dec_hi, rtol=0, atol=1e-15)


@pytest.mark.parametrize("shape", [(16, 32), (25, 17), (9, 8)])
def test_dwt_matches_pywt_dwt2_in_zero_mode(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *shape))
    ours = DWT2d(3)(torch.from_numpy(x).float()).numpy()
    expected_size = tuple((n + 7) // 2 for n in shape)
    assert ours.shape == (2, 12, *expected_size)
    worst = 0.0
    for b in range(2):
        for c in range(3):
            ll, (lh, hl, hh) = pywt.dwt2(x[b, c], "db4", mode="zero")
            for i, band in enumerate((ll, lh, hl, hh)):
                worst = max(worst, float(np.abs(ours[b, 4 * c + i] - band).max()))
    print(f"DWT vs pywt.dwt2 {shape}: max abs error {worst:.2e}")
    assert worst <= 1e-5


def test_cross_merge_puts_every_direction_back_in_place():
    x = torch.randn(2, 3, 5, 4)
    xs = cross_scan(x)
    assert xs.shape == (2, 4, 3, 20)
    torch.testing.assert_close(xs[:, 1], x.transpose(2, 3).flatten(2))  # column-major: time fastest
    torch.testing.assert_close(cross_merge(xs, 5, 4), 4 * x)


def test_wted_halves_the_map_and_its_branch_weights_sum_to_one():
    block = WTED(8, 16)
    with torch.no_grad():
        block.fusion_logits.normal_()
    out = block(torch.randn(2, 8, 24, 16))
    assert out.shape == (2, 16, 12, 8)
    torch.testing.assert_close(block.fusion_logits.softmax(0).sum(0), torch.ones(16, 1, 1))
    assert not any(name.endswith("dwt.weight") for name in block.state_dict()), "fixed filters are not saved"


def test_msf_keeps_the_shape_and_refuses_channels_its_groups_do_not_divide():
    assert MSF(64, groups=32)(torch.randn(2, 64, 10, 6)).shape == (2, 64, 10, 6)
    with pytest.raises(ValueError, match="divisible"):
        MSF(48, groups=32)


def test_msf_local_conv_as_one_grouped_convolution_is_the_conv_on_each_group():
    """MSF runs its C/G-channel 3x3 conv on every group as one grouped convolution of the repeated kernel;
    the definition stacks the groups as a batch."""
    block = MSF(64, groups=32)
    x = torch.randn(2, 64, 10, 6)
    with torch.no_grad():
        grouped = block._local_conv(x)
        by_group = block.local_conv(x.reshape(2 * 32, 2, 10, 6)).reshape(2, 64, 10, 6)
    error = float((grouped - by_group).abs().max())
    print(f"grouped vs per-group conv: max abs error {error:.1e}")
    assert error <= 1e-5
