"""What the GPU check reads of a finished run (through :mod:`runner.records`), and its table."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from runner.records import RESULTS, read_json, read_metrics, read_run
from tools.gpu_checks.plan import TOLERANCE, Check


@dataclass
class Outcome:
    """What a check needs of one finished run (read from its folder)."""

    exit_code: int
    test_acc: float | None = None
    losses: list[float] = field(default_factory=list)
    first_mapping: dict | None = None
    precision: str | None = None
    seconds: float = 0.0
    note: str = ""


def read_outcome(results: Path, exit_code: int, seconds: float) -> Outcome:
    """The run below ``results`` (one run folder)."""
    found = [(p.parent, read_json(p)) for p in sorted(results.rglob(RESULTS))]
    if exit_code != 0 or not found:
        return Outcome(exit_code or 1, seconds=seconds, note="no results.json" if exit_code == 0 else f"exit {exit_code}")
    folder, summary = found[0]
    run = read_run(folder)
    acc = summary.get("final_test_acc", summary.get("test_acc"))
    return Outcome(
        0, acc, [r["train_loss"] for r in read_metrics(folder)], read_json(folder / "mappings" / "epoch_001.json"),
        (run.resolved if run is not None else {}).get("precision"), seconds,
    )  # fmt: skip


def compare(check: Check, subject: Outcome, reference: Outcome, tolerance: float = TOLERANCE) -> dict:
    """One table row: the subject's accuracy against the reference's, finite losses, the first mapping."""
    row = {"check": check.label, "against": check.reference, "precision": subject.precision or "-", "seconds": subject.seconds}
    failed = [f"{name} {o.note}" for name, o in (("run", subject), ("reference", reference)) if o.exit_code != 0]
    if failed:
        return {**row, "acc": None, "ref_acc": None, "delta": None, "finite": "-", "mapping": "-", "verdict": "FAIL: " + "; ".join(failed)}
    delta = None if subject.test_acc is None or reference.test_acc is None else subject.test_acc - reference.test_acc
    finite = all(math.isfinite(v) for v in subject.losses + reference.losses)
    if subject.first_mapping is None or reference.first_mapping is None:
        mapping = "-"
    else:
        mapping = "same" if subject.first_mapping == reference.first_mapping else "differs"
    problems = []
    if not finite:
        problems.append("a non-finite training loss")
    if delta is None or abs(delta) > tolerance:
        problems.append(f"accuracy off by more than {tolerance:g} points")
    if mapping == "differs":
        problems.append("another first-epoch mapping")
    verdict = "ok" if not problems else "FAIL: " + ", ".join(problems)
    return {**row, "acc": subject.test_acc, "ref_acc": reference.test_acc, "delta": delta, "finite": "yes" if finite else "NO", "mapping": mapping, "verdict": verdict}


def table(rows: list[dict], tolerance: float = TOLERANCE) -> str:
    """The check's one table (markdown)."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [
        f"| check | against | precision | test acc % | against % | difference (tolerance {tolerance:g}) | losses finite | mapping after epoch 1 | s | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        delta = "-" if r["delta"] is None else f"{r['delta']:+.2f}"
        lines.append(
            f"| {r['check']} | {r['against']} | {r['precision']} | {pct(r['acc'])} | {pct(r['ref_acc'])} | {delta} | {r['finite']}"
            f" | {r['mapping']} | {r['seconds']:.0f} | {r['verdict']} |"
        )
    failed = sum(not r["verdict"].startswith("ok") for r in rows)
    lines.append("")
    lines.append(f"{len(rows) - failed} of {len(rows)} checks ok" + (f", {failed} FAILED" if failed else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Running
