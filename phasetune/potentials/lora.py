"""Low-rank adaptation (LoRA) of a module's linear weights, without changing the module.

Each adapted weight block W₀ ∈ ℝ^{m×n}, a fully connected layer's matrix (``torch.nn.Linear``,
the layers of e3nn's ``FullyConnectedNet``: MACE's radial MLPs) or one path of an e3nn
``o3.Linear`` (MACE's channel mixings and readouts), becomes

    W = W₀ + s · A B / √r,   A ∈ ℝ^{m×r}, B ∈ ℝ^{r×n},  r = min(rank, m, n),

with s = RMS(W₀) (fixed at the start), A drawn N(0, 1) from a fixed seed and B = 0, so that
W = W₀ at the start and an entry of B of size ε changes W by about ε·s: B is a relative change
of W, and its natural scale for relative steps is 1 (:meth:`LowRankAdapter.scale_hints`).
Only A and B are trained; the module's own weights stay as they are, and
:meth:`LowRankAdapter.merged_parameters` gives the weights W to run it with
(``torch.func.functional_call``) or to write into a plain copy for sampling and export.

Why not mace-torch's own LoRA (``mace.modules.lora``, mace-torch 0.3.16): ``inject_lora``
replaces each ``o3.Linear``, ``nn.Linear`` and e3nn ``_Layer`` in the model tree by a wrapper
holding it as ``.base`` and sets every other weight's ``requires_grad`` to False. The module
then differs from a plain MACE: its parameter names change (``x.weight`` becomes
``x.base.weight`` beside ``x.lora_A``/``x.lora_B``), so a plain MACE's state dict does not load
into it or the reverse. That breaks the frozen sampling copy refreshed by ``load_state_dict``
and the export of a plain MACE state dict. The anchor cache's weight fingerprint (class, repr,
parameter names) also changes, even at B = 0, and torch-sim's ``MaceModel`` would wrap and
freeze the modified tree. Under ``torch.no_grad`` its wrappers also cache the merged weight (or
its change) and do not see B change (e.g. by ``load_state_dict``) until the next forward pass
with gradients on. Its change is ``alpha/rank · A B``, with A ~ N(0, 10⁻³) and B = 0 (times the
paths' weight ratio for ``o3.Linear``), so B's size does not scale with W₀. Here the module
stays unchanged and merging happens on the fly, and B is a relative change. mace's factors of an
``o3.Linear`` are shared between paths with the same input or output irrep; those here are per
path and contain mace's. A rank-r mace LoRA change is also one of this adapter at rank r
(``tests/unit/potentials/test_lora.py``, the parity test).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WeightBlock:
    """One adapted matrix: ``parameter`` (a name in the module) viewed from ``offset`` as
    ``shape`` (m, n), row-major, the layout of an e3nn ``o3.Linear`` path and of a matrix."""

    parameter: str
    offset: int
    shape: tuple[int, int]


def linear_weight_blocks(module: torch.nn.Module, patterns: Sequence[str] = ("*",)) -> list:
    """The weight blocks of ``module``'s linear layers whose module name matches ``patterns``.

    e3nn ``o3.Linear`` with internal, unbatched weights: one block per path (mul_in × mul_out);
    any other submodule whose own ``weight`` parameter is a matrix: that matrix. Tensor
    products, symmetric contractions and biases are not linear layers and stay as they are.
    """
    # isort: off
    from phasetune.third_party import mace_import

    with mace_import():
        import mace  # noqa: F401  (before e3nn, as it must be; mace brings e3nn)
    from e3nn import o3

    # isort: on
    blocks: list[WeightBlock] = []
    for name, sub in module.named_modules():
        if not any(fnmatch.fnmatch(name, p) for p in patterns):
            continue
        weight = dict(sub.named_parameters(recurse=False)).get("weight")
        if weight is None:
            continue
        prefix = f"{name}.weight" if name else "weight"
        if isinstance(sub, o3.Linear):
            if weight.dim() != 1:
                continue  # batched (f_in, f_out) weights: not a plain linear layer
            offset = 0
            for ins in sub.instructions:
                if ins.i_in == -1 or 0 in ins.path_shape:
                    continue  # biases and empty paths own no weights here
                m, n = ins.path_shape
                blocks.append(WeightBlock(prefix, offset, (m, n)))
                offset += m * n
            if offset != weight.numel():  # a layout this code does not know: leave it
                blocks = [b for b in blocks if b.parameter != prefix]
        elif weight.dim() == 2 and min(weight.shape) > 0:
            blocks.append(WeightBlock(prefix, 0, tuple(weight.shape)))
    return blocks


class LowRankAdapter(torch.nn.Module):
    """LoRA factors A, B for every linear weight block of ``module`` (see the module doc).

    Args:
        module: the model whose weights are adapted (not modified, not held).
        rank: r, the largest rank of each block's change (capped at min(m, n)).
        modules: fnmatch patterns over submodule names (default: every linear layer).
        seed: of the random A (B starts at zero).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        rank: int,
        modules: Sequence[str] = ("*",),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if int(rank) < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.rank = int(rank)
        self.blocks = linear_weight_blocks(module, list(modules))
        if not self.blocks:
            names = [n for n, _ in module.named_modules() if n]
            raise ValueError(
                f"LoRA: no linear layer matches {list(modules)}; the model's modules: {names}"
            )
        generator = torch.Generator().manual_seed(int(seed))
        self.a = torch.nn.ParameterList()
        self.b = torch.nn.ParameterList()
        scales = []
        for block in self.blocks:
            w0 = module.get_parameter(block.parameter).detach()
            m, n = block.shape
            r = min(self.rank, m, n)
            a = torch.randn(m, r, generator=generator, dtype=torch.float64)
            self.a.append(torch.nn.Parameter(a.to(device=w0.device, dtype=w0.dtype)))
            self.b.append(torch.nn.Parameter(w0.new_zeros(r, n)))
            view = w0[block.offset : block.offset + m * n]
            scales.append(float(view.double().pow(2).mean().sqrt()) / math.sqrt(r))
        self.register_buffer("scale", torch.tensor(scales, dtype=w0.dtype, device=w0.device))

    def delta(self, index: int) -> torch.Tensor:
        """ΔW of block ``index``: s·A B/√r [m, n] (``scale`` holds s/√r)."""
        return self.scale[index] * (self.a[index] @ self.b[index])

    def merged_parameters(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """{name: W₀ + ΔW} for every adapted parameter of ``module`` (differentiable in A, B)."""
        deltas: dict[str, list[torch.Tensor]] = {}
        for index, block in enumerate(self.blocks):  # an o3.Linear's paths in their order
            deltas.setdefault(block.parameter, []).append(self.delta(index))
        merged = {}
        for name, pieces in deltas.items():
            w0 = module.get_parameter(name)
            # a matrix is one block; an o3.Linear's blocks tile its flat weight contiguously
            merged[name] = w0 + (
                pieces[0] if w0.dim() == 2 else torch.cat([d.reshape(-1) for d in pieces])
            )
        return merged

    def scale_hints(self, prefix: str = "") -> dict[str, float]:
        """Natural scale of each factor for relative steps: 1 for B (a relative change of W)
        and for A (drawn N(0, 1)); RMS(θ₀) would give B, zero at the start, no scale."""
        hints = {f"{prefix}a.{k}": 1.0 for k in range(len(self.a))}
        hints.update({f"{prefix}b.{k}": 1.0 for k in range(len(self.b))})
        return hints

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"rank={self.rank}, blocks={len(self.blocks)}, parameters={n}"
