"""Jobs of the ingest domain: landing per plant (its raw asset has its own partitions) and the
standardisation of plant-days (standard + KPI + feature layers)."""

from __future__ import annotations

import dagster as dg

from quality_platform.defs._jobs import asset_job

STANDARD_JOB = "standardize_job"


def land_job_name(plant_id: str) -> str:
    return f"land_{plant_id}"


def build_ingest_jobs(plant_ids: list[str]) -> list[dg.UnresolvedAssetJobDefinition]:
    """One landing job per plant and one standardisation job."""
    jobs = [
        asset_job(
            land_job_name(p),
            dg.AssetSelection.assets(f"raw_{p}"),
            f"Copy plant {p}'s landing files of the selected days into the raw layer.",
            {"layer": "raw", "plant": p},
        )
        for p in plant_ids
    ]
    jobs.append(
        asset_job(
            STANDARD_JOB,
            dg.AssetSelection.groups("standard", "kpi", "features"),
            "Standardise the selected plant-days (quality gates, quarantine), compute the KPIs "
            "and the per-unit features.",
            {"layer": "standard"},
        )
    )
    return jobs
