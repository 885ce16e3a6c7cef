import subprocess
import sys
from pathlib import Path

import pytest

from rsim_graph.loading import BUNDLED_REASONER

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not (BUNDLED_REASONER / "config.json").is_file(), reason="bundled models not built")
def test_stream_steps_example_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "stream_steps.py"), "Compute (12+7)*3."], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("-> understand") and lines[-1].startswith("answer: ")
