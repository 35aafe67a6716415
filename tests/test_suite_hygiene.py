"""The suite cannot pass by not testing: no expected failures, and skips only for a missing tool,
kernel or engine, each at a site listed here with its reason.

An expected failure (``pytest.xfail(...)`` at run time, or ``@pytest.mark.xfail``) turns a product
bug into a pass; a skip that depends on what the product did does the same. Both are found by
reading every test module's syntax tree, so a new one fails this test until it is removed or, for
a skip of the machine's capabilities, listed below.

Note: while docs/reliability.md lists the stale-report race as a known issue,
tests/reliability/faults_scenarios.py calls ``pytest.xfail`` for it and this test reports that
site; it passes again, unchanged, once the operator fix removes that call.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).parent
REPO = TESTS.parent

XFAIL_CALLS = {"pytest.xfail", "pytest.mark.xfail"}
SKIP_CALLS = {"pytest.skip", "pytest.mark.skip", "pytest.mark.skipif", "pytest.importorskip"}


@dataclass(frozen=True)
class AllowedSkip:
    path: str
    call: str
    reason: str
    """A fragment of the skip's reason expression (as written in the source)."""
    why: str
    """What the machine lacks: why skipping is honest there."""


ALLOWED_SKIPS = (
    AllowedSkip(
        "tests/kernel/conftest.py",
        "pytest.mark.skip",
        "reason",
        "no kernel with IPVS and conntrack outside the VM: the kernel tier runs in QEMU",
    ),
    AllowedSkip(
        "tests/kernel/lab.py",
        "pytest.skip",
        "needs the {name} command",
        "a CLI oracle (ipvsadm, conntrack) is not installed",
    ),
    AllowedSkip(
        "tests/dataplane/test_sysctl.py",
        "pytest.mark.skipif",
        "root writes through mode 0444",
        "as root a read-only file is writable: the same refusal is covered by the injected opener",
    ),
    AllowedSkip(
        "tests/cluster/conftest.py",
        "pytest.mark.skip",
        "reason",
        "outside the cluster tier's VM, or without root, ip_vs, kubectl, ipset, iptables, openssl or "
        "the Kubernetes binaries: the reason names which",
    ),
    AllowedSkip(
        "tests/cluster_rules/conftest.py",
        "pytest.mark.skip",
        "reason",
        "outside scripts/vm/run-cluster-tests.sh (whose JUnit file holds every proxy mode), or without "
        "root, nft, iptables or the Kubernetes binaries: the reason names which",
    ),
    AllowedSkip(
        "tests/cli/test_programmed.py",
        "pytest.mark.skipif",
        "libnftables is not installed",
        "Debian's libnftables1 (with nftables) is missing: scripts/setup.sh --kernel installs it",
    ),
    AllowedSkip(
        "tests/cli/test_programmed.py",
        "pytest.mark.skipif",
        "listing nftables needs CAP_NET_ADMIN",
        "not root: the kernel lists nftables only to CAP_NET_ADMIN",
    ),
    AllowedSkip(
        "tests/realapi/test_rules_differential.py",
        "pytest.skip",
        "kube-proxy rules differential: ",
        "no root, nft, iptables-save or kube-proxy binary for kube-proxy in nftables and iptables mode: "
        "the reason names which",
    ),
    AllowedSkip(
        "tests/scenarios/test_spread.py",
        "pytest.mark.skipif",
        "real kube-apiserver: ",
        "no etcd or kube-apiserver binary for the spread harness's real API server: the reason names which",
    ),
    AllowedSkip(
        "tests/realapi/conftest.py",
        "pytest.skip",
        "real kube-apiserver tier: {missing}",
        "no etcd or kube-apiserver binary: the message names the missing one",
    ),
    AllowedSkip(
        "tests/realapi/test_serve.py",
        "pytest.skip",
        "real kube-apiserver tier: {missing}",
        "no etcd or kube-apiserver binary: the message names the missing one",
    ),
    AllowedSkip(
        "tests/e2e/test_kind.py",
        "pytest.skip",
        "kind e2e needs Docker with an engine",
        "no Docker engine, kind, kubectl or helm",
    ),
    AllowedSkip(
        "tests/e2e/test_kind.py",
        "pytest.skip",
        "tests/e2e/run.sh could not run here",
        "run.sh exited 77: the machine cannot create a kind cluster",
    ),
    AllowedSkip("tests/e2e/test_kind.py", "pytest.skip", "bash is not installed", "no bash"),
)


@dataclass(frozen=True)
class Site:
    path: str
    line: int
    call: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.call}({self.reason})"


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _reason(call: ast.Call) -> str:
    for keyword in call.keywords:
        if keyword.arg in ("reason", "msg"):
            return ast.unparse(keyword.value)
    return ast.unparse(call.args[-1]) if call.args else ""


def sites(source: str, path: str) -> list[Site]:
    """Every skip and xfail call or marker in one module's source."""
    tree = ast.parse(source)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    called = {id(call.func) for call in calls}
    found = [
        Site(path, call.lineno, _dotted(call.func), _reason(call))
        for call in calls
        if _dotted(call.func) in XFAIL_CALLS | SKIP_CALLS
    ]
    # A bare marker (``@pytest.mark.xfail`` without a call) counts too; it has no reason at all.
    found += [
        Site(path, node.lineno, _dotted(node), "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and id(node) not in called
        and _dotted(node) in {"pytest.mark.xfail", "pytest.mark.skip"}
    ]
    return sorted(found, key=lambda site: site.line)


def _allowed(site: Site) -> AllowedSkip | None:
    return next(
        (
            allowed
            for allowed in ALLOWED_SKIPS
            if allowed.path == site.path and allowed.call == site.call and allowed.reason in site.reason
        ),
        None,
    )


def suite_sites() -> list[Site]:
    found = []
    for module in sorted(TESTS.rglob("*.py")):
        if module == Path(__file__):
            continue
        path = module.relative_to(REPO).as_posix()
        found.extend(sites(module.read_text(encoding="utf-8"), path))
    return found


def test_no_test_expects_a_failure() -> None:
    xfails = [str(site) for site in suite_sites() if site.call in XFAIL_CALLS]
    assert not xfails, "expected failures hide product bugs; fix the bug or the test:\n" + "\n".join(xfails)


def test_every_skip_is_a_listed_missing_capability() -> None:
    unlisted = [str(s) for s in suite_sites() if s.call in SKIP_CALLS and _allowed(s) is None]
    assert not unlisted, (
        "a skip must be for a missing tool, kernel or engine, listed in ALLOWED_SKIPS with its "
        "reason:\n" + "\n".join(unlisted)
    )


def test_every_listed_skip_still_exists() -> None:
    used = {_allowed(site) for site in suite_sites()}
    stale = [f"{a.path}: {a.call}({a.reason!r})" for a in ALLOWED_SKIPS if a not in used]
    assert not stale, "remove these from ALLOWED_SKIPS:\n" + "\n".join(stale)


@pytest.mark.parametrize(
    ("source", "calls"),
    [
        ("import pytest\npytest.xfail('known race')\n", ["pytest.xfail"]),
        ("import pytest\n@pytest.mark.xfail(reason='flaky')\ndef test_x(): ...\n", ["pytest.mark.xfail"]),
        ("import pytest\n@pytest.mark.xfail\ndef test_x(): ...\n", ["pytest.mark.xfail"]),
        ("import pytest\nif not done:\n    pytest.skip('the operator was slow')\n", ["pytest.skip"]),
        ("import pytest\npytest.importorskip('docker')\n", ["pytest.importorskip"]),
        ("# pytest.skip('in a comment')\nx = 'pytest.xfail(\"in a string\")'\n", []),
    ],
    ids=["runtime-xfail", "xfail-marker", "bare-xfail-marker", "runtime-skip", "importorskip", "text"],
)
def test_the_scan_finds_skips_and_xfails_in_code_only(source: str, calls: list[str]) -> None:
    assert [site.call for site in sites(source, "t.py")] == calls
