"""A model's identity for result caches: a hash of what it computes, not where it lives.

Used by the anchor cache (:mod:`phasetune.learn.anchor`), the coexistence cache
(:mod:`phasetune.free_energy.coexistence_cache`) and the export manifest.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import torch


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the model's class, repr and every parameter and buffer (exact bytes).

    A model with ``fingerprint_model()`` is hashed as the plain model it stands for (MACE with
    LoRA adapters: the merged MACE), so that the same physics gets the same cache key. What
    is neither a tensor nor in the repr (a plain Python callable inside the model) must show
    in the model's ``extra_repr`` to be told apart.
    """
    if hasattr(model, "fingerprint_model"):
        model = model.fingerprint_model()
    digest = hashlib.sha256()
    digest.update(type(model).__qualname__.encode())
    digest.update(repr(model).encode())
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        digest.update(name.encode())
        buffer = io.BytesIO()
        np.save(buffer, tensor.detach().cpu().double().numpy())
        digest.update(buffer.getvalue())
    return digest.hexdigest()
