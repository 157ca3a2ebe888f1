"""The README is a short front door whose links all resolve, and the citations are right."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

from algorithms.mappings.base import MAPPING_DESCRIPTIONS
from algorithms.methods import METHODS
from models.prompts.registry import PROMPT_DESCRIPTIONS

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "tools" / "paper_results" / "README.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
ILM_VP_AUTHORS = "Chen, Aochuan and Yao, Yuguang and Chen, Pin-Yu and Zhang, Yihua and Liu, Sijia"


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # no headings inside code
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return [a or b for a, b in LINK.findall(text)]


def bibtex(text: str) -> list[str]:
    (block,) = re.findall(r"```bibtex\n(.*?)```", text, flags=re.DOTALL)
    return ["@" + entry for entry in block.split("\n@")[0:] if entry.strip()]


def test_readme_is_a_short_front_door():
    readme = REPO / "README.md"
    assert readme.stat().st_size < 15_000
    text = readme.read_text()
    for section in ("Install", "Quick start", "Tests", "Methods", "Common flags", "Outputs", "Documentation", "Citation", "License"):
        assert f"\n## {section}\n" in text, section


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target} -> {file}"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: no heading #{anchor} in {file.name}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / target).resolve() for target in links(REPO / "README.md") if not re.match(r"[a-z]+:", target)}
    pages = {p.resolve() for p in (REPO / "docs").glob("*.md")}
    reachable = set(linked)
    for page in pages & linked:
        reachable |= {(page.parent / t.partition("#")[0]).resolve() for t in links(page) if not re.match(r"[a-z]+:", t)}
    assert pages <= reachable, sorted(p.name for p in pages - reachable)


def test_ilm_vp_is_cited_with_its_authors_everywhere():
    entries = bibtex((REPO / "README.md").read_text())
    (ilm,) = [e for e in entries if "A Label-Mapping Perspective" in e]
    assert f"author    = {{{ILM_VP_AUTHORS}}}" in ilm and "pages     = {19133--19143}" in ilm and "year      = {2023}" in ilm
    assert "Aochuan Chen, Yuguang Yao, Pin-Yu Chen, Yihua Zhang,\nSijia Liu" in (REPO / "tools" / "paper_results" / "README.md").read_text()
    cff = (REPO / "CITATION.cff").read_text()
    names = re.findall(r"family-names: (\S+)\n\s+given-names: (\S+)", cff.split("Label-Mapping Perspective")[1].split("- type:")[0])
    assert [f"{family}, {given}" for family, given in names] == ILM_VP_AUTHORS.split(" and ")
    assert "start: 19133" in cff and "end: 19143" in cff


def test_citation_file_and_license():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT" and cff["title"] and cff["authors"]
    assert all(ref["title"] and ref["authors"] and ref["year"] for ref in cff["references"])
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")


def test_every_bibtex_entry_is_complete_and_every_cited_author_has_one():
    entries = bibtex((REPO / "docs" / "citing.md").read_text())
    assert bibtex((REPO / "README.md").read_text())[0] in entries  # README shows ILM-VP's entry, the same as citing.md's
    for entry in entries:
        assert re.search(r"^\s+title\s+= \{.+\},$", entry, re.MULTILINE) and re.search(r"year\s+= \{\d{4}\}", entry), entry
        assert re.search(r"^\s+author\s+= \{[A-Z][^}]+\}", entry, re.MULTILINE), entry  # every entry names its authors
    authors = " ".join(re.findall(r"author\s+= \{([^}]*)\}", " ".join(entries)))
    descriptions = [m.description for m in METHODS.values()] + [*MAPPING_DESCRIPTIONS.values(), *PROMPT_DESCRIPTIONS.values()]
    cited = {name for text in descriptions for name in re.findall(r"\b([A-Z][a-z]+)(?: et al\.|,? (?:NeurIPS|ICLR|ICML|CVPR) 20)", text)}
    assert cited and all(name in authors for name in cited), cited - {n for n in cited if n in authors}


def test_the_2025_methods_are_cited_with_their_authors():
    entries = "\n".join(bibtex((REPO / "docs" / "citing.md").read_text()))
    for authors in (
        "Jin, Can and Li, Ying and Zhao, Mingyu and Zhao, Shiyu and Wang, Zhenting and He, Xiaoxiao\n               and Han, Ligong and Che, Tong and Metaxas, Dimitris N.",
        "Enomoto, Shohei",
        "Cai, Chengyi and Ye, Zesheng and Feng, Lei and Qi, Jianzhong and Liu, Feng",
    ):
        assert f"author    = {{{authors}}}" in entries


def test_methods_page_lists_every_registered_method_script_and_mapping():
    """docs/methods.md is checked against the registries: a registration without its line fails here."""
    from algorithms.mappings import MAPPING_CHOICES

    text = (REPO / "docs" / "methods.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    listed = {m.group(1) for line in rows if (m := re.match(r"\| `(experiments/(?:cnn|clip)/\w+\.py)`", line))}
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "experiments").glob("*/*.py") if p.stem != "__init__"}
    assert listed == on_disk, listed ^ on_disk
    runs = {re.search(r'main\("(\w+)"', (REPO / script).read_text()).group(1) for script in on_disk}
    assert runs == set(METHODS), runs ^ set(METHODS)  # a script per registered method
    mappings = {m.group(1) for line in rows if (m := re.match(r"\| `(\w+)` \| (?:`\w+\.py`|—)", line))}
    assert set(MAPPING_CHOICES.names()) <= mappings, set(MAPPING_CHOICES.names()) - mappings
