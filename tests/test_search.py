

def test_help_lists_every_registered_prompt_and_mapping():
    from algorithms.mappings import MAPPING_CHOICES
    from models.prompts import PROMPT_CHOICES

    text = search.build_cli().format_help()
    assert all(f"{name}:" in text or f"{name} (also" in text for name in [*PROMPT_CHOICES.names(), *MAPPING_CHOICES.names()])
