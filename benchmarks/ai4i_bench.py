"""AI4I 2020 benchmark: the platform's model against a plain CatBoost on the same split.

Two temporary installations with the AI4I 2020 plant only (its own model, as a per-plant scope
would have): one with ``data/plants/ai4i2020.yaml`` as committed (with its derived quantities:
mechanical power, temperature rise, torque x tool wear, declared in the plant file), one with the
derived quantities removed from that file. In each, the whole data set is landed, standardised and
featured through the code location's runs (``qp backfill``'s path), and ``train_job`` trains a
version on the time-bounded snapshot (split by whole days: the platform's holdout).

Next to them, in the same run, a plain CatBoost with the same parameters is fitted on the same
train units straight from the CSV: (a) the data set's own columns, (b) the same plus the three
engineered columns. All four are scored on the same holdout units; ROC-AUC and PR-AUC are the
platform's one implementation (quality_platform.ml.metrics). Prints a table and one JSON line;
asserts nothing.

    .venv/bin/python -m benchmarks.ai4i_bench
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.detection_bench import bench_installation

CSV_COLUMNS = {
    "Air temperature [K]": "air",
    "Process temperature [K]": "process",
    "Rotational speed [rpm]": "speed",
    "Torque [Nm]": "torque",
    "Tool wear [min]": "wear",
}


def _csv() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "datasets" / "ai4i2020" / "ai4i2020.csv"


def _platform(root: Path, derived: bool) -> dict[str, Any]:
    """Land, standardise, feature and train AI4I in a fresh installation; the version's holdout."""
    import dagster as dg
    import yaml

    paths = bench_installation(root, ("ai4i2020",))
    # the benchmark measures model quality: the committed gate, not bench_installation's relaxed one
    for name in ("model.yaml", "behaviour_cases.yaml"):
        (paths.config_dir / "ml" / name).write_text(
            (Path(__file__).resolve().parents[1] / "data" / "ml" / name).read_text()
        )
    f = paths.plants_dir / "ai4i2020.yaml"
    if not derived:
        doc = yaml.safe_load(f.read_text())
        doc.pop("quantities", None)
        f.write_text(yaml.safe_dump(doc, allow_unicode=True))
    from quality_platform.config import load_plants
    from quality_platform.definitions import build_definitions
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.dataset import LABEL, load_snapshot
    from quality_platform.ml.frame import model_frame
    from quality_platform.ml.metrics import pr_auc, roc_auc
    from quality_platform.ml.registry import ModelRegistry
    from quality_platform.runner import backfill, train

    # the data set's days: a synthetic time index, one unit every step_seconds from start
    ts = load_plants(paths)["ai4i2020"].streams.readings.timestamp
    n = len(pd.read_csv(_csv(), usecols=["UDI"], encoding="utf-8-sig"))
    days = [ts.start.date(), (ts.start + dt.timedelta(seconds=ts.step_seconds * n)).date()]
    defs = build_definitions(paths)
    t0 = time.perf_counter()
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        outcomes = backfill(defs, instance, "ai4i2020", days[0], days[-1])
        assert all(o.success for o in outcomes), outcomes
        t_data = time.perf_counter() - t0
        out = train(defs, instance)
    reg = ModelRegistry(load_model_config(paths), paths)
    v = reg.versions()[-1]
    snap = load_snapshot(paths, v.tag("data_hash") or "")
    hold = snap.data[(snap.data["split"] == "holdout") & (snap.data["plant"] == "ai4i2020")]
    score = reg.load(v.version).predict_proba(model_frame(hold, v.spec))[:, 1]
    y = hold[LABEL].to_numpy(dtype=int)
    return {
        "model": f"platform, {'with' if derived else 'without'} derived quantities",
        "inputs": len(v.spec.columns),
        "roc_auc": roc_auc(y, score),
        "pr_auc": pr_auc(y, score),
        "gate": v.gate,
        "seconds_data": round(t_data, 1),
        "seconds_train": round(out.seconds, 1),
        "_split": snap.data.loc[
            snap.data["plant"] == "ai4i2020", ["unit_id", "split", LABEL]
        ].rename(columns={LABEL: "defect"}),
    }


def _plain(split: pd.DataFrame, engineered: bool, params: dict[str, Any]) -> dict[str, Any]:
    """A plain CatBoost on the CSV's columns (+ engineered ones), the platform's split and params."""
    from catboost import CatBoostClassifier

    from quality_platform.ml.metrics import pr_auc, roc_auc

    raw = pd.read_csv(_csv(), encoding="utf-8-sig").rename(columns=CSV_COLUMNS)
    raw["unit_id"] = raw["UDI"].astype(str)
    x = raw[["unit_id", "Type", *CSV_COLUMNS.values()]].copy()
    if engineered:
        x["power"] = x["torque"] * x["speed"] * 2 * np.pi / 60
        x["temp_diff"] = x["process"] - x["air"]
        x["torque_wear"] = x["torque"] * x["wear"]
    d = split.merge(x, on="unit_id", how="inner", validate="one_to_one")
    cols = [c for c in x.columns if c != "unit_id"]
    tr, ho = d[d["split"] == "train"], d[d["split"] == "holdout"]
    m = CatBoostClassifier(
        **params, cat_features=["Type"], verbose=False, allow_writing_files=False
    )
    m.fit(tr[cols], tr["defect"].astype(int))
    s = m.predict_proba(ho[cols])[:, 1]
    y = ho["defect"].to_numpy(dtype=int)
    return {
        "model": f"plain CatBoost, CSV columns{' + engineered' if engineered else ''}",
        "inputs": len(cols),
        "roc_auc": roc_auc(y, s),
        "pr_auc": pr_auc(y, s),
        "gate": "-",
    }


def main() -> None:
    from quality_platform.ml.config import load_model_config

    params = load_model_config().catboost.model_dump()  # the committed model.yaml's
    rows = []
    with tempfile.TemporaryDirectory(prefix="qp_ai4i_") as tmp:
        for derived in (False, True):
            root = Path(tmp) / ("derived" if derived else "plain")
            root.mkdir()
            rows.append(_platform(root, derived))
    split = rows[-1].pop("_split").sort_values("unit_id", ignore_index=True)
    first = rows[0].pop("_split").sort_values("unit_id", ignore_index=True)
    assert split.equals(first), "both installations split the units alike"
    for engineered in (False, True):
        rows.append(_plain(split, engineered, params))
    hold = split[split["split"] == "holdout"]
    print(
        f"AI4I 2020, holdout of the platform's day-block split: {len(hold)} units, "
        f"{int(hold['defect'].sum())} failures; train {int((split['split'] == 'train').sum())} units"
    )
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".4f"))
    print(json.dumps({"benchmark": "ai4i", "rows": rows}, default=str))


if __name__ == "__main__":
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
    sys.exit(main())
