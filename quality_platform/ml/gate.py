"""The release gate (F14): everything a model version must show on the holdout before it may decide.

Checks, each ERROR unless said otherwise:

- ``absolute_thresholds``: ROC-AUC and PR-AUC of the whole holdout reach the configured minimums;
- ``calibration``: expected calibration error at most ``max_ece`` (predicted risks mean what they say);
- ``vs_champion``: on the same holdout units (those the champion did not train on), the
  challenger's metric trails the champion's by at most ``vs_champion_margin``;
- ``per_plant_non_inferiority``: per plant, the paired bootstrap CI of (challenger - champion) has a
  lower bound >= -margin; without a champion, each plant's metric lower bound reaches
  ``per_plant_min_metric``. A plant with too few holdout units or positives cannot be judged:
  WARN (the version then needs a human approval), never a silent pass;
- ``behaviour_cases``: the data-defined cases of ``data/ml/behaviour_cases.yaml`` hold.

Status: ``failed`` if any ERROR check failed, ``passed_with_warnings`` if only WARN checks did,
else ``passed``. A ``failed`` version can never be approved or promoted (see lifecycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from quality_platform.ml import metrics as M
from quality_platform.ml.config import BehaviourCases, GateThresholds
from quality_platform.ml.dataset import LABEL
from quality_platform.ml.frame import FeatureSpec, model_frame

GATE_CHECKS = (
    "absolute_thresholds",
    "calibration",
    "vs_champion",
    "per_plant_non_inferiority",
    "behaviour_cases",
)
ERROR, WARN = "ERROR", "WARN"


@dataclass
class GateCheck:
    name: str
    passed: bool
    severity: str
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    table: pd.DataFrame | None = None


@dataclass
class ScoredModel:
    """A model with its input spec, able to score feature rows."""

    version: str
    model: Any
    spec: FeatureSpec

    def score(self, rows: pd.DataFrame) -> np.ndarray:
        from quality_platform.ml.scoring import score

        return score(self.model, model_frame(rows, self.spec), self.spec)


@dataclass
class GateReport:
    version: str
    champion_version: str | None
    checks: list[GateCheck]
    metrics: dict[str, float]
    per_plant: pd.DataFrame
    #: Holdout metrics of the challenger per plant (units, positives, ROC-AUC, PR-AUC, Brier).
    plant_metrics: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def status(self) -> str:
        if any(not c.passed and c.severity == ERROR for c in self.checks):
            return "failed"
        if any(not c.passed for c in self.checks):
            return "passed_with_warnings"
        return "passed"

    def check(self, name: str) -> GateCheck:
        return next(c for c in self.checks if c.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "champion_version": self.champion_version,
            "status": self.status,
            "metrics": self.metrics,
            "checks": [
                {
                    "name": c.name,
                    "passed": c.passed,
                    "severity": c.severity,
                    "description": c.description,
                }
                for c in self.checks
            ],
            "per_plant": self.per_plant.to_dict("records"),
            "plant_metrics": self.plant_metrics.to_dict("records"),
        }

    def markdown(self) -> str:
        lines = [
            f"# Release gate of version {self.version}: **{self.status}**",
            "",
            f"Champion at evaluation: {self.champion_version or '(none)'}",
            "",
            "| check | result | severity | detail |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {c.severity} | {c.description} |"
            for c in self.checks
        ]
        lines += [
            "",
            "## Holdout metrics",
            "",
            pd.Series(self.metrics).rename("value").to_markdown(),
            "",
            "## Holdout metrics per plant",
            "",
            self.plant_metrics.to_markdown(index=False),
            "",
            "## Per plant",
            "",
            self.per_plant.to_markdown(index=False) if not self.per_plant.empty else "(none)",
        ]
        for c in self.checks:
            if c.table is not None and not c.table.empty and c.name != "per_plant_non_inferiority":
                lines += ["", f"## {c.name}", "", c.table.to_markdown(index=False)]
        return "\n".join(lines) + "\n"


def _holdout_metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    return {name: M.metric(name, y, s) for name in M.METRICS}


def evaluate(
    challenger: ScoredModel,
    holdout: pd.DataFrame,
    thresholds: GateThresholds,
    cases: BehaviourCases,
    champion: ScoredModel | None = None,
    champion_trained_on: set[tuple[str, str]] | None = None,
) -> GateReport:
    """Run every gate check of ``challenger`` on the snapshot's ``holdout`` rows."""
    if holdout.empty:
        raise ValueError("the holdout is empty: nothing to evaluate the model on")
    y = holdout[LABEL].to_numpy(dtype=np.int64)
    s_new = challenger.score(holdout)
    metrics = _holdout_metrics(y, s_new)
    metrics["holdout_rows"] = float(len(y))
    metrics["holdout_positives"] = float(y.sum())
    checks = [_absolute(metrics, thresholds)]
    cal = M.calibration(y, s_new, n_bins=thresholds.calibration_bins)
    metrics["ece"] = cal.ece
    checks.append(
        GateCheck(
            "calibration",
            cal.ece <= thresholds.max_ece,
            ERROR,
            f"ECE {cal.ece:.4f} {'<=' if cal.ece <= thresholds.max_ece else '>'} {thresholds.max_ece} (mean predicted "
            f"{cal.mean_predicted:.4f} vs observed {cal.observed_rate:.4f})",
            {
                "ece": cal.ece,
                "mean_predicted": cal.mean_predicted,
                "observed_rate": cal.observed_rate,
            },
            cal.bins,
        )
    )
    # the champion is compared on holdout units it did not train on
    mask = np.ones(len(holdout), dtype=bool)
    s_old = None
    if champion is not None:
        if champion_trained_on:
            seen = (
                pd.Series(
                    list(zip(holdout["plant"], holdout["unit_id"].astype(str), strict=True)),
                    index=holdout.index,
                )
                .isin(champion_trained_on)
                .to_numpy()
            )
            mask = ~seen
        s_old = champion.score(holdout)
    checks.append(_vs_champion(y, s_new, s_old, mask, thresholds, champion))
    per_plant, check = _per_plant(holdout, y, s_new, s_old, mask, thresholds)
    checks.append(check)
    checks.append(_behaviour(challenger, holdout, cases))
    return GateReport(
        challenger.version,
        champion.version if champion else None,
        checks,
        metrics,
        per_plant,
        plant_metrics(holdout, y, s_new),
    )


def plant_metrics(holdout: pd.DataFrame, y: np.ndarray, s: np.ndarray) -> pd.DataFrame:
    """Per plant: holdout units, positives, prevalence, ROC-AUC, PR-AUC, Brier score of ``s``."""
    rows = []
    plants = holdout["plant"].to_numpy()
    for plant in sorted(set(plants)):
        sel = plants == plant
        yy, ss = y[sel], s[sel]
        rows.append(
            {
                "plant": plant,
                "units": int(sel.sum()),
                "positives": int(yy.sum()),
                "prevalence": float(yy.mean()),
                "roc_auc": M.roc_auc(yy, ss),
                "pr_auc": M.pr_auc(yy, ss),
                "brier": M.brier(yy, ss),
            }
        )
    return pd.DataFrame(rows)


def _absolute(metrics: dict[str, float], t: GateThresholds) -> GateCheck:
    auc, pr = metrics["roc_auc"], metrics["pr_auc"]
    ok = bool(auc >= t.min_roc_auc and pr >= t.min_pr_auc)
    return GateCheck(
        "absolute_thresholds",
        ok,
        ERROR,
        f"ROC-AUC {auc:.4f} (min {t.min_roc_auc}), PR-AUC {pr:.4f} (min {t.min_pr_auc}) on "
        f"{int(metrics['holdout_rows'])} holdout units",
        {"roc_auc": auc, "pr_auc": pr, "min_roc_auc": t.min_roc_auc, "min_pr_auc": t.min_pr_auc},
    )


def _vs_champion(
    y: np.ndarray,
    s_new: np.ndarray,
    s_old: np.ndarray | None,
    mask: np.ndarray,
    t: GateThresholds,
    champion: ScoredModel | None,
) -> GateCheck:
    if champion is None or s_old is None:
        return GateCheck(
            "vs_champion",
            True,
            ERROR,
            "no champion yet: this would be the first version",
            {"champion": None},
        )
    name = t.vs_champion_metric
    n = int(mask.sum())
    if n == 0 or len(np.unique(y[mask])) < 2:
        return GateCheck(
            "vs_champion",
            False,
            WARN,
            f"no comparable holdout units ({n} units the champion did not train on)",
            {"champion": champion.version, "units": n},
        )
    new, old = M.metric(name, y[mask], s_new[mask]), M.metric(name, y[mask], s_old[mask])
    gain = new - old if M.higher_is_better(name) else old - new
    ok = bool(gain >= -t.vs_champion_margin)
    return GateCheck(
        "vs_champion",
        ok,
        ERROR,
        f"{name} challenger {new:.4f} vs champion v{champion.version} {old:.4f} on {n} units "
        f"(gain {gain:+.4f}, margin {t.vs_champion_margin})",
        {
            "champion": champion.version,
            "metric": name,
            "challenger": new,
            "champion_value": old,
            "gain": gain,
            "units": n,
            "excluded_champion_training_units": int((~mask).sum()),
        },
    )


def _per_plant(
    holdout: pd.DataFrame,
    y: np.ndarray,
    s_new: np.ndarray,
    s_old: np.ndarray | None,
    mask: np.ndarray,
    t: GateThresholds,
) -> tuple[pd.DataFrame, GateCheck]:
    rule = t.per_plant
    rows = []
    plants = holdout["plant"].to_numpy()
    for plant in sorted(set(plants)):
        sel = plants == plant
        if s_old is not None:
            sel = sel & mask
        yy, sn = y[sel], s_new[sel]
        row: dict[str, Any] = {
            "plant": plant,
            "units": int(sel.sum()),
            "positives": int(yy.sum()),
            "metric": rule.metric,
            "challenger": M.metric(rule.metric, yy, sn) if sel.any() else np.nan,
        }
        if s_old is not None:
            ni = M.non_inferiority(
                rule.metric,
                yy,
                sn,
                s_old[sel],
                rule.margin,
                rule.min_units,
                rule.min_positives,
                rule.bootstrap_resamples,
                rule.confidence,
            )
            row.update(
                champion=M.metric(rule.metric, yy, s_old[sel]) if sel.any() else np.nan,
                difference=ni.difference.estimate,
                ci_lower=ni.difference.lower,
                ci_upper=ni.difference.upper,
                verdict=ni.verdict,
                reason=ni.reason,
            )
        else:
            negatives = row["units"] - row["positives"]
            if (
                row["units"] < rule.min_units
                or row["positives"] < rule.min_positives
                or negatives < rule.min_positives
            ):
                row.update(
                    verdict="insufficient_data",
                    reason=f"{row['units']} units / {row['positives']} positives; needs {rule.min_units} / "
                    f"{rule.min_positives}",
                )
            else:
                iv = M.bootstrap_metric(
                    rule.metric, yy, sn, rule.bootstrap_resamples, rule.confidence
                )
                ok = (
                    iv.lower >= t.per_plant_min_metric
                    if M.higher_is_better(rule.metric)
                    else iv.upper <= t.per_plant_min_metric
                )
                row.update(
                    ci_lower=iv.lower,
                    ci_upper=iv.upper,
                    verdict="non_inferior" if ok else "inferior",
                    reason=f"{rule.metric} {iv.estimate:.4f} [{iv.lower:.4f}, {iv.upper:.4f}] vs minimum "
                    f"{t.per_plant_min_metric}",
                )
        rows.append(row)
    table = pd.DataFrame(rows)
    inferior = table[table["verdict"] == "inferior"]["plant"].tolist()
    unjudged = table[table["verdict"] == "insufficient_data"]["plant"].tolist()
    if inferior:
        check = GateCheck(
            "per_plant_non_inferiority",
            False,
            ERROR,
            f"inferior at {inferior}" + (f"; not enough data at {unjudged}" if unjudged else ""),
            {"inferior": inferior, "insufficient_data": unjudged},
            table,
        )
    elif unjudged:
        check = GateCheck(
            "per_plant_non_inferiority",
            False,
            WARN,
            f"non-inferior where judged; not enough holdout data at {unjudged} (a human must approve)",
            {"inferior": [], "insufficient_data": unjudged},
            table,
        )
    else:
        check = GateCheck(
            "per_plant_non_inferiority",
            True,
            ERROR,
            f"non-inferior at every plant ({', '.join(table['plant'])})",
            {"inferior": [], "insufficient_data": []},
            table,
        )
    return table, check


def reference_unit(holdout: pd.DataFrame, plant: str, spec: FeatureSpec) -> pd.DataFrame | None:
    """One row: the plant's holdout medians (numeric) and most frequent values (categorical)."""
    rows = holdout[holdout["plant"] == plant]
    if rows.empty:
        return None
    ref: dict[str, Any] = {}
    for c in spec.categorical:
        mode = rows[c].dropna().mode()
        ref[c] = mode.iloc[0] if not mode.empty else None
    for c in spec.numeric:
        ref[c] = pd.to_numeric(rows[c], errors="coerce").median()
    return pd.DataFrame([ref])


def _behaviour(model: ScoredModel, holdout: pd.DataFrame, cases: BehaviourCases) -> GateCheck:
    rows, failed, skipped = [], [], []
    for case in cases.cases:
        ref = reference_unit(holdout, case.plant, model.spec)
        unknown = [k for k in case.set if k not in model.spec.columns]
        if ref is None or unknown:
            why = (
                f"plant {case.plant} not in the holdout"
                if ref is None
                else f"unknown features {unknown}"
            )
            skipped.append(case.name)
            rows.append(
                {
                    "case": case.name,
                    "plant": case.plant,
                    "expect": case.expect,
                    "result": "not applicable",
                    "detail": why,
                }
            )
            continue
        probe = ref.copy()
        for k, v in case.set.items():
            probe[k] = v
        base, risk = float(model.score(ref)[0]), float(model.score(probe)[0])
        if case.expect == "increase":
            ok, detail = (
                risk - base >= case.min_change and risk > base,
                f"risk {base:.4f} -> {risk:.4f} (needs +{case.min_change})",
            )
        elif case.expect == "decrease":
            ok, detail = (
                base - risk >= case.min_change and risk < base,
                f"risk {base:.4f} -> {risk:.4f} (needs -{case.min_change})",
            )
        elif case.expect == "above":
            ok, detail = risk > float(case.value or 0), f"risk {risk:.4f} (needs > {case.value})"
        else:
            ok, detail = risk < float(case.value or 0), f"risk {risk:.4f} (needs < {case.value})"
        if not ok:
            failed.append(case.name)
        rows.append(
            {
                "case": case.name,
                "plant": case.plant,
                "expect": case.expect,
                "result": "pass" if ok else "FAIL",
                "detail": detail,
            }
        )
    table = pd.DataFrame(rows, columns=["case", "plant", "expect", "result", "detail"])
    applicable = len(rows) - len(skipped)
    if failed:
        return GateCheck(
            "behaviour_cases",
            False,
            ERROR,
            f"{len(failed)} of {applicable} cases failed: {failed}",
            {"failed": failed, "not_applicable": skipped},
            table,
        )
    return GateCheck(
        "behaviour_cases",
        True,
        ERROR,
        f"all {applicable} applicable cases hold"
        + (f" ({len(skipped)} not applicable: {skipped})" if skipped else ""),
        {"failed": [], "not_applicable": skipped},
        table,
    )
