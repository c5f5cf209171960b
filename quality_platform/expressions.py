"""Expressions in configuration files (KPI formulas, derived quantities): parsed by Python's
``ast`` and checked against an allow-list of node types, so a config file can only ever hold
arithmetic over names and numbers - never a call, an attribute or anything else to run."""

from __future__ import annotations

import ast

#: + - * / (and unary minus) over names, numbers and parentheses
ARITHMETIC: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BinOp,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.UnaryOp,
    ast.USub,
)


def parse(
    text: str, what: str, allowed: tuple[type[ast.AST], ...] = ARITHMETIC, ops: str = "+ - * /"
) -> tuple[ast.Expression, list[str]]:
    """``text`` parsed as an expression of ``allowed`` nodes, and the names it uses (each once,
    in order). ValueError, naming ``what`` (e.g. "formula") and the offending part, otherwise."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"{what} {text!r} is not a valid expression") from exc
    names: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise ValueError(f"{what} {text!r} uses {type(node).__name__}; only {ops} are allowed")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise ValueError(f"{what} {text!r} has a non-numeric constant")
        if isinstance(node, ast.Name) and node.id not in names:
            names.append(node.id)
    return tree, names
