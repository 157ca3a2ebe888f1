"""Label mappings and the bi-level training engine shared by every method."""
