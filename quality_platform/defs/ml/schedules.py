"""Schedules of the ML domain: a periodic fallback retrain and a daily canary evaluation (both off
by default; the retrain sensor and the daily scoring drive the loop)."""

from __future__ import annotations

import dagster as dg

from quality_platform.defs.ml.jobs import CANARY_JOB, TRAIN_JOB


def build_ml_schedules(retrain_cron: str) -> list[dg.ScheduleDefinition]:
    """``periodic_retrain`` (gate and approval apply) and ``daily_canary``."""
    return [
        dg.ScheduleDefinition(
            name="periodic_retrain",
            cron_schedule=retrain_cron,
            job_name=TRAIN_JOB,
            tags={"trigger": "periodic_retrain"},
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description="Fallback retrain on a fixed cadence (gate and approval apply).",
        ),
        dg.ScheduleDefinition(
            name="daily_canary",
            cron_schedule="0 7 * * *",
            job_name=CANARY_JOB,
            tags={"trigger": "daily_canary"},
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description="Evaluate the canary once a day.",
        ),
    ]
