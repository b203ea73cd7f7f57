"""The ``nqs`` command: ``nqs spin``, ``nqs molecule``, ``nqs bench-fci``, ``nqs realspace``
(also ``python -m nqs``; ``nqs --version``).

Every subcommand takes ``--config FILE`` and ``--dump-config FILE`` (:mod:`nqs.commands.config`)
and records its options and provenance in its result file.

Only this module (with the driver and io) touches the console and files; it builds library
objects from the command-line options and never passes a config dict into the library.
Every failure is one line on stderr and an exit code (:mod:`nqs.errors`): 2 bad input, 3 the
environment (memory, disk, permissions, no cluster), 4 a diverged run, 130 / 143 a run stopped
by SIGINT / SIGTERM after writing a checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from nqs.commands.common import (  # noqa: F401  (the argparse types, re-exported)
    finite_float,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    seed_int,
)
from nqs.errors import CheckpointError, EnvironmentProblem, InputError, RunDiverged
from nqs.provenance import git_state

EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_DIVERGED = 4


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage dump) and exit with code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    """The full ``nqs`` argument parser, built from the subcommands' ``register`` functions
    (:mod:`nqs.commands`; they never import this module)."""
    from nqs.commands import molecule as molecule_cmd
    from nqs.commands import realspace as realspace_cmd
    from nqs.commands import spin as spin_cmd

    parser = _Parser(
        prog="nqs",
        description="Neural-network quantum states by variational Monte Carlo, "
        "checked against exact references.",
    )
    from nqs.commands.config import add_config_options
    from nqs.provenance import version

    parser.add_argument("--version", action="version", version=f"nqs {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    spin_cmd.register(sub)
    molecule_cmd.register(sub)
    realspace_cmd.register(sub)
    for command in sub.choices.values():
        add_config_options(command)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _resume_command(argv: Sequence[str]) -> str:
    import shlex

    args = [a for a in argv if a not in ("--resume", "--overwrite")]
    return shlex.join(["nqs", *args, "--resume"])


def _dump_or_run(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 argv: Sequence[str], handler: Callable[[argparse.Namespace], int]) -> int:
    """Merge ``--config``; with ``--dump-config`` write the options and stop, else run."""
    from nqs.commands.config import prepare, write_config

    prepare(parser, args, argv)
    if args.dump_config is None:
        return handler(args)
    resolve = getattr(args, "resolve_options", None)  # options sized to the device
    if resolve is not None:
        resolve(args)
    write_config(args.dump_config, args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nqs`` console script; returns the exit code."""
    from nqs.interrupt import RunInterrupted

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    prefix = f"nqs {args.command}: error:"
    # the commit the run starts from (cached), not the one checked out when it writes its result
    git_state()
    try:
        return _dump_or_run(parser, args, argv, handler)
    except (InputError, CheckpointError) as err:
        print(f"{prefix} {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EnvironmentProblem as err:
        print(f"{prefix} {_one_line(err)}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except RunDiverged as err:
        print(f"{prefix} {_one_line(err)}", file=sys.stderr)
        return EXIT_DIVERGED
    except RunInterrupted as err:
        how = (f"; resume with: {_resume_command(argv)}" if err.checkpoint is not None else "")
        print(f"nqs {args.command}: {_one_line(err)}{how}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"nqs {args.command}: interrupted; resume from the last checkpoint with --resume",
              file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prefix} out of memory; reduce the sizes (--samples, --walkers, --hidden, "
              "--alpha, --size) or set --chunk-size", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except RuntimeError as err:  # XLA's allocation failures (XlaRuntimeError)
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        print(f"{prefix} out of device memory ({_one_line(err)[:200]}); reduce the sizes or "
              "set --chunk-size", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except OSError as err:  # disk full, permission denied, ... while running
        name = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"{prefix} {err.strerror or _one_line(err)}{name}", file=sys.stderr)
        return EXIT_ENVIRONMENT


if __name__ == "__main__":
    sys.exit(main())
