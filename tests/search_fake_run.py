"""A stand-in for a method script in tests/test_search.py: writes a run folder's files from a
table of accuracies instead of training, in the folder the real script would use (which
tools/search.py computes and passes as ``VP_SEARCH_RUN_DIR``).

``FAKE_RUNS`` (JSON) maps ``prompt/mapping`` (or a method name, or ``default``) to per-epoch
``val`` and ``test`` accuracies, ``seed_step`` (added per seed above 1), ``sleep`` (seconds per
epoch), ``hold_first`` (the first start of all waits after its first epoch until it is killed:
a run cut off mid-way however slow the machine) or ``fail`` (an error line to exit with).
``FAKE_LOG`` gets one line per start.
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from runner.run_lock import RunLock  # noqa: E402  (no torch: this stand-in starts in a blink)


def flag(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv else default


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> int:
    script, argv = sys.argv[1], sys.argv[2:]
    method = Path(script).stem
    run_dir = Path(os.environ["VP_SEARCH_RUN_DIR"])  # the folder tools/search.py computed for this command
    prompt, mapping = flag(argv, "--prompt", "pad"), flag(argv, "--mapping", "ilm")
    seed, epochs = int(flag(argv, "--seed", "1")), int(flag(argv, "--epochs", "5"))
    table = json.loads(os.environ.get("FAKE_RUNS", "{}"))
    entry = table.get(method, table.get(f"{prompt}/{mapping}", table.get("default", {})))
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps({"argv": argv, "pid": os.getpid(), "runs_per_gpu": os.environ.get("VP_RUNS_PER_GPU"), "t": time.time()}) + "\n")
    hold = entry.get("hold_first") and len(Path(os.environ["FAKE_LOG"]).read_text().splitlines()) == 1
    if "fail" in entry:
        print(entry["fail"], file=sys.stderr)
        return 2
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = RunLock.acquire(run_dir.parent / f".{run_dir.name}.lock", run_dir)
    run_dir.mkdir(exist_ok=True)
    write(run_dir / "config.json", json.dumps({"argv": argv}))
    step = entry.get("seed_step", 0.0) * (seed - 1)
    val = [v + step for v in entry.get("val", [50.0] * epochs)]
    test = [v + step for v in entry.get("test", [50.0] * epochs)]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()] if "--resume" in argv else []
    for epoch in range(len(rows), epochs):
        time.sleep(entry.get("sleep", 0.0))
        rows.append({"epoch": epoch + 1, "val_acc": val[epoch], "test_acc": test[epoch]})
        write(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        (run_dir / "ckpt.pth").write_bytes(b"x")
        held_until = time.time() + 300  # killed here (SIGTERM from the search or its parent-death signal)
        while hold and time.time() < held_until:  # (a bound: a run the test failed to kill does not stay)
            time.sleep(0.05)
    best = max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))
    results = {"epochs": epochs, "best_test_acc": max(test), "final_test_acc": test[-1], "val_selected_test_acc": best["test_acc"],
               "val_selected_epoch": best["epoch"], "best_val_acc": best["val_acc"]}  # fmt: skip
    write(run_dir / "results.json", json.dumps(results))
    lock.release()
    with open(os.environ["FAKE_LOG"] + ".ends", "a") as log:
        log.write(json.dumps({"pid": os.getpid(), "t": time.time()}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
