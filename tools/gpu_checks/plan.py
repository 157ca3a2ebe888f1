"""The GPU check's plan: a method of every family against its fp32 run, and each GPU-only path against the plain run."""
from __future__ import annotations

from dataclasses import dataclass

from common.errors import UserError

TOLERANCE = 5.0  # points of test accuracy (50 of the 1,000 test images) between two paths of one run
NETWORK = "resnet18"  # random init (tools/bench.py's network_weights)


@dataclass(frozen=True)
class Run:
    """One process: a method script with flags (beyond the common ones)."""

    name: str
    method: str
    flags: tuple[str, ...] = ()
    interrupt_after: int | None = None  # stop after this many epochs, then --resume to the end


@dataclass(frozen=True)
class Check:
    """A row of the table: ``subject`` against ``reference`` (run names)."""

    label: str
    subject: str
    reference: str


CNN = ("--network", NETWORK)
CLIP = ("--clip-pretrained", "none")
FAMILIES = {  # a method of each family (and the prompt and mapping variants with their own GPU paths)
    "ilm_vp": ("ilm_vp", CNN),
    "blmplus_vp": ("blmplus_vp", CNN),
    "smm_vp": ("smm_vp", CNN),
    "watermark": ("ilm_vp", (*CNN, "--prompt", "watermark")),
    "linear_probing": ("linear_probing", CNN),
    "full_finetune": ("full_finetune", CNN),
    "ilm_tp_vp": ("ilm_tp_vp", CLIP),
    "clip_linear_probe": ("clip_linear_probe", CLIP),
    "attrvr": ("attrvr", (*CLIP, "--attributes", "{attributes}")),  # attribute files written for the check's classes
    "dvp": ("dvp", (*CLIP, "--grouping", "cluster", "--descriptions", "{attributes}")),  # clusters of the descriptive file
}
FEATURES = {  # checked on ILM-VP against its plain run at the default precision
    "compile": ("--compile",),
    "compile_max": ("--compile", "max"),
    "micro_batch_auto": ("--micro-batch", "auto"),
    "streamed": ("--resident-data", "false"),
    "eval_batch_256": ("--eval-batch-size", "256"),
}


# checks left out unless named with --only: max-autotune compiles each batch shape for minutes
OPT_IN = {"compile_max"}


def plan(only: list[str] | None = None) -> tuple[list[Run], list[Check]]:
    """The runs and the checks; ``only`` keeps the checks of these names (families, features, resume;
    default: all but :data:`OPT_IN`)."""
    runs, checks = [], []
    for name, (method, flags) in FAMILIES.items():
        runs += [Run(name, method, flags), Run(f"{name}-fp32", method, (*flags, "--precision", "fp32"))]
        checks.append(Check(name, name, f"{name}-fp32"))
    for name, flags in FEATURES.items():
        runs.append(Run(name, "ilm_vp", (*CNN, *flags)))
        checks.append(Check(name, name, "ilm_vp"))
    runs.append(Run("resume", "ilm_vp", CNN, interrupt_after=1))
    checks.append(Check("resume", "resume", "ilm_vp"))
    if not only:
        only = [c.label for c in checks if c.label not in OPT_IN]
    if only:
        unknown = sorted(set(only) - {c.label for c in checks})
        if unknown:
            raise UserError(f"unknown check {', '.join(unknown)}; choose from {', '.join(c.label for c in checks)}")
        checks = [c for c in checks if c.label in only]
        needed = {c.subject for c in checks} | {c.reference for c in checks}
        runs = [r for r in runs if r.name in needed]
    return runs, checks
