"""The rows of the comparison: one line each, a label, the method script and its flags.

Every row trains with its method's registered defaults (the published recipe: optimizer, learning
rate, schedule, augmentation, mapping); the protocol then sets what all rows share (data, split,
validation fraction, epochs, seeds).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from algorithms.methods.visual_prompt import HEAD_LR
from common.errors import UserError


@dataclass(frozen=True)
class Row:
    label: str
    method: str
    flags: tuple[str, ...] = ()
    reference: bool = False  # a line to read the others against (not ranked)


CNN_ROWS = (
    Row("ILM-VP", "ilm_vp"),
    Row("FLM-VP", "flm_vp"),
    Row("RLM-VP", "rlm_vp"),
    Row("BLM-VP", "blm_vp"),
    Row("BLM+-VP", "blmplus_vp"),
    Row("pad + linear mapping", "ilm_vp", ("--mapping", "linear")),
    Row("pad + Hungarian mapping", "ilm_vp", ("--mapping", "hungarian")),
    Row("watermark + ILM", "ilm_vp", ("--prompt", "watermark")),
    Row("SMM", "smm_vp"),
    Row("low-rank + ILM", "ilm_vp", ("--prompt", "lowrank")),
    Row("ACAVP", "acavp_vp"),
    Row("pad at 192 px + ILM (rescaled input)", "ilm_vp", ("--input-size", "192")),
    Row("ILM-VP + TrivialAugment", "ilm_vp", ("--augment", "trivialaugment")),
    Row("prompt + linear head", "head_vp"),
    Row("linear probing", "linear_probing", reference=True),
    # the head of "prompt + linear head" learns at its own rate: linear probing at that rate tells the prompt's share from the rate's
    Row(f"linear probing at lr {HEAD_LR:g} (prompt + head's head rate)", "linear_probing", ("--lr", repr(HEAD_LR)), reference=True),
    Row("full fine-tuning", "full_finetune", reference=True),
)
CLIP_ROWS = (
    Row("CLIP: VP + templates chosen by ILM", "ilm_tp_vp"),
    Row("CLIP: VP + one template", "single_tp_vp"),
    Row("CLIP: ACAVP", "acavp_clip"),
    Row("CLIP: linear probe", "clip_linear_probe", reference=True),
)
SEARCH_LABEL = "search's choice"


def search_row(study: str | None, config: str | None) -> Row | None:
    """The search's chosen configuration: the best trial of a finished study (a folder holding
    ``study.db``), or ``METHOD FLAGS...`` given on the command line."""
    if config:
        words = shlex.split(config)
        return Row(f"{SEARCH_LABEL}: {config}", words[0], tuple(words[1:]))
    if not study:
        return None
    import optuna

    from tools.config_search.study import quiet_optuna

    quiet_optuna()
    from pathlib import Path

    db = Path(study).expanduser() / "study.db"
    if not db.is_file():
        raise UserError(f"--search-study {study}: no study.db there (the folder tools/search.py names <results>/search/<study>)")
    url = f"sqlite:///{db.resolve()}"
    (name,) = optuna.study.get_all_study_names(url)[:1] or [None]
    try:
        best = optuna.load_study(study_name=name, storage=url).best_trial
    except (ValueError, KeyError) as exc:
        raise UserError(f"--search-study {study}: no completed trial to take ({exc})") from exc
    flags = tuple(best.user_attrs.get("flags", ()))
    return Row(f"{SEARCH_LABEL} (trial {best.number}): {' '.join(flags)}", best.user_attrs["method"], flags)

