"""The one place that assembles the platform's Dagster definitions from the plant configs.

Each domain under ``quality_platform/defs/`` owns its assets, checks, sensors, schedules and jobs:
``ingest`` (raw landing, the canonical standard, its gates, landing/standardize sensors, daily
schedules), ``kpi``, ``features``, ``ml`` (training, registry, scoring, canary, documentation, the
retrain sensor) and ``monitoring`` (drift, performance, operations metrics, their gates, the
monitoring sensor and run-failure alerts). This module only merges them."""

from __future__ import annotations

import warnings

import dagster as dg

from quality_platform.config import (
    load_kpis,
    load_plants,
    load_platform,
    load_registry,
    partitions_start,
)
from quality_platform.defs.features.assets import build_features_asset
from quality_platform.defs.features.checks import build_features_checks
from quality_platform.defs.ingest.assets import build_raw_asset, build_standard_assets
from quality_platform.defs.ingest.checks import build_standard_checks
from quality_platform.defs.ingest.jobs import build_ingest_jobs
from quality_platform.defs.ingest.schedules import build_daily_schedules
from quality_platform.defs.ingest.sensors import build_landing_sensor, build_standardize_sensor
from quality_platform.defs.kpi.assets import build_kpi_assets
from quality_platform.defs.kpi.checks import build_kpi_checks
from quality_platform.defs.ml.assets import (
    build_prediction_asset,
    build_training_dataset_asset,
    canary_evaluation,
    defect_model,
    model_evaluation,
)
from quality_platform.defs.ml.champion import champion_spec
from quality_platform.defs.ml.documentation import model_documentation
from quality_platform.defs.ml.jobs import build_ml_jobs
from quality_platform.defs.ml.schedules import build_ml_schedules
from quality_platform.defs.ml.sensors import build_canary_sensor, build_retrain_sensor
from quality_platform.defs.monitoring.assets import (
    build_drift_asset,
    build_ops_asset,
    build_performance_asset,
)
from quality_platform.defs.monitoring.checks import build_monitoring_checks
from quality_platform.defs.monitoring.jobs import build_monitoring_jobs
from quality_platform.defs.monitoring.sensors import (
    build_monitor_sensor,
    build_run_failure_alert,
    build_sensor_error_alert,
)
from quality_platform.features.config import load_features
from quality_platform.ml.config import load_model_config, load_monitoring_config
from quality_platform.resources import deployment_resources
from quality_platform.settings import Paths, current_deployment, get_paths

# Single-run backfills and multi-partition mappings are marked beta in Dagster 1.13; we rely on
# them knowingly (see README), so their notices are not repeated on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(paths: Paths | None = None) -> dg.Definitions:
    """All assets, checks, jobs and sensors for the plants configured under ``paths``."""
    paths = paths or get_paths()
    plants = load_plants(paths)
    start = partitions_start(load_platform(paths), plants)
    ids = sorted(plants)
    assets = [build_raw_asset(p, start) for p in plants.values()]
    assets.append(build_standard_assets(plants, start))
    assets.extend(build_kpi_assets(plants, start, load_kpis(paths)))
    assets.append(build_features_asset(plants, start, load_registry(paths), load_features(paths)))
    checks = [*build_standard_checks(ids), *build_kpi_checks(), *build_features_checks()]
    model_cfg = load_model_config(paths)
    quality_keys = [k for c in checks for k in c.check_keys]
    assets += [
        build_training_dataset_asset(quality_keys),
        defect_model,
        model_evaluation,
        model_documentation,
        build_prediction_asset(plants, start, model_cfg.reasons_per_prediction),
        canary_evaluation,
        champion_spec,
        build_drift_asset(plants, start),
        build_performance_asset(plants, start),
        build_ops_asset(plants, start),
    ]
    checks += build_monitoring_checks()
    # A plant delivering per-day files gets a landing sensor; one delivering a single many-day file
    # (like the AI4I data set) is re-landed with `qp backfill`.
    watched = [
        p
        for p in plants.values()
        if any(getattr(p.streams, s).per_day_files for s in ("readings", "units", "inspections"))
    ]
    jobs = [*build_ingest_jobs(ids), *build_ml_jobs(), *build_monitoring_jobs()]
    loop = load_monitoring_config(paths).loop
    every = current_deployment().sensor_interval_seconds or loop.sensor_interval_seconds
    sensors = [
        *(build_landing_sensor(p, start, every) for p in watched),
        build_standardize_sensor(ids, every),
        build_monitor_sensor(plants, jobs, every, start),
        build_retrain_sensor(jobs, every),
        build_canary_sensor(jobs, every),
        build_run_failure_alert(every),
        build_sensor_error_alert(every),
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        sensors=sensors,
        schedules=[
            *build_daily_schedules(plants, loop.daily_cron),
            *build_ml_schedules(loop.periodic_retrain_cron),
        ],
        resources=deployment_resources(paths),
        # UI launches of ad-hoc selections run in-process like the platform's jobs
        # (the multiprocess default costs a process start per step)
        executor=dg.in_process_executor,
    )


defs = build_definitions()
