"""The GPU check (``tools/gpu_check.py``): every method family on CUDA against fp32, and the GPU-only paths."""
from tools.gpu_checks.cli import build_cli, commands, execute, interrupted_main, main, random_weights, trains_epochs  # noqa: F401
from tools.gpu_checks.outcome import Outcome, compare, read_outcome, table  # noqa: F401
from tools.gpu_checks.plan import CLIP, CNN, FAMILIES, FEATURES, NETWORK, OPT_IN, TOLERANCE, Check, Run, plan  # noqa: F401
