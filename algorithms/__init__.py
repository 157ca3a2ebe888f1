"""The algorithms: label mappings, method families and the bi-level training engine."""
