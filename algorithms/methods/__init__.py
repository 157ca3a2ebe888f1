"""Methods: a family (what trains, how inputs are prepared) plus the paper's default flags.

This module lists the family modules; importing the package registers every method.
"""
from algorithms.methods import attrvr, baselines, clip_linear_probe, clip_prompting, dvp, visual_prompt  # noqa: F401  (each registers its methods)
from algorithms.methods.registry import FAMILIES, METHOD_CHOICES, METHODS, Family, MethodSpec, get_method, register_family, register_method, resolve_settings

__all__ = ["FAMILIES", "METHODS", "METHOD_CHOICES", "Family", "MethodSpec", "get_method", "register_family", "register_method", "resolve_settings"]
