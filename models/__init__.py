"""Source networks and the input transforms in front of them.

``networks`` (the registry of frozen classifiers), ``frozen`` (speed rewrites of a frozen
network), ``layers`` (normalization, resizing), ``prompts/`` (the CNN visual prompts), ``clip/``
(CLIP as a source network), ``reprogrammer`` (transform -> network -> label mapping).
"""
from models.networks import SourceNetwork, load_network, network_names, register_network
from models.prompts import ExpansiveVisualPrompt

__all__ = ["ExpansiveVisualPrompt", "SourceNetwork", "load_network", "network_names", "register_network"]
