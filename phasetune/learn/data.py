"""Sampling rounds as a Lightning DataModule: the NPT ensembles DiffTRe reweights.

Every target contributes two state points (phase A and phase B at (T_k, P_k)); all are
sampled in one batch with a frozen copy of the current model. A state point that
:class:`~phasetune.learn.resampling.Resampling` selects is sampled again at the current θ,
warm-started from its last frame, and its free-energy offset is chained by FEP from the new
frames (``chain="fresh"``; experiment=ti_small) or BAR of old and new (``chain="bar"``, default;
:func:`phasetune.learn.difftre.chain_with_bar`). The loader yields one item per optimizer
step; the ensembles themselves live here (and in checkpoints, as HDF5 paths + tensors).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from phasetune.learn.difftre import (
    CHAIN_METHODS,
    StatePointEnsemble,
    chain_with_bar,
    energies_on_frames,
    parameter_snapshot,
)
from phasetune.learn.distributed import gather_items, gather_mapping, owned_targets, world
from phasetune.learn.resampling import StepBatch
from phasetune.potentials.base import refresh_sampling_copy, sampling_copy
from phasetune.sampling.frames import Frames
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.targets import TransitionTarget

log = logging.getLogger(__name__)


def ensemble_name(target: TransitionTarget, phase: str) -> str:
    return f"{target.name}/{phase}"


class _Steps(IterableDataset):
    """Yields an empty :class:`StepBatch` per optimizer step, forever (the trainer's max_steps
    ends the run); :class:`~phasetune.learn.resampling.Resampling` fills it before the step."""

    def __iter__(self) -> Iterator[StepBatch]:
        step = 0
        while True:
            yield StepBatch(step)
            step += 1


class StatePointDataModule(pl.LightningDataModule):
    """Owns the sampled ensembles of every (target, phase) and re-samples them on demand."""

    def __init__(
        self,
        targets: Sequence[TransitionTarget],
        sampler: SamplerSettings,
        *,
        frames_dir: str | Path,
        warm_equilibration_steps: int | None = None,
        chain: str = "bar",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.targets = list(targets)
        self.sampler = sampler
        self.frames_dir = Path(frames_dir)
        self.warm_equilibration_steps = (
            sampler.equilibration_steps // 2
            if warm_equilibration_steps is None
            else int(warm_equilibration_steps)
        )
        if chain not in CHAIN_METHODS:
            raise ValueError(f"chain must be one of {CHAIN_METHODS}, got {chain!r}")
        #: how a re-sampled state point's offset is carried: "fresh" (FEP of the new frames
        #: alone, which the fit never saw) or "bar" (BAR of old and new frames)
        self.chain = chain
        self.device = torch.device(device)
        self.dtype = dtype
        self.ensembles: dict[str, StatePointEnsemble] = {}
        self.frame_paths: dict[str, str] = {}
        self.resamplings = 0
        self.md_steps = 0
        self.atom_steps = 0
        #: wall seconds spent in MD (sample_state_points) and in the reference energies and
        #: BAR chaining that follow each round, summed over the rounds of this process (not
        #: checkpointed: a resumed run's state must equal the uninterrupted run's)
        self.md_s = 0.0
        self.reweight_s = 0.0
        #: unstable-MD events of every round (system restarted or stopped; see stability.py)
        self.md_events: list[dict] = []
        self.sampling_rounds = 0
        #: how often each state point was sampled: its next sampling's noise seed
        self.samplings: dict[str, int] = {}
        self._frozen: torch.nn.Module | None = None
        #: every state point of the run, and those this process samples (all of them,
        #: unless DDP gives this rank a share: :meth:`setup`)
        self.all_points = {
            ensemble_name(t, phase): (t, phase) for t in self.targets for phase in t.phases
        }
        self.points = dict(self.all_points)
        #: the run's totals over every rank (:meth:`gather_totals`, at the end of training)
        self.totals: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        """Keep the state points of the targets this rank owns (all with one process)."""
        owned = {self.targets[k].name for k in owned_targets(len(self.targets))}
        self.points = {n: tp for n, tp in self.all_points.items() if tp[0].name in owned}

    # ---------------------------------------------------------------- sampling
    def sample(
        self, model: torch.nn.Module, names: Sequence[str] | None = None, *, cold: bool = False
    ) -> list[str]:
        """Sample ``names`` (default: all) at the live model's current θ, in one batch.

        Warm-started from each ensemble's last frame, unless ``cold`` or a state point has
        no frames yet (then from the target's starting structure, with melting).
        """
        names = list(self.points) if names is None else list(names)
        if not names:  # a DDP rank whose state points need nothing now
            return []
        if self._frozen is None:
            self._frozen = sampling_copy(model)
        refresh_sampling_copy(self._frozen, model)
        warm = not cold and all(name in self.ensembles for name in names)
        # seed: for random_streams="batch"; with "state_point" each state point's stream is
        # seeded by its own sampling count (a rank's share samples as one process would)
        settings = dataclasses.replace(
            self.sampler,
            seed=self.sampler.seed + 7919 * self.sampling_rounds,
            frames_path=None,
            **(
                {"melt_steps": 0, "equilibration_steps": self.warm_equilibration_steps}
                if warm
                else {}
            ),
        )
        points = []
        for name in names:
            target, phase = self.points[name]
            atoms = self.ensembles[name].frames.last_atoms() if warm else target.atoms(phase)
            points.append(
                StatePoint(
                    name=name,
                    phase=phase,
                    atoms=atoms,
                    temperature_K=target.temperature_K,
                    pressure_GPa=target.pressure_GPa,
                    seed=self.sampler.seed + 7919 * self.samplings.get(name, 0),
                )
            )
            self.samplings[name] = self.samplings.get(name, 0) + 1
        start = time.perf_counter()
        frames, _ = sample_state_points(
            self._frozen, points, settings, device=self.device, dtype=self.dtype
        )
        self.md_s += time.perf_counter() - start
        start = time.perf_counter()
        self.sampling_rounds += 1
        for event in frames.metadata.get("md_events", []):
            self.md_events.append({**event, "round": self.sampling_rounds})
            log.warning("sampling round %d: %s", self.sampling_rounds, event)
        steps = settings.equilibration_steps + settings.production_steps
        self.md_steps += steps * len(points)
        self.atom_steps += steps * sum(len(p.atoms) for p in points)
        theta = parameter_snapshot(model)
        for k, name in enumerate(names):
            target, phase = self.points[name]
            one = frames.select_system(k)
            new = StatePointEnsemble(
                name=name,
                target=target.name,
                phase=phase,
                temperature_K=target.temperature_K,
                pressure_GPa=target.pressure_GPa,
                frames=one,
                reference_energy=torch.zeros(one.n_frames, dtype=torch.float64),
                reference_params=theta,
            )
            reference = torch.full((one.n_frames,), float("nan"), dtype=torch.float64)
            if new.n_valid() >= 2:  # else the phase was lost: nothing to reweight
                with torch.no_grad():
                    u = energies_on_frames(model, new).detach().double().cpu()
                reference[torch.nonzero(new.valid).flatten()] = u
            new.reference_energy = reference
            old = self.ensembles.get(name)
            if old is not None and new.n_valid() < 2:
                # nothing to chain to: keep the old set (its target stays skipped)
                log.warning("%s: the new frames left the phase too; the old set is kept", name)
                continue
            if old is not None:
                # self.chain (fresh FEP or BAR); one-sided FEP on the new if the old lost the phase
                new = chain_with_bar(model, old, new, method=self.chain)
                self.resamplings += 1
            path = self.frames_dir / f"{name.replace('/', '__')}_round{new.round}.h5"
            one.save(path)
            self.frame_paths[name] = str(path)
            self.ensembles[name] = new
            log.info(
                "%s: round %d, %d/%d valid frames, offset %.4f meV/atom",
                name,
                new.round,
                new.n_valid(),
                one.n_frames,
                1e3 * new.offset_eV,
            )
        self.reweight_s += time.perf_counter() - start
        return names

    # ---------------------------------------------------------------- Lightning
    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Steps(), batch_size=None)

    def local_counters(self) -> dict:
        return {
            "resamplings": self.resamplings,
            "md_steps": self.md_steps,
            "atom_steps": self.atom_steps,
            "sampling_rounds": self.sampling_rounds,
        }

    def gather_totals(self) -> dict:
        """Every rank's counters summed, chains and MD events (a collective under DDP: call
        it on every rank); kept as :attr:`totals`."""
        counters = gather_items([self.local_counters()])
        self.totals = {
            **{key: sum(c[key] for c in counters) for key in counters[0]},
            "md_events": gather_items(self.md_events),
            "chains": gather_mapping({n: e.history for n, e in self.ensembles.items()}),
        }
        return self.totals

    def state_dict(self) -> dict:
        """Everything to resume: frame files, reference energies and θ_ref, BAR chain, counters.

        The random state is each state point's sampling count (``samplings``): its n-th
        sampling draws from the stream seeded with ``sampler.seed + 7919 n`` and its name
        (torch-sim's ``state.rng`` with ``random_streams=batch``: ``sampler.seed + 7919 r``
        for the r-th round), and nothing else in training is random, so a resumed run draws
        the same noise. Under DDP every rank's ensembles are gathered into the one
        checkpoint (a collective: Lightning calls this on every rank).
        """
        ensembles = {
            name: {
                "frames_path": self.frame_paths[name],
                "reference_energy": e.reference_energy,
                "reference_params": e.reference_params,
                "offset_eV": e.offset_eV,
                "offset_variance": e.offset_variance,
                "round": e.round,
                "history": e.history,
            }
            for name, e in self.ensembles.items()
        }
        return {
            "ensembles": gather_mapping(ensembles),
            "samplings": gather_mapping(self.samplings),
            "md_events": gather_items(self.md_events),
            "counters_by_rank": gather_items([self.local_counters()]),
        }

    def load_state_dict(self, state: dict) -> None:
        for name in state["ensembles"]:
            if name not in self.all_points:
                raise KeyError(f"checkpoint has ensemble {name!r}, not among this run's targets")
        mine = {n: entry for n, entry in state["ensembles"].items() if n in self.points}
        for name, entry in mine.items():
            target, phase = self.points[name]
            self.ensembles[name] = StatePointEnsemble(
                name=name,
                target=target.name,
                phase=phase,
                temperature_K=target.temperature_K,
                pressure_GPa=target.pressure_GPa,
                frames=Frames.load(entry["frames_path"]),
                reference_energy=entry["reference_energy"],
                reference_params=entry["reference_params"],
                offset_eV=float(entry["offset_eV"]),
                offset_variance=float(entry["offset_variance"]),
                round=int(entry["round"]),
                history=list(entry["history"]),
            )
            self.frame_paths[name] = entry["frames_path"]
        samplings = state.get("samplings", {})
        self.samplings = {n: int(samplings.get(n, mine[n]["round"] + 1)) for n in mine}
        rank, size = world()
        by_rank = state.get("counters_by_rank") or [state["counters"]]  # or an older file
        if len(by_rank) == size:
            counters = by_rank[rank]
        else:  # another number of processes: rank 0 carries the totals on
            counters = {k: sum(c[k] for c in by_rank) for k in by_rank[0]} if rank == 0 else {}
        for key, value in counters.items():
            setattr(self, key, int(value))
        self.md_events = list(state.get("md_events", [])) if rank == 0 else []
