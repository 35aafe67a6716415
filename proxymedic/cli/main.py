"""The ``proxymedic`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from proxymedic import __version__
from proxymedic.cli import options, run
from proxymedic.cli.usage import HelpFormatter, add_command


def program_name(argv0: str | None = None) -> str:
    """``kubectl proxymedic`` when run as the kubectl plugin ``kubectl-proxymedic``, else ``proxymedic``."""
    name = os.path.basename(argv0 if argv0 is not None else sys.argv[0])
    return "kubectl proxymedic" if name.startswith("kubectl-") else "proxymedic"


def build_parser(prog: str = "proxymedic") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Keeps kube-proxy's dataplane honest. `%(prog)s COMMAND --help` describes each command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo_cmd = add_command(
        commands,
        "demo",
        help="run the embedded demo: a CoreDNS rollout, no cluster needed",
        description="Run a CoreDNS rollout on a simulated 4-node cluster (an in-process API server, "
        "modelled kernels, ProxyMedic's real operator and agents), once without and once with "
        "ProxyMedic, and print the Events and the failed DNS queries of both runs (about 40 s).",
    )
    mode = demo_cmd.add_mutually_exclusive_group()
    mode.add_argument(
        "--session",
        action="store_true",
        help="instead: run the demo cluster with ProxyMedic and show `status` and `diagnose` against it",
    )
    mode.add_argument(
        "--serve",
        action="store_true",
        help="instead: run the demo cluster with ProxyMedic and keep it running until Ctrl-C, printing a "
        "kubeconfig for `proxymedic status`, `proxymedic diagnose` and kubectl",
    )

    validate_cmd = add_command(
        commands,
        "validate",
        help="check ProxyMedic manifests offline before applying them",
        description="Check every document of each FILE: ProxyHealthPolicy, RemediationIntent and "
        "NodeProxyHealth objects are validated against the models, which reject what the CRDs reject; "
        "other kinds are listed as skipped. Each message starts with FILE:LINE. Exit code 0 when "
        "nothing is invalid, 1 otherwise (an empty or unreadable file is an error too).",
    )
    validate_cmd.add_argument("paths", nargs="+", type=Path, metavar="FILE", help="YAML manifests")

    crds_cmd = add_command(
        commands,
        "crds",
        help="write the CRDs generated from the models",
        description="Write the CustomResourceDefinitions of ProxyMedic's three kinds, generated from "
        "the models, or check (--check) that the files on disk match them.",
    )
    crds_cmd.add_argument(
        "--output-dir",
        type=Path,
        action="append",
        metavar="DIR",
        help="where to write; repeatable (default: crds and charts/proxymedic/crds)",
    )
    crds_cmd.add_argument("--check", action="store_true", help="exit 1 if the files differ from the models")

    reference_cmd = add_command(
        commands,
        "reference",
        help="write docs/reference.md from the models and values",
        description="Write docs/reference.md from the models' field descriptions and the chart's "
        "values.yaml comments, or check (--check) that it is current.",
    )
    reference_cmd.add_argument("--check", action="store_true", help="exit 1 if the file differs")

    options.add_runbook_commands(commands)
    options.add_expect_command(commands)
    options.add_programmed_command(commands)
    run.add_operator_command(commands)
    run.add_agent_command(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, clock: Callable[[], datetime] | None = None) -> int:
    """The command line; ``clock`` fixes the time ages are measured from (tests)."""
    prog = program_name()
    args = build_parser(prog).parse_args(argv)
    # Each command's code is imported when it runs: the others, the agent first, would carry it.
    match args.command:
        case "status" | "diagnose" | "explain":
            from proxymedic.cli import runbook_commands

            return runbook_commands.run(args, prog, clock)
        case "expect":
            from proxymedic.cli import expect

            return expect.run(args, prog)
        case "programmed":
            from proxymedic.cli import programmed

            return programmed.run(args, prog)
        case "crds":
            from proxymedic.cli import crds

            directories = args.output_dir or list(crds.DEFAULT_DIRECTORIES)
            return max(crds.run(directory, args.check) for directory in directories)
        case "validate":
            from proxymedic.cli.validate import validate

            return validate(args.paths)
        case "reference":
            from proxymedic.cli import reference

            return reference.run(reference.DEFAULT_OUTPUT, reference.DEFAULT_VALUES, args.check)
        case "demo":
            if args.serve:
                from proxymedic.cli.serve import run_serve

                return run_serve()
            if args.session:
                from proxymedic.cli.session import run_session

                return run_session(main)
            from proxymedic.cli.demo import run_demo

            return run_demo()
        case "operator":
            return run.run_operator_command(args)
        case "agent":
            return run.run_agent_command(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
