"""A run's record of the code and the machine its numbers came from (runner/provenance.py)."""
from __future__ import annotations

import torch

from runner.provenance import cpu_model, git_commit, hardware


def test_the_cpu_model_is_read_from_cpuinfo_and_falls_back_when_it_is_missing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\nflags\t\t: fpu avx2\n\nprocessor\t: 1\n")
    assert cpu_model(info) == "AMD EPYC 9654 96-Core Processor"
    assert cpu_model(tmp_path / "absent") not in ("", "AMD EPYC 9654 96-Core Processor")


def test_hardware_names_the_kernels_threads_and_the_variables_that_change_them(monkeypatch):
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plain = hardware(torch.device("cpu"))
    assert plain["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and plain["threads"] == torch.get_num_threads()
    assert "gpu" not in plain and "environment" not in plain
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert hardware(torch.device("cpu"))["environment"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_the_short_commit_is_a_prefix_of_the_full_one():
    full, short = git_commit(), git_commit(short=True)
    if full == "unknown":  # a copy outside git
        assert short == "unknown"
    else:
        assert full.startswith(short.removesuffix("+dirty")) and len(short.removesuffix("+dirty")) < len(full.removesuffix("+dirty"))
