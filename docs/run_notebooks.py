"""Execute the tutorial notebooks and fail on any cell error (CI and maintainers).

    python docs/run_notebooks.py                 # execute copies in a temp dir (CI)
    python docs/run_notebooks.py --inplace       # execute and save the outputs into docs/notebooks
    python docs/run_notebooks.py docs/notebooks/heisenberg_rbm.ipynb --timeout 300

Each notebook runs in a fresh kernel of this Python (the ``python3`` kernel of ipykernel), with
its small settings, in a temporary working directory. Prints each notebook's wall time; exits 1
if a cell raises or a notebook runs past ``--timeout`` seconds, 0 otherwise. The committed
notebooks carry their outputs so that the documentation site (mkdocs-jupyter, which does not
execute) shows the plots: re-run with ``--inplace`` after changing a notebook.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NOTEBOOKS = ("heisenberg_rbm.ipynb", "molecule_fci.ipynb", "helium_ferminet.ipynb")


def run_one(path: Path, timeout: int, inplace: bool) -> tuple[bool, float, str]:
    """Execute one notebook; ``(ok, wall time in s, message)``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nqs-nb-") as work:
        # execute a copy: the working directory gets whatever files the notebook writes
        shutil.copy(path, Path(work) / path.name)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": work}})
        try:
            client.execute()
        except CellTimeoutError:
            return False, time.perf_counter() - t0, f"a cell ran past {timeout} s"
        except (CellExecutionError, DeadKernelError) as err:
            last = str(err).strip().splitlines()[-1]
            return False, time.perf_counter() - t0, re.sub(r"\x1b\[[0-9;]*m", "", last)
    wall = time.perf_counter() - t0
    if inplace:
        nbformat.write(nb, path)
    return True, wall, "ok"


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks given (default: the three tutorials); 0 if all ran without error."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path,
                   help="notebooks to execute (default: the three tutorials in docs/notebooks)")
    p.add_argument("--timeout", type=int, default=600,
                   help="seconds allowed per cell; also checked per notebook (default: 600)")
    p.add_argument("--inplace", action="store_true",
                   help="save the executed notebooks (with outputs) over the originals")
    args = p.parse_args(argv)
    paths = args.notebooks or [HERE / "notebooks" / name for name in NOTEBOOKS]
    missing = [str(x) for x in paths if not x.is_file()]
    if missing:
        print(f"error: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    # figures inline (as PNG outputs) even when the caller set MPLBACKEND=Agg for scripts
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # the kernel runs in a temp dir: import nqs from this checkout, whatever is installed
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    failed = 0
    total = 0.0
    for path in paths:
        ok, wall, msg = run_one(path, args.timeout, args.inplace)
        total += wall
        if ok and wall > args.timeout:
            ok, msg = False, f"took {wall:.0f} s, more than --timeout {args.timeout} s"
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {path.name}: {wall:.1f} s  {'' if ok else msg}", flush=True)
    print(f"notebooks took {total:.1f} s in total")
    print(f"{len(paths) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
