"""Weight quantizers for quantized training: binary, ternary and k-bit uniform, per output channel.

Every quantizer maps a weight tensor ``w`` (output channel first: Conv2d ``[Cout, Cin/g, kh, kw]``,
Linear ``[out, in]``) to ``scale[c] * code``, with one float scale per output channel and integer
codes on a fixed grid:

============  =====  ===============  ===================================================================
scheme        bits   codes            scale per output channel ``c``
============  =====  ===============  ===================================================================
``binary``    1      {-1, +1}         ``alpha = mean|w_c|`` (the L2-optimal +-alpha; XNOR-Net, BWN)
``ternary``   2      {-1, 0, +1}      TWN (Li & Liu 2016, arXiv 1605.04711): threshold
                                      ``delta = 0.7 * mean|w_c|``, ``alpha = mean{|w| : |w| > delta}``
``uniform``   2..8   -q..q,           ``max|w_c| / q`` with ``q = 2**(bits-1) - 1`` (symmetric, no -2**(b-1)
                     q=2**(bits-1)-1  so the grid is symmetric; 8 bits -> [-127, 127], 2 bits -> [-1, 1])
============  =====  ===============  ===================================================================

Rounding onto the grid (Li et al. 2017, arXiv 1706.02379, section 3):
- **deterministic** ``Q_d``: nearest grid point (binary: ``+1 if w >= 0 else -1``; ternary: the TWN
  threshold ``|w| > delta``; uniform: round half to even, then clip);
- **stochastic** ``Q_s``: with ``v = w / scale`` clipped to the grid's range and ``lo <= v <= hi``
  its two neighbouring grid points, round up to ``hi`` with probability ``(v - lo) / (hi - lo)``
  and down otherwise. So ``E[Q_s(w)] = w`` for every ``w`` inside the range (unbiased) and the result
  is always one of the two neighbours. Binary's grid {-1, +1} has spacing 2, which makes this
  BinaryConnect's "hard sigmoid" stochastic binarization ``p(+1) = clip((v + 1) / 2, 0, 1)``.

Example:
    >>> q = make_quantizer(bits=1)                       # binary
    >>> w = torch.tensor([[0.5, -1.0, 0.25, -0.25]])
    >>> q.scale(w), q.codes(w, q.scale(w))
    (tensor([0.5000]), tensor([[ 1., -1.,  1., -1.]]))
    >>> q(w)                                             # scale * codes
    tensor([[ 0.5000, -0.5000,  0.5000, -0.5000]])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgec.errors import RecipeError

SCHEMES = ("binary", "ternary", "uniform")
TWN_THRESHOLD = 0.7  # TWN's delta = 0.7 * E|w| (approximately optimal for uniform/normal weights)
MAX_BITS = 8


def default_scheme(bits: int) -> str:
    """The scheme ``bits`` means when none is named: 1 binary, 2 ternary (TWN), 3..8 uniform.

    Example:
        >>> default_scheme(2)
        'ternary'
    """
    return "binary" if bits == 1 else "ternary" if bits == 2 else "uniform"


def make_quantizer(bits: int, scheme: str | None = None) -> Quantizer:
    """A validated :class:`Quantizer`; bad ``bits`` or ``scheme`` raise :class:`RecipeError`.

    Example:
        >>> make_quantizer(4).qmax, make_quantizer(2, "uniform").scheme
        (7, 'uniform')
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise RecipeError(f"quantize.bits={bits!r} is not a supported weight bit width",
                          hint="use 1 (binary), 2 (ternary), 3..7 (uniform) or 8 (INT8)")
    scheme = default_scheme(bits) if scheme is None else scheme
    if scheme not in SCHEMES:
        raise RecipeError(f"unknown weight quantization scheme {scheme!r}",
                          hint=f"use one of: {', '.join(SCHEMES)} (or leave it out to pick by bits)")
    needed = {"binary": (1,), "ternary": (2,), "uniform": tuple(range(2, MAX_BITS + 1))}[scheme]
    if bits not in needed:
        raise RecipeError(f"scheme {scheme!r} cannot use bits={bits}",
                          hint=f"{scheme} needs bits in {list(needed)}")
    return Quantizer(scheme=scheme, bits=bits)


def _per_channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[C]`` -> ``[C, 1, ..., 1]`` so it broadcasts against ``like`` (output channel first)."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def _reduce_dims(w: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, w.dim()))


@dataclass(frozen=True)
class Quantizer:
    """One weight quantizer (see the module docstring). Build it with :func:`make_quantizer`."""

    scheme: str
    bits: int

    @property
    def qmax(self) -> int:
        """Largest code: 1 for binary/ternary, ``2**(bits-1) - 1`` for uniform."""
        return 1 if self.scheme != "uniform" else 2 ** (self.bits - 1) - 1

    @property
    def step(self) -> int:
        """Spacing of the code grid: 2 for binary ({-1, +1}), else 1."""
        return 2 if self.scheme == "binary" else 1

    def threshold(self, w: torch.Tensor) -> torch.Tensor:
        """Ternary's per-channel TWN threshold ``0.7 * mean|w_c|`` ``[C]`` (zeros for other schemes)."""
        if self.scheme != "ternary":
            return torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        return TWN_THRESHOLD * w.detach().abs().mean(dim=_reduce_dims(w))

    def scale(self, w: torch.Tensor) -> torch.Tensor:
        """Per-output-channel scale ``[C]`` of ``w`` by this scheme's rule (module docstring)."""
        a = w.detach().abs()
        dims = _reduce_dims(w)
        if self.scheme == "binary":
            return a.mean(dim=dims)
        if self.scheme == "uniform":
            return a.amax(dim=dims) / self.qmax
        above = a > _per_channel(self.threshold(w), w)  # ternary: mean |w| over |w| > delta
        count = above.sum(dim=dims).clamp_min(1)
        return (a * above).sum(dim=dims) / count

    def codes(self, w: torch.Tensor, scale: torch.Tensor, *, stochastic: bool = False,
              threshold: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Integer codes of ``w`` on the grid of ``scale`` ``[C]``, as a float tensor shaped like ``w``.

        ``threshold`` (ternary, deterministic only) is in weight units ``[C]``; by default TWN's
        ``0.7 * mean|w_c|`` of ``w`` itself. ``stochastic`` draws from ``generator`` (default: torch's
        global generator, which :func:`edgec.train.fit` reseeds every epoch).
        """
        w = w.detach()
        s = _per_channel(scale.to(w.dtype), w)
        # A channel with scale 0 is all zeros (every rule gives 0 only then): its codes are 0
        # (binary: +1), and scale * code = 0 either way.
        v = w / torch.where(s > 0, s, torch.ones_like(s))
        lo, hi = (-1.0, 1.0) if self.scheme != "uniform" else (-float(self.qmax), float(self.qmax))
        if stochastic:
            return stochastic_round(v, lo, hi, self.step, generator)
        if self.scheme == "binary":
            return torch.where(v >= 0, 1.0, -1.0).to(w.dtype)
        if self.scheme == "ternary":
            t = self.threshold(w) if threshold is None else threshold.to(w.dtype)
            return torch.sign(w) * (w.abs() > _per_channel(t, w)).to(w.dtype)
        return torch.round(v).clamp(lo, hi)  # round half to even, like torch's fake_quantize

    def __call__(self, w: torch.Tensor, *, stochastic: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """``scale(w) * codes(w)``: quantize ``w`` with scales computed from ``w`` itself."""
        s = self.scale(w)
        return _per_channel(s, w) * self.codes(w, s, stochastic=stochastic, generator=generator)

    def describe(self) -> str:
        """E.g. ``'ternary (2-bit)'``."""
        return f"{self.scheme} ({self.bits}-bit)"


def stochastic_round(v: torch.Tensor, lo: float, hi: float, step: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Round ``v`` to the grid ``lo, lo + step, ..., hi`` stochastically and without bias.

    ``v`` is first clipped to ``[lo, hi]``; then with ``g`` the grid point just below it, the result is
    ``g + step`` with probability ``(v - g) / step`` and ``g`` otherwise, so ``E[result] = v``.

    Example:
        >>> torch.manual_seed(0); stochastic_round(torch.full((10000,), 0.25), -1, 1).mean()
        tensor(0.2478)
    """
    v = v.clamp(lo, hi)
    below = lo + step * torch.floor((v - lo) / step)
    p_up = (v - below) / step  # fractional distance to the grid point below, in [0, 1)
    u = torch.rand(v.shape, generator=generator, dtype=v.dtype, device=v.device)
    return torch.minimum(below + step * (u < p_up).to(v.dtype), torch.full_like(v, hi))


__all__ = ["MAX_BITS", "SCHEMES", "TWN_THRESHOLD", "Quantizer", "default_scheme", "make_quantizer",
           "stochastic_round"]
