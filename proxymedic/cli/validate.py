"""``proxymedic validate FILE...``: check manifests of ProxyMedic's kinds before applying them.

Every message starts with ``FILE:LINE:``, as a compiler's do, so an editor jumps to it. A file
may hold several documents: those of ProxyMedic's kinds are validated against the models (the
CRDs reject the same), other kinds (a ConfigMap, the CRDs themselves) are listed as skipped.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from proxymedic.api.errors import MODELS_BY_KIND, FieldLocation, InvalidObjectError, parse_object
from proxymedic.api.meta import GROUP


@dataclass
class Tally:
    valid: int = 0
    invalid: int = 0
    skipped: int = 0
    lines: list[tuple[bool, str]] = field(default_factory=list)
    """(is an error, text) in the order found: errors go to stderr, the rest to stdout."""

    def say(self, text: str) -> None:
        self.lines.append((False, text))

    def error(self, text: str) -> None:
        self.lines.append((True, text))


def line_of(node: yaml.Node, location: FieldLocation) -> int:
    """The 1-based line of the deepest node on ``location``'s path: the field's key where it exists,
    else the closest enclosing object (a missing field is reported where it should be)."""
    line = node.start_mark.line
    current: yaml.Node | None = node
    for part in location:
        if isinstance(current, yaml.MappingNode) and isinstance(part, str):
            pair = next(
                ((key, value) for key, value in current.value if getattr(key, "value", None) == part), None
            )
            if pair is None:
                break
            line, current = pair[0].start_mark.line, pair[1]
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) and part < len(current.value):
            current = current.value[part]
            line = current.start_mark.line
        else:
            break
    return line + 1


def _documents(text: str) -> list[tuple[yaml.Node, Any]]:
    """Each document's node tree (for line numbers) with its value; empty documents left out."""
    loader = yaml.SafeLoader(text)
    documents: list[tuple[yaml.Node, Any]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            value = loader.construct_document(node)
            if value is not None:
                documents.append((node, value))
    finally:
        loader.dispose()
    return documents


def _yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f" ({exc.context})" if exc.context else ""
        return f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {exc.problem}{context}"
    return f"{path}: not valid YAML: {str(exc).replace('<unicode string>', str(path))}"


def _is_ours(doc: dict[str, Any]) -> bool:
    """A document of ProxyMedic's group, or whose kind is one of its kinds or close to one (a typo)."""
    api_version = str(doc.get("apiVersion", ""))
    kind = str(doc.get("kind", ""))
    if api_version.startswith(f"{GROUP}/") or kind in MODELS_BY_KIND:
        return True
    typo = difflib.get_close_matches(kind, list(MODELS_BY_KIND), n=1, cutoff=0.8)
    return bool(typo) and not api_version


def _name(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""


def _check_document(path: Path, node: yaml.Node, doc: Any, tally: Tally) -> None:
    where = f"{path}:{node.start_mark.line + 1}"
    if not isinstance(doc, dict):
        tally.invalid += 1
        tally.error(f"{where}: a document must be a mapping with apiVersion, kind and metadata")
        return
    if "kind" not in doc and "apiVersion" not in doc:
        tally.invalid += 1
        tally.error(f"{where}: neither apiVersion nor kind: not a Kubernetes manifest")
        return
    if not _is_ours(doc):
        tally.skipped += 1
        tally.say(f'{where}: skipped {doc.get("kind", "?")} "{_name(doc)}": not a kind of ProxyMedic')
        return
    try:
        obj = parse_object(doc)
    except InvalidObjectError as exc:
        tally.invalid += 1
        tally.error(f'{where}: {exc.kind} "{exc.name}" is invalid:')
        located = [
            (line_of(node, where), problem)
            for problem, where in zip(exc.problems, exc.locations, strict=True)
        ]
        for line, problem in sorted(
            located, key=lambda item: item[0]
        ):  # in file order, as an editor lists them
            tally.error(f"  {path}:{line}: {problem}")
        return
    tally.valid += 1
    tally.say(f'{where}: {obj.kind} "{obj.metadata.name}" is valid')


def _check_file(path: Path, tally: Tally) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        tally.invalid += 1
        tally.error(f"{path}: not a text file (it is not UTF-8)")
        return
    except OSError as exc:
        tally.invalid += 1
        tally.error(f"{path}: cannot read: {exc.strerror or exc}")
        return
    try:
        documents = _documents(text)
    except yaml.YAMLError as exc:
        tally.invalid += 1
        tally.error(_yaml_error(path, exc))
        return
    if not documents:
        tally.invalid += 1
        tally.error(f"{path}: no manifest in it: the file is empty or holds only comments")
        return
    for node, doc in documents:
        _check_document(path, node, doc, tally)


def validate(paths: Sequence[Path]) -> int:
    """Check every document of every file; 0 when none is invalid, else 1."""
    tally = Tally()
    for path in paths:
        _check_file(path, tally)
    for is_error, text in tally.lines:
        print(text, file=sys.stderr if is_error else sys.stdout)
    if tally.valid + tally.invalid + tally.skipped > 1:
        print(f"{tally.valid} valid, {tally.invalid} invalid, {tally.skipped} skipped")
    return 1 if tally.invalid else 0
