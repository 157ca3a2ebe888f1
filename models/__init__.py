"""Visual prompts and the registry of frozen source networks."""
from models.networks import SourceNetwork, load_network, network_names, register_network
from models.prompts import ExpansiveVisualPrompt

__all__ = ["ExpansiveVisualPrompt", "SourceNetwork", "load_network", "network_names", "register_network"]
