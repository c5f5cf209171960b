"""Expressions in configuration files (KPI formulas, derived quantities, outcome conditions):
parsed by Python's ``ast`` and checked against an allow-list of node types, so a config file can
only ever hold arithmetic, comparisons and logic over names and numbers - never a call, an
attribute or anything else to run - and evaluated by walking that tree (:func:`evaluate`)."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
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

#: arithmetic by Python's operators, so each operand type keeps its own rules: numpy arrays
#: and pandas Series element-wise, pint quantities with their units
_ARITH = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_CMP = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}


def evaluate(
    tree: ast.Expression,
    leaf: Callable[[str], Any],
    divide: Callable[[Any, Any], Any] = operator.truediv,
) -> Any:
    """A tree from :func:`parse` evaluated by walking it - no Python ``eval``: each name is
    ``leaf(name)``, numbers are floats, arithmetic uses Python's operators (``divide`` for ``/``:
    a caller may say what a zero denominator gives), comparisons and and / or / not are
    element-wise (numpy). The one evaluator of KPI formulas, derived quantities and outcome
    conditions."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Name):
            return leaf(node.id)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return np.logical_not(v) if isinstance(node.op, ast.Not) else operator.neg(v)
        if isinstance(node, ast.BinOp):
            fn = divide if isinstance(node.op, ast.Div) else _ARITH[type(node.op)]
            with np.errstate(divide="ignore", invalid="ignore"):
                return fn(ev(node.left), ev(node.right))
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

    return ev(tree)


def evaluate_condition(tree: ast.Expression, values: dict[str, Any]) -> np.ndarray:
    """A parsed :data:`CONDITION` over arrays (one per name, float; NaN compares false),
    evaluated element-wise. Returns a boolean array."""
    return np.asarray(
        evaluate(tree, lambda name: np.asarray(values[name], dtype=float), divide=np.divide),
        dtype=bool,
    )
