"""``scripts/gpu_check.py``: without CUDA it stops at once with a clear message; ``--cpu-smoke`` runs the
CPU-checkable steps at tiny sizes on a real corpus slice (kernels table, loss, fp16 skip, nmt-train, nmt-translate)."""

from __future__ import annotations

import re
import subprocess

from integration_helpers import BIN, REPO

SCRIPT = REPO / "scripts" / "gpu_check.py"


def test_without_cuda_it_exits_2_at_once_and_says_what_to_do(cli_env, tmp_path):
    proc = subprocess.run(
        [str(BIN / "python"), str(SCRIPT), "--work-dir", str(tmp_path)],
        env=cli_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "gpu_check: error: no CUDA device" in proc.stderr and "--cpu-smoke" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())  # nothing was run


def test_the_cpu_smoke_run_passes_every_cpu_checkable_step(cli_env, tmp_path):
    report = tmp_path / "report.md"
    cmd = [
        str(BIN / "python"),
        str(SCRIPT),
        "--cpu-smoke",
        "--work-dir",
        str(tmp_path / "work"),
        "--output",
        str(report),
    ]
    proc = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    text = report.read_text()
    assert text.strip() == proc.stdout.strip()
    statuses = dict(re.findall(r"^### (\d)\. .*: (ok|FAILED|skipped) \(", text, re.M))
    assert statuses == {"0": "ok", "1": "ok", "2": "ok", "3": "skipped", "4": "ok", "5": "ok", "6": "ok"}
    assert text.count("`aten::_scaled_dot_product_flash_attention_for_cpu`") == 5  # 1 encoder + 2 decoder layers
    assert "ok: the third non-finite update in a row stops training" in text
    assert re.search(r"transformer: [\d,]+ target tokens/s", text) and re.search(r"rnn_bahdanau: [\d,]+", text)
    assert "20 test sentences" in text
