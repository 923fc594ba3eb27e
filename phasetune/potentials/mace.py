"""MACE models in phasetune: loading (foundation names, local files), the live potential,
and its torch-sim sampling copy.

Two roles, as for every phasetune potential (see :mod:`phasetune.potentials.base`):

* :class:`MacePotential` is the LIVE model. Its energies keep their graph to the MACE
  weights, so DiffTRe's reweighted free energies are differentiable; with forces requested
  (MD, measurements) it takes them by autograd as MACE does.
* :meth:`MacePotential.sampling_model` gives torch-sim's ``MaceModel`` around a deep copy of
  the weights (torch-sim freezes and detaches the module it wraps); it is refreshed from the
  live weights before each sampling round (:func:`refresh_sampling_copy`).

Loading a whole ``.model`` file unpickles Python objects (``torch.load(weights_only=False)``):
that runs code from the file. phasetune does it only for a path the user named or for a
foundation checkpoint in mace's own cache; state-dict files load with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch_sim as ts
from torch_sim.models.interface import ModelInterface

from phasetune.potentials.base import ModelBase, SwitchableOutputs
from phasetune.potentials.lora import LowRankAdapter
from phasetune.potentials.mace_acceleration import to_cueq, to_e3nn
from phasetune.third_party import mace_import

log = logging.getLogger(__name__)

#: Presets for what is trained (fnmatch patterns over ``MacePotential`` parameter names).
#: ``last_interaction`` is filled in per model (its index depends on num_interactions);
#: ``lora``: the low-rank factors alone (a model built with ``lora_rank`` > 0).
TRAINABLE_PRESETS = ("all", "readouts", "last_interaction", "lora")


class ModelNotFoundError(FileNotFoundError):
    """A MACE model file or foundation checkpoint that is not available here."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def foundation_names() -> list[str]:
    """The foundation checkpoints mace-torch knows by name (``mace_mp(model=NAME)``)."""
    with mace_import():
        from mace.calculators.foundations_models import mace_mp_urls

    return sorted(mace_mp_urls)


def foundation_checkpoint(name: str, *, download: bool = True) -> Path:
    """Path of the foundation checkpoint ``name``: mace's cache, downloading it if allowed.

    The cache is mace-torch's own (``$XDG_CACHE_HOME/mace`` or ``~/.cache/mace``), so a
    checkpoint fetched once by mace, by phasetune or by hand is found again offline.
    """
    with mace_import():
        from mace.calculators import foundations_models as fm
        from mace.tools.utils import get_cache_dir

    if name not in fm.mace_mp_urls:
        raise ValueError(
            f"unknown MACE foundation model {name!r}; known names: {', '.join(foundation_names())}"
            " (or give a local file with model.path=/path/to/file.model)"
        )
    if name == "medium-mpa-0" and Path(fm.local_model_path).is_file():
        return Path(fm.local_model_path)
    url = fm.mace_mp_urls[name]
    cached = Path(get_cache_dir()) / "".join(c for c in Path(url).name if c.isalnum() or c == "_")
    if cached.is_file():
        return cached
    how = (
        f"Download {url} on a machine with network access and copy it to {cached} "
        f"(mace's cache; set XDG_CACHE_HOME to move it), or pass the file itself with "
        f"model.path=/path/to/{Path(url).name}."
    )
    if not download:
        raise ModelNotFoundError(f"MACE foundation model {name!r} is not cached. {how}")
    try:
        return Path(fm.download_mace_mp_checkpoint(name))
    except Exception as err:  # network errors come in many types
        cached.unlink(missing_ok=True)  # a partial download must not pass as the model
        raise ModelNotFoundError(
            f"MACE foundation model {name!r} could not be downloaded ({type(err).__name__}: "
            f"{err}). {how}"
        ) from err


def load_mace_module(
    *,
    name: str | None = None,
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    download: bool = True,
) -> tuple[torch.nn.Module, Path]:
    """The raw MACE ``torch.nn.Module`` from a foundation ``name`` or a local ``path``.

    Returns (module, file it came from). The file is a whole pickled model (code execution
    on load): only files the user named, or mace's cached foundation checkpoints.
    """
    if (name is None) == (path is None):
        raise ValueError("give exactly one of model.name (a foundation model) or model.path")
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ModelNotFoundError(
                f"MACE model file {file} does not exist; check model.path (a .model file "
                "written by mace-torch or by `phasetune export`)"
            )
    else:
        file = foundation_checkpoint(str(name), download=download)
    try:
        with mace_import():  # unpickling imports mace's classes
            module = torch.load(file, map_location=device, weights_only=False)
    except Exception as err:
        raise ValueError(
            f"{file} could not be loaded as a MACE model ({type(err).__name__}: {err}); "
            "it must be a whole-model .model file (a state dict alone has no architecture)"
        ) from err
    if not (isinstance(module, torch.nn.Module) and hasattr(module, "atomic_numbers")):
        raise ValueError(
            f"{file} holds a {type(module).__name__}, not a MACE model (no atomic_numbers); "
            "give a .model file written by mace-torch or by `phasetune export`"
        )
    return module.to(device=device, dtype=dtype), file


class MacePotential(SwitchableOutputs, ModelBase):
    """A live, trainable MACE model with torch-sim's interface (energies keep their graph).

    Args:
        model: the raw MACE module (``mace.modules.MACE`` / ``ScaleShiftMACE``).
        device, dtype: where and in which precision it runs.
        head: head of a multi-head model (name or index; default: "Default" or the only one).
        source, source_sha256: where the weights came from (recorded on export).
        lora_rank: > 0 adds low-rank adapters to the linear layers
            (:class:`~phasetune.potentials.lora.LowRankAdapter`; train them with the
            ``lora`` preset); 0: none.
        lora_modules: fnmatch patterns over the MACE submodule names that get adapters.
        enable_cueq: run the tensor products with cuEquivariance (mace's conversion,
            :mod:`~phasetune.potentials.mace_acceleration`); exports stay plain e3nn.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        head: str | int | None = None,
        source: str = "",
        source_sha256: str = "",
        lora_rank: int = 0,
        lora_modules: Sequence[str] = ("*",),
        enable_cueq: bool = False,
    ) -> None:
        super().__init__(device=device, dtype=dtype)
        if enable_cueq and lora_rank:
            raise ValueError(
                "LoRA adapters (model.lora_rank > 0) attach to mace's e3nn layers: set "
                "model.enable_cueq=false to train adapters"
            )
        self.cueq = bool(enable_cueq)
        model = model.to(device=self._device, dtype=dtype)
        self.model = to_cueq(model) if self.cueq else model
        self.r_max = float(self.model.r_max)
        self.atomic_numbers_known = [int(z) for z in self.model.atomic_numbers]
        heads = list(getattr(self.model, "heads", ["Default"]))
        if head is None:
            defaults = [h for h in heads if str(h).lower() == "default"]
            head = heads.index(defaults[0]) if defaults else 0
        elif isinstance(head, str):
            if head not in heads:
                raise ValueError(f"head {head!r} not among the model's heads {heads}")
            head = heads.index(head)
        self.head_index = int(head)
        self.head = head
        self.source = str(source)
        self.source_sha256 = str(source_sha256)
        self._z_to_index = {z: k for k, z in enumerate(self.atomic_numbers_known)}
        self.lora = None
        if lora_rank:
            self.lora = LowRankAdapter(self.model, rank=lora_rank, modules=list(lora_modules))
            log.info("LoRA adapters: %s", self.lora.extra_repr())

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def trainable_patterns(self, preset: str) -> list[str]:
        """Parameter-name patterns of a preset: all, readouts, last_interaction (+ readouts)."""
        if preset == "all":
            return ["model.*"]
        if preset == "readouts":
            return ["model.readouts.*"]
        if preset == "last_interaction":
            last = len(self.model.interactions) - 1
            return [f"model.interactions.{last}.*", f"model.products.{last}.*", "model.readouts.*"]
        if preset == "lora":
            if self.lora is None:
                raise ValueError("trainable=lora needs a model built with model.lora_rank > 0")
            return ["lora.a.*", "lora.b.*"]
        raise ValueError(f"unknown trainable preset {preset!r}; choose from {TRAINABLE_PRESETS}")

    def _node_attrs(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        unknown = sorted({int(z) for z in atomic_numbers.unique()} - set(self._z_to_index))
        if unknown:
            from ase.data import chemical_symbols

            raise ValueError(
                "element(s) "
                + ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in unknown)
                + " not known to this MACE model; it has "
                + ", ".join(chemical_symbols[z] for z in self.atomic_numbers_known)
            )
        lookup = torch.full((max(self._z_to_index) + 1,), -1, dtype=torch.long)
        for z, k in self._z_to_index.items():
            lookup[z] = k
        index = lookup[atomic_numbers.cpu()].to(self._device)
        attrs = torch.zeros(len(index), len(self._z_to_index), device=self._device)
        attrs[torch.arange(len(index)), index] = 1.0
        return attrs.to(self._dtype)

    def inputs(self, state: ts.SimState, *, positions_grad: bool = False) -> dict:
        """MACE's input dictionary for a torch-sim state (neighbour list within r_max)."""
        state = state.to(self._device, self._dtype)
        positions = ts.transforms.pbc_wrap_batched(
            state.positions, state.cell, state.system_idx, state.pbc
        )
        edge_index, mapping_system, unit_shifts = ts.neighbors.torchsim_nl(
            positions,
            state.row_vector_cell,
            state.pbc,
            torch.as_tensor(self.r_max, device=self._device, dtype=self._dtype),
            state.system_idx,
        )
        shifts = ts.transforms.compute_cell_shifts(
            state.row_vector_cell, unit_shifts, mapping_system
        )
        n_systems = state.n_systems
        counts = torch.bincount(state.system_idx, minlength=n_systems)
        ptr = torch.zeros(n_systems + 1, dtype=torch.long, device=self._device)
        ptr[1:] = torch.cumsum(counts, 0)
        if positions_grad:
            positions = positions.detach().requires_grad_(True)
        return {
            "ptr": ptr,
            "node_attrs": self._node_attrs(state.atomic_numbers),
            "batch": state.system_idx,
            "head": torch.full((n_systems,), self.head_index, dtype=torch.long, device=ptr.device),
            "pbc": state.pbc,
            "cell": state.row_vector_cell,
            "positions": positions,
            "edge_index": edge_index,
            "unit_shifts": unit_shifts,
            "shifts": shifts,
        }

    def forward(self, state: ts.SimState, **_) -> dict[str, torch.Tensor]:
        """U [S] (eV, with its graph to the weights), and forces/stress by autograd if on."""
        forces_on = bool(self._compute_forces or self._compute_stress)
        data = self.inputs(state, positions_grad=forces_on)
        options = {
            "compute_force": bool(self._compute_forces),
            "compute_stress": bool(self._compute_stress),
            "training": False,
        }
        if self.lora is None:
            out = self.model(data, **options)
        else:  # W = W₀ + ΔW(A, B) in place of the adapted weights, for this call only
            merged = self.lora.merged_parameters(self.model)
            out = torch.func.functional_call(self.model, merged, (data,), options)
        energy = out["energy"]
        results = {"energy": energy.detach() if forces_on else energy}
        if self._compute_forces:
            results["forces"] = out["forces"].detach()
        if self._compute_stress:
            results["stress"] = out["stress"].detach()
        return results

    def parameter_scale_hints(self) -> dict[str, float]:
        """Scales for relative steps where RMS(θ₀) gives none (the LoRA factors)."""
        return {} if self.lora is None else self.lora.scale_hints("lora.")

    # ------------------------------------------------------------------ plain MACE weights
    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """The raw MACE module's state dict with the current weights (LoRA merged in)."""
        state = {k: v.detach() for k, v in self.model.state_dict().items()}
        if self.lora is not None:
            with torch.no_grad():
                state.update(self.lora.merged_parameters(self.model))
        return state

    def merged_model(self) -> torch.nn.Module:
        """A deep copy of the raw MACE module with the current weights (LoRA merged in): a
        standard MACE model, for sampling and export."""
        module = copy.deepcopy(self.model)
        if self.lora is not None:
            module.load_state_dict(self.merged_state_dict())
        return module

    def plain_module(self) -> torch.nn.Module:
        """:meth:`merged_model` as a plain e3nn MACE (converted back from cuEquivariance):
        what an exported ``.model`` file holds."""
        module = self.merged_model()
        return to_e3nn(module) if self.cueq else module

    def fingerprint_model(self) -> MacePotential:
        """The plain potential with the same energies (itself without LoRA; else the merged
        MACE), which :func:`phasetune.potentials.fingerprint.model_fingerprint` hashes. (A
        cuEquivariance model hashes as itself: converting it back to e3nn rebuilds mace's
        coupling constants to ~1e-8, not bit for bit, so it gets its own anchors.)"""
        if self.lora is None:
            return self
        return MacePotential(
            self.merged_model(),
            device=self._device,
            dtype=self._dtype,
            head=self.head_index,
            source=self.source,
            source_sha256=self.source_sha256,
        )

    # ------------------------------------------------------------------ sampling copy
    def sampling_model(self) -> ModelInterface:
        """torch-sim's ``MaceModel`` around a frozen deep copy of the current weights."""
        with mace_import():
            from torch_sim.models.mace import MaceModel

        return MaceModel(
            self.merged_model(),
            device=self._device,
            dtype=self._dtype,
            head=self.head_index,
        )

    def refresh_sampling_model(self, frozen: torch.nn.Module) -> torch.nn.Module:
        """Load the live weights into a sampling copy made by :meth:`sampling_model`."""
        with torch.no_grad():
            frozen.model.load_state_dict(self.merged_state_dict())
        return frozen


def mace_potential(
    *,
    name: str | None = None,
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float64,
    head: str | int | None = None,
    download: bool = True,
    lora_rank: int = 0,
    lora_modules: Sequence[str] = ("*",),
    enable_cueq: bool = False,
) -> MacePotential:
    """A :class:`MacePotential` from a foundation ``name`` (small, medium, medium-mpa-0, …;
    downloaded and cached by mace where there is network) or a local ``path``; with
    ``lora_rank`` > 0, low-rank adapters on its linear layers (``lora_modules``); with
    ``enable_cueq``, cuEquivariance tensor products."""
    if isinstance(dtype, str):
        dtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    module, file = load_mace_module(
        name=name, path=path, device=device, dtype=dtype, download=download
    )
    n_params = sum(p.numel() for p in module.parameters())
    log.info(
        "MACE model from %s: %d parameters, elements %s",
        file,
        n_params,
        [int(z) for z in module.atomic_numbers],
    )
    return MacePotential(
        module,
        device=device,
        dtype=dtype,
        head=head,
        source=str(name if name is not None else file),
        source_sha256=file_sha256(file),
        lora_rank=lora_rank,
        lora_modules=lora_modules,
        enable_cueq=enable_cueq,
    )


def build_mace(
    *,
    atomic_numbers: list[int],
    r_max_A: float = 4.5,
    hidden_irreps: str = "8x0e",
    num_interactions: int = 2,
    max_ell: int = 1,
    correlation: int = 2,
    num_bessel: int = 6,
    atomic_energies_eV: list[float] | None = None,
    avg_num_neighbors: float = 12.0,
    scale: float = 1.0,
    shift: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> torch.nn.Module:
    """A small MACE (``ScaleShiftMACE``) built with ``mace.modules``, seeded (tests, demos).

    E = Σ_i [E0(Z_i) + shift + scale · ε_i]: ``atomic_energies_eV`` are the isolated-atom
    energies E0, ``scale``/``shift`` the readout normalisation (as mace's training sets them).
    """
    import numpy as np

    # isort: off
    with mace_import():
        from mace import modules  # before e3nn, as mace wants
    from e3nn import o3

    # isort: on

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        energies = atomic_energies_eV or [0.0] * len(atomic_numbers)
        model = modules.ScaleShiftMACE(
            r_max=float(r_max_A),
            num_bessel=int(num_bessel),
            num_polynomial_cutoff=5,
            max_ell=int(max_ell),
            interaction_cls=block,
            interaction_cls_first=block,
            num_interactions=int(num_interactions),
            num_elements=len(atomic_numbers),
            hidden_irreps=o3.Irreps(hidden_irreps),
            MLP_irreps=o3.Irreps("16x0e"),
            gate=torch.nn.functional.silu,
            atomic_energies=np.asarray(energies, dtype=float),
            avg_num_neighbors=float(avg_num_neighbors),
            atomic_numbers=[int(z) for z in atomic_numbers],
            correlation=int(correlation),
            atomic_inter_scale=float(scale),
            atomic_inter_shift=float(shift),
        )
    finally:
        torch.random.set_rng_state(generator_state)
    return model.to(dtype)
