"""State points across processes (Lightning's DDP strategy): who owns what, and the exchanges.

Each rank owns whole targets, k ≡ rank (mod world size), and samples and reweights the two
state points of each. Every state point draws its MD noise from its own stream
(:mod:`phasetune.sampling.noise`), and a system's forces do not depend on the rest of its
batch, so a rank's frames are the frames one process would sample. What the step needs from
the other ranks:

* the reweighted changes [G(θ) − G(θ₀)]/N of their ensembles, as numbers (no graph), their
  ESS and errors, and the targets they had to leave out: :func:`gather_mapping`,
  :func:`gather_items`; then every rank holds every Δg_k, logs the same metrics and takes the
  same convergence decision;
* the Jacobian rows ∂r_k/∂u of the targets it owns (Gauss–Newton; the other ranks' rows are
  zero here) or the gradient of its part of the loss (Adam): :func:`sum_across`. A sum in
  which each row is non-zero on one rank only is exact, so a Gauss–Newton step equals one
  process's to the last bit; a gradient summed over ranks equals it to rounding.

Lightning's own gradient averaging (``DistributedDataParallel``'s backward hooks) is switched
off (:func:`disable_gradient_averaging`): the Gauss–Newton step takes no backward pass, and the
loss has parts that must be counted once (the pull-back to θ₀), not averaged.
Without an initialised process group every function here is the one-process identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def owned_targets(n_targets: int) -> list[int]:
    """Indices of the targets this rank samples and reweights: k ≡ rank (mod world size)."""
    rank, size = world()
    return [k for k in range(n_targets) if k % size == rank]


def gather_items(items: Sequence) -> list:
    """Every rank's ``items`` (picklable), concatenated in rank order."""
    rank, size = world()
    if size == 1:
        return list(items)
    everyone: list = [None] * size
    dist.all_gather_object(everyone, list(items))
    return [x for part in everyone for x in part]


def gather_mapping(mapping: dict) -> dict:
    """The union of every rank's ``mapping`` (picklable values; keys disjoint across ranks)."""
    return dict(gather_items(list(mapping.items())))


def _collective_device() -> torch.device:
    """Where the backend takes tensors: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_across(tensor: torch.Tensor) -> torch.Tensor:
    """Σ over ranks of ``tensor`` (a new tensor; the input itself with one process)."""
    if world()[1] == 1:
        return tensor
    total = tensor.detach().to(_collective_device(), copy=True)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(tensor.device)


def any_across(flag: bool) -> bool:
    """True if ``flag`` is true on any rank."""
    if world()[1] == 1:
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def disable_gradient_averaging(trainer) -> None:
    """Keep ``DistributedDataParallel`` from registering its backward all-reduce (see the
    module docstring); a no-op for any other strategy."""
    wrapped = getattr(trainer.strategy, "model", None)
    if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
        wrapped.require_backward_grad_sync = False
