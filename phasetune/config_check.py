"""Checks run before a command starts, so that a typo costs a message, not a traceback.

* :func:`check_overrides`: compose the config with the command line's overrides; an unknown
  key gets the closest valid keys as suggestions, a bad group option the list of options, a
  value of the wrong type (the settings schemas, :mod:`phasetune.settings`) the type.
* :func:`ensure_writable`: the output directory can be created and written to.
* :func:`wandb_reachable`: whether the wandb server answers (else log offline, and say so).
"""

from __future__ import annotations

import difflib
import re
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration problem, explained in its message."""


def _all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key in cfg:
        path = f"{prefix}{key}"
        keys.append(path)
        value = cfg._get_node(key)  # no interpolation needed to list keys
        if OmegaConf.is_dict(value):
            keys.extend(_all_keys(value, path + "."))
    return keys


def suggest_keys(key: str, cfg: DictConfig, n: int = 3) -> list[str]:
    """Valid dotted keys of ``cfg`` closest to ``key`` (same section first)."""
    keys = [k for k in _all_keys(cfg) if not k.rsplit(".", 1)[-1].startswith("_")]
    section = key.rsplit(".", 1)[0] if "." in key else ""
    same = [k for k in keys if section and k.startswith(section + ".")]
    found = difflib.get_close_matches(key, same, n=n, cutoff=0.6) if same else []
    return found or difflib.get_close_matches(key, keys, n=n, cutoff=0.6)


def check_overrides(config_dir: str, config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``config_name`` with ``overrides``; raise :class:`ConfigError` that names the
    bad key and suggests valid ones. Returns the composed config (hydra node included)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            try:
                return compose(config_name, overrides=overrides, return_hydra_config=True)
            except Exception as err:  # Hydra raises several types for bad overrides
                text = f"{err} {err.__cause__ or ''}"
                match = re.search(r"Could not override '([^']+)'", text) or re.search(
                    r"Key '([^']+)' (?:is not in struct|not in)", text
                )
                missing = re.search(
                    r"Could not find '([^']+)/([^']+)'\s+Available options in '[^']+':\s+(.*?)"
                    r"\s*Config search path",
                    text,
                    re.S,
                )
                present = re.search(r"An item is already at '([^']+)'", text)
                if present:
                    key = present.group(1)
                    given = next((o for o in overrides if o.lstrip("+").startswith(key + "=")), "")
                    raise ConfigError(
                        f"{key} is already in the config: write {given.lstrip('+')} (no '+')"
                    ) from None
                wrong_type = re.search(
                    r"Value '([^']*)'.*?(?:converted to|a valid) (\w+).*?full_key: (\S+)"
                    r".*?object_type=(\w+?)(?:Schema)?\b",
                    text,
                    re.S,
                )
                if wrong_type:  # the schema (phasetune.settings) refused a value
                    value, kind, key, owner = wrong_type.groups()
                    kind = {
                        "Integer": "an integer",
                        "Float": "a number",
                        "bool": "true or false",
                    }.get(kind, f"a {kind}")
                    raise ConfigError(
                        f"{key}={value}: must be {kind} ({owner}.{key.rsplit('.', 1)[-1]})"
                    ) from None
                if missing:
                    group, option, options = missing.groups()
                    raise ConfigError(
                        f"{group}={option}: no such option; choose one of "
                        f"{', '.join(options.split())}"
                    ) from None
                if not match:
                    raise ConfigError(f"bad command-line override: {err}") from None
                key = match.group(1)
                others = [o for o in overrides if key not in o.split("=", 1)[0]]
                try:  # the config as the other overrides (group choices) make it
                    base = compose(config_name, overrides=others, return_hydra_config=False)
                except Exception:
                    base = compose(config_name, overrides=[], return_hydra_config=False)
                close = suggest_keys(key, base)
                hint = f" Did you mean {' or '.join(close)}?" if close else ""
                raise ConfigError(
                    f"unknown config key '{key}'.{hint} (A new key needs a leading '+': +{key}=...)"
                ) from None
    finally:
        GlobalHydra.instance().clear()


def ensure_writable(directory: str | Path) -> Path:
    """Create ``directory`` if needed and check that a file can be written there."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".phasetune-write-test-{uuid.uuid4().hex}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"output directory {path} is not writable ({err.strerror or err}); choose another "
            "with hydra.run.dir=/writable/path (or hydra.sweep.dir for multiruns)"
        ) from None
    return path


def nearest_existing_parent(path: str | Path) -> Path:
    """``path`` itself or its closest ancestor that exists."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def wandb_reachable(base_url: str | None = None, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the wandb server (``WANDB_BASE_URL`` or the default)
    opens within ``timeout_s``."""
    import os

    url = urlsplit(base_url or os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False
