"""Readers of the simulated native files and small numeric helpers for the simulator tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC-AUC via the rank-sum (Mann-Whitney) statistic; ties get average ranks."""
    score = np.asarray(score, dtype=float)
    label = np.asarray(label).astype(bool)
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.size)
    sorted_scores = score[order]
    i = 0
    while i < score.size:
        j = i
        while j + 1 < score.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    n1, n0 = label.sum(), (~label).sum()
    return float((ranks[label].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def day_dirs(root: Path, plant: str) -> list[Path]:
    """The plant's day folders, sorted."""
    return sorted(p for p in (root / plant).iterdir() if p.is_dir())


def plant_a_readings(root: Path) -> pd.DataFrame:
    """All plant_a sensor rows, with the day folder in ``day``."""
    frames = [pd.read_csv(d / "sensoren.csv").assign(day=d.name) for d in day_dirs(root, "plant_a")]
    return pd.concat(frames, ignore_index=True)


def plant_a_units(root: Path) -> pd.DataFrame:
    """All plant_a orders."""
    frames = [
        pd.read_csv(d / "auftraege.csv").assign(day=d.name) for d in day_dirs(root, "plant_a")
    ]
    return pd.concat(frames, ignore_index=True)


def plant_a_inspections(root: Path) -> pd.DataFrame:
    """All plant_a inspection rows (with ``file``)."""
    frames = [
        pd.read_csv(f).assign(file=f.relative_to(root).as_posix())
        for d in day_dirs(root, "plant_a")
        for f in sorted(d.glob("pruefung_*.csv"))
    ]
    return pd.concat(frames, ignore_index=True)


def plant_b_table(root: Path, name: str) -> pd.DataFrame:
    """All rows of ``<name>.parquet`` (or a glob like ``qc_*``) over the plant_b days."""
    frames = [
        pq.read_table(f).to_pandas().assign(file=f.relative_to(root).as_posix())
        for d in day_dirs(root, "plant_b")
        for f in sorted(d.glob(f"{name}.parquet"))
    ]
    return pd.concat(frames, ignore_index=True)


def plant_c_batches(root: Path) -> list[dict]:
    """All plant_c batch records (with ``_day``)."""
    out = []
    for d in day_dirs(root, "plant_c"):
        for line in (d / "batches.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            rec["_day"] = d.name
            out.append(rec)
    return out


def plant_c_readings(batches: list[dict]) -> pd.DataFrame:
    """Readings exploded from the batch records, with batch_id and machine."""
    rows = [
        {**r, "batch_id": b["batch_id"], "machine": b["machine"]}
        for b in batches
        for r in b["readings"]
    ]
    return pd.DataFrame(rows)


def plant_c_inspections(root: Path) -> pd.DataFrame:
    """All plant_c inspection records."""
    rows = []
    for d in day_dirs(root, "plant_c"):
        for f in sorted(d.glob("inspections_*.jsonl")):
            rows += [
                {**json.loads(x), "file": f.relative_to(root).as_posix()}
                for x in f.read_text(encoding="utf-8").splitlines()
            ]
    return pd.DataFrame(rows)


def all_files(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
