"""The ``proxymedic`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import yaml

from proxymedic import __version__
from proxymedic.api.errors import InvalidObjectError, parse_object
from proxymedic.cli import crds, expect, reference, run, runbook_commands


def _validate(paths: Sequence[Path]) -> int:
    """Check manifests of ProxyMedic's kinds against the models, naming every bad field."""
    failures = 0
    for path in paths:
        try:
            documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        except (OSError, yaml.YAMLError) as exc:
            print(f"{path}: cannot read: {exc}", file=sys.stderr)
            failures += 1
            continue
        for doc in documents:
            if not isinstance(doc, dict):
                print(f"{path}: a document is not a mapping", file=sys.stderr)
                failures += 1
                continue
            try:
                obj = parse_object(doc)
            except InvalidObjectError as exc:
                failures += 1
                print(f'{path}: {exc.kind} "{exc.name}" is invalid:', file=sys.stderr)
                for problem in exc.problems:
                    print(f"  {problem}", file=sys.stderr)
            else:
                print(f'{path}: {obj.kind} "{obj.metadata.name}" is valid')
    return 1 if failures else 0


def program_name(argv0: str | None = None) -> str:
    """``kubectl proxymedic`` when run as the kubectl plugin ``kubectl-proxymedic``, else ``proxymedic``."""
    name = os.path.basename(argv0 if argv0 is not None else sys.argv[0])
    return "kubectl proxymedic" if name.startswith("kubectl-") else "proxymedic"


def build_parser(prog: str = "proxymedic") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Keeps kube-proxy's dataplane honest.")
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    crds_cmd = commands.add_parser("crds", help="write the CRDs generated from the models")
    crds_cmd.add_argument(
        "--output-dir",
        type=Path,
        action="append",
        help="where to write; repeatable (default: crds and charts/proxymedic/crds)",
    )
    crds_cmd.add_argument("--check", action="store_true", help="exit 1 if the files differ from the models")

    validate_cmd = commands.add_parser("validate", help="check ProxyMedic manifests against the models")
    validate_cmd.add_argument("paths", nargs="+", type=Path, metavar="FILE")

    reference_cmd = commands.add_parser(
        "reference", help="write docs/reference.md from the models and values"
    )
    reference_cmd.add_argument("--check", action="store_true", help="exit 1 if the file differs")

    runbook_commands.add_commands(commands)
    expect.add_command(commands)
    demo_cmd = commands.add_parser("demo", help="run the embedded demo (no cluster needed)")
    demo_cmd.add_argument(
        "--session",
        action="store_true",
        help="run the demo cluster with ProxyMedic and show `status` and `diagnose` against it",
    )
    run.add_operator_command(commands)
    run.add_agent_command(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, clock: Callable[[], datetime] | None = None) -> int:
    """The command line; ``clock`` fixes the time ages are measured from (tests)."""
    prog = program_name()
    args = build_parser(prog).parse_args(argv)
    match args.command:
        case "status" | "diagnose" | "explain":
            return runbook_commands.run(args, prog, clock)
        case "expect":
            return expect.run(args, prog)
        case "crds":
            directories = args.output_dir or list(crds.DEFAULT_DIRECTORIES)
            return max(crds.run(directory, args.check) for directory in directories)
        case "validate":
            return _validate(args.paths)
        case "reference":
            return reference.run(reference.DEFAULT_OUTPUT, reference.DEFAULT_VALUES, args.check)
        case "demo":
            if args.session:
                from proxymedic.cli.session import run_session

                return run_session()
            from proxymedic.cli.demo import run_demo

            return run_demo()
        case "operator":
            return run.run_operator_command(args)
        case "agent":
            return run.run_agent_command(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
