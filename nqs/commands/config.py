"""``--config FILE`` and ``--dump-config FILE``: a run's options as a JSON file, for every
subcommand (one mechanism, built on each subcommand's argparse options).

    nqs spin --size 8 --steps 50 --dump-config spin.json   # write the options; run nothing
    nqs spin --config spin.json                            # run exactly those options
    nqs spin --config spin.json --seed 3 --out runs/s3     # flags given override the file
    nqs spin --config runs/spin/result.json --out runs/again   # a finished run's options

``--dump-config`` writes every option of the subcommand (the defaults included, resolved where
the subcommand sizes them to the device, as ``nqs realspace`` does) and exits with code 0
without running or touching ``--out``; ``-`` writes to stdout. Every ``result.json`` holds the
same object under ``"config"``, so a result file is also a config file. The file::

    {"nqs_config": 1, "command": "spin", "nqs_version": "0.1.0",
     "options": {"model": "ising", "size": 8, ..., "out": "runs/spin"}}

Options are named as in the result (``diag_shift``; ``diag-shift`` and ``--diag-shift`` are
read too); a file may hold a subset (the rest take their defaults). Every value is checked by
the option's own argparse type and choices. An unknown key, a file of another subcommand or a
bad value is one line and exit code 2. ``--resume`` and ``--overwrite`` say how to run, not
what: they are not written, and given on the command line they apply as usual.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nqs.errors import InputError

FORMAT = 1
"""Version of the config file format (the ``nqs_config`` key)."""
FILE_KEYS = ("nqs_config", "command", "nqs_version", "options")
SESSION_OPTIONS = ("config", "dump_config", "resume", "overwrite")
"""Options that say how to run, not what: never written to a config file."""


def add_config_options(p: argparse.ArgumentParser) -> None:
    """Add ``--config`` and ``--dump-config`` to a subcommand."""
    g = p.add_argument_group("configuration file (see docs/getting-started.md)")
    g.add_argument("--config", default=None, metavar="FILE",
                   help="take the options from FILE (written by --dump-config, or a run's "
                   "result.json); options given on the command line override it")
    g.add_argument("--dump-config", default=None, metavar="FILE",
                   help="write every option of this run (defaults included) to FILE as JSON "
                   "('-': stdout) and exit without running")


def option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options of a (sub)command parser by destination name (help excluded)."""
    return {a.dest: a for a in parser._actions  # noqa: SLF001 (argparse has no public list)
            if not isinstance(a, argparse._HelpAction | argparse._VersionAction)
            and a.dest != argparse.SUPPRESS}


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's options (every option of its subcommand, as resolved now), JSON-able: what
    ``--dump-config`` writes and ``result.json`` records under ``"config"``."""
    from nqs.io import to_jsonable

    names = getattr(args, "_nqs_options", None)
    if names is None:  # a handler called without nqs.cli.main: every plain attribute
        names = [k for k, v in vars(args).items() if not k.startswith("_") and not callable(v)
                 and k not in ("command",)]
    return {k: to_jsonable(getattr(args, k)) for k in names
            if k not in SESSION_OPTIONS and hasattr(args, k)}


def config_record(args: argparse.Namespace) -> dict[str, Any]:
    """The config file object of a run (``"command"``, ``"options"``, ...)."""
    from nqs.provenance import version

    return {"nqs_config": FORMAT, "command": args.command, "nqs_version": version(),
            "options": options_of(args)}


def write_config(path: str, args: argparse.Namespace) -> None:
    """``--dump-config``: the run's config to ``path`` (``-``: stdout)."""
    from nqs.io import write_json_atomic

    record = config_record(args)
    if path == "-":
        print(json.dumps(record, indent=2))
        return
    write_json_atomic(path, record)
    print(f"wrote the options of nqs {args.command} to {path}; run them with "
          f"nqs {args.command} --config {path}", file=sys.stderr)


def read_config(path: str, command: str) -> dict[str, Any]:
    """The ``options`` of a config file (or of a result.json's ``config``), unchecked."""
    where = f"--config {path}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{where}: no such file") from None
    except OSError as err:
        raise InputError(f"{where}: cannot read it ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{where}: not a JSON file ({err})") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object with {', '.join(FILE_KEYS)}")
    if "options" not in data and isinstance(data.get("config"), dict):
        data = data["config"]  # a result.json
    unknown = [k for k in data if k not in FILE_KEYS]
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r} (a config file holds "
                         f"{', '.join(FILE_KEYS)})")
    if data.get("nqs_config", FORMAT) != FORMAT:
        raise InputError(f"{where}: config format {data['nqs_config']!r}; this nqs reads "
                         f"format {FORMAT}")
    if data.get("command", command) != command:
        raise InputError(f"{where} is a config of nqs {data['command']}, not of nqs {command}")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise InputError(f"{where}: 'options' must be a JSON object")
    return options


def _convert(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """A config value checked and converted as argparse would convert it on the command line."""

    def bad(msg: str) -> InputError:
        return InputError(f"{where}: option {key!r}: {msg}")

    if action.nargs == 0:  # flags: store_true, --x / --no-x
        if isinstance(value, bool) or (value is None and action.default is None):
            return value
        raise bad(f"expected true or false, got {json.dumps(value)}")
    if value is None:
        if action.default is None:
            return None
        try:
            if action.type is not None and action.type("none") is None:
                return None
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            pass
        raise bad("null is not allowed")

    def one(v: Any) -> Any:
        if isinstance(v, dict | list) or v is None or isinstance(v, bool):
            raise bad(f"unexpected value {json.dumps(v)}")
        if not isinstance(v, str) and action.type is None:
            raise bad(f"expected a string, got {json.dumps(v)}")
        try:
            out = action.type(str(v)) if action.type is not None else v
        except (argparse.ArgumentTypeError, ValueError, TypeError) as err:
            raise bad(str(err) or f"invalid value {json.dumps(v)}") from None
        if action.choices is not None and out not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise bad(f"invalid choice {out!r} (choose from {choices})")
        return out

    many = isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*") \
        or isinstance(action.nargs, int)
    if not many:
        return one(value)
    if not isinstance(value, list):
        raise bad(f"expected a list, got {json.dumps(value)}")
    if isinstance(action.nargs, int) and len(value) != action.nargs:
        raise bad(f"expected {action.nargs} values, got {len(value)}")
    if action.nargs == "+" and not value and action.default != []:
        raise bad("expected at least one value")
    return [one(v) for v in value]


def _given(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The destinations of the options given explicitly in ``argv`` (a subcommand's own
    arguments): parsed again with every default suppressed."""
    actions = parser._actions  # noqa: SLF001
    saved = [(a, a.default) for a in actions]
    try:
        for a in actions:
            a.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(list(argv))))
    finally:
        for a, default in saved:
            a.default = default


def subcommand_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``command`` of the ``nqs`` parser."""
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise KeyError(command)  # pragma: no cover


def prepare(parser: argparse.ArgumentParser, args: argparse.Namespace,
            argv: Sequence[str]) -> None:
    """After parsing: merge ``--config`` (options given in ``argv`` win) into ``args``, and
    record in ``args`` the command line and the names of the subcommand's options (read by
    :func:`options_of` and the provenance of result.json)."""
    sub = subcommand_parser(parser, args.command)
    actions = option_actions(sub)
    args._nqs_argv = list(argv)
    args._nqs_options = tuple(actions)
    if args.config is None:
        return
    where = f"--config {args.config}"
    options = read_config(args.config, args.command)
    argv = list(argv)
    given = _given(sub, argv[argv.index(args.command) + 1:])
    for key, value in options.items():
        dest = str(key).lstrip("-").replace("-", "_")
        if dest not in actions or dest in ("config", "dump_config"):
            raise InputError(f"{where}: unknown option {key!r} for nqs {args.command}")
        if dest not in given:
            setattr(args, dest, _convert(actions[dest], str(key), value, where))
