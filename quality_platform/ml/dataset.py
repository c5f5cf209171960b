"""Training snapshots: time-bounded, label-latency aware, content-hashed, documented.

A snapshot is built per plant from ``features.unit_features`` joined to the inspection outcome
of ``standard.production_units``:

- window: the plant's last ``window_days`` days (its own ``training_window_days`` where the plant
  file sets one) whose labels are complete, i.e. days ``D`` with
  ``D + label_latency_days <= the plant's last standardised day``. Later days are left out
  entirely (their known labels would be a biased sample: inspections still pending);
- rows: units of the window whose outcome is known; units still pending are counted, not used;
- split: per plant, holdout by whole days counted back from the latest labelled day
  (:func:`holdout_day`: the latest and every ``1/holdout_fraction``-th before it), validation a
  fixed share of the other days' units (by unit-id hash; they choose the decision threshold), the
  rest train (with fewer than 3 days: in time order by unit, the latest units holdout);
- hash: sha256 over the rows in canonical order (plant, unit_id) and the columns that matter
  (ids, features, label, split). The same data gives the same hash, whatever order it was read in.

Snapshots are immutable files ``<data>/training_snapshots/<hash16>/`` (Parquet + datasheet JSON
and Markdown), so a model version can always be traced back to its exact rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quality_platform.config import PlantConfig
from quality_platform.features.schema import FEATURE_SCHEMA, TABLE
from quality_platform.ml.config import ModelConfig
from quality_platform.ml.frame import FeatureSpec
from quality_platform.settings import Paths
from quality_platform.warehouse import table_exists

SPLITS = ("train", "validation", "holdout")
LABEL = "label"


class DatasetError(Exception):
    """No usable training data (the message says why, per plant)."""


@dataclass
class Snapshot:
    """A built training snapshot (rows + what it is)."""

    data: pd.DataFrame
    data_hash: str
    #: plant -> [first day, last day] with labelled units in the snapshot (inclusive; the window's
    #: bounds are in the datasheet)
    partitions: dict[str, list[str]]
    datasheet: dict[str, Any]
    excluded_plants: dict[str, str] = field(default_factory=dict)

    @property
    def short_hash(self) -> str:
        return self.data_hash[:16]


def snapshots_dir(paths: Paths) -> Path:
    return paths.data_dir / "training_snapshots"


def snapshot_dir(paths: Paths, data_hash: str) -> Path:
    return snapshots_dir(paths) / data_hash[:16]


def window_days(plant: PlantConfig, cfg: ModelConfig) -> int:
    """The training window of a plant: its own ``training_window_days``, else the model's."""
    return plant.training_window_days or cfg.training.window_days


def plant_windows(
    con: Any, plants: dict[str, PlantConfig], cfg: ModelConfig, end: dt.date | None = None
) -> dict[str, tuple[dt.date, dt.date, dt.date]]:
    """plant -> (first day, last day, last standardised day) of its training window.

    ``end`` caps the window (training as of an earlier date, e.g. to reproduce a past version)."""
    if not table_exists(con, FEATURE_SCHEMA, TABLE):
        return {}
    last = dict(
        con.execute(
            f"SELECT plant, max(partition_date) FROM {FEATURE_SCHEMA}.{TABLE} GROUP BY plant"
        ).fetchall()
    )
    out = {}
    for plant_id, plant in sorted(plants.items()):
        if plant_id not in last:
            continue
        complete = last[plant_id] - dt.timedelta(days=plant.label_latency_days)
        if end is not None:
            complete = min(complete, end)
        out[plant_id] = (
            complete - dt.timedelta(days=window_days(plant, cfg) - 1),
            complete,
            last[plant_id],
        )
    return out


def _read_plant(
    con: Any, plant_id: str, first: dt.date, last: dt.date, label: str
) -> tuple[pd.DataFrame, int]:
    df = con.execute(
        f"""
        SELECT f.*, u."{label}"::INTEGER AS {LABEL}, u.rework, u.scrap, u.inspected_at_utc
        FROM {FEATURE_SCHEMA}.{TABLE} f
        JOIN standard.production_units u USING (plant, partition_date, unit_id)
        WHERE f.plant = ? AND f.partition_date BETWEEN ? AND ?""",
        [plant_id, first, last],
    ).df()
    pending = int(df[LABEL].isna().sum())
    return df[df[LABEL].notna()].copy(), pending


def outside_window(
    con: Any, plant: PlantConfig, first: dt.date, last: dt.date, latest: dt.date, window: int
) -> dict[str, Any]:
    """How many of a plant's featured units a snapshot of window ``first..last`` leaves out, and
    why: the days after ``last`` up to the last standardised day ``latest`` wait for their labels
    (``label_latency_days``, or an ``end_date`` that caps the window), the days before ``first``
    are older than the window. A small or short data set can fall wholly outside; this says so."""
    before, after = con.execute(
        f"""SELECT count(*) FILTER (WHERE partition_date < ?),
                   count(*) FILTER (WHERE partition_date > ?)
            FROM {FEATURE_SCHEMA}.{TABLE} WHERE plant = ?""",
        [first, last, plant.plant_id],
    ).fetchone()
    why = []
    if after:
        cause = (
            f"label_latency_days={plant.label_latency_days}"
            if last == latest - dt.timedelta(days=plant.label_latency_days)
            else f"the window's end_date {last}"
        )
        why.append(f"{after} unit(s) on {last + dt.timedelta(days=1)}..{latest} ({cause})")
    if before:
        why.append(f"{before} unit(s) before {first} (window_days={window})")
    return {
        "units_before_window": int(before),
        "units_after_window": int(after),
        "left_out_because": "; ".join(why) or "none",
    }


def _key_ids(con: Any, plant_id: str, first: dt.date, last: dt.date) -> list[str]:
    """Ids of the pseudonymisation keys of the window's production units (lineage, F11)."""
    rows = con.execute(
        """SELECT DISTINCT pseudonym_key_id FROM standard.production_units WHERE plant = ?
        AND partition_date BETWEEN ? AND ? AND pseudonym_key_id IS NOT NULL ORDER BY 1""",
        [plant_id, first, last],
    )
    return [r[0] for r in rows.fetchall()]


def holdout_day(rank: int, cfg: ModelConfig) -> bool:
    """Whether a plant's labelled day of ``rank`` (counted back from the window's latest labelled
    day, 0) is a holdout day: the latest day and every ``1/holdout_fraction``-th before it, so the
    gate judges the newest data and days spread over the window."""
    return rank % max(2, round(1 / cfg.training.holdout_fraction)) == 0


def validation_share(cfg: ModelConfig) -> float:
    """The share of each non-holdout day's units that is validation (picks the decision threshold),
    so ``validation_fraction`` of all units."""
    return cfg.training.validation_fraction / (1 - cfg.training.holdout_fraction)


def _split(df: pd.DataFrame, cfg: ModelConfig) -> pd.Series:
    """The split of one plant's units. With at least 3 labelled days: holdout by whole days
    (:func:`holdout_day`), validation a fixed share of every other day's units (chosen by a hash of
    the unit id: the same units every time), the rest train. So after a shift the day before the
    latest labelled one already trains the model; a split of the latest 30 % of units into
    validation and holdout, as before, kept every post-shift unit out of training for 8 plant-days
    of a 28-day window. With fewer days: in time order by unit (the latest units holdout)."""
    days = sorted(pd.unique(df["partition_date"]), reverse=True)
    if len(days) >= 3:
        rank = {d: i for i, d in enumerate(days)}
        hold = df["partition_date"].map(lambda d: holdout_day(rank[d], cfg)).astype(bool)
        u = pd.util.hash_pandas_object(df["unit_id"].astype(str), index=False).to_numpy()
        val = (u % 1_000_000) / 1_000_000 < validation_share(cfg)
        return pd.Series(
            np.where(hold, "holdout", np.where(val, "validation", "train")), index=df.index
        )
    n = len(df)
    n_hold = round(n * cfg.training.holdout_fraction)
    n_val = round(n * cfg.training.validation_fraction)
    labels = np.array(
        ["train"] * (n - n_hold - n_val) + ["validation"] * n_val + ["holdout"] * n_hold
    )
    order = df.sort_values(["start_utc", "unit_id"], kind="stable").index
    return pd.Series(labels, index=order).reindex(df.index)


def content_hash(df: pd.DataFrame, columns: list[str]) -> str:
    """sha256 of ``columns`` of ``df`` in canonical row order (plant, unit_id)."""
    canon = df.sort_values(["plant", "unit_id"], kind="stable")[columns].reset_index(drop=True)
    h = hashlib.sha256()
    h.update(json.dumps(columns).encode())
    h.update(pd.util.hash_pandas_object(canon, index=False).to_numpy().tobytes())
    return h.hexdigest()


def build_snapshot(
    con: Any,
    plants: dict[str, PlantConfig],
    cfg: ModelConfig,
    spec: FeatureSpec,
    end: dt.date | None = None,
    quality: list[dict[str, Any]] | None = None,
) -> Snapshot:
    """Read, filter, split and hash the training rows of every plant with enough labelled units."""
    windows = plant_windows(con, plants, cfg, end)
    if not windows:
        raise DatasetError(
            "no unit_features yet: materialise the standard and feature layers first"
        )
    parts, partitions, excluded, per_plant = [], {}, {}, []
    for plant_id, (first, last, latest) in windows.items():
        df, pending = _read_plant(con, plant_id, first, last, cfg.label)
        entry = {
            "plant": plant_id,
            "source": plants[plant_id].source,
            "name": plants[plant_id].name,
            "first_day": first.isoformat(),
            "last_day": last.isoformat(),
            "last_standardised_day": latest.isoformat(),
            "label_latency_days": plants[plant_id].label_latency_days,
            "labelled_units": len(df),
            "pending_units_left_out": pending,
            "training_window_days": window_days(plants[plant_id], cfg),
            **outside_window(
                con, plants[plant_id], first, last, latest, window_days(plants[plant_id], cfg)
            ),
            "pseudonym_key_ids": _key_ids(con, plant_id, first, last),
        }
        if len(df) < cfg.training.min_units_per_plant:
            excluded[plant_id] = (
                f"{len(df)} labelled units in {first}..{last}, fewer than "
                f"min_units_per_plant={cfg.training.min_units_per_plant}"
                + (
                    f"; outside the window: {entry['left_out_because']}"
                    if entry["left_out_because"] != "none"
                    else ""
                )
            )
            entry["excluded"] = excluded[plant_id]
            per_plant.append(entry)
            continue
        df["split"] = _split(df, cfg)
        # the days the rows really come from (a window may begin before the plant's first data)
        used = pd.to_datetime(df["partition_date"]).dt.date
        partitions[plant_id] = [used.min().isoformat(), used.max().isoformat()]
        per_plant.append(entry)
        parts.append(df)
    if not parts:
        raise DatasetError(
            "no plant has enough labelled units: "
            + "; ".join(f"{p}: {r}" for p, r in excluded.items())
        )
    data = pd.concat(parts, ignore_index=True)
    data["partition_date"] = pd.to_datetime(data["partition_date"]).dt.date
    # every column of unit_features is kept (not only this model's inputs): the gate scores the
    # champion on the same holdout, and the champion may use another feature selection
    extra = ("rework", "scrap", "inspected_at_utc", LABEL, "split")
    missing = [c for c in spec.columns if c not in data.columns]
    if missing:
        raise DatasetError(f"unit_features lacks the model's columns {missing[:10]}")
    keep = list(
        dict.fromkeys(
            [
                "plant",
                "partition_date",
                "unit_id",
                "start_utc",
                *(c for c in data.columns if c not in extra),
                LABEL,
                "split",
            ]
        )
    )
    data = data.sort_values(["plant", "start_utc", "unit_id"], kind="stable").reset_index(drop=True)
    data_hash = content_hash(data, keep)
    data = data[
        list(dict.fromkeys([*keep, "rework", "scrap", "inspected_at_utc", "partition_date"]))
    ]
    sheet = datasheet(data, data_hash, partitions, per_plant, cfg, spec, quality or [])
    return Snapshot(data, data_hash, partitions, sheet, excluded)


def datasheet(
    data: pd.DataFrame,
    data_hash: str,
    partitions: dict[str, list[str]],
    per_plant: list[dict[str, Any]],
    cfg: ModelConfig,
    spec: FeatureSpec,
    quality: list[dict[str, Any]],
) -> dict[str, Any]:
    """What the snapshot is: sources, period, label distribution per plant and split, data quality."""
    counts = (
        data.groupby(["plant", "split", LABEL])
        .size()
        .rename("units")
        .reset_index()
        .assign(**{LABEL: lambda d: d[LABEL].map({0: "ok", 1: cfg.label})})
    )
    dist = data.groupby("plant")[LABEL].agg(["size", "sum", "mean"]).reset_index()
    dist.columns = ["plant", "units", "positives", "positive_rate"]
    return {
        "data_hash": data_hash,
        "label": cfg.label,
        "label_definition": "production_units.defect = rework or scrap at inspection"
        if cfg.label == "defect"
        else f"production_units.{cfg.label}",
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sources": ["features.unit_features", "standard.production_units (inspection outcome)"],
        "partitions": partitions,
        "window_rule": (
            f"per plant: the last {cfg.training.window_days} days (or the plant's "
            "training_window_days) with complete labels (day + label_latency_days <= last "
            "standardised day); only units with a known outcome"
        ),
        "split_rule": (
            f"per plant, by whole days counted back from the latest labelled day: the latest and "
            f"every {max(2, round(1 / cfg.training.holdout_fraction))}th day before it holdout "
            f"(~{cfg.training.holdout_fraction:.0%}), {cfg.training.validation_fraction:.0%} of "
            "the units validation (by unit-id hash, from the other days), the rest train (fewer "
            "than 3 days: in time order by unit)"
        ),
        "split_days": {
            str(p): {
                str(sp): sorted(str(d)[:10] for d in pd.unique(h["partition_date"]))
                for sp, h in g.groupby("split")
            }
            for p, g in data.groupby("plant")
        },
        "plants": per_plant,
        "rows": len(data),
        "rows_per_plant_split_class": counts.to_dict("records"),
        "label_distribution": dist.to_dict("records"),
        "features": spec.as_dict(),
        "personal_data": "none: operator pseudonyms and material lot ids are not in the snapshot",
        "pseudonym_key_ids": sorted(
            {k for e in per_plant if "excluded" not in e for k in e.get("pseudonym_key_ids", [])}
        ),
        "data_quality": quality,
    }


def datasheet_markdown(sheet: dict[str, Any]) -> str:
    """The datasheet as Markdown (MLflow artifact, catalog metadata)."""
    lines = [
        f"# Training data datasheet `{sheet['data_hash'][:16]}`",
        "",
        f"- content hash (sha256): `{sheet['data_hash']}`",
        f"- label: `{sheet['label']}` - {sheet['label_definition']}",
        f"- sources: {', '.join(sheet['sources'])}",
        f"- window: {sheet['window_rule']}",
        f"- split: {sheet['split_rule']}",
        f"- rows: {sheet['rows']:,}",
        f"- personal data: {sheet['personal_data']}",
        f"- pseudonymisation key id(s) of the source data: {', '.join(sheet.get('pseudonym_key_ids', [])) or 'none'}",
        "",
        "## Plants and periods",
        "",
        pd.DataFrame(sheet["plants"]).to_markdown(index=False),
        "",
        "## Label distribution",
        "",
        pd.DataFrame(sheet["label_distribution"]).to_markdown(index=False),
        "",
        "## Rows per plant, split and class",
        "",
        pd.DataFrame(sheet["rows_per_plant_split_class"]).to_markdown(index=False),
        "",
        "## Days per plant and split",
        "",
        *(
            f"- {p} {sp}: {', '.join(days)}"
            for p, by in sheet.get("split_days", {}).items()
            for sp, days in by.items()
        ),
        "",
        f"## Features (feature set v{sheet['features']['feature_set_version']})",
        "",
        f"categorical: {', '.join(sheet['features']['categorical'])}; "
        f"numeric: {len(sheet['features']['numeric'])} columns",
        "",
    ]
    if sheet["data_quality"]:
        lines += [
            "## Data-quality results at snapshot time (latest check evaluations)",
            "",
            pd.DataFrame(sheet["data_quality"]).to_markdown(index=False),
        ]
    return "\n".join(lines) + "\n"


def save_snapshot(paths: Paths, snap: Snapshot) -> Path:
    """Write the snapshot once (immutable: an existing snapshot of the same hash is kept)."""
    d = snapshot_dir(paths, snap.data_hash)
    if (d / "snapshot.parquet").exists():
        return d
    tmp = d.with_name(d.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    snap.data.to_parquet(tmp / "snapshot.parquet", index=False)
    (tmp / "datasheet.json").write_text(
        json.dumps(snap.datasheet, indent=2, default=str), encoding="utf-8"
    )
    (tmp / "datasheet.md").write_text(datasheet_markdown(snap.datasheet), encoding="utf-8")
    tmp.rename(d)
    return d


def load_snapshot(paths: Paths, data_hash: str) -> Snapshot:
    """A saved snapshot by its (full or 16-char) hash."""
    d = snapshot_dir(paths, data_hash)
    if not (d / "snapshot.parquet").exists():
        raise DatasetError(
            f"training snapshot {data_hash[:16]} not found under {snapshots_dir(paths)}"
        )
    sheet = json.loads((d / "datasheet.json").read_text(encoding="utf-8"))
    data = pd.read_parquet(d / "snapshot.parquet")
    return Snapshot(data, sheet["data_hash"], sheet["partitions"], sheet)
