"""What every prompt family (CNN and CLIP) does with the prompt registry: its options, groups and gradient rule.

The prompt's options are read from the run's settings as the chosen prompt's ``OPTIONS``; an
option of another prompt given on the command line is an error rather than a silent no-op. The
optimizer groups and the gradient rule follow what the prompt declares
(:class:`models.prompts.base.VisualPrompt`), so a new prompt needs nothing here.
"""
from __future__ import annotations

from torch import nn

from algorithms.gradient_rules import normalise_and_clip
from algorithms.mappings import HeadOptions, head_group
from algorithms.methods.registry import get_method
from algorithms.settings import RunConfig
from common.errors import UserError
from common.options import Options, flag_of, given
from models.prompts import option_classes, prompt_class, readers

GRADIENT_RULES = ("raw", "normalised")


def chosen_prompt(config: RunConfig, kind: str) -> type:
    """The class of ``--prompt`` on ``kind`` networks (an unsupported pair: one ``UserError`` with the prompt's reason)."""
    return prompt_class(config.prompt, kind)


def prompt_options(config: RunConfig, kind: str) -> Options | None:
    """The chosen prompt's options; one of another prompt's, given on the command line, is an error."""
    cls = chosen_prompt(config, kind)
    defaults = get_method(config.method).defaults
    for other in option_classes():
        if other is getattr(cls, "OPTIONS", None):
            continue
        for name in given(other, config.option_values, defaults):
            users = " or ".join(f"--prompt {p}" for p in readers(other))
            raise UserError(f"{flag_of(other, name)} applies to {users}, not --prompt {config.prompt}")
    return None if getattr(cls, "OPTIONS", None) is None else config.options(cls.OPTIONS)


def note_revision(config: RunConfig, kind: str) -> None:
    """The chosen prompt's ``REVISION`` on ``kind`` into the run's settings (and so its identity)."""
    config.option_values.update(getattr(chosen_prompt(config, kind), "REVISION", {}).get(kind, {}))


def count(params) -> int:
    return sum(p.numel() for p in params)


def prompt_parameter_groups(
    prompt: nn.Module, mapping: nn.Module, lr: float, mapping_lr: float | None, head: HeadOptions | None = None
) -> tuple[list[dict] | None, dict]:
    """Optimizer groups and the parameter counts for results.json.

    The prompt's pattern learns at ``lr``; each part the prompt declares in
    :meth:`~models.prompts.base.VisualPrompt.parameter_groups` (SMM's mask network) at its own rate
    (``lr`` when unset); a trainable mapping (``--mapping linear``) at ``mapping_lr`` (``lr`` when
    None), one that reads the network's features (``--mapping head``) in an optimizer of its own
    (``head``'s recipe, linear probing's by default). One group (None, the default) when nothing differs.
    """
    parts = [g for g in prompt.parameter_groups() if g["params"]]
    in_parts = {id(p) for g in parts for p in g["params"]}
    pattern_params = [p for p in prompt.parameters() if p.requires_grad and id(p) not in in_parts]
    mapping_params = [p for p in mapping.parameters() if p.requires_grad]
    info = {"prompt_params": count(pattern_params) + sum(count(g["params"]) for g in parts), "mapping_params": count(mapping_params)}
    info.update({f"{g['name']}_params": count(g["params"]) for g in parts})
    if not parts and not mapping_params:
        return None, info
    groups = [{"params": pattern_params}]
    for g in parts:
        groups.append({"params": g["params"], "lr": lr if g.get("lr") is None else g["lr"], "scheduled": g.get("scheduled", True)})
    if mapping_params and getattr(mapping, "reads_features", False):
        groups.append(head_group(HeadOptions() if head is None else head, mapping_params))
    elif mapping_params:
        groups.append({"params": mapping_params, "lr": lr if mapping_lr is None else mapping_lr})
    return groups, info


def gradient_hooks(rule: str, prompt: nn.Module) -> list:
    """``normalised``: each prompt parameter's gradient divided by its L2 norm, those the prompt
    names in ``clipped_parameters()`` (ACAVP's affine and gain) then clipped (:mod:`algorithms.gradient_rules`)."""
    if rule not in GRADIENT_RULES:
        raise UserError(f"unknown --gradient-rule {rule!r}; choose {' or '.join(GRADIENT_RULES)}")
    if rule == "raw":
        return []
    return [normalise_and_clip([p for p in prompt.parameters() if p.requires_grad], prompt.clipped_parameters())]
