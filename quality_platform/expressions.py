"""Expressions in configuration files (KPI formulas, derived quantities, outcome conditions):
parsed by Python's ``ast`` and checked against an allow-list of node types, so a config file can
only ever hold arithmetic, comparisons and logic over names and numbers - never a call, an
attribute or anything else to run. Conditions are evaluated by walking that tree with numpy."""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

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


#: a condition: arithmetic, comparisons (chained too), and / or / not
CONDITION: tuple[type[ast.AST], ...] = (
    *ARITHMETIC,
    ast.Compare,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.Eq,
    ast.NotEq,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Not,
)
CONDITION_OPS = "+ - * /, comparisons (< <= > >= == !=), and, or, not"

_BIN = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
}
_CMP = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}


def evaluate_condition(tree: ast.Expression, values: dict[str, Any]) -> np.ndarray:
    """A parsed :data:`CONDITION` over arrays (one per name, float; NaN compares false),
    evaluated element-wise with numpy - no Python ``eval``. Returns a boolean array."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Name):
            return np.asarray(values[node.id], dtype=float)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return np.logical_not(v) if isinstance(node.op, ast.Not) else np.negative(v)
        if isinstance(node, ast.BinOp):
            with np.errstate(divide="ignore", invalid="ignore"):
                return _BIN[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Compare):
            left, out = ev(node.left), True
            for op, right in zip(node.ops, node.comparators, strict=True):
                r = ev(right)
                out = np.logical_and(out, _CMP[type(op)](left, r))
                left = r
            return out
        if isinstance(node, ast.BoolOp):
            parts = [np.asarray(ev(v), dtype=bool) for v in node.values]
            fn = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = parts[0]
            for p in parts[1:]:
                out = fn(out, p)
            return out
        raise ValueError(f"cannot evaluate {type(node).__name__}")  # parse() refused it already

    return np.asarray(ev(tree), dtype=bool)
