#!/usr/bin/env bash
# The measurements of issue 23 on one CUDA GPU, in steps that fit a short device session.
#
#   bash tools/gpu_check.sh check paper        # ~5 min: tools/gpu_check.py; the paper's ResNet-18 CIFAR-10 epoch, eager and --compile
#   bash tools/gpu_check.sh sweep bench        # ~4 min: four runs one after another vs --runs-per-gpu 4; tools/bench.py
#   bash tools/gpu_check.sh compile_max        # optional: --compile max (long compile)
#
# Everything lands in $OUT (default /tmp/gpu-out): logs, metrics.jsonl of each timed run, the
# tables, and summary.txt (one line per figure). Random-init ResNet-18 weights (nothing downloads);
# CIFAR-10 from $VP_SHARED/datasets when present, else a synthetic set of the same shape (the same
# speed: images are decoded once into a uint8 tensor). Each step has its own time limit, so one
# that hangs leaves the others their time.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
WORK=${WORK:-/tmp/gpu-work}
mkdir -p "$OUT" "$WORK"
export VP_DOWNLOAD=0 PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
STEPS=${*:-check paper sweep bench}
summary() { echo "$*" | tee -a "$OUT/summary.txt"; }

$PY - <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import torch, platform
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA", "| torch", torch.__version__, "| CUDA", torch.version.cuda, "| python", platform.python_version())
EOF

weights="$WORK/resnet18-random.pth"
[ -f "$weights" ] || $PY -c "
import torch, torchvision; torch.manual_seed(0)
torch.save(torchvision.models.resnet18(weights=None).state_dict(), '$weights')"

data_root() {  # full CIFAR-10 image folders, real or synthetic
  if [ -n "${VP_SHARED:-}" ] && [ -d "$VP_SHARED/datasets/cifar10/train" ]; then echo "$VP_SHARED/datasets"; return; fi
  if [ ! -f "$WORK/data/.done" ]; then
    $PY -c "
import sys; sys.path.insert(0, '.')
from pathlib import Path
from tools.benchmark.measure import write_synthetic_cifar10
write_synthetic_cifar10(Path('$WORK/data'), 50000, 10000)" && touch "$WORK/data/.done"
  fi
  echo "$WORK/data"
}

epoch_figures() {  # label, run results folder: the epochs' seconds (mapping / train / eval) from metrics.jsonl
  local label=$1 results=$2
  local metrics
  metrics=$(find "$results" -name metrics.jsonl | head -1)
  [ -n "$metrics" ] || { summary "$label: no metrics.jsonl"; return; }
  cp "$metrics" "$OUT/$label.metrics.jsonl"
  $PY - "$metrics" "$label" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cells = "; ".join(f"epoch {r['epoch']}: {r['epoch_seconds']:.2f} s ({r['mapping_seconds']:.2f} / {r['train_seconds']:.2f} / {r['eval_seconds']:.2f}), test {r['test_acc']:.2f}%" for r in rows)
print(f"{sys.argv[2]}: {cells}")
EOF
}

paper_run() {  # label, limit seconds, extra flags
  local label=$1 limit=$2; shift 2
  local data
  data=$(data_root)
  rm -rf "$WORK/$label"
  local t0=$SECONDS
  timeout "$limit" $PY experiments/cnn/ilm_vp.py --network resnet18 --weights "$weights" --dataset cifar10 --data-path "$data" \
    --epochs 3 --results-path "$WORK/$label" "$@" > "$OUT/$label.log" 2>&1
  summary "$label: exit $? after $((SECONDS - t0)) s (python experiments/cnn/ilm_vp.py --network resnet18 --dataset cifar10 --epochs 3 $*)"
  epoch_figures "$label" "$WORK/$label"
}

for step in $STEPS; do
  case $step in
    check)
      timeout 290 $PY tools/gpu_check.py --results-path "$WORK/gpu_check" > "$OUT/gpu_check.txt" 2>&1
      summary "gpu_check: exit $? (table in gpu_check.txt)"
      cp "$WORK/gpu_check/gpu_check.json" "$OUT/" 2>/dev/null
      tail -30 "$OUT/gpu_check.txt"
      ;;
    paper)
      paper_run paper 150
      paper_run paper-compile 150 --compile
      ;;
    compile_max)
      paper_run paper-compile-max 400 --compile max
      ;;
    sweep)  # four runs of 10,000 images one after another, then four at once on the one GPU
      data=$(data_root)
      for n in 1 4; do
        rm -rf "$WORK/sweep$n"
        t0=$SECONDS
        timeout 240 $PY tools/reproduce.py --datasets cifar10 --methods ilm_vp --networks resnet18 --seeds 1 2 3 4 \
          --runs-per-gpu $n --results-path "$WORK/sweep$n" --data-path "$data" \
          -- --weights "$weights" --epochs 3 --max-train-samples 10000 --max-test-samples 2000 > "$OUT/sweep$n.log" 2>&1
        summary "sweep of 4 runs (10,000 images, 3 epochs), --runs-per-gpu $n: exit $?, $((SECONDS - t0)) s wall"
      done
      $PY - "$WORK" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path
a = {p.parent.name: json.loads(p.read_text()) for p in Path(sys.argv[1], "sweep1").rglob("results.json")}
b = {p.parent.name: json.loads(p.read_text()) for p in Path(sys.argv[1], "sweep4").rglob("results.json")}
same = [k for k in a if k in b and a[k]["final_test_acc"] == b[k]["final_test_acc"]]
print(f"sweep: {len(same)} of {len(a)} runs give the same final test accuracy alone and four at once")
EOF
      ;;
    bench)
      timeout 200 $PY tools/bench.py --device cuda --networks resnet18 --max-train-samples 10000 --max-test-samples 2000 \
        --batch-size 128 --no-straightforward --output "$OUT/bench.json" > "$OUT/bench.txt" 2>&1
      summary "bench: exit $? (python tools/bench.py --device cuda --networks resnet18 --max-train-samples 10000 --max-test-samples 2000 --batch-size 128 --no-straightforward)"
      grep "^|" "$OUT/bench.txt"
      ;;
    *) echo "unknown step $step (check, paper, compile_max, sweep, bench)"; exit 2 ;;
  esac
done
cat "$OUT/summary.txt"
