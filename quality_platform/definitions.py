"""The one place that assembles the platform's Dagster definitions from the plant configs."""

from __future__ import annotations

import warnings

import dagster as dg

from quality_platform.assets.documentation import model_documentation
from quality_platform.assets.features import build_features_asset, build_features_checks
from quality_platform.assets.kpi import build_kpi_assets, build_kpi_checks
from quality_platform.assets.ml import (
    build_prediction_asset,
    build_training_dataset_asset,
    canary_evaluation,
    defect_model,
    model_evaluation,
)
from quality_platform.assets.monitoring import (
    build_drift_asset,
    build_monitoring_checks,
    build_ops_asset,
    build_performance_asset,
)
from quality_platform.assets.raw import build_raw_asset
from quality_platform.assets.standard import build_standard_assets
from quality_platform.assets.standard_checks import build_standard_checks
from quality_platform.config import load_kpis, load_plants, load_platform, load_quantities
from quality_platform.features.config import load_features
from quality_platform.jobs import build_jobs
from quality_platform.loop import (
    build_monitor_sensor,
    build_retrain_sensor,
    build_run_failure_alert,
    build_schedules,
)
from quality_platform.ml.config import load_model_config, load_monitoring_config
from quality_platform.resources import default_resources
from quality_platform.sensors import build_landing_sensor, build_standardize_sensor
from quality_platform.settings import Paths, get_paths

# Single-run backfills and multi-partition mappings are marked beta in Dagster 1.13; we rely on
# them knowingly (see README), so their notices are not repeated on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(paths: Paths | None = None) -> dg.Definitions:
    """All assets, checks, jobs and sensors for the plants configured under ``paths``."""
    paths = paths or get_paths()
    plants = load_plants(paths)
    start = load_platform(paths).partitions.start_date
    ids = sorted(plants)
    assets = [build_raw_asset(p, start) for p in plants.values()]
    assets.append(build_standard_assets(plants, start))
    assets.extend(build_kpi_assets(plants, start, load_kpis(paths)))
    assets.append(build_features_asset(plants, start, load_quantities(paths), load_features(paths)))
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
    jobs = build_jobs(ids)
    sensors = [
        *(build_landing_sensor(p, start) for p in watched),
        build_standardize_sensor(ids),
        build_monitor_sensor(plants, jobs),
        build_retrain_sensor(jobs),
        build_run_failure_alert(),
    ]
    loop = load_monitoring_config(paths).loop
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        sensors=sensors,
        schedules=build_schedules(plants, loop.daily_cron, loop.periodic_retrain_cron),
        resources=default_resources(),
        # UI launches of ad-hoc selections run in-process like the platform's jobs
        # (the multiprocess default costs a process start per step)
        executor=dg.in_process_executor,
    )


defs = build_definitions()
