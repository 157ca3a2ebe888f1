"""What a checkpoint holds and the checks before training or evaluating from one.

A checkpoint records the run's identity (its result-determining settings) and the identity of
its data; ``--resume`` and ``--eval-only`` refuse a checkpoint written with other settings or
trained on other samples, so a run is never silently continued on something else.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from algorithms.settings import DATA_LOCATION, PRECISION_SETTINGS, RESULT_NEUTRAL, RunConfig, precision_change
from common.errors import UserError
from data.registry import TargetData


def data_identity(data: TargetData) -> dict:
    """What a checkpoint records of its data: where it was read and what was read."""
    return {"location": data.location, "fingerprint": data.fingerprint}


def check_same_data(saved: dict | None, data: TargetData, checkpoint) -> None:
    """Refuse to continue or evaluate ``checkpoint`` on data other than it was trained on.

    The fingerprint decides (:mod:`data.fingerprint`): the same samples read from another place
    (a copied dataset) pass. Checkpoints written without a fingerprint are not checked.
    """
    if not saved or not saved.get("fingerprint") or not data.fingerprint or saved["fingerprint"] == data.fingerprint:
        return
    raise UserError(
        f"checkpoint {checkpoint} was trained on other data: {saved.get('location')} ({saved['fingerprint']}), "
        f"this run reads {data.location} ({data.fingerprint}); pass the --data-path it was trained on, or start a new run"
    )


def check_same_settings(checkpoint: dict[str, Any], config: RunConfig, path: str) -> str | None:
    """Refuse to continue a checkpoint written with other result-determining settings; returns the
    note to print when ``--allow-precision-change`` lets it continue in another arithmetic.

    Where the data is read may differ (a pinned ``--run-name``, a moved copy): what was read is
    checked by :func:`check_same_data`. The arithmetic is checked on its own (:func:`precision_change`).
    """
    saved, now = checkpoint.get("config", {}), config.identity()
    differing = differing_settings(saved, now, ignore=PRECISION_SETTINGS)
    if differing:
        raise UserError(f"checkpoint {path} was written with other settings ({', '.join(differing)}); start a new run instead")
    return precision_change(saved, now, config.allow_precision_change, path)


def differing_settings(saved: dict[str, Any], now: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """The settings in which two run identities differ (method flags by their own names), leaving
    out where the data is read, the :data:`~algorithms.settings.RESULT_NEUTRAL` settings (an older
    identity holds their values) and ``ignore``."""
    ignored = {DATA_LOCATION, *RESULT_NEUTRAL, *ignore}
    flat = [{**{k: v for k, v in d.items() if k != "extra"}, **d.get("extra", {})} for d in (saved, now)]
    return sorted(k for k in set(flat[0]) | set(flat[1]) if k not in ignored and flat[0].get(k) != flat[1].get(k))


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a trainable state (``model.trainable_state()``) into ``model``; a mismatch is one line."""
    expected = set(model.trainable_state())
    got = set(state)
    if expected != got:
        missing, unexpected = sorted(expected - got)[:3], sorted(got - expected)[:3]
        raise UserError(f"checkpoint {source} does not match this model (missing {missing}, unexpected {unexpected})")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise UserError(f"checkpoint {source} does not match this model: {str(exc).splitlines()[-1].strip()}") from exc


def load_optimization_state(checkpoint: dict[str, Any], optimizer, scheduler, scaler, path: str) -> None:
    """Optimizer, schedule and loss scaler (unless None) back as they were after the checkpoint's last step."""
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None:
            scaler.load_state_dict(checkpoint["scaler"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise UserError(f"checkpoint {path} has an incompatible optimizer state ({exc})") from exc
