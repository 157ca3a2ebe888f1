"""Visual prompts for CNNs and CLIP: trainable input transformations in front of a frozen network.

This module lists the prompt modules; importing the package registers each in :data:`PROMPTS`.
Prompts kept outside the project are registered by :func:`load_plugins` (the modules named in
``VP_PROMPT_MODULES``), which every method script calls while it builds its flags.
"""
from models.prompts import acavp, frame, lowrank, pad, patch, smm, watermark  # noqa: F401  (each registers its prompt)
from models.prompts.acavp import AffineColourAdditivePrompt
from models.prompts.base import CLIP, CNN, PromptSizeOptions, PromptSpec, VisualPrompt
from models.prompts.frame import PaddingPrompt, ResizePaddingPrompt
from models.prompts.lowrank import LowRankVisualPrompt
from models.prompts.pad import ExpansiveVisualPrompt
from models.prompts.patch import FixedPatchPrompt, RandomPatchPrompt
from models.prompts.registry import PROMPT_ALIASES, PROMPT_CHOICES, PROMPTS, build_prompt, load_plugins, option_classes, prompt_choices, prompt_class, prompts_reading, readers, register_prompt
from models.prompts.smm import SampleSpecificMaskedPrompt
from models.prompts.watermark import WatermarkVisualPrompt

__all__ = [
    "CLIP", "CNN", "PROMPTS", "PROMPT_ALIASES", "PROMPT_CHOICES", "AffineColourAdditivePrompt", "ExpansiveVisualPrompt", "FixedPatchPrompt",
    "LowRankVisualPrompt", "PaddingPrompt", "PromptSizeOptions", "PromptSpec", "RandomPatchPrompt", "ResizePaddingPrompt", "SampleSpecificMaskedPrompt",
    "VisualPrompt", "WatermarkVisualPrompt", "build_prompt", "load_plugins", "option_classes", "prompt_choices", "prompt_class", "prompts_reading", "readers", "register_prompt",
]  # fmt: skip
