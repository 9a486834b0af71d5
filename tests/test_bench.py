"""Every benchmark runs once in its tiny configuration, so the scripts cannot rot."""
from __future__ import annotations

import subprocess
import sys

from stages.config import ROOT


def run_bench(module: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_audit_model_choice_tiny(mirror):
    out = run_bench("bench.audit_model_choice", "--tiny")
    for model in ("tfidf", "embeddings", "both"):
        assert f" {model} " in out
    assert "mean AUROC:" in out
