"""CNN visual prompts: trainable input transformations in front of a frozen network.

This module lists the prompt modules; importing the package registers each in :data:`PROMPTS`.
"""
from models.prompts import acavp, lowrank, pad, smm, watermark  # noqa: F401  (each registers its prompt)
from models.prompts.acavp import AffineColourAdditivePrompt
from models.prompts.base import PromptSpec, VisualPrompt
from models.prompts.lowrank import LowRankVisualPrompt
from models.prompts.pad import ExpansiveVisualPrompt
from models.prompts.registry import OPTION_FLAGS, PROMPT_CHOICES, PROMPTS, PromptOptions, prompts_reading, register_prompt
from models.prompts.smm import SampleSpecificMaskedPrompt
from models.prompts.watermark import WatermarkVisualPrompt

__all__ = [
    "OPTION_FLAGS", "PROMPTS", "PROMPT_CHOICES", "AffineColourAdditivePrompt", "ExpansiveVisualPrompt", "LowRankVisualPrompt", "PromptOptions",
    "PromptSpec", "SampleSpecificMaskedPrompt", "VisualPrompt", "WatermarkVisualPrompt", "prompts_reading", "register_prompt",
]  # fmt: skip
