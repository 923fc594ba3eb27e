"""Tabulated EAM potentials in LAMMPS's setfl formats (``eam/alloy`` and ``eam/fs``).

Units: r in Å, energies in eV, the density ρ dimensionless, masses in amu.

File layout (numbers after line 5 may be spread over lines arbitrarily; they are read as
one stream, except that each element's header is a line of its own)::

    lines 1-3   comments
    line 4      N  El_1 ... El_N
    line 5      Nrho  drho  Nr  dr  cutoff
    per element α = 1..N:
                Z  mass  a  lattice          (atomic number, amu, Å, e.g. "hcp")
                F_α(ρ_k),  ρ_k = k·drho, k = 0..Nrho-1
                ψ_α(r_k),  r_k = k·dr,   k = 0..Nr-1     eam/alloy: one array
                ψ_αβ(r_k), β = 1..N                      eam/fs: N arrays
    then for α = 1..N, β = 1..α:  r_k·φ_αβ(r_k)  (eV·Å; φ = that / r)

For one element (all that phasetune uses for now) the energy is

    U = Σ_{i<j} φ(r_ij) + Σ_i F(ρ_i),    ρ_i = Σ_{j≠i} ψ(r_ij),    r_ij < cutoff.

(In eam/fs, array β of element α's block is the density an α atom puts at a β atom.)

Interpolation reproduces LAMMPS's ``PairEAM::interpolate()`` (pair_eam.cpp), so that energies
agree with LAMMPS's to rounding: on each grid interval a cubic Hermite polynomial in the
fraction p ∈ [0, 1], with node slopes from the fourth-order central difference
(f_{k-2} − f_{k+2} + 8 (f_{k+1} − f_{k-1}))/12 (second order at the two nodes next to each
end, one-sided at the ends); r beyond the last node gives the last node's value, and ρ beyond
(Nrho−1)·drho continues F linearly with its slope there. It is written here in torch (not
numpy or scipy) because forces and stress come from the tables' derivatives (the cubic's own,
:meth:`CubicTable.value_and_derivative`, equal to autograd through it) and torch has no 1-D
cubic spline in its API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from phasetune.potentials.eam import EmbeddedAtomModel, RadialFunction


@dataclass(frozen=True)
class SetflElement:
    """An element's header line: symbol, atomic number, mass (amu), lattice constant (Å)."""

    symbol: str
    atomic_number: int = 0
    mass_amu: float = 0.0
    lattice_A: float = 0.0
    lattice_type: str = "unknown"


@dataclass
class SetflTables:
    """The tables of a setfl file. ``density`` is [N, 1, Nr] (alloy) or [N, N, Nr] (fs);
    ``pair_r`` holds r·φ for α ≥ β in file order, [N(N+1)/2, Nr]."""

    kind: str
    elements: list[SetflElement]
    nrho: int
    drho: float
    nr: int
    dr: float
    cutoff_A: float
    embedding: np.ndarray
    density: np.ndarray
    pair_r: np.ndarray

    def write(self, path: str | Path, comments: tuple[str, str, str] = ("", "", "")) -> Path:
        """Write the tables as a setfl file (17 significant digits, 5 values a line)."""

        def block(values: np.ndarray) -> list[str]:
            text = [f"{v:.16e}" for v in np.asarray(values, dtype=np.float64)]
            return [" ".join(text[k : k + 5]) for k in range(0, len(text), 5)]

        lines = [c.replace("\n", " ") for c in comments]
        lines.append(f"{len(self.elements)} " + " ".join(e.symbol for e in self.elements))
        lines.append(f"{self.nrho} {self.drho!r} {self.nr} {self.dr!r} {self.cutoff_A!r}")
        for a, e in enumerate(self.elements):
            lines.append(f"{e.atomic_number} {e.mass_amu!r} {e.lattice_A!r} {e.lattice_type}")
            lines += block(self.embedding[a])
            for psi in self.density[a]:
                lines += block(psi)
        for z in self.pair_r:
            lines += block(z)
        path = Path(path)
        path.write_text("\n".join(lines) + "\n")
        return path


def write_setfl(
    path: str | Path,
    *,
    pair_eV: RadialFunction,
    density: RadialFunction,
    embedding_eV: RadialFunction,
    element: SetflElement,
    nrho: int,
    drho: float,
    nr: int,
    dr: float,
    cutoff_A: float,
    comment: str = "written by phasetune",
) -> Path:
    """Tabulate one element's analytic functions (torch callables) into a setfl file. r·φ at
    r = 0 is extrapolated linearly from the next two nodes (φ itself may diverge there)."""
    r = torch.arange(nr, dtype=torch.float64) * dr
    rho = torch.arange(nrho, dtype=torch.float64) * drho
    with torch.no_grad():
        z = (r * pair_eV(r)).numpy().copy()
        z[0] = 2 * z[1] - z[2]
        psi, f = density(r).numpy(), embedding_eV(rho).numpy()
    grid = (nrho, drho, nr, dr, cutoff_A)
    tables = SetflTables("alloy", [element], *grid, f[None], psi[None, None], z[None])
    return tables.write(path, (comment, "", ""))


_LAYOUT = "wrong Nrho or Nr, or eam/fs vs eam/alloy (kind=)?"


class _Stream:
    """The values after line 5 of a setfl file as one stream, with each one's line number."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        self.path, self.pos = path, 0
        split = [line.split() for line in lines]
        self.tokens = [t for words in split for t in words]
        self.line = np.repeat(np.arange(len(split)) + 6, [len(w) for w in split])

    def error(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: {what}")

    def header(self, what: str) -> list[str]:
        """The whole next line, which must start where the previous table ended."""
        at = self.pos
        if at >= len(self.tokens):
            raise self.error(f"file ends before {what}")
        if at > 0 and self.line[at - 1] == self.line[at]:
            raise self.error(f"{what} should start line {self.line[at]}: {_LAYOUT}")
        self.pos = int(np.searchsorted(self.line, self.line[at], side="right"))
        return self.tokens[at : self.pos]

    def numbers(self, n: int, what: str) -> np.ndarray:
        words = self.tokens[self.pos : self.pos + n]
        if len(words) < n:
            raise self.error(f"file ends after {len(words)} of the {n} values of {what}")
        values = np.empty(n)
        for k, word in enumerate(words):
            try:  # Fortran exponents (1.0D+00) too
                values[k] = float(word.replace("D", "E").replace("d", "e"))
            except ValueError:
                line = self.line[self.pos + k]
                raise self.error(
                    f"{what}: {word!r} on line {line} is no number; {_LAYOUT}"
                ) from None
        self.pos += n
        return values


def parse_setfl(path: str | Path, kind: str | None = None) -> SetflTables:
    """Read a setfl file. ``kind``: "alloy" or "fs"; None: "fs" for names ending in ".fs"."""
    path = Path(path)
    kind = kind or ("fs" if path.name.lower().endswith(".fs") else "alloy")
    if kind not in ("alloy", "fs"):
        raise ValueError(f"kind must be 'alloy' or 'fs', got {kind!r}")
    lines = path.read_text().splitlines()
    try:
        if len(lines) < 5:
            raise ValueError(f"only {len(lines)} lines")
        n_el, *symbols = lines[3].split() or ["?"]
        if int(n_el) < 1 or len(symbols) < int(n_el):
            raise ValueError(f"{n_el} elements but names {symbols}")
        symbols = symbols[: int(n_el)]
        nrho, drho, nr, dr, cutoff = lines[4].split()[:5]
        nrho, drho, nr, dr, cutoff = int(nrho), float(drho), int(nr), float(dr), float(cutoff)
        if min(nrho, nr) < 4 or min(drho, dr, cutoff) <= 0:
            raise ValueError("Nrho, Nr must be >= 4 and drho, dr, cutoff > 0")
    except ValueError as err:
        raise ValueError(f"{path}: lines 4-5 (N El...; Nrho drho Nr dr cutoff): {err}") from None
    stream = _Stream(path, lines[5:])
    elements, embedding, density = [], [], []
    for symbol in symbols:
        words = stream.header(f"the header line of {symbol} (Z mass a lattice)")
        try:
            z, mass = int(float(words[0])), float(words[1])
            lattice = float(words[2]) if len(words) > 2 else 0.0
        except (ValueError, IndexError):
            raise stream.error(f"{symbol}'s header 'Z mass a lattice' is {words}") from None
        lattice_type = words[3] if len(words) > 3 else "unknown"
        elements.append(SetflElement(symbol, z, mass, lattice, lattice_type))
        embedding.append(stream.numbers(nrho, f"F(rho) of {symbol}"))
        targets = symbols if kind == "fs" else [symbol]
        density.append([stream.numbers(nr, f"rho(r) of {symbol}->{t}") for t in targets])
    pairs = [(a, b) for i, a in enumerate(symbols) for b in symbols[: i + 1]]
    pair_r = [stream.numbers(nr, f"r*phi(r) of {a}-{b}") for a, b in pairs]
    if stream.pos < len(stream.tokens):
        other = "alloy" if kind == "fs" else "fs"
        raise stream.error(
            f"values left after the last table: {len(stream.tokens) - stream.pos} "
            f"(an eam/{other} file? pass kind='{other}')"
        )
    grid = (nrho, drho, nr, dr, cutoff)
    arrays = (np.array(embedding), np.array(density), np.array(pair_r))
    return SetflTables(kind, elements, *grid, *arrays)


class CubicTable(torch.nn.Module):
    """LAMMPS's EAM cubic on a uniform grid x_k = k·step (see the module docstring).

    ``linear_above``: beyond the last node continue linearly (F(ρ)), else stay constant.
    ``over_x``: return the cubic divided by x (φ = (r·φ)/r). ``to``: dtype and device.
    """

    def __init__(self, values, step: float, *, linear_above=False, over_x=False, **to) -> None:
        super().__init__()
        f = np.asarray(values, dtype=np.float64)
        n = len(f)
        if n < 4:
            raise ValueError(f"a cubic table needs at least 4 values, got {n}")
        d = np.empty(n)  # slope per grid step at each node
        d[0], d[-1] = f[1] - f[0], f[-1] - f[-2]
        d[1], d[-2] = 0.5 * (f[2] - f[0]), 0.5 * (f[-1] - f[-3])
        d[2:-2] = ((f[:-4] - f[4:]) + 8.0 * (f[3:-1] - f[1:-3])) / 12.0
        df = f[1:] - f[:-1]
        c2 = 3.0 * df - 2.0 * d[:-1] - d[1:]
        c3 = d[:-1] + d[1:] - 2.0 * df
        coefficients = np.stack([f[:-1], d[:-1], c2, c3], axis=-1)  # per interval, powers of p
        self.register_buffer("coefficients", torch.tensor(coefficients, **to))
        self.step, self.n, self.linear_above, self.over_x = float(step), n, linear_above, over_x
        self.end_slope = float(d[-1]) / self.step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The table's value (differentiable in x through the cubic)."""
        return self.value_and_derivative(x)[0]

    def value_and_derivative(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The table's value and its derivative in x, the cubic's own (what autograd gives)."""
        u = x * (1.0 / self.step)
        m = torch.floor(u).clamp(0, self.n - 2).long()
        offset = u - m.to(u.dtype)
        p = offset.clamp(max=1.0)
        c = self.coefficients[m]
        y = ((c[..., 3] * p + c[..., 2]) * p + c[..., 1]) * p + c[..., 0]
        slope = ((3.0 * c[..., 3] * p + 2.0 * c[..., 2]) * p + c[..., 1]) / self.step
        inside = offset <= 1.0  # beyond the last node the cubic is held at p = 1
        slope = torch.where(inside, slope, torch.zeros_like(slope))
        if self.linear_above:
            y = y + self.end_slope * (x - (self.n - 1) * self.step).clamp(min=0.0)
            slope = torch.where(inside, slope, self.end_slope)
        if self.over_x:
            y = y / x
            slope = (slope - y) / x
        return y, slope


def read_setfl(
    path: str | Path,
    *,
    element: str | None = None,
    kind: str | None = None,
    skin_A: float = 0.4,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float64,
) -> EmbeddedAtomModel:
    """One element of a LAMMPS eam/alloy or eam/fs file as an :class:`EmbeddedAtomModel`.

    Args:
        path: the setfl file.
        element: its symbol in the file; None: the file's first element.
        kind: "alloy" or "fs"; None: "fs" for file names ending in ".fs", else "alloy".

    The element's header (mass in amu, lattice) is the model's ``setfl_element`` attribute.
    """
    if isinstance(dtype, str):
        dtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    tables = parse_setfl(path, kind)
    symbols = [e.symbol for e in tables.elements]
    if element is not None and element not in symbols:
        raise ValueError(f"{path}: no element {element!r} (it has {', '.join(symbols)})")
    a = 0 if element is None else symbols.index(element)
    kw = {"dtype": dtype, "device": device}
    model = EmbeddedAtomModel(
        pair_eV=CubicTable(tables.pair_r[a * (a + 1) // 2 + a], tables.dr, over_x=True, **kw),
        density=CubicTable(tables.density[a, a if tables.kind == "fs" else 0], tables.dr, **kw),
        embedding_eV=CubicTable(tables.embedding[a], tables.drho, linear_above=True, **kw),
        cutoff_A=tables.cutoff_A,
        skin_A=skin_A,
        **kw,
    )
    model.setfl_element = tables.elements[a]
    return model
