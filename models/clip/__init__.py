"""Frozen CLIP as a source network: loading (``model``), text templates and embeddings (``templates``,
``text``) and the visual prompts of Bahng et al. (``prompts``)."""
