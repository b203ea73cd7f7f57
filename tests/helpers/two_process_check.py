"""Run by tests/conftest.py (fixture ``two_processes``): one small ``nqs spin`` run split over two
CPU processes on localhost (``jax.distributed``, gloo), launched as two ``python -m nqs.cli``
processes. Prints ``RESULT {...}``: both exit codes, which of them printed "wrote", the result
file process 0 wrote, and the arguments, so that tests/test_parallel.py can repeat the run in one
process and compare.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["spin", "--model", "ising", "--size", "6", "--samples", "32", "--chains", "8",
        "--steps", "2", "--chunk-size", "none"]


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def launch(out: Path) -> tuple[list[int], list[tuple[str, str]]]:
    """Both processes to the end: (exit codes, (stdout, stderr) of each)."""
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nqs.cli", *ARGS, "--out", str(out),
             "--coordinator-address", f"localhost:{port}", "--num-processes", "2",
             "--process-id", str(i)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    return [p.returncode for p in procs], outs


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "two"
        codes, outs = launch(out)
        if any(codes):
            # one retry: the free port can be taken between probing and binding, and the
            # coordinator's start-up handshake can time out on a heavily loaded machine
            # (a fresh --out: the failed attempt's files would be refused as another run's)
            out = Path(d) / "two-retry"
            codes, outs = launch(out)
        result_file = out / "result.json"
        result = json.loads(result_file.read_text()) if result_file.exists() else None
    print("RESULT " + json.dumps({
        "args": ARGS,
        "returncodes": codes,
        "wrote": ["wrote" in o[0] for o in outs],
        "stderr_tail": outs[0][1][-2000:] + outs[1][1][-2000:],
        "result": result,
    }), flush=True)


if __name__ == "__main__":
    main()
