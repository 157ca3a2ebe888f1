"""CNN visual prompts: trainable input transformations in front of a frozen network.

This module lists the prompt modules; importing the package registers each in :data:`PROMPTS`.
"""
from models.prompts import pad, watermark  # noqa: F401  (each registers its prompt)
from models.prompts.pad import ExpansiveVisualPrompt
from models.prompts.registry import PROMPT_CHOICES, PROMPTS, register_prompt
from models.prompts.watermark import WatermarkVisualPrompt

__all__ = ["PROMPTS", "PROMPT_CHOICES", "ExpansiveVisualPrompt", "WatermarkVisualPrompt", "register_prompt"]
