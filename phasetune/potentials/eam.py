"""Embedded-atom (Finnis–Sinclair form) potential, batched, with forces and stress.

    U = Σ_{i<j} φ(r_ij) + Σ_i F(ρ_i),        ρ_i = Σ_{j≠i} ψ(r_ij),

with forces and stress from the derivative of U along each pair vector r_ij:

    ∂U/∂r_ij = [φ'(r) + (F'(ρ_i) + F'(ρ_j)) ψ'(r)] r_ij / r,
    F_i = −∂U/∂x_i = Σ_j ∂U/∂r_ij,    stress_ab = (1/V) Σ_pairs (∂U/∂r_ij)_a (r_ij)_b.

Radial functions that also give their derivative (a ``value_and_derivative(x)`` method, as
Ti1's and the setfl tables' do) use that closed form; any other callable goes through one
autograd pass instead. The closed form is ≈ 2× faster on the CPU (no graph, and Ti1's pair
core, splice and knots are evaluated only for the pairs in their range; bench/RESULTS.md).

:func:`mendelev_ti1` is the Mendelev–Underwood–Ackland titanium potential "Ti1"
(J. Chem. Phys. 145, 154102 (2016)), the high-temperature version fitted to the hcp, bcc and
liquid phases; its analytic form and published coefficients are written out below. phasetune
uses it as an offline reference to generate titanium training data (``phasetune.ti_small``);
it is not trainable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch_sim.state import SimState

from phasetune.potentials.base import ModelBase, SwitchableOutputs
from phasetune.potentials.neighbors import VerletList

RadialFunction = Callable[[torch.Tensor], torch.Tensor]


class EmbeddedAtomModel(SwitchableOutputs, ModelBase):
    """Single-element EAM in the Finnis–Sinclair form (pair φ, density ψ, embedding F).

    Args:
        pair_eV: φ(r) in eV for r in Å (zero beyond ``cutoff_A``).
        density: ψ(r), dimensionless (zero beyond ``cutoff_A``).
        embedding_eV: F(ρ) in eV.
        cutoff_A: the larger of the ranges of φ and ψ, in Å.
        skin_A: Verlet-list skin in Å.
    """

    def __init__(
        self,
        *,
        pair_eV: RadialFunction,
        density: RadialFunction,
        embedding_eV: RadialFunction,
        cutoff_A: float,
        skin_A: float = 0.4,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(device=device, dtype=dtype)
        self.pair, self.density, self.embedding = pair_eV, density, embedding_eV
        self.cutoff = float(cutoff_A)
        self.neighbors = VerletList(self.cutoff, skin_A)

    def extra_repr(self) -> str:
        # the radial functions by name (plain callables hold no tensors): model_fingerprint
        names = (_callable_name(f) for f in (self.pair, self.density, self.embedding))
        return "pair={}, density={}, embedding={}, cutoff_A={:g}".format(*names, self.cutoff)

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        """Energy [S] (eV), forces [N, 3] (eV/Å), stress [S, 3, 3] (eV/Å³)."""
        positions = state.positions.to(self._dtype).detach()
        row_cell = state.row_vector_cell.to(self._dtype).detach()
        system_idx = state.system_idx
        n_systems, n_atoms = row_cell.shape[0], positions.shape[0]
        pairs = self.neighbors.pair_vectors(positions, row_cell, system_idx)
        closed_form = all(
            hasattr(f, "value_and_derivative") for f in (self.pair, self.density, self.embedding)
        )
        energy_and_grad = self._closed_form if closed_form else self._autograd
        energy, grad = energy_and_grad(pairs, n_atoms, n_systems, system_idx)
        vectors = pairs.vectors.detach()
        forces = torch.zeros_like(positions)
        forces.index_add_(0, pairs.i, grad)
        forces.index_add_(0, pairs.j, -grad)
        virial = torch.zeros(n_systems, 3, 3, dtype=grad.dtype, device=grad.device)
        virial.index_add_(0, pairs.system, grad.unsqueeze(-1) * vectors.unsqueeze(-2))
        volume = torch.linalg.det(row_cell).abs()
        return {
            "energy": energy.detach(),
            "forces": forces,
            "stress": virial / volume[:, None, None],
        }

    def _closed_form(self, pairs, n_atoms: int, n_systems: int, system_idx: torch.Tensor):
        """U per system and ∂U/∂r_ij per pair from the functions' own derivatives."""
        vectors = pairs.vectors.detach()
        r = vectors.norm(dim=-1)
        inside = r < self.cutoff
        r_safe = torch.where(inside, r, torch.full_like(r, self.cutoff))
        zero = torch.zeros_like(r)
        phi, dphi = self.pair.value_and_derivative(r_safe)
        psi, dpsi = self.density.value_and_derivative(r_safe)
        phi, dphi = torch.where(inside, phi, zero), torch.where(inside, dphi, zero)
        psi, dpsi = torch.where(inside, psi, zero), torch.where(inside, dpsi, zero)
        rho = torch.zeros(n_atoms, dtype=r.dtype, device=r.device)
        rho = rho.index_add(0, pairs.i, psi).index_add(0, pairs.j, psi)
        embedding, d_embedding = self.embedding.value_and_derivative(rho)
        energy = torch.zeros(n_systems, dtype=r.dtype, device=r.device)
        energy = energy.index_add(0, pairs.system, phi).index_add(0, system_idx, embedding)
        d_energy_dr = dphi + (d_embedding[pairs.i] + d_embedding[pairs.j]) * dpsi
        return energy, (d_energy_dr / r).unsqueeze(-1) * vectors

    def _autograd(self, pairs, n_atoms: int, n_systems: int, system_idx: torch.Tensor):
        """The same through one autograd pass (radial functions without derivatives)."""
        vectors = pairs.vectors.detach().requires_grad_(True)
        with torch.enable_grad():
            r = vectors.norm(dim=-1)
            inside = r < self.cutoff
            r_safe = torch.where(inside, r, torch.full_like(r, self.cutoff))
            zero = torch.zeros_like(r)
            pair_energy = torch.where(inside, self.pair(r_safe), zero)
            psi = torch.where(inside, self.density(r_safe), zero)
            rho = torch.zeros(n_atoms, dtype=r.dtype, device=r.device)
            rho = rho.index_add(0, pairs.i, psi).index_add(0, pairs.j, psi)
            atom_energy = self.embedding(rho)
            energy = torch.zeros(n_systems, dtype=r.dtype, device=r.device)
            energy = energy.index_add(0, pairs.system, pair_energy).index_add(
                0, system_idx, atom_energy
            )
            (grad,) = torch.autograd.grad(energy.sum(), vectors)
        return energy.detach(), grad


# --------------------------------------------------------------------------------------
# Mendelev, Underwood & Ackland (2016), titanium "Ti1": coefficients as published with the
# potential (eV, Å). ψ: one quartic knot; φ: Biersack–Ziegler core, an exponential splice,
# then three knots with powers 4..8; F: −√ρ plus quartic knots, a polynomial above ρ = 50.

_TI1_DENSITY = (0.079483, 5.1)  # ψ(r) = a·exp(0.1 r)·(r − r_c)⁴ for r < r_c
_TI1_PAIR_KNOTS = (  # (knot r_k, coefficients of (r_k − r)^4 … (r_k − r)^8)
    (3.2, (-19.000009669827, 6.9503328169194, 10.141463034640, -23.622475018118,
           8.4715024861295)),
    (5.4, (0.042964815851604, -3.1925338689760, -0.86997411310845, -1.3418235164880,
           -0.093059971805003)),
    (6.9, (0.78873370228139, -2.0873451358068, 2.0860619467995, -0.92402710034568,
           0.15279931337437)),
)  # fmt: skip
_TI1_SPLICE = (10.378404275169, -8.2358378101067, 3.0636189315873, -0.58543836194351)
_TI1_EMBED_KNOTS = (  # (ρ_k, f_k): f_k (ρ − ρ_k)⁴ above ρ_k
    (18.0, 6.4458935128222e-06),
    (22.0, -4.6861183499214e-05),
    (26.0, 1.5881962673345e-04),
    (28.0, -3.3153247278010e-05),
    (30.0, -1.0727500853945e-04),
)
_TI1_EMBED_HIGH = (50.0, (-1.3533741622097, 0.59660537422044, 0.014665711508917,
                          -6.9056785356062e-04, 3.5388769339836e-05))  # fmt: skip
# Biersack–Ziegler screened Coulomb for Z = 22 (prefactor Z²e²/4πε₀ in eV·Å, screening 1/Å)
_TI_BZ_PREFACTOR = 6969.4830017999
_BZ_WEIGHTS = (0.1818, 0.5099, 0.2802, 0.02817)
_TI_BZ_DECAYS = (27.066765729847, 7.9703166710110, 3.4078749726736, 1.7052062409804)

TI1_CUTOFF_A = 6.9
TI1_HCP_LATTICE_A = 2.94653381137745  # the hcp a given with the published potential


def _ti1_density_value(r: torch.Tensor) -> torch.Tensor:
    a, r_c = _TI1_DENSITY
    return torch.where(r < r_c, a * torch.exp(0.1 * r) * (r - r_c) ** 4, torch.zeros_like(r))


def _ti1_pair_value(r: torch.Tensor) -> torch.Tensor:
    core_r = r.clamp(min=0.1)
    core = (
        _TI_BZ_PREFACTOR
        / core_r
        * sum(w * torch.exp(-k * core_r) for w, k in zip(_BZ_WEIGHTS, _TI_BZ_DECAYS, strict=True))
    )
    s0, s1, s2, s3 = _TI1_SPLICE
    splice = torch.exp(s0 + s1 * r + s2 * r**2 + s3 * r**3)
    knots = torch.zeros_like(r)
    for r_k, coefficients in _TI1_PAIR_KNOTS:
        x = (r_k - r).clamp(min=0.0)
        knots = knots + sum(c * x ** (4 + n) for n, c in enumerate(coefficients))
    return torch.where(r < 1.0, core, torch.where(r < 2.3, splice, knots))


def _ti1_embedding_value(rho: torch.Tensor) -> torch.Tensor:
    rho_pos = rho.clamp(min=1e-12)
    low = -torch.sqrt(rho_pos) + sum(f * (rho - c).clamp(min=0.0) ** 4 for c, f in _TI1_EMBED_KNOTS)
    c6, coefficients = _TI1_EMBED_HIGH
    x = rho - c6
    high = sum(c * x**n for n, c in enumerate(coefficients))
    return torch.where(rho > c6, high, low)


def _callable_name(f) -> str:
    """``module.qualname`` of a function, or of an object's class (a radial function)."""
    if isinstance(f, torch.nn.Module):
        return type(f).__qualname__
    named = f if hasattr(f, "__qualname__") else type(f)
    return f"{named.__module__}.{named.__qualname__}"


class _RadialWithDerivative:
    """f(x), the published form term by term (what the setfl tables are written from), and
    through :meth:`value_and_derivative` (f(x), f'(x)) in a cheaper closed form used in MD
    (Horner sums; equal to f to rounding, checked in tests/unit/potentials/test_eam.py)."""

    def __init__(self, value: RadialFunction) -> None:
        self._value = value

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._value(x)

    def value_and_derivative(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def _powers_4_to_8(x: torch.Tensor, c) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_n c_n x^(4+n) and its derivative Σ_n (4+n) c_n x^(3+n), n = 0..4 (Horner)."""
    c0, c1, c2, c3, c4 = c
    x3 = x * x * x
    value = x3 * x * (c0 + x * (c1 + x * (c2 + x * (c3 + x * c4))))
    slope = x3 * (4 * c0 + x * (5 * c1 + x * (6 * c2 + x * (7 * c3 + x * 8 * c4))))
    return value, slope


class _Ti1Density(_RadialWithDerivative):
    """ψ(r) = a·exp(0.1 r)·(r − r_c)⁴ for r < r_c (else 0), so
    ψ'(r) = a·exp(0.1 r)·[0.1 (r − r_c)⁴ + 4 (r − r_c)³]."""

    def value_and_derivative(self, r):
        a, r_c = _TI1_DENSITY
        x = (r - r_c).clamp(max=0.0)
        scale = a * torch.exp(0.1 * r)
        x3 = x * x * x
        return scale * x3 * x, scale * x3 * (0.1 * x + 4.0)


class _Ti1Pair(_RadialWithDerivative):
    """φ(r): Biersack–Ziegler below 1 Å, the exponential splice to 2.3 Å, the knots above.

    The core and the splice are evaluated only for the pairs closer than 2.3 Å (in MD
    practically none), the knots for the others.
    """

    def value_and_derivative(self, r):
        value, slope = torch.zeros_like(r), torch.zeros_like(r)
        for r_k, coefficients in _TI1_PAIR_KNOTS:
            v, d = _powers_4_to_8((r_k - r).clamp(min=0.0), coefficients)
            value, slope = value + v, slope - d  # d/dr of (r_k − r)^n
        close = r < 2.3
        if bool(close.any()):
            where = close.nonzero().squeeze(-1)
            v, d = self._close(r[where])
            value, slope = value.index_put((where,), v), slope.index_put((where,), d)
        return value, slope

    @staticmethod
    def _close(r):
        core_r = r.clamp(min=0.1)
        decays = _TI_BZ_DECAYS
        terms = [w * torch.exp(-k * core_r) for w, k in zip(_BZ_WEIGHTS, decays, strict=True)]
        screening = sum(terms)
        d_screening = -sum(k * t for k, t in zip(decays, terms, strict=True))
        core = _TI_BZ_PREFACTOR / core_r * screening
        d_core = torch.where(
            r > 0.1, _TI_BZ_PREFACTOR / core_r * d_screening - core / core_r, torch.zeros_like(r)
        )
        s0, s1, s2, s3 = _TI1_SPLICE
        splice = torch.exp(s0 + r * (s1 + r * (s2 + r * s3)))
        d_splice = splice * (s1 + r * (2 * s2 + r * 3 * s3))
        inner = r < 1.0
        return torch.where(inner, core, splice), torch.where(inner, d_core, d_splice)


class _Ti1Embedding(_RadialWithDerivative):
    """F(ρ) = −√ρ + Σ_k f_k (ρ − ρ_k)₊⁴ up to ρ = 50, a quartic polynomial in ρ − 50 above."""

    def value_and_derivative(self, rho):
        rho_pos = rho.clamp(min=1e-12)
        root = torch.sqrt(rho_pos)
        low = -root
        d_low = torch.where(rho > 1e-12, -0.5 / root, torch.zeros_like(rho))
        for c, f in _TI1_EMBED_KNOTS:
            x = (rho - c).clamp(min=0.0)
            x3 = x * x * x
            low, d_low = low + f * x3 * x, d_low + 4 * f * x3
        c6, (h0, h1, h2, h3, h4) = _TI1_EMBED_HIGH
        x = rho - c6
        high = h0 + x * (h1 + x * (h2 + x * (h3 + x * h4)))
        d_high = h1 + x * (2 * h2 + x * (3 * h3 + x * 4 * h4))
        above = rho > c6
        return torch.where(above, high, low), torch.where(above, d_high, d_low)


_ti1_density = _Ti1Density(_ti1_density_value)
_ti1_pair = _Ti1Pair(_ti1_pair_value)
_ti1_embedding = _Ti1Embedding(_ti1_embedding_value)


def mendelev_ti1(
    *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64
) -> EmbeddedAtomModel:
    """The Mendelev–Underwood–Ackland (2016) Ti1 titanium EAM (cutoff 6.9 Å)."""
    return EmbeddedAtomModel(
        pair_eV=_ti1_pair,
        density=_ti1_density,
        embedding_eV=_ti1_embedding,
        cutoff_A=TI1_CUTOFF_A,
        device=device,
        dtype=dtype,
    )
