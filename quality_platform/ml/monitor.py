"""Drift monitoring per plant-day and the sensor-fault / process-drift decision (F7, F19).

At training time :func:`build_reference` profiles the champion's training rows once - per plant,
per machine and the holdout score distribution - and the profile is stored with the model version
(MLflow artifact ``drift/reference.json``). Each plant-day is then one pass over its units
(:func:`quality_platform.ml.drift.compare`).

How a plant-day is classified, per monitored feature (``<quantity>__mean`` by default):

1. **stuck sensor** - on a machine, most units have a window std of (almost) zero for the
   quantity, which a live sensor never produces: sensor fault;
2. **isolated machines** - each machine against its OWN reference (machines differ by design),
   relative to the plant's common mode (the median machine shift), so that a plant-wide process
   change does not look like many faulty sensors;
3. a shift confined to few machines (``fault.max_machines`` and ``fault.max_machine_share``) is a
   **suspected sensor fault**: a data-quality incident for maintenance, no retrain;
4. a plant-level shift or one across more machines is **process drift**: the drift check fails
   with ERROR and the loop retrains. The plant-level threshold per feature is ``drift.alarm``,
   raised to ``drift.noise_factor`` x the largest distance of a training day to the other training
   days (leave one day out) where
   ordinary days already differ that much (material moisture follows lots: a day holds only ~10 of
   them per line, so a stable day is 0.2-0.6 sd from a multi-week reference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from quality_platform.ml.config import MonitoringConfig
from quality_platform.ml.dataset import LABEL
from quality_platform.ml.drift import (
    Profile,
    build_group_profiles,
    build_profile,
    compare,
    compare_groups,
)
from quality_platform.ml.metrics import AucShortfall, LossSurprise, auc_shortfall, loss_surprise

SCORE = "risk"


def monitored_columns(columns: list[str], cfg: MonitoringConfig) -> list[str]:
    """The monitored numeric features among ``columns``."""
    return [
        c for c in columns if "__" in c and c.rsplit("__", 1)[1] in cfg.drift.monitored_statistics
    ]


def _measured(df: pd.DataFrame, cols: list[str]) -> list[str]:
    return [c for c in cols if c in df.columns and df[c].notna().any()]


def build_reference(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    holdout_scores: np.ndarray,
    numeric: list[str],
    cfg: MonitoringConfig,
) -> dict[str, Any]:
    """Per plant: plant profile, machine profiles, stuck shares and score profile (JSON-ready)."""
    cols = monitored_columns(numeric, cfg)
    out: dict[str, Any] = {"monitored": cols, "plants": {}}
    hold = holdout.assign(**{SCORE: holdout_scores})
    for plant, rows in train.groupby("plant", observed=True):
        measured = _measured(rows, cols)
        if not measured:
            continue
        machines = build_group_profiles(
            rows,
            "machine_id",
            measured,
            n_edges=cfg.drift.n_edges,
            min_rows=cfg.drift.min_machine_units,
        )
        h = hold[hold["plant"] == plant]
        profile = build_profile(rows, measured, n_edges=cfg.drift.n_edges)
        out["plants"][str(plant)] = {
            "day_noise": _day_noise(rows, measured, cfg.drift.n_edges),
            "features": measured,
            "profile": profile.to_json(),
            "machines": {str(m): p.to_json() for m, p in machines.items()},
            "score": build_profile(h, [SCORE], n_edges=cfg.drift.n_edges).to_json()
            if len(h)
            else None,
            "holdout_loss": dataclasses.asdict(
                loss_surprise(h[LABEL].to_numpy(dtype=bool), h[SCORE].to_numpy())
            )
            if len(h) and LABEL in h.columns
            else None,
            "holdout_auc": dataclasses.asdict(
                auc_shortfall(h[LABEL].to_numpy(dtype=bool), h[SCORE].to_numpy())
            )
            if len(h) and LABEL in h.columns
            else None,
        }
    return out


def _day_noise(rows: pd.DataFrame, features: list[str], n_edges: int) -> dict[str, float]:
    """Per feature: the largest normed Wasserstein of a single training day against a reference built
    from the OTHER training days (leave one day out) - how far an ordinary, unseen day already is
    (lot-to-lot variation, slow wander)."""
    if "partition_date" not in rows.columns:
        return {}
    days = [d for d, g in rows.groupby("partition_date") if len(g) >= 30]
    if len(days) < 4:
        return {}
    out = []
    for d in days:
        day = rows["partition_date"] == d
        out.append(
            compare(build_profile(rows[~day], features, n_edges=n_edges), rows[day], features)
        )
    t = pd.concat(out, ignore_index=True)
    return {str(f): float(v) for f, v in t.groupby("feature")["wasserstein"].max().items()}


def alarm_threshold(ref_plant: dict[str, Any], feature: str, cfg: MonitoringConfig) -> float:
    """Process-drift threshold of a feature: the configured effect size, raised to
    ``noise_factor`` x the reference's own day-to-day noise where ordinary days already differ more."""
    noise = (ref_plant.get("day_noise") or {}).get(feature)
    return (
        max(cfg.drift.alarm, cfg.drift.noise_factor * noise)
        if noise is not None
        else cfg.drift.alarm
    )


def _std_col(feature: str) -> str:
    return feature.rsplit("__", 1)[0] + "__std"


@dataclasses.dataclass(frozen=True)
class PlantReference:
    """One plant's drift reference with its profiles parsed: built once per run from the stored
    JSON (:func:`parse_reference`), then used for every plant-day of the run."""

    raw: dict[str, Any]  # the plant's JSON section (features, day_noise, holdout figures)
    profile: Profile
    machines: dict[str, Profile]
    score: Profile | None

    @classmethod
    def from_json(cls, pref: dict[str, Any]) -> PlantReference:
        return cls(
            raw=pref,
            profile=Profile.from_json(pref["profile"]),
            machines={m: Profile.from_json(p) for m, p in pref["machines"].items()},
            score=Profile.from_json(pref["score"]) if pref.get("score") else None,
        )


def parse_reference(
    ref: dict[str, Any], plants: Iterable[str] | None = None
) -> dict[str, PlantReference]:
    """The parsed reference of each plant in ``plants`` (default: all) that the reference holds."""
    wanted = ref["plants"] if plants is None else [p for p in plants if p in ref["plants"]]
    return {p: PlantReference.from_json(ref["plants"][p]) for p in wanted}


def classify_day(
    rows: pd.DataFrame,
    scores: np.ndarray | None,
    refs: Mapping[str, PlantReference],
    plant: str,
    cfg: MonitoringConfig,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Drift rows of one plant-day (plant and machine scope) and its findings.

    Each finding: ``{"kind": process_drift | sensor_fault | stuck_sensor | prediction_drift,
    "feature", "machines", "value", "detail"}``."""
    parsed = refs.get(plant)
    if parsed is None or rows.empty:
        return pd.DataFrame(), []
    pref = parsed.raw
    features = [f for f in pref["features"] if f in rows.columns]
    plant_rows = compare(parsed.profile, rows, features).assign(scope="plant", machine_id=None)
    mach = compare_groups(
        parsed.machines,
        rows.assign(machine_id=rows["machine_id"].astype(str)),
        "machine_id",
        features,
    )
    if not mach.empty:
        mach = mach.rename(columns={"group": "machine_id"}).assign(scope="machine")
    parts = [plant_rows, mach]
    if scores is not None and parsed.score is not None:
        sp = compare(parsed.score, pd.DataFrame({SCORE: scores}), [SCORE])
        parts.append(sp.assign(scope="prediction", machine_id=None))
    table = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    findings: list[dict[str, Any]] = []
    n_machines = rows["machine_id"].nunique()
    enough_plant = len(rows) >= cfg.drift.min_units
    for f in features:
        stuck = _stuck_machines(rows, f, cfg)
        for m in stuck:
            findings.append(
                {
                    "kind": "stuck_sensor",
                    "feature": f,
                    "machines": [m],
                    "value": None,
                    "detail": f"{f.split('__')[0]} on {m}: flat values (window std ~0) in most units",
                }
            )
        shifted = _isolated_machines(mach, f, cfg, exclude=stuck)
        pw = plant_rows.loc[plant_rows["feature"] == f, "wasserstein"]
        w = float(pw.iloc[0]) if len(pw) else float("nan")
        confined = (
            0 < len(shifted) <= cfg.fault.max_machines
            and len(shifted) <= cfg.fault.max_machine_share * n_machines
        )
        if confined:
            findings.append(
                {
                    "kind": "sensor_fault",
                    "feature": f,
                    "machines": shifted,
                    "value": w,
                    "detail": f"{f} shifted on {shifted} only ({len(shifted)} of {n_machines} machines)",
                }
            )
        elif enough_plant and (
            (w == w and w >= alarm_threshold(pref, f, cfg)) or len(shifted) > cfg.fault.max_machines
        ):
            if stuck and not shifted:
                continue  # the plant-level shift is the stuck sensor's
            findings.append(
                {
                    "kind": "process_drift",
                    "feature": f,
                    "machines": shifted,
                    "value": w,
                    "detail": f"{f}: normed Wasserstein {w:.3f} (alarm {alarm_threshold(pref, f, cfg):.3f}); "
                    f"{len(shifted)} of {n_machines} machines shifted",
                }
            )
    if scores is not None and "prediction" in set(table["scope"]):
        pw = float(table.loc[table["scope"] == "prediction", "wasserstein"].iloc[0])
        if enough_plant and pw == pw and pw >= cfg.drift.prediction_alarm:
            findings.append(
                {
                    "kind": "prediction_drift",
                    "feature": SCORE,
                    "machines": [],
                    "value": pw,
                    "detail": f"score distribution: normed Wasserstein {pw:.3f}",
                }
            )
    return table, findings


def _isolated_machines(
    mach: pd.DataFrame, feature: str, cfg: MonitoringConfig, exclude: list[str]
) -> list[str]:
    """Machines whose mean moved by >= ``drift.machine_alarm`` of their own reference sd MORE than the
    plant's common mode (the median machine shift). A process change (material, recipe) moves every
    machine of a line together and cancels out here; a miscalibrated sensor moves one machine."""
    if mach.empty:
        return []
    mf = mach[(mach["feature"] == feature) & (mach["n"] >= cfg.drift.min_machine_units)]
    mf = mf[~mf["machine_id"].isin(exclude)]
    if len(mf) < 3:
        return []
    rel = mf["mean_shift_sd"] - mf["mean_shift_sd"].median()
    return sorted(mf.loc[rel.abs() >= cfg.drift.machine_alarm, "machine_id"].astype(str))


def _stuck_machines(rows: pd.DataFrame, feature: str, cfg: MonitoringConfig) -> list[str]:
    s = _std_col(feature)
    if s not in rows.columns:
        return []
    valid = rows[rows[s].notna()]
    out = []
    for m, g in valid.groupby("machine_id", observed=True):
        if (
            len(g) >= cfg.drift.min_machine_units // 3
            and (g[s] <= cfg.fault.stuck_std_below).mean() >= cfg.fault.stuck_unit_share
        ):
            out.append(str(m))
    return sorted(out)


def holdout_baseline(ref: dict[str, Any], plant: str) -> LossSurprise | None:
    """The champion's log-loss surprise on its own holdout at ``plant`` (baseline of the performance check)."""
    h = (ref.get("plants", {}).get(plant) or {}).get("holdout_loss")
    return LossSurprise(**h) if h else None


def holdout_auc_baseline(ref: dict[str, Any], plant: str) -> AucShortfall | None:
    """The champion's ROC-AUC shortfall (realised - self-expected) on its own holdout at ``plant``."""
    h = (ref.get("plants", {}).get(plant) or {}).get("holdout_auc")
    return AucShortfall(**h) if h else None
