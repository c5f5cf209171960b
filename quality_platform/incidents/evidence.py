"""The evidence bundle of an incident (F24), preserved when it is opened.

:func:`build_evidence` writes ``<data_dir>/incidents/<id>/``: the champion's and challenger's MLflow
model version (model files and run artifacts), the warehouse tables of the data window as Parquet
(never raw tables), the audit records and the Dagster run event logs of the event window as JSONL,
and ``manifest.json`` with the SHA-256 and size of every file; the opening audits the bundle path
and the manifest's hash. :func:`verify_evidence` re-hashes the bundle against both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_platform.audit import AuditLog, now_text
from quality_platform.governance.incident_store import (
    Incident,
    IncidentConfig,
    load_incident_config,
    parse_utc,
)
from quality_platform.settings import Paths, get_paths

if TYPE_CHECKING:
    import dagster as dg


def bundle_dir(paths: Paths, incident_id: int) -> Path:
    return paths.data_dir / "incidents" / str(incident_id)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` of the evidence files and the report: dates as ISO text,
    anything else as ``str``."""
    if isinstance(o, dt.datetime | dt.date):
        return o.isoformat()
    return str(o)


def _write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for it in items:
            fh.write(
                json.dumps(it, sort_keys=True, default=json_default, ensure_ascii=False) + "\n"
            )


def _export_tables(
    inc: Incident, paths: Paths, tables: list[str], out: Path, notes: list[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from quality_platform.warehouse import connect

    if not paths.warehouse_path.exists():
        notes.append("no warehouse yet: no tables exported")
        return
    with connect(paths.warehouse_path, read_only=True) as con:
        for t in tables:
            schema, table = t.split(".")
            cols = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema=? "
                    "AND table_name=?",
                    [schema, table],
                ).fetchall()
            ]
            if not cols:
                notes.append(f"{t}: table does not exist (yet)")
                continue
            where, params = [], []
            if "partition_date" in cols:
                where.append("CAST(partition_date AS DATE) BETWEEN ? AND ?")
                params += [dt.date.fromisoformat(inc.data_from), dt.date.fromisoformat(inc.data_to)]
            if inc.plant and "plant" in cols:
                where.append("plant = ?")
                params.append(inc.plant)
            sql = f'SELECT * FROM "{schema}"."{table}"' + (
                " WHERE " + " AND ".join(where) if where else ""
            )
            df = con.execute(sql, params).df()
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.Table.from_pandas(df, preserve_index=False), out / f"{schema}.{table}.parquet"
            )


def _export_models(paths: Paths, out: Path, notes: list[str]) -> list[dict[str, Any]]:
    """Champion and challenger: version metadata, the model version's files, its run's artifacts."""
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.registry import CHALLENGER, CHAMPION, ModelRegistry, import_mlflow

    reg = ModelRegistry(load_model_config(paths), paths)
    seen: list[dict[str, Any]] = []
    for alias in (CHAMPION, CHALLENGER):
        v = reg.alias(alias)
        if v is None:
            notes.append(f"no {alias} model version")
            continue
        d = out / f"{alias}_v{v.version}"
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "alias": alias,
            "version": v.version,
            "run_id": v.run_id,
            "aliases": list(v.aliases),
            "tags": v.tags,
            "registered_model": reg.name,
            "tracking_uri": reg.tracking_uri,
        }
        (d / "version.json").write_text(
            json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8"
        )
        mlflow = import_mlflow()
        mlflow.set_tracking_uri(reg.tracking_uri)  # models:/ URIs resolve through the registry URI
        mlflow.set_registry_uri(reg.tracking_uri)
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{reg.name}/{v.version}",
                dst_path=str(d / "model"),
                tracking_uri=reg.tracking_uri,
            )
        except Exception as exc:
            notes.append(
                f"{alias} v{v.version}: model files not downloaded: {type(exc).__name__}: {exc}"[
                    :300
                ]
            )
        try:
            reg.client.download_artifacts(v.run_id, "", str(d / "run"))
        except Exception as exc:
            notes.append(
                f"{alias} v{v.version}: run artifacts not downloaded: {type(exc).__name__}: {exc}"[
                    :300
                ]
            )
        seen.append({"alias": alias, "version": v.version, "gate": v.gate, "approval": v.approval})
    return seen


def _export_runs(inc: Incident, instance: dg.DagsterInstance, max_runs: int, out: Path) -> int:
    import dagster as dg

    since = parse_utc(inc.events_from)
    records = instance.get_run_records(filters=dg.RunsFilter(created_after=since), limit=max_runs)
    runs = []
    for rec in records:
        run = rec.dagster_run
        runs.append(
            {
                "run_id": run.run_id,
                "job_name": run.job_name,
                "status": run.status.value,
                "tags": dict(run.tags),
                "create_timestamp": rec.create_timestamp.isoformat(),
                "start_time": rec.start_time,
                "end_time": rec.end_time,
            }
        )
        lines = [json.loads(dg.serialize_value(e)) for e in instance.all_logs(run.run_id)]
        _write_jsonl(out / f"{run.run_id}.jsonl", lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(
        json.dumps(runs, indent=2, sort_keys=True, default=json_default), encoding="utf-8"
    )
    return len(runs)


def _default_instance(paths: Paths) -> dg.DagsterInstance | None:
    import dagster as dg

    home = paths.dagster_home
    if not home.is_dir():
        return None
    return dg.DagsterInstance.from_config(str(home))


def build_evidence(
    inc: Incident,
    paths: Paths,
    audit: AuditLog,
    *,
    instance: dg.DagsterInstance | None = None,
    cfg: IncidentConfig | None = None,
) -> dict[str, Any]:
    """Preserve the evidence of ``inc`` under ``<data_dir>/incidents/<id>/`` and write
    ``manifest.json`` (SHA-256 and size of every file). Returns bundle path, manifest hash, file
    count, bytes, seconds and notes (what could not be collected, and why)."""
    t0 = time.perf_counter()
    cfg = cfg or load_incident_config(paths)
    root = bundle_dir(paths, inc.id)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    notes: list[str] = []
    (root / "incident.json").write_text(
        json.dumps(inc.as_dict(), indent=2, sort_keys=True), encoding="utf-8"
    )
    models: list[dict[str, Any]] = []
    try:
        models = _export_models(paths, root / "model", notes)
    except Exception as exc:
        notes.append(f"models: {type(exc).__name__}: {exc}"[:300])
    try:
        _export_tables(inc, paths, cfg.evidence.tables, root / "data", notes)
    except Exception as exc:  # e.g. a writer holds the warehouse lock
        notes.append(f"warehouse tables: {type(exc).__name__}: {exc}"[:300])
    recs = audit.records(since=inc.events_from, plant=None)
    _write_jsonl(
        root / "audit" / "audit_records.jsonl",
        [
            {k: getattr(r, k) for k in r.__dataclass_fields__}
            for r in recs
            if inc.plant is None or r.plant in (None, inc.plant)
        ],
    )
    n_runs = 0
    try:
        inst = instance or _default_instance(paths)
        if inst is None:
            notes.append("no Dagster instance (DAGSTER_HOME): run logs not preserved")
        else:
            n_runs = _export_runs(inc, inst, cfg.evidence.max_runs, root / "runs")
    except Exception as exc:
        notes.append(f"run logs: {type(exc).__name__}: {exc}"[:300])
    files = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        files.append(
            {
                "path": f.relative_to(root).as_posix(),
                "bytes": f.stat().st_size,
                "sha256": _sha256(f),
            }
        )
    manifest = {
        "incident_id": inc.id,
        "created_utc": now_text(),
        "model": inc.model,
        "plant": inc.plant,
        "data_window": [inc.data_from, inc.data_to],
        "events_from": inc.events_from,
        "model_versions": models,
        "runs": n_runs,
        "audit_records": len(recs),
        "notes": notes,
        "files": files,
    }
    mpath = root / "manifest.json"
    mpath.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return {
        "bundle": str(root),
        "manifest_sha256": _sha256(mpath),
        "files": len(files),
        "bytes": sum(f["bytes"] for f in files),
        "seconds": round(time.perf_counter() - t0, 2),
        "notes": notes,
    }


def verify_evidence(inc: Incident, paths: Paths | None = None) -> dict[str, Any]:
    """Re-hash the bundle: the manifest against the audited hash, every file against the manifest."""
    paths = paths or get_paths()
    root = Path(inc.evidence_dir) if inc.evidence_dir else bundle_dir(paths, inc.id)
    mpath = root / "manifest.json"
    if not mpath.exists():
        return {
            "ok": False,
            "bundle": str(root),
            "problems": ["no manifest.json (evidence not collected)"],
        }
    problems = []
    if inc.manifest_sha256 and _sha256(mpath) != inc.manifest_sha256:
        problems.append("manifest.json differs from the hash recorded at opening")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    listed = set()
    for f in manifest["files"]:
        listed.add(f["path"])
        p = root / f["path"]
        if not p.exists():
            problems.append(f"missing: {f['path']}")
        elif _sha256(p) != f["sha256"]:
            problems.append(f"changed: {f['path']}")
    extra = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and p.relative_to(root).as_posix()
        not in listed | {"manifest.json", "report.json", "report.md"}
    )
    problems += [f"not in the manifest: {x}" for x in extra]
    return {
        "ok": not problems,
        "bundle": str(root),
        "files": len(manifest["files"]),
        "problems": problems,
    }


__all__ = [
    "build_evidence",
    "bundle_dir",
    "json_default",
    "verify_evidence",
]
