"""Every bad input is one line on stderr and exit code 2, and touches no file of ``--out``.

One table of more than 200 bad command lines across the four subcommands, run in-process through
``nqs.cli.main`` (no subprocess each): each is rejected before anything is compiled or written,
so the whole table takes seconds. Every case runs against an ``--out`` already holding another
run's files and (unless the case is about ``--resume``) with ``--overwrite``: the files must
survive byte for byte, which shows the validation comes before ``--out`` is touched.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from nqs.cli import main

FCIDUMP_OK = """ &FCI NORB=2,NELEC=2,MS2=0,
  ORBSYM=1,1,
  ISYM=1,
 &END
  0.6746  1  1  1  1
  0.6636  1  1  2  2
  0.1813  1  2  1  2
  0.6975  2  2  2  2
 -1.2528  1  1  0  0
 -0.4756  2  2  0  0
  0.7137  0  0  0  0
"""


def _fcidumps(d: Path) -> dict[str, str]:
    files = {
        "nan": FCIDUMP_OK.replace("0.6636", "nan"),
        "inf": FCIDUMP_OK.replace("-1.2528", "inf"),
        "nelec0": FCIDUMP_OK.replace("NELEC=2", "NELEC=0"),
        "nelec9": FCIDUMP_OK.replace("NELEC=2", "NELEC=9,MS2=1").replace(",MS2=0,", ","),
        "ms2": FCIDUMP_OK.replace("MS2=0", "MS2=1"),
        "norb0": FCIDUMP_OK.replace("NORB=2", "NORB=0"),
        "garbage": "this is not an FCIDUMP\n",
        "empty": "",
        "ecore": FCIDUMP_OK.replace("0.7137", "nan"),
    }
    paths = {}
    for name, text in files.items():
        path = d / f"{name}.FCIDUMP"
        path.write_text(text)
        paths[name] = str(path)
    return paths


def _cases(tmp: Path) -> list[tuple[list[str], bool]]:
    """``(argv without --out, whether to add --overwrite)``."""
    fd = _fcidumps(tmp)
    a_file = tmp / "a_file"
    a_file.write_text("x")
    cases: list[list[str]] = []
    bad_xyz = {"count": "two\n\nH 0 0 0\nH 0 0 1\n", "short": "2\nc\nH 0 0 0\n",
               "line": "2\nc\nH 0 0 0\nH 0 0\n", "nan": "2\nc\nH 0 0 0\nH 0 0 x\n",
               "element": "2\nc\nH 0 0 0\nXx 0 0 1\n", "empty": ""}
    xyz = []
    for name, text in bad_xyz.items():
        (tmp / f"{name}.xyz").write_text(text)
        xyz.append(str(tmp / f"{name}.xyz"))
    xyz.append(str(tmp / "missing.xyz"))
    rs_xyz = ["realspace", "--layers", "1", "--hidden", "8", "4", "--determinants", "1",
              "--walkers", "16", "--steps", "1", "--molecule"]
    cases += [["molecule", "--steps", "1", "--molecule", f] for f in xyz]
    cases += [["bench-fci", "--steps", "1", "--molecule", f] for f in xyz]
    cases += [["bench-fci", "--steps", "1", "--molecule", "w=" + f] for f in xyz[:2]]
    cases += [[*rs_xyz, f] for f in xyz]
    ok_fcidump = tmp / "ok.FCIDUMP"
    ok_fcidump.write_text(FCIDUMP_OK)
    cases += [
        ["spin", "--size", "4", "--steps", "1", "--observe", "nonsense"],
        ["spin", "--size", "4", "--steps", "1", "--observe", "correlations", "s2"],
        ["spin", "--lattice", "triangular", "--size", "3", "--model", "ising", "--steps", "1",
         "--observe", "staggered_magnetization"],
        ["molecule", "--molecule", "H2", "--steps", "1", "--observe", "magnetization_z"],
        ["molecule", "--fcidump", str(ok_fcidump), "--steps", "1", "--observe", "dipole"],
    ]

    def bad_values(cmd: list[str], option: str, values: list[str]) -> None:
        cases.extend([[*cmd, option, v] for v in values])

    nums = ["0", "-1", "nan", "inf", "abc", ""]
    # ---- spin
    spin = ["spin", "--size", "4", "--steps", "1"]
    for opt in ("--alpha", "--lr", "--time-limit"):
        bad_values(spin, opt, nums)
    bad_values(spin, "--size", ["0", "-3", "abc", "1.5", "100000", "99999999999", ""])
    bad_values(spin, "--samples", ["0", "-1", "abc", "2.5", "1e12", "1000000000000"])
    bad_values(spin, "--chains", ["0", "-2", "abc"])
    bad_values(spin, "--steps", ["0", "-1", "abc"])
    bad_values(spin, "--discard-sweeps", ["-1", "abc"])
    bad_values(spin, "--diag-shift", ["-1", "nan", "inf", "abc"])
    bad_values(spin, "--h", ["nan", "inf", "-inf", "abc"])
    bad_values(spin, "--seed", ["abc", "1.5", "99999999999999999999"])
    bad_values(spin, "--checkpoint-every", ["0", "-1", "abc"])
    bad_values(spin, "--chunk-size", ["-1", "abc"])
    for opt in ("--model", "--lattice", "--ansatz", "--sampler", "--optimizer", "--dtype",
                "--ratio-dtype"):
        bad_values(spin, opt, ["nonsense"])
    cases += [
        ["spin", "--model", "xxz", "--delta", "inf"],
        ["spin", "--model", "xxz", "--delta", "nan"],
        ["spin", "--model", "j1j2", "--j2", "nan"],
        ["spin", "--model", "j1j2", "--j2", "-inf"],
        ["spin", "--model", "ising", "--h", "nan", "--lr", "1e3"],
        ["spin", "--model", "heisenberg", "--size", "5"],
        ["spin", "--model", "j1j2", "--size", "7"],
        ["spin", "--lattice", "square", "--size", "400"],
        ["spin", "--lattice", "square", "--size", "100000"],
        ["spin", "--size", "100000"],
        ["spin", "--size", "64", "--sampler", "exact"],
        ["spin", "--size", "4000", "--alpha", "100"],
        ["spin", "--ansatz", "rbm-symm", "--alpha", "1.5"],
        ["spin", "--lattice", "honeycomb", "--size", "1", "--model", "heisenberg"],
        ["spin", "--lattice", "kagome"],
        ["spin", "--lattice", "square", "--ansatz", "vit", "--patch", "3"],
        ["spin", "--lattice", "triangular", "--ansatz", "vit"],
        ["spin", "--lattice", "square", "--ansatz", "vit", "--embed", "6", "--heads", "4"],
        ["spin", "--ansatz", "gcnn", "--features", "0"],
        ["spin", "--ansatz", "gcnn", "--layers", "-1"],
        ["spin", "--ansatz", "gcnn", "--symmetries", "rotations"],
        ["spin", "--parity", "up"],
        ["spin", "--lattice", "triangular", "--size", "4", "--model", "heisenberg", "--marshall"],
        ["spin", "--num-processes", "0"],
        ["spin", "--num-processes", "2"],
        ["spin", "--process-id", "1"],
        ["spin", "--coordinator-address", "nohost", "--num-processes", "2", "--process-id", "0"],
        ["spin", "--coordinator-address", "h:1", "--num-processes", "2", "--process-id", "5"],
        ["spin", "--distributed-auto", "--num-processes", "2"],
        ["spin", "--distributed-auto"],
        ["spin", "--no-such-flag"],
        ["spin", "--size"],
        ["nosuchcommand"],
        [],
    ]
    # ---- molecule
    mol = ["molecule", "--molecule", "H2", "--steps", "1"]
    for opt in ("--lr", "--alpha", "--init-scale", "--sampling-power", "--final-lr-fraction",
                "--time-limit"):
        bad_values(mol, opt, ["0", "-1", "nan", "inf", "abc"])
    for opt in ("--samples", "--chains", "--determinants", "--metric-states", "--steps",
                "--checkpoint-every"):
        bad_values(mol, opt, ["0", "-1", "abc"])
    bad_values(mol, "--hidden", ["0", "-4", "abc", "100000000"])
    bad_values(mol, "--diag-shift", ["-1", "nan", "inf"])
    bad_values(mol, "--charge", ["-10", "5", "2", "abc", "1.5"])
    bad_values(mol, "--spin", ["1", "3", "-3", "abc"])
    bad_values(mol, "--basis", ["nonsense", "", "sto-3g-xyz"])
    bad_values(mol, "--cas", ["2", "abc"])
    for opt in ("--ansatz", "--sampler", "--optimizer", "--lr-schedule", "--rule", "--sector",
                "--unit", "--dtype"):
        bad_values(mol, opt, ["nonsense"])
    cases += [
        ["molecule", "--steps", "1"],
        ["molecule", "--molecule", "H2", "--fcidump", fd["nan"]],
        ["molecule", "--molecule", "H2", "--cas", "2", "8"],
        ["molecule", "--molecule", "H2", "--cas", "4", "1"],
        ["molecule", "--molecule", "H2", "--cas", "3", "2"],
        ["molecule", "--molecule", "H2", "--sampling-power", "1.5"],
        ["molecule", "--molecule", "H2", "--lr-schedule", "cosine", "--final-lr-fraction", "2"],
        ["molecule", "--molecule", "LiH", "--frozen-core", "--cas", "2", "2"],
        ["molecule", "--molecule", "Xx 0 0 0"],
        ["molecule", "--molecule", "H 0 0 0; H 0 0 0"],
        ["molecule", "--molecule", "H 0 0"],
        ["molecule", "--molecule", "H 0 0 nan"],
        ["molecule", "--molecule", "H 0 0 inf; H 0 0 1"],
        ["molecule", "--molecule", "H a b c"],
        ["molecule", "--molecule", ""],
        ["molecule", "--molecule", ";;"],
        ["molecule", "--molecule", "H2", "--sampler", "mcmc", "--samples", "1000000000000"],
        ["molecule", "--molecule", "H2", "--optimizer", "sr", "--hidden", "1000000",
         "--samples", "1000000", "--sampler", "mcmc"],
        ["molecule", "--molecule", "H2", "--ansatz", "rbm", "--alpha", "1e9"],
        ["molecule", "--molecule", "H2", "--distributed-auto"],
        ["molecule", "--fcidump", "/nonexistent/FCIDUMP"],
        ["molecule", "--fcidump", str(tmp)],
    ] + [["molecule", "--fcidump", path] for path in fd.values()]
    # ---- bench-fci
    bench = ["bench-fci", "--steps", "1"]
    bad_values(bench, "--time-limit", ["0", "-1", "nan", "inf", "abc", "-inf"])
    bad_values([*bench, "--realspace"], "--time-limit", ["0", "nan", "inf"])
    cases += [
        [*bench, "--suite", "nonsense"],
        [*bench, "--molecule", "=H 0 0 0; H 0 0 1"],
        [*bench, "--molecule", "H2", "--molecule", "H2"],
        [*bench, "--molecule", "a=H 0 0 0; H 0 0 1", "--molecule", "A=H 0 0 0; H 0 0 1.1"],
        [*bench, "--molecule", "x/y=H 0 0 0; H 0 0 1", "--molecule", "x_y=H 0 0 0; H 0 0 2"],
        [*bench, "--molecule", "../../escaped=Xx 0 0 0"],
        [*bench, "--molecule", "///=H 0 0 0; H 0 0 1"],
        [*bench, "--molecule", "H2", "--fcidump", "/nonexistent/FCIDUMP"],
        [*bench, "--fcidump", fd["nan"]],
        [*bench, "--fcidump", fd["nelec0"]],
        [*bench, "--molecule", "H2", "--charge", "-10"],
        [*bench, "--molecule", "H2", "--basis", "nonsense"],
        [*bench, "--molecule", "H2", "--hidden", "100000000"],
        [*bench, "--molecule", "H2", "--lr", "nan"],
        [*bench, "--molecule", "H2", "--sampling-power", "0"],
        [*bench, "--molecule", "H2", "--checkpoint-every", "0"],
        [*bench, "--molecule", "H2", "--dtype", "half"],
        [*bench, "--realspace", "--fcidump", fd["nan"]],
        [*bench, "--realspace", "--frozen-core"],
        [*bench, "--realspace", "--cas", "2", "2"],
        [*bench, "--realspace", "--dtype", "float32"],
        [*bench, "--realspace", "--rs-momentum", "1.0"],
        [*bench, "--realspace", "--eval-steps", "1"],
        [*bench, "--realspace", "--pretrain-steps", "-1"],
        [*bench, "--realspace", "--walkers", "0"],
        [*bench, "--realspace", "--walkers", "1000000000"],
        [*bench, "--realspace", "--molecule", "Xx 0 0 0"],
        [*bench, "--realspace", "--molecule", "He", "--molecule", "He"],
        [*bench, "--realspace", "--rs-hidden", "100000000", "100000000"],
        [*bench, "--realspace", "--rs-optimizer", "nonsense"],
        [*bench, "--realspace", "--molecule", "He", "--basis", "nonsense"],
    ]
    # ---- realspace
    rs = ["realspace", "--preset", "He", "--layers", "1", "--hidden", "8", "4",
          "--determinants", "1", "--walkers", "16", "--steps", "1"]
    for opt in ("--lr", "--lr-delay", "--time-limit"):
        bad_values(rs, opt, ["0", "-1", "nan", "inf", "abc"])
    for opt in ("--layers", "--determinants", "--walkers", "--mcmc-steps", "--eval-steps",
                "--checkpoint-every"):
        bad_values(rs, opt, ["0", "-1", "abc"])
    bad_values(rs, "--damping", ["-1", "nan", "inf"])
    bad_values(rs, "--momentum", ["-1", "nan", "1.0", "2"])
    bad_values(rs, "--steps", ["-1", "abc"])
    bad_values(rs, "--pretrain-steps", ["-1", "abc"])
    bad_values(rs, "--charge", ["3", "-10", "abc"])
    bad_values(rs, "--spin", ["3", "1", "abc"])
    for opt in ("--preset", "--envelope", "--optimizer", "--laplacian", "--dtype", "--unit"):
        bad_values(rs, opt, ["nonsense"])
    cases += [
        ["realspace", "--steps", "1"],
        [*rs, "--seed", "-99999999999999999999"],
        [*mol, "--seed", "1e3"],
        ["realspace", "--preset", "He", "--molecule", "He 0 0 0"],
        ["realspace", "--molecule", "Xx 0 0 0"],
        ["realspace", "--molecule", "He 0 0 nan"],
        ["realspace", "--molecule", "H 0 0 0; H 0 0 0"],
        ["realspace", "--molecule", "He 0 0"],
        [*rs, "--eval-steps", "1"],
        [*rs, "--observe", "nonsense"],
        [*rs, "--observe", "density", "s2"],
        [*rs, "--observe", "density", "--pretrain-basis", "no-such-basis"],
        [*rs, "--hidden", "0", "8"],
        [*rs, "--hidden", "100000000", "100000000"],
        [*rs, "--walkers", "1000000000"],
        [*rs, "--walkers", "100000000", "--optimizer", "sr"],
        [*rs, "--momentum", "0.5", "--optimizer", "adam"],
        [*rs, "--dtype", "float32", "--optimizer", "kfac"],
        [*rs, "--pretrain-steps", "1", "--pretrain-basis", "nonsense"],
        [*rs, "--distributed-auto"],
        [*rs, "--chunk-size", "-5"],
        [*rs, "--ecp", "nonsense"],
        [*rs, "--ecp", "He:cc:ecp"],
        ["realspace", "--molecule", "Na 0 0 0; H 0 0 3.5", "--ecp", "lanl2dz"],
    ]
    table = [(argv, True) for argv in cases]
    # ---- the output directory itself (no --overwrite: these are about --out)
    for cmd in (spin, mol, rs):
        table += [
            ([*cmd, "--resume", "--overwrite"], False),
            ([*cmd, "--out", str(a_file)], False),
            ([*cmd, "--out", str(a_file / "sub")], False),
            ([*cmd, "--out", str(tmp / "never-ran"), "--resume"], False),
            ([*cmd], False),  # the pre-existing --out holds another run's files
        ]
    return table


def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(root))] = (digest, st.st_mtime_ns, st.st_mode)
    return out


def test_bad_inputs_are_one_line_exit_2_and_touch_nothing(tmp_path, capsys):
    out = tmp_path / "previous-run"
    (out / "H2").mkdir(parents=True)
    for name in ("log.jsonl", "checkpoint.msgpack", "result.json", "results.json"):
        (out / name).write_text(f"{name} of another run\n")
    (out / "H2" / "log.jsonl").write_text("a molecule's log\n")
    (out / "notes.txt").write_text("the user's own file\n")
    before = _snapshot(out)
    table = _cases(tmp_path)
    assert len(table) >= 200, len(table)
    capsys.readouterr()
    failures = []
    for argv, overwrite in table:
        full = [*argv, *(["--out", str(out)] if "--out" not in argv and argv[:1] != [] else []),
                *(["--overwrite"] if overwrite and argv[:1] != [] else [])]
        try:
            code = main(full)
        except SystemExit as exc:  # argparse
            code = exc.code
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            code = f"raised {type(exc).__name__}: {exc}"
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        problems = []
        if code != 2:
            problems.append(f"exit {code}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines")
        if "Traceback" in err:
            problems.append("traceback")
        if _snapshot(out) != before:
            problems.append("--out changed")
            before = _snapshot(out)
        if problems:
            failures.append(f"{' '.join(full)!r}: {', '.join(problems)}: {err.strip()[:300]}")
    assert not failures, f"{len(failures)} of {len(table)} bad inputs:\n" + "\n".join(failures)
    assert not os.path.exists(tmp_path / "never-ran")
