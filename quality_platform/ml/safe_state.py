"""The safe state of the defect prediction (F24): documented rule-based limits that decide when no
approved model may be used (an incident froze the model with safe state, or no champion passed the
gate and was approved).

The limits live in ``<config_dir>/ml/safe_state.yaml`` (validated here; errors name the file and
the field). :func:`score_rules` turns feature rows into rows of ``ml.predictions`` that say per row
that the rules decided: ``decided_by = 'rules'``, ``model_version = 'rules:v<version>'``, a rule
score ``risk`` (1.0 = a limit is violated, 0.0 = inside every limit; not a probability) with
``threshold`` 0.5, and ``reason_1..`` naming the violated limits.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from quality_platform.config import ConfigError, ConfigModel, load_registry, load_yaml_model
from quality_platform.config import Limits as Limit
from quality_platform.settings import Paths, get_paths

RULES = "rules"
RULE_THRESHOLD = 0.5
_FEATURE_RE = re.compile(r"^[a-z][a-z0-9_]*__[a-z_]+$")


class Rule(Limit):
    feature: str
    why: str = ""

    @model_validator(mode="after")
    def _named(self) -> Rule:
        if not _FEATURE_RE.match(self.feature):
            raise ValueError(
                f"feature {self.feature!r} must be a unit_features column '<quantity>__<statistic>'"
            )
        if self.lower is None and self.upper is None:
            raise ValueError(f"limit of {self.feature!r} needs lower and/or upper")
        return self


class SafeStateConfig(ConfigModel):
    """``<config_dir>/ml/safe_state.yaml``: the versioned, documented rule-based limits."""

    version: int = Field(ge=1)
    description: str = Field(min_length=1)
    limits: list[Rule] = Field(min_length=1)
    plant_limits: dict[str, dict[str, Limit]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> SafeStateConfig:
        names = [r.feature for r in self.limits]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"feature(s) {dup} have more than one limit")
        for plant, over in self.plant_limits.items():
            unknown = [f for f in over if f not in names]
            if unknown:
                raise ValueError(
                    f"plant_limits.{plant}: feature(s) {unknown} have no limit in 'limits'"
                )
        return self

    @property
    def label(self) -> str:
        """The model_version of rule rows, e.g. ``rules:v1``."""
        return f"{RULES}:v{self.version}"

    def limits_for(self, plant: str) -> list[Rule]:
        """The limits that apply at ``plant`` (plant replacements applied; switched-off ones left out)."""
        over = self.plant_limits.get(plant, {})
        out = []
        for r in self.limits:
            if r.feature in over:
                o = over[r.feature]
                if o.lower is None and o.upper is None:
                    continue
                r = r.model_copy(update={"lower": o.lower, "upper": o.upper})
            out.append(r)
        return out


def safe_state_path(paths: Paths | None = None) -> Path:
    return (paths or get_paths()).config_dir / "ml" / "safe_state.yaml"


def load_safe_state(paths: Paths | None = None) -> SafeStateConfig:
    """The safe-state limits, validated; every feature must name a canonical quantity
    (data/standard/quantities.yaml). Raises :class:`ConfigError` naming the file and the field."""
    paths = paths or get_paths()
    path = safe_state_path(paths)
    cfg: SafeStateConfig = load_yaml_model(path, SafeStateConfig)
    known = set(load_registry(paths).quantities)
    for i, r in enumerate(cfg.limits):
        quantity = r.feature.split("__")[0]
        if quantity not in known:
            raise ConfigError(
                f"{path}: field 'limits.{i}.feature': {r.feature!r} names unknown quantity "
                f"{quantity!r}; known: {sorted(known)}"
            )
    return cfg


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def score_rules(rows: pd.DataFrame, cfg: SafeStateConfig, k: int) -> pd.DataFrame:
    """Rule-based decisions of feature rows (columns ``plant`` and the limits' features; a missing
    feature column counts as NULL = not checked). Returns ``risk``, ``threshold``,
    ``predicted_defect``, ``violations`` (count) and ``k`` reasons (``reason_i``, ``reason_i_feature``,
    ``reason_i_shap`` = NaN) aligned with ``rows``."""
    n = len(rows)
    plants = rows["plant"].astype(str).to_numpy()
    reasons: list[list[tuple[str, str]]] = [[] for _ in range(n)]
    for plant in sorted(set(plants)):
        idx = np.flatnonzero(plants == plant)
        for r in cfg.limits_for(plant):
            if r.feature not in rows.columns:
                continue
            v = pd.to_numeric(rows[r.feature].iloc[idx], errors="coerce").to_numpy(dtype=float)
            for side, lim, bad in (
                ("lower", r.lower, lambda a, b: a < b),
                ("upper", r.upper, lambda a, b: a > b),
            ):
                if lim is None:
                    continue
                hit = ~np.isnan(v) & bad(v, lim)
                sign = "<" if side == "lower" else ">"
                for j in np.flatnonzero(hit):
                    reasons[idx[j]].append(
                        (
                            f"{r.feature} = {_fmt(v[j])} {sign} {side} limit {_fmt(lim)} "
                            f"({cfg.label})",
                            r.feature,
                        )
                    )
    violations = np.array([len(x) for x in reasons], dtype=np.int64)
    out = pd.DataFrame(
        {"risk": (violations > 0).astype(float), "threshold": RULE_THRESHOLD}, index=rows.index
    )
    out["predicted_defect"] = out["risk"] >= out["threshold"]
    out["violations"] = violations
    for i in range(1, k + 1):
        out[f"reason_{i}"] = [
            x[i - 1][0]
            if len(x) >= i
            else (f"safe state: within all rule-based limits ({cfg.label})" if i == 1 else None)
            for x in reasons
        ]
        out[f"reason_{i}_feature"] = [x[i - 1][1] if len(x) >= i else None for x in reasons]
        out[f"reason_{i}_shap"] = math.nan
    return out


__all__ = [
    "RULES",
    "RULE_THRESHOLD",
    "SafeStateConfig",
    "load_safe_state",
    "safe_state_path",
    "score_rules",
]
