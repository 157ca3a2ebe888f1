"""``--requeue``: after a stop by signal, put this SLURM job back in the queue.

The run has written its checkpoint; the requeued job starts the same command again, and with
``--resume auto`` that command continues the run. ``scontrol requeue`` needs a requeueable job
(``#SBATCH --requeue``, as ``tools/reproduce.py --launcher slurm`` writes).
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping


def requeue(env: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """Run ``scontrol requeue $SLURM_JOB_ID``; returns (whether it was requeued, a line saying what happened)."""
    env = os.environ if env is None else env
    job = env.get("SLURM_JOB_ID")
    if not job:
        return False, "not requeued: not a SLURM job (SLURM_JOB_ID is unset)"
    command = ["scontrol", "requeue", job]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"not requeued: {' '.join(command)} failed ({exc})"
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        return False, f"not requeued: {' '.join(command)} exited {done.returncode}" + (f" ({why[-1]})" if why else "")
    return True, f"requeued SLURM job {job}"
