"""The command line shared by every method script: every flag, with the method's defaults, into a :class:`RunConfig`.

``--help`` is generated: the names ``--dataset``, ``--network``, ``--mapping`` and ``--prompt``
accept are listed from their registries with one line each, and every flag shows the default the
method actually uses (its :class:`MethodSpec` defaults are applied to the parser before help is
printed). Names are checked while parsing, so a wrong one fails before any data, network or
weights load, with one ``error:`` line like every other user error.
"""
from __future__ import annotations

import argparse
import copy
import re
import textwrap
from dataclasses import fields, replace
from pathlib import Path

import cfg
from algorithms.mappings import MAPPING_CHOICES, mapping_batch_size
from algorithms.methods import FAMILIES, Family, get_method, resolve_settings
from algorithms.methods.clip_prompting import CLIPModelOptions
from algorithms.runtime import COMPILE_PRESETS
from algorithms.settings import RunConfig
from common import preemption, progress
from common.argtypes import float_in, fraction, non_negative_float, non_negative_int, positive_float, positive_int, positive_int_or, unit_interval, yes_no
from common.choices import Choices
from common.errors import UserError
from common.options import add_option_flags, option_fields, record
from data.image_io import DECODE_MODES
from data.registry import DATASETS
from models.prompts import load_plugins, readers
from runner.devices import EVAL_PRECISIONS, PRECISIONS

micro_batch_value = positive_int_or("auto", "samples")  # --micro-batch N|auto
VAL_FRACTION = float_in(0.0, 1.0, high_open=True)  # [0, 1): 0 = no validation split
LISTED = "  "  # help lines starting with this are kept as lines (one per listed name)
_DEFAULT_NOTE = re.compile(r"\s*\(default[^)]*\)")


class HelpFormatter(argparse.HelpFormatter):
    """One default style: ``(default: X)`` closes a flag's first help line.

    A flag whose default is None (or empty) says in its help what that means (``(default: the
    dataset's)``); once a method sets a value, the value is shown instead. On/off switches show
    none (their name says what they change); lists print as they are typed; lines of a listing
    (starting with two spaces) stay lines.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is argparse.SUPPRESS or action.default in ("", []) or "%(default)" in text:
            return text  # nothing to show: the help says what an unset flag means
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction)):
            return text
        first, newline, rest = text.partition("\n")
        return f"{_DEFAULT_NOTE.sub('', first)} (default: %(default)s){newline}{rest}"

    def _expand_help(self, action: argparse.Action) -> str:
        if isinstance(action.default, (list, tuple)):
            action = copy.copy(action)
            action.default = " ".join(str(v) for v in action.default)
        return super()._expand_help(action)

    def _split_lines(self, text: str, width: int) -> list[str]:
        lines = []
        for line in text.splitlines():
            if line.startswith(LISTED):
                lines += textwrap.wrap(line, width, subsequent_indent=LISTED * 3) or [""]
            else:
                lines += textwrap.wrap(" ".join(line.split()), width) or [""]
        return lines


class ArgumentParser(argparse.ArgumentParser):
    """A flag error is a user error like any other: one ``error:`` line, exit status 2."""

    def error(self, message: str):
        raise UserError(f"{message} (see --help)")


def name_type(choices: Choices):
    """An argparse ``type``: the canonical name for a listed name or alias, else a one-line error."""

    def check(name: str) -> str:
        try:
            return choices.resolve(name)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    check.__name__ = choices.what  # argparse names the type in its own messages
    return check


def build_parser(method: str) -> ArgumentParser:
    """The flags of ``method``'s script; its :class:`MethodSpec` defaults are the parser's defaults.

    A method without training epochs gets no optimisation, mapping, prompt or resume flags; a
    family without prompts gets no prompt flags.
    """
    load_plugins()  # the prompts named in VP_PROMPT_MODULES (a bad name: one error line)
    spec = get_method(method)
    family = FAMILIES[spec.family]
    base = RunConfig(method=method)
    p = ArgumentParser(
        description=spec.description,
        epilog="Every name is checked before any data, network or weights load. "
        "Documentation: README.md and docs/ (methods.md, datasets.md, clip.md, baselines.md, beyond.md, memory.md) in the repository.",
        formatter_class=HelpFormatter,
    )
    g = p.add_argument_group("task")
    g.add_argument("--network", type=name_type(family.networks), default=base.network, metavar="NAME",
                   help=family.networks.help("frozen source network"))  # fmt: skip
    g.add_argument("--dataset", type=name_type(DATASETS), default=base.dataset, metavar="NAME",
                   help=DATASETS.help("target dataset, read from --data-path (layouts: docs/datasets.md)"))  # fmt: skip
    g.add_argument("--weights", default=None, metavar="FILE", help="local weights file for --network (default: the network's cache)")
    g.add_argument("--image-size", type=positive_int, default=None, metavar="PX",
                   help="decode images at PX x PX (default: the dataset's; with --decode crop, CLIP methods use CLIP's input size)")  # fmt: skip
    g.add_argument("--decode", choices=list(DECODE_MODES), default=base.decode,
                   help="how stored images become --image-size: squash = both sides resized (bilinear), as the ILM-VP code's CNN "
                        "preprocessing; crop = shorter side resized (bicubic) + centre crop, CLIP's preprocessing (CLIP methods' "
                        "default; datasets stored at one smaller size, e.g. CIFAR's 32, are then resized on the device)")  # fmt: skip
    g.add_argument("--max-train-samples", type=positive_int, default=None, metavar="N", help="seeded class-balanced training subset of N images (default: all)")
    g.add_argument("--max-test-samples", type=positive_int, default=None, metavar="N", help="seeded class-balanced test (and validation) subset of N images (default: all)")
    g.add_argument("--train-fraction", type=fraction, default=None, metavar="F", help="keep this seeded, class-stratified fraction of train (default: all)")
    g.add_argument("--val-fraction", type=VAL_FRACTION, default=None, metavar="F",
                   help="validation split: the dataset's own (CoOp val) if it has one, else this seeded class-stratified fraction of train; "
                        "0 = no validation (default: the dataset's own, else none)")  # fmt: skip
    g.add_argument("--shots", type=positive_int, default=None, metavar="K",
                   help="few-shot: K training images per class, drawn with --subset-seed (for one seed, the K-shot set is part of every larger one);"
                        " any --val-fraction is held out first (default: all)")  # fmt: skip
    g.add_argument("--subset-seed", type=int, default=base.subset_seed, metavar="S", help="seed of the subsets and validation split (fixed across --seed)")
    g = p.add_argument_group("optimisation")
    if family.trains_epochs:
        add_optimisation_arguments(g, base)
    g.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="per process: under torchrun the global batch is nproc x N (default: the dataset's; with --mapping blm/blmplus "
                        "BLM's: 256, 64 on dtd and oxfordpets)")  # fmt: skip
    g.add_argument("--eval-batch-size", type=eval_batch_value, default=None, metavar="N|auto",
                   help="batch of the no-gradient passes (evaluation, the mapping's statistics; their results do not depend on it)."
                        " auto: on CUDA the largest that fits in free memory, from a short probe (at most 4096); elsewhere, and with"
                        " --micro-batch, twice --batch-size (at most the chunk) (default: auto)")  # fmt: skip
    g.add_argument("--seed", type=int, default=base.seed, metavar="S", help="seed of initialisation, batch order and augmentation (not of the subsets)")
    if family.trains_epochs:
        add_method_arguments(p.add_argument_group("method"), base, family)
    g = p.add_argument_group("execution")
    g.add_argument("--device", default=base.device, help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    g.add_argument("--precision", choices=list(PRECISIONS), default=base.precision,
                   help="training autocast precision; auto = on CUDA fp16 with loss scaling for the prompt methods (as their "
                        "reference code), bf16 for the others; fp32 on CPU. Logits and label mappings are float32 in every case")  # fmt: skip
    g.add_argument("--eval-precision", choices=list(EVAL_PRECISIONS), default=base.eval_precision,
                   help="evaluation and the mapping's statistics pass: fp32 = no autocast, as the ILM-VP code; train = the network "
                        "body at --precision (faster on GPUs; predictions whose top logits are closer than its rounding may change), "
                        "logits float32")  # fmt: skip
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="run the network in NCHW instead of channels-last")
    g.add_argument("--compile", nargs="?", const=True, default=False, type=compile_value, metavar="PRESET",
                   help="torch.compile the network (the same math up to float rounding; the first epoch compiles). --compile max: autotuned kernels and CUDA graphs"
                        " of each fixed-shape step (mode max-autotune; a longer first epoch, docs/speed.md)")  # fmt: skip
    g.add_argument("--no-fold-bn", dest="fold_bn", action="store_false",
                   help="keep the frozen network's batch norms instead of folding them into the convolutions")  # fmt: skip
    g.add_argument("--no-fast-frozen-ops", dest="fast_frozen_ops", action="store_false",
                   help="run the frozen network's TF-SAME convolutions and in-place activations as written (outputs are the same)")  # fmt: skip
    g.add_argument("--resident-data", type=yes_no, default=None, metavar="{true,false}",
                   help="keep the uint8 data on the device; results do not depend on it (default: when it fits)")  # fmt: skip
    if family.trains_epochs:
        g.add_argument("--micro-batch", type=micro_batch_value, default=None, metavar="N|auto",
                       help="compute each training step in chunks of N samples whose gradients add up before the one optimizer step: the whole batch's update in less memory;"
                            " the mapping pass and evaluation then run at most N at once. auto: the largest chunk that fits on the CUDA device, from a short probe"
                            " (on CPU: the whole batch). Exact where the trained part treats samples independently (prompts on a frozen network); where it"
                            " depends on the batch (full fine-tuning's batch norms, SMM's mask network, CLIP's random_patch prompt) chunks change the result, and N is part of the"
                            " run's settings (default: the whole batch at once)")  # fmt: skip
        g.add_argument("--recompute", action="store_true",
                       help="frozen networks: keep only each stage's input in the forward pass and recompute the stage in the backward pass"
                            " (same outputs and gradients, less memory, about one more forward pass per step)")  # fmt: skip
    g = p.add_argument_group("outputs")
    g.add_argument("--data-path", default=None, metavar="DIR", help=f"data root (default: {cfg.DATA_PATH}, env VP_DATA)")
    g.add_argument("--results-path", default=None, metavar="DIR", help=f"results root (default: {cfg.RESULTS_PATH}, env VP_RESULTS)")
    g.add_argument("--run-name", default=None, metavar="NAME", help="run folder name (default: seed<seed>-<config hash>)")
    if family.trains_epochs:
        g.add_argument("--resume", nargs="?", const=True, type=resume_value, default=argparse.SUPPRESS, metavar="auto",
                       help="continue from the run folder's ckpt.pth; --resume auto: continue it if the folder holds this run, else start it"
                            " (one command for the first start and every requeue; a folder holding another run is refused) (default: a new run)")  # fmt: skip
        g.add_argument("--eval-only", action="store_true", help="evaluate a saved checkpoint and exit")
        g.add_argument("--checkpoint", default=None, metavar="FILE", help="with --eval-only: the file to evaluate (default: best.pth)")
        g.add_argument("--allow-precision-change", action="store_true",
                       help="with --resume or --eval-only: continue or evaluate a checkpoint computed in another device type or precision"
                            " (fp16 on CUDA, say, on a CPU); refused without it")  # fmt: skip
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run in the run folder; the old run is kept aside until the new one's first checkpoint")  # fmt: skip
    g.add_argument("--progress-interval", type=positive_float, default=progress.DEFAULT_INTERVAL, metavar="SECONDS",
                   help="when the output is not a terminal (a log file): at most one progress line per long step every SECONDS; results do not depend on it")  # fmt: skip
    g.add_argument("--quiet", action="store_true", help="print only warnings, errors and the final result line")
    g.add_argument("--log-file", default=None, metavar="FILE", help="append a copy of every output line to FILE, progress bars excepted (default: none)")
    if family.trains_epochs:
        g.add_argument("--stop-signals", default=preemption.DEFAULT_SIGNALS, metavar="SIGS",
                       help="signals that stop the run after the current step with a checkpoint and exit status "
                            f"{preemption.EXIT_STOPPED} (comma-separated, of {' '.join(preemption.NAMES)}; none: keep the default handlers)")  # fmt: skip
        g.add_argument("--requeue", action="store_true",
                       help="after a stop by signal under SLURM, requeue this job (scontrol requeue $SLURM_JOB_ID); use with --resume auto")  # fmt: skip
        g.add_argument("--log-interval", type=positive_int, default=base.log_interval, metavar="N", help="steps between progress points: the bar's loss, the non-finite-loss check, "
                   "under torchrun the ranks' stop-signal check; results do not depend on it")
    g = p.add_argument_group("method-specific")
    for cls in family.option_classes():  # each declared once, by the family, mapping or prompt reading it
        users = readers(cls)
        if users and family.prompts is not None:  # a prompt's: shown where one of its readers is offered
            users = [name for name in users if name in family.prompts.names()]
            if not users:
                continue
        add_option_flags(g, cls, prefix=f"--prompt {', '.join(users)}: " if users else "")
    if family.add_arguments is not None:
        family.add_arguments(g)
    p.set_defaults(**spec.defaults)  # the method's defaults, shown by --help
    return p


def add_optimisation_arguments(g: argparse._ArgumentGroup, base: RunConfig) -> None:
    g.add_argument("--epochs", type=positive_int, default=base.epochs, metavar="N", help="training epochs")
    g.add_argument("--lr", type=positive_float, default=base.lr, help="learning rate")
    g.add_argument("--optimizer", choices=["adam", "sgd"], default=base.optimizer, help="optimizer")
    g.add_argument("--momentum", type=unit_interval, default=base.momentum, help="SGD momentum")
    g.add_argument("--weight-decay", type=non_negative_float, default=base.weight_decay, metavar="WD", help="weight decay")
    g.add_argument("--scheduler", choices=["multistep", "cosine", "constant"], default=base.scheduler,
                   help="learning rate per step: multistep = x --gamma at each of --milestones; cosine = down to 0 over all steps; constant")  # fmt: skip
    g.add_argument("--milestones", type=unit_interval, nargs="+", default=base.milestones, metavar="F",
                   help="multistep: the lr decays at epochs int(F x --epochs)")  # fmt: skip
    g.add_argument("--gamma", type=positive_float, default=base.gamma, help="multistep decay factor")
    g.add_argument("--warmup-steps", type=non_negative_int, default=base.warmup_steps, metavar="N", help="linear learning-rate warmup steps")


def add_method_arguments(g: argparse._ArgumentGroup, base: RunConfig, family: Family) -> None:
    g.add_argument("--mapping", type=name_type(MAPPING_CHOICES), default=base.mapping, metavar="NAME",
                   help=MAPPING_CHOICES.help("label mapping from the network's source labels to the target classes"))  # fmt: skip
    g.add_argument("--mapping-interval", type=positive_int, default=base.mapping_interval, metavar="N", help="refit the mapping every N epochs (ILM, BLM)")
    g.add_argument("--lm-source", choices=["pass", "train"], default=base.lm_source,
                   help="pass: a no-grad pass over train before the epoch (paper); train: counts from the previous epoch's training forward passes")  # fmt: skip
    if family.prompts is not None:
        g.add_argument("--prompt", type=name_type(family.prompts), default=base.prompt, metavar="NAME",
                       help=family.prompts.help("visual prompt design (an alias is stored as its name)"))  # fmt: skip
        g.add_argument("--prompt-init", choices=["zero", "randn"], default=base.prompt_init, help="initial prompt parameters")
def compile_value(text: str) -> bool | str:
    """``--compile PRESET``: ``default`` (stored as True, as a bare ``--compile``) or ``max``."""
    if text not in COMPILE_PRESETS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(COMPILE_PRESETS)}, got {text!r}")
    return True if text == "default" else text


def eval_batch_value(text: str) -> int | None:
    """``--eval-batch-size``: a positive number of samples, or ``auto`` (stored as unset, so a run
    that names it keeps the folder of one that does not)."""
    if text == "auto":
        return None
    try:
        int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of samples or auto, got {text!r}") from None
    return positive_int(text)


def resume_value(text: str) -> str:
    """``--resume auto`` (bare ``--resume`` is the constant True)."""
    if text != "auto":
        raise argparse.ArgumentTypeError(f"expected nothing or auto, got {text!r}")
    return text


# flags of how one command runs and reports, not of the run: kept out of RunConfig and config.json
SESSION_FLAGS = {"progress_interval": progress.DEFAULT_INTERVAL, "quiet": False, "log_file": None, "stop_signals": "none", "requeue": False}


def session_flags(args: argparse.Namespace) -> dict:
    """The :data:`SESSION_FLAGS` of ``args`` (with defaults for those a method lacks)."""
    return {name: getattr(args, name, default) for name, default in SESSION_FLAGS.items()}




def config_from_args(method: str, args: argparse.Namespace) -> RunConfig:
    """The run's settings; a mapping with a reference batch size (BLM's) sets ``batch_size`` unless given."""
    names = {f.name for f in fields(RunConfig)} - {"method", "option_values"}
    values = vars(args)
    common = {k: v for k, v in values.items() if k in names}
    classes = FAMILIES[get_method(method).family].option_classes()
    declared = {f.name for cls in classes for f, _meta in option_fields(cls)}
    undeclared = sorted(k for k in values if k not in names and k not in SESSION_FLAGS and k not in declared)
    if undeclared:
        raise ValueError(f"flags of {method} that no options class declares: {', '.join(undeclared)}")
    options: dict = {}
    for cls in classes:
        options.update(record(cls, values))
    config = RunConfig(method=method, option_values=options, **common)
    if config.batch_size is None:
        config.batch_size = mapping_batch_size(config.mapping, config.dataset)
    complete = FAMILIES[get_method(method).family].complete
    if complete is not None:
        complete(config)
    return resolve_settings(config)


def checked_config(config: RunConfig, family: Family) -> RunConfig:
    """``config`` with every name checked and aliases stored as their names, then the family's own
    checks: what parsing does, for a config built in code. Nothing is loaded."""
    config = replace(
        config,
        dataset=DATASETS.resolve(config.dataset),
        network=family.networks.resolve(config.network),
        mapping=MAPPING_CHOICES.resolve(config.mapping) if family.trains_epochs else config.mapping,
        prompt=family.prompts.resolve(config.prompt) if family.prompts is not None else config.prompt,
    )
    clip_weights = config.options(CLIPModelOptions).clip_weights if CLIPModelOptions in family.option_classes() else None
    for flag, path in (("weights", config.weights), ("CLIP weights", clip_weights)):
        if path and not Path(path).expanduser().is_file():
            raise UserError(f"{flag} file not found: {Path(path).expanduser()}")
    if family.complete is not None:
        family.complete(config)
    if family.check is not None:
        family.check(config)
    return resolve_settings(config)


# ---------------------------------------------------------------------------------------------
# Shared by the tools: one spelling per flag, the old ones still accepted


def add_hidden_alias(parser: argparse.ArgumentParser | argparse._ArgumentGroup, action: argparse.Action, *flags: str) -> None:
    """Accept ``flags`` as old spellings of ``action``'s flag, without showing them in ``--help``."""
    parser.add_argument(
        *flags, dest=action.dest, type=action.type, nargs=action.nargs, choices=action.choices,
        default=argparse.SUPPRESS, help=argparse.SUPPRESS,
    )  # fmt: skip


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """A tool's own flags and, after ``--``, the flags it passes on to every run it starts."""
    if "--" not in argv:
        return argv, []
    return argv[: argv.index("--")], argv[argv.index("--") + 1 :]


def tool_parser(description: str) -> ArgumentParser:
    """A tool's parser: the method scripts' help style, and flag errors as one ``error:`` line (a :class:`UserError`)."""
    return ArgumentParser(description=description, formatter_class=HelpFormatter)
