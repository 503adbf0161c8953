"""The weight quantizers: hand-computed grids and scales, unbiased stochastic rounding, bad settings."""

from __future__ import annotations

import pytest
import torch

from edgec.compress.quantizers import make_quantizer, stochastic_round
from edgec.errors import RecipeError


def test_binary_scale_is_mean_abs_per_output_channel_and_codes_are_signs():
    q = make_quantizer(1)
    w = torch.tensor([[0.5, -1.0, 0.25, -0.25],
                      [2.0, -2.0, 0.0, 0.0]])
    scale = q.scale(w)
    assert scale.tolist() == [0.5, 1.0]                     # (0.5+1+0.25+0.25)/4, (2+2)/4
    assert q.codes(w, scale).tolist() == [[1, -1, 1, -1], [1, -1, 1, 1]]  # sign, 0 -> +1
    assert torch.equal(q(w), torch.tensor([[0.5, -0.5, 0.5, -0.5], [1.0, -1.0, 1.0, 1.0]]))


def test_ternary_uses_the_twn_threshold_and_scale():
    q = make_quantizer(2)
    assert q.scheme == "ternary"
    w = torch.tensor([[0.1, -0.9, 0.5, 0.0, 1.0]])
    # mean|w| = 2.5 / 5 = 0.5 -> delta = 0.7 * 0.5 = 0.35; |w| > 0.35: -0.9, 0.5, 1.0 -> alpha = 0.8
    assert q.threshold(w).tolist() == pytest.approx([0.35])
    assert q.scale(w).tolist() == pytest.approx([0.8])
    assert q.codes(w, q.scale(w)).tolist() == [[0, -1, 1, 0, 1]]
    assert torch.allclose(q(w), torch.tensor([[0.0, -0.8, 0.8, 0.0, 0.8]]))


def test_uniform_k_bit_grid_is_symmetric_per_channel():
    q3 = make_quantizer(3)
    assert (q3.scheme, q3.qmax) == ("uniform", 3)
    w = torch.tensor([[0.3, -0.2, 0.14, -0.3, 0.04],
                      [0.0, 0.6, -0.06, 0.35, 0.2]])
    scale = q3.scale(w)                                     # max|w_c| / 3
    assert scale.tolist() == pytest.approx([0.1, 0.2])
    assert q3.codes(w, scale).tolist() == [[3, -2, 1, -3, 0], [0, 3, 0, 2, 1]]
    assert make_quantizer(8).qmax == 127 and make_quantizer(2, "uniform").qmax == 1
    w8 = torch.randn(4, 50)
    codes = make_quantizer(8).codes(w8, make_quantizer(8).scale(w8))
    assert codes.abs().max() == 127 and torch.equal(codes, codes.round())


def test_zero_channel_quantizes_to_zero_without_nan():
    for bits in (1, 2, 4):
        q = make_quantizer(bits)
        w = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]])
        out = q(w)
        assert torch.isfinite(out).all() and out[0].abs().sum() == 0
        assert torch.isfinite(q(w, stochastic=True)).all()


@pytest.mark.parametrize("bits, scheme", [(1, None), (2, None), (3, None), (2, "uniform")])
def test_stochastic_rounding_is_unbiased_and_lands_on_neighbouring_grid_points(bits, scheme):
    q = make_quantizer(bits, scheme)
    scale = torch.tensor([0.5])
    lo, hi = -q.qmax * 0.5, q.qmax * 0.5
    # Multiples of 1/16 (exact in binary floating point) across the range, grid points included.
    w = (torch.arange(-8 * q.qmax, 8 * q.qmax + 1) * 0.0625).reshape(1, -1)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([q.codes(w, scale, stochastic=True, generator=gen) for _ in range(4000)]) * 0.5
    # Only the two grid points around each w ever appear (binary's grid is {-alpha, +alpha}).
    step = 0.5 * q.step
    below = lo + step * torch.floor((w - lo) / step)
    assert ((draws == below) | (draws == below + step)).all()
    # Unbiased: the mean of 4000 draws is w (std of a mean <= step / 2 / sqrt(4000) ~ 0.008 * step).
    assert torch.allclose(draws.mean(dim=0), w, atol=0.04 * step)
    # On a grid point it never moves.
    on_grid = w == below
    assert (draws[:, on_grid] == w[on_grid]).all()


def test_stochastic_round_probability_matches_the_fractional_distance():
    gen = torch.Generator().manual_seed(1)
    out = stochastic_round(torch.full((20000,), 2.3), -7, 7, generator=gen)
    assert set(out.unique().tolist()) == {2.0, 3.0}
    assert (out == 3.0).float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert stochastic_round(torch.tensor([9.0, -9.0]), -7, 7).tolist() == [7.0, -7.0]  # clipped


@pytest.mark.parametrize("bits, scheme, match", [
    (0, None, "bits=0"), (9, None, "bits=9"), (True, None, "bits=True"), ("4", None, "bits='4'"),
    (2, "quaternary", "unknown weight quantization scheme"), (2, "binary", "cannot use bits=2"),
    (3, "ternary", "cannot use bits=3"), (1, "uniform", "cannot use bits=1"),
])
def test_bad_bits_and_schemes_are_recipe_errors_with_a_hint(bits, scheme, match):
    with pytest.raises(RecipeError, match=match) as info:
        make_quantizer(bits, scheme)
    assert info.value.hint
