"""Sensors: late and new landing files, and standardisation after a plant's raw data changed (F4).

Both sensors start from a baseline on their first tick (what exists then counts as handled; use
``qp backfill`` for history) and then react to changes only. Days are grouped into contiguous
ranges, one single-run backfill per range, so a week of late files is one run, not seven.
"""

import datetime as dt
import json

import dagster as dg

from quality_platform.config import PlantConfig
from quality_platform.defs.ingest.jobs import STANDARD_JOB, land_job_name
from quality_platform.partitions import contiguous_ranges, range_tags, split_key
from quality_platform.resources import PlatformResource


def landing_state(plant: PlantConfig, platform: PlatformResource) -> dict[str, str]:
    """{relative path: size:mtime} of a plant's per-day landing files."""
    root = plant.landing_path(platform.paths())
    state: dict[str, str] = {}
    for stream in ("readings", "units", "inspections"):
        spec = getattr(plant.streams, stream)
        if not spec.per_day_files:
            continue
        for p in root.glob(spec.path.replace("{date}", "*")):
            if p.is_file():
                st = p.stat()
                state[p.relative_to(root).as_posix()] = f"{st.st_size}:{st.st_mtime_ns}"
    return state


def _day_of(rel: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(rel.split("/", 1)[0])
    except ValueError:
        return None


def build_landing_sensor(
    plant: PlantConfig, start: dt.date, interval_seconds: int = 30
) -> dg.SensorDefinition:
    """Re-land a plant's days whose landing files are new or changed (late data); the daemon
    evaluates it every ``interval_seconds``."""

    @dg.sensor(
        name=f"landing_{plant.plant_id}",
        job_name=land_job_name(plant.plant_id),
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Picks up new or late landing files of {plant.plant_id} and re-lands their days.",
    )
    def _sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
        state = landing_state(plant, platform)
        if context.cursor is None:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"baseline of {len(state)} files recorded"),
                cursor=json.dumps(state, sort_keys=True),
            )
        before = json.loads(context.cursor)
        changed = [rel for rel, sig in state.items() if before.get(rel) != sig]
        today = dt.datetime.now(dt.UTC).date()
        days, ignored = set(), []
        for rel in changed:
            d = _day_of(rel)
            (days.add(d) if d is not None and start <= d <= today else ignored.append(rel))
        for rel in ignored:
            context.log.warning(
                f"{plant.plant_id}: {rel} is not in a valid day folder "
                f"({start}..{today}); not landed"
            )
        requests = [
            dg.RunRequest(
                run_key=f"land-{plant.plant_id}-{a}-{b}-{context.cursor.__hash__() & 0xFFFFFFFF:x}",
                tags={**range_tags(plant.plant_id, a, b), "trigger": "landing_sensor"},
            )
            for a, b in contiguous_ranges(days)
        ]
        return dg.SensorResult(
            run_requests=requests,
            cursor=json.dumps(state, sort_keys=True),
            skip_reason=None if requests else dg.SkipReason("no new or changed files"),
        )

    return _sensor


def build_standardize_sensor(
    plant_ids: list[str], interval_seconds: int = 30
) -> dg.SensorDefinition:
    """Standardise (and recompute KPIs for) plant-days whose raw data was re-materialised."""

    @dg.sensor(
        name="standardize_on_raw",
        job_name=STANDARD_JOB,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After `raw_<plant>` materialises new partitions, standardise those plant-days.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else None
        latest: dict[str, int] = {}
        days: dict[str, set[dt.date]] = {}
        for p in plant_ids:
            key = dg.AssetKey(f"raw_{p}")
            after = None if cursor is None else cursor.get(p)
            recs = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=after),
                limit=10_000,
                ascending=True,
            ).records
            latest[p] = max([r.storage_id for r in recs], default=after or 0)
            if cursor is not None:
                days[p] = {split_key(r.partition_key)[1] for r in recs if r.partition_key}
        if cursor is None:
            return dg.SensorResult(
                skip_reason=dg.SkipReason("baseline recorded"), cursor=json.dumps(latest)
            )
        requests = [
            dg.RunRequest(
                run_key=f"std-{p}-{a}-{b}-{latest[p]}",
                tags={**range_tags(p, a, b), "trigger": "standardize_on_raw"},
            )
            for p, ds in days.items()
            for a, b in contiguous_ranges(ds)
        ]
        return dg.SensorResult(
            run_requests=requests,
            cursor=json.dumps(latest),
            skip_reason=None if requests else dg.SkipReason("no new raw partitions"),
        )

    return _sensor
