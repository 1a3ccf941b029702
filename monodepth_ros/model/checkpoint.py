"""Checkpoints: weights + network config + model metadata (+ optional training state).

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only, so it loads
with ``torch.load(weights_only=True)`` and no pickled code ever runs::

    {'format': 'monodepth_ros.checkpoint/1', 'network': {...NetworkConfig...},
     'metadata': {...ModelMetadata...}, 'model': state_dict,
     'optimizer': ..., 'scheduler': ..., 'step': int, 'rng': {...tensors...}, 'extra': {...}}

Files are written to a temporary file in the same folder and moved into place
(``io.outputs.atomic_output``), so a crash never leaves a half-written checkpoint under the
final name.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from monodepth_ros.errors import ConfigError, ModelFileError
from monodepth_ros.io.outputs import atomic_output
from monodepth_ros.model.metadata import ModelMetadata
from monodepth_ros.model.network import NetworkConfig, build_network

CHECKPOINT_FORMAT = 'monodepth_ros.checkpoint/1'


def save_checkpoint(path, model, network_config: NetworkConfig, metadata: ModelMetadata,
                    optimizer=None, scheduler=None, step: int | None = None,
                    rng_state: dict | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically; returns its path."""
    path = Path(path)
    module = model.module if hasattr(model, 'module') else model   # unwrap DDP
    metadata.network = network_config.to_dict()
    payload = {
        'format': CHECKPOINT_FORMAT,
        'network': network_config.to_dict(),
        'metadata': metadata.to_dict(),
        'model': {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    if optimizer is not None:
        payload['optimizer'] = optimizer.state_dict()
    if scheduler is not None:
        payload['scheduler'] = scheduler.state_dict()
    if step is not None:
        payload['step'] = int(step)
    if rng_state is not None:
        payload['rng'] = rng_state
    if extra is not None:
        payload['extra'] = extra
    with atomic_output(path, 'file', 'checkpoint') as partial:
        torch.save(payload, partial)
    return path


def _unreadable(path: Path, error: Exception) -> ModelFileError:
    first_line = (str(error).strip().splitlines() or [''])[0][:200]
    return ModelFileError(f'checkpoint {path} is unreadable or corrupt '
                          f'({type(error).__name__}: {first_line or "no details"})')


def read_checkpoint(path) -> dict:
    """Load a checkpoint dict (CPU tensors) with weights_only=True; ModelFileError if bad."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f'checkpoint {path} not found (expected a .pt file written by '
                             '`monodepth train`)')
    if path.stat().st_size == 0:
        raise ModelFileError(f'checkpoint {path} is empty (0 bytes); expected a .pt file '
                             'written by `monodepth train`')
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        if 'Unsupported global' not in str(error):     # not a pickled object: a corrupt file
            raise _unreadable(path, error) from error
        # Never pass on PyTorch's advice to retry with weights_only=False: that runs the
        # file's pickled code.
        raise ModelFileError(
            f'checkpoint {path} holds Python objects other than tensors and plain values, so '
            'it will not be loaded (loading it could run code); only if you trust the file, '
            "re-save its weights with python -c \"import torch; c = torch.load('IN', "
            "weights_only=False); torch.save({k: c[k] for k in ('format', 'network', "
            "'metadata', 'model')}, 'OUT.pt')\"") from error
    except Exception as error:   # truncated zip, not a torch file
        raise _unreadable(path, error) from error
    if not isinstance(payload, dict) or payload.get('format') != CHECKPOINT_FORMAT:
        raise ModelFileError(f'checkpoint {path} is not a monodepth_ros checkpoint (expected '
                             f'format {CHECKPOINT_FORMAT!r})')
    for key in ('network', 'metadata', 'model'):
        if key not in payload:
            raise ModelFileError(f'checkpoint {path} lacks its {key!r} entry')
    return payload


def load_state_checked(model, state: dict, source: str) -> None:
    """Load a state dict, naming missing/unexpected keys and shape mismatches on failure."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}'
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f'shape mismatch in {len(shapes)} tensors ({"; ".join(shapes[:3])})')
        if missing:
            parts.append(f'missing {len(missing)} keys ({", ".join(missing[:3])})')
        if unexpected:
            parts.append(f'unexpected {len(unexpected)} keys ({", ".join(unexpected[:3])})')
        raise ModelFileError(f'{source}: weights do not fit the network configuration: '
                             + '; '.join(parts))
    model.load_state_dict(state)


def load_model(path, device='cpu', network_config: NetworkConfig | None = None):
    """Rebuild the network stored in a checkpoint; returns (model in eval mode, metadata).

    With ``network_config`` the weights are loaded into that configuration instead of the
    stored one (ModelFileError naming the mismatching tensors if they do not fit).
    """
    payload = read_checkpoint(path)
    try:
        stored = NetworkConfig.from_dict(dict(payload['network']))
    except (ConfigError, TypeError) as error:
        raise ModelFileError(f'checkpoint {path}: network configuration invalid ({error})'
                             ) from error
    config = network_config or stored
    if network_config is not None and network_config.to_dict() != stored.to_dict():
        differing = sorted(k for k, v in network_config.to_dict().items()
                           if stored.to_dict().get(k) != v)
        diffs = ', '.join(f'{k}: checkpoint {stored.to_dict()[k]!r} vs requested '
                          f'{network_config.to_dict()[k]!r}' for k in differing)
        raise ModelFileError(f'checkpoint {path} was trained with another network '
                             f'configuration ({diffs})')
    config = NetworkConfig(**{**config.to_dict(), 'pretrained': False})   # weights follow
    model = build_network(config)
    load_state_checked(model, payload['model'], f'checkpoint {path}')
    metadata = ModelMetadata.from_dict(dict(payload['metadata']), source=str(path))
    model.to(device).eval()
    return model, metadata
