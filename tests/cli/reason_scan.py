"""Find every Event reason the product code posts, by reading its source (``ast``).

A reason is the second argument of a ``….post(subject, reason, message)`` call. It is resolved
to string constants through what the code does with it: a literal; a constant of
``proxymedic.api.reasons``; a local name assigned a literal, unpacked from a tuple of literals
in a ``for`` loop, or assigned the result of a function whose ``return`` statements give
literals. A reason that cannot be resolved is reported too, so a new way of posting cannot
slip past the catalog unnoticed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from proxymedic.api import reasons as catalog


@dataclass(frozen=True)
class Posted:
    where: str
    reason: str | None
    """None when the reason could not be resolved to a constant."""


Functions = dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]]


def _functions(trees: list[ast.Module]) -> Functions:
    """Every function by name, across the scanned files (a reason may come from an imported one)."""
    table: Functions = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                table.setdefault(node.name, []).append(node)
    return table


def _returns(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.expr]:
    for node in ast.walk(function):
        if isinstance(node, ast.Return) and node.value is not None:
            yield node.value


class _Resolver:
    def __init__(self, functions: Functions) -> None:
        self.functions = functions

    def resolve(self, expr: ast.expr, scope: ast.AST, depth: int = 0) -> list[str | None]:
        if depth > 5:
            return [None]
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return [expr.value]
        if (
            isinstance(expr, ast.Attribute)
            and isinstance(expr.value, ast.Name)
            and expr.value.id == "reasons"
        ):
            value = getattr(catalog, expr.attr, None)
            return [value if isinstance(value, str) else None]
        if isinstance(expr, ast.IfExp):
            return self.resolve(expr.body, scope, depth + 1) + self.resolve(expr.orelse, scope, depth + 1)
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in self.functions:
            found = [
                r
                for function in self.functions[expr.func.id]
                for value in _returns(function)
                for r in self.resolve(value, function, depth + 1)
            ]
            return found or [None]
        if isinstance(expr, ast.Name):
            return self._name(expr.id, scope, depth) or [None]
        return [None]

    def _name(self, name: str, scope: ast.AST, depth: int) -> list[str | None]:
        found: list[str | None] = []
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                found += self.resolve(node.value, scope, depth + 1)
            elif isinstance(node, ast.For | ast.AsyncFor):
                found += self._loop(name, node, scope, depth)
        return found

    def _loop(self, name: str, loop: ast.For | ast.AsyncFor, scope: ast.AST, depth: int) -> list[str | None]:
        target = loop.target
        if isinstance(target, ast.Name) and target.id == name:
            items = loop.iter.elts if isinstance(loop.iter, ast.Tuple | ast.List) else None
            return [r for item in items for r in self.resolve(item, scope, depth + 1)] if items else [None]
        if isinstance(target, ast.Tuple):
            names = [t.id if isinstance(t, ast.Name) else None for t in target.elts]
            if name not in names:
                return []
            index = names.index(name)
            if not isinstance(loop.iter, ast.Tuple | ast.List):
                return [None]
            found: list[str | None] = []
            for item in loop.iter.elts:
                if isinstance(item, ast.Tuple) and len(item.elts) == len(names):
                    found += self.resolve(item.elts[index], scope, depth + 1)
                else:
                    found.append(None)
            return found
        return []


def _enclosing(tree: ast.Module, call: ast.Call) -> ast.AST:
    best: ast.AST = tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            n is call for n in ast.walk(node)
        ):
            best = node  # ast.walk is breadth-first: the innermost function comes last
    return best


def posted_reasons(sources: dict[str, str]) -> list[Posted]:
    """The reasons posted in these sources (file name → text)."""
    trees = {name: ast.parse(text, name) for name, text in sources.items()}
    resolver = _Resolver(_functions(list(trees.values())))
    found: list[Posted] = []
    for filename, tree in trees.items():
        found += _posts(tree, filename, resolver)
    return found


def _posts(tree: ast.Module, filename: str, resolver: _Resolver) -> list[Posted]:
    found: list[Posted] = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "post"
        ):
            continue
        reason = (
            node.args[1]
            if len(node.args) >= 2
            else next((k.value for k in node.keywords if k.arg == "reason"), None)
        )
        if reason is None:
            continue
        where = f"{filename}:{node.lineno}"
        for value in resolver.resolve(reason, _enclosing(tree, node)):
            found.append(Posted(where, value))
    return found


def scan(*roots: Path) -> list[Posted]:
    return posted_reasons(
        {str(path): path.read_text() for root in roots for path in sorted(root.rglob("*.py"))}
    )
