"""Schedules of the ingest domain: land yesterday's files of each plant every day
(standardisation, scoring and monitoring follow by sensors)."""

import datetime as dt

import dagster as dg

from quality_platform.config import PlantConfig
from quality_platform.defs.ingest.jobs import land_job_name
from quality_platform.partitions import range_tags


def build_daily_schedules(plants: dict[str, PlantConfig], cron: str) -> list[dg.ScheduleDefinition]:
    """``daily_<plant>``: land yesterday's files of the plant (its local day); the rest follows by
    sensors."""
    out = []
    for p in plants.values():

        def _fn(context: dg.ScheduleEvaluationContext, plant: PlantConfig = p) -> dg.RunRequest:
            import zoneinfo

            now = context.scheduled_execution_time.astimezone(zoneinfo.ZoneInfo(plant.timezone))
            day = now.date() - dt.timedelta(days=1)
            return dg.RunRequest(
                run_key=f"daily-{plant.plant_id}-{day}",
                tags={**range_tags(plant.plant_id, day, day), "trigger": "daily_schedule"},
            )

        out.append(
            dg.ScheduleDefinition(
                name=f"daily_{p.plant_id}",
                cron_schedule=cron,
                job_name=land_job_name(p.plant_id),
                execution_fn=_fn,
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description=f"Land yesterday's files of {p.plant_id}; standardisation, "
                "scoring and monitoring follow by sensors.",
            )
        )
    return out
