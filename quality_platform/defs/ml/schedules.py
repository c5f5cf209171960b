"""Schedules of the ML domain: a periodic fallback retrain (off by default; the retrain sensor drives
the loop, and ``canary_after_performance`` evaluates the canary whenever labels arrive)."""

from __future__ import annotations

import dagster as dg

from quality_platform.defs.ml.jobs import TRAIN_JOB


def build_ml_schedules(retrain_cron: str) -> list[dg.ScheduleDefinition]:
    """``periodic_retrain`` (gate and approval apply)."""
    return [
        dg.ScheduleDefinition(
            name="periodic_retrain",
            cron_schedule=retrain_cron,
            job_name=TRAIN_JOB,
            tags={"trigger": "periodic_retrain"},
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description="Fallback retrain on a fixed cadence (gate and approval apply).",
        ),
    ]
