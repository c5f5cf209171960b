"""The closed loop under a real ``dagster-daemon``, exactly as ``make demo`` runs it (issue 13,
items 1 and 3).

A champion is released on plant_a's first week (the operator's part: ``qp backfill``, ``qp train``,
approve, promote). Then the demo's own ``run_loop`` starts a real ``dagster-daemon run`` on the
project's workspace.yaml (sensors every 5 s), and delivers the held-back days into the landing
folder one day folder at a time, as a plant's file transfer would; nothing launches a run or
evaluates a sensor but the daemon. Bounded: every wait has a timeout, and the daemon (with its code
server and run workers) is stopped by its own process group. Its log is kept in the installation
(``<data>/logs/demo_daemon.log``).

The same installation is then opened in the Dagster UI in a real Chromium (``browser.py``), to
check that a governance user can follow the drift by links (item 7)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import pytest

from quality_platform import demo
from quality_platform.alerts import read_alerts
from quality_platform.config import load_plants
from quality_platform.daemon import sensor_state
from quality_platform.definitions import build_definitions
from quality_platform.defs.ml import champion
from quality_platform.defs.ml.jobs import TRAIN_JOB
from quality_platform.defs.ml.sensors import CANARY_SENSOR, RETRAIN_SENSOR
from quality_platform.defs.monitoring.sensors import MONITOR_SENSOR, SENSOR_ERROR_ALERT
from quality_platform.location import PROJECT_ROOT
from quality_platform.ml import lifecycle as L
from quality_platform.partitions import RANGE_END, RANGE_START, split_key
from quality_platform.reports import model_docs
from quality_platform.runner import backfill, train
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform_tests.browser import chromium, dagster_ui
from quality_platform_tests.conftest import loop_installation

PLANT = "plant_a"
D0 = dt.date(2026, 3, 16)
# the retrain follows the first drift day by 1 + plant_a's 2 plant-days of label latency
TRAIN_DAYS, DAYS, ONSET = 7, 15, 9
SENSORS = [
    f"landing_{PLANT}",
    "standardize_on_raw",
    MONITOR_SENSOR,
    RETRAIN_SENSOR,
    CANARY_SENSOR,
    "alert_on_run_failure",
    SENSOR_ERROR_ALERT,
]


def _daemons_of(root: Path) -> list[int]:
    """Live processes whose environment names this test's Dagster home (the daemon, its code
    server, run workers)."""
    home = f"DAGSTER_HOME={root / 'dagster_home'}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if home in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _day(i: int) -> dt.date:
    return D0 + dt.timedelta(days=i)


@dataclass(frozen=True)
class Delivered:
    """What the module's one daemon run left behind: the installation and the loop's summary."""

    root: Path
    paths: Paths
    loop: dict[str, Any]
    onset: dt.date
    days: list[dt.date]
    started: float


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Delivered]:
    """A champion released on plant_a's first week, then the drifting days delivered as files to a
    real ``dagster-daemon`` (the demo's ``run_loop``). Module-scoped: the tests below read the same
    installation (the loop's outcome, then the UI on it)."""
    tmp_path = tmp_path_factory.mktemp("daemon")
    with pytest.MonkeyPatch.context() as monkeypatch:
        paths = loop_installation(tmp_path, monkeypatch, (PLANT,))
        shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster_home" / "dagster.yaml")
        truth = simulate(
            paths.landing_dir, days=DAYS, start=D0, scenario="moisture_drift", onset_day=ONSET,
            plants=load_plants(paths),
        )  # fmt: skip
        days = [_day(i) for i in range(TRAIN_DAYS, DAYS)]
        held = demo.hold_back(paths, PLANT, days)
        with dg.DagsterInstance.get() as instance:
            defs = build_definitions(paths)
            assert all(o.success for o in backfill(defs, instance, PLANT, D0, _day(TRAIN_DAYS - 1)))
            assert train(defs, instance).success
            reg, audit = L.open_stores(paths)
            L.approve(reg, audit, "1", "carl.control", "initial release")
            champion.promote(instance, reg, audit, "1", "carl.control", "initial release")
            started = time.time()
            loop = demo.run_loop(paths, defs, instance, PLANT, days, truth, held=held)
        onset = dt.date.fromisoformat(truth["onset_date"])
        yield Delivered(tmp_path, paths, loop, onset, days, started)


def test_a_drift_day_delivered_as_files_leads_the_daemon_to_a_gated_retrain(
    delivered: Delivered,
) -> None:
    paths, loop, onset, days = delivered.paths, delivered.loop, delivered.onset, delivered.days
    tmp_path, started = delivered.root, delivered.started
    with dg.DagsterInstance.get() as instance:
        reg, audit = L.open_stores(paths)
        assert loop["ok"] and loop["orchestrator"] == "dagster-daemon"
        assert [r["day"] for r in loop["days"]] == [str(d) for d in days]
        detected = dt.date.fromisoformat(loop["first_detected"])
        assert onset <= detected <= onset + dt.timedelta(days=2), detected
        assert loop["retrain"]["check"] == "drift_metrics:input_drift"
        assert loop["retrained_version"]["gate"] in L.PASSING
        assert "SensorDaemon" in Path(loop["daemon_log"]).read_text(errors="replace")
        assert not _daemons_of(tmp_path), "run_loop left a daemon process behind"

        runs = [
            r.dagster_run
            for r in instance.get_run_records(
                dg.RunsFilter(created_after=dt.datetime.fromtimestamp(started, dt.UTC))
            )
        ]
        # every run since the daemon started was launched by one of the location's sensors
        assert runs and all(r.tags.get("dagster/sensor_name") in SENSORS for r in runs), [
            (r.job_name, r.tags.get("dagster/sensor_name")) for r in runs
        ]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [
            (r.job_name, r.status) for r in runs
        ]
        retrains = [r for r in runs if r.job_name == TRAIN_JOB]
        assert len(retrains) == 1, retrains
        retrain = retrains[0]
        assert retrain.tags["dagster/sensor_name"] == RETRAIN_SENSOR
        assert retrain.tags["qp/check"] == "drift_metrics:input_drift"

        # the failing check record -> the monitoring run that evaluated it, launched by
        # monitor_after_standardize over a drifting day (the newest of the label wait)
        record = next(
            r
            for r in instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("drift_metrics"), "input_drift"), limit=100
            )
            if str(r.id) == retrain.tags["qp/check_record_id"]
        )
        check_run = instance.get_run_by_id(record.run_id)
        assert check_run is not None and check_run.tags["dagster/sensor_name"] == MONITOR_SENSOR
        first, last = split_key(check_run.tags[RANGE_START]), split_key(check_run.tags[RANGE_END])
        assert first[0] == PLANT and detected <= last[1] <= detected + dt.timedelta(days=3), (
            first,
            last,
        )
        evaluation = record.event.asset_check_evaluation
        assert not evaluation.passed

        # ... the gated challenger it produced names the run and the check
        v2 = reg.version("2")
        assert v2.tag("trigger") == RETRAIN_SENSOR
        assert v2.tag("retrain_key") == retrain.tags["qp/retrain_key"]
        assert v2.tag("dagster_run_id") == retrain.run_id
        # check record -> its run <- the retrain run (tag) -> the version, and back: the version and
        # the defect_model materialisation link the run that evaluated the failed check
        assert retrain.tags["qp/check_run_id"] == record.run_id
        assert v2.tag("trigger_check_record_id") == str(record.id)
        assert v2.tag("trigger_check_run_id") == record.run_id
        model_event = next(
            r.asset_materialization
            for r in instance.fetch_materializations(dg.AssetKey("defect_model"), limit=5).records
            if r.run_id == retrain.run_id
        )
        assert model_event.metadata["model_version"].value == "2"
        assert model_event.metadata["trigger_check_run"] == dg.MetadataValue.dagster_run(
            record.run_id
        )
        assert v2.gate in L.PASSING, v2.gate
        started_retrains = [r for r in audit.records(action="retrain") if r.outcome == "ok"]
        assert [str(r.refs["check_record_id"]) for r in started_retrains] == [
            retrain.tags["qp/check_record_id"]
        ]
        # it waited for labelled post-shift units, and trains on the first drifting day
        assert any("label_wait" in r.refs for r in audit.records(action="retrain"))
        assert started_retrains[0].refs["labels_since_shift"]["state"] == "enough"
        assert str(detected) in started_retrains[0].refs["labels_since_shift"]["train_days"]
        # no sensor tick failed
        for name in SENSORS:
            state = sensor_state(instance, name)
            assert state is not None, f"{name} never ticked"
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1000)
            failed = [t.error for t in ticks if t.status.value == "FAILURE"]
            assert not failed, (name, failed[:1])
        kinds = [a["kind"] for a in read_alerts(paths=paths)]
        assert "retrain" in kinds and "sensor_error" not in kinds, kinds
        assert audit.verify().ok


def test_governance_follows_the_drift_in_the_dagster_ui(delivered: Delivered) -> None:
    """Item 7, in a real browser: ``dagster-webserver`` on the installation the daemon built,
    Debian's Chromium on it, and a governance user's walk by links only - the lineage graph with
    every group, the champion and who approved it, the failed drift check -> the run that
    evaluated it -> the retrain run that names it -> the version it produced (which links back),
    a KPI plotted over the plant-days, column descriptions with their placeholders, and the model
    documentation's full text. Screenshots of every step: ``test-artifacts/ui/``."""
    with dg.DagsterInstance.get() as instance:
        trains = instance.get_runs(dg.RunsFilter(job_name=TRAIN_JOB))
    retrain = next(r for r in trains if r.tags.get("dagster/sensor_name") == RETRAIN_SENSOR)
    release = next(r for r in trains if "dagster/sensor_name" not in r.tags)
    check_run, retrain_run = retrain.tags["qp/check_run_id"], retrain.run_id
    release_run = release.run_id
    groups = {s.group_name for s in build_definitions(delivered.paths).resolve_all_asset_specs()}
    log = delivered.paths.data_dir / "logs" / "webserver.log"
    with dagster_ui(log) as base, chromium(base) as page:
        # 1. the lineage graph holds every group
        page.open("/asset-groups", "Global asset lineage", "01-lineage")
        page.wait_for(sorted(groups)[-1], "01-lineage")
        assert set(page.graph_nodes("group")) == groups, page.graph_nodes("group")
        # 2. the champion: who approved and promoted which version, from which training run
        text = page.open("/assets/champion", "training_partitions", "02-champion")
        for expected in ("model_version", "approved_by", "promoted_by", "carl.control", "gate"):
            assert expected in text, expected
        assert page.links_to(f"/runs/{release_run}"), "champion does not link its training run"
        page.open("/assets/champion?view=lineage", "defect_model", "03-champion-lineage")
        assert {"champion", "defect_model", "model_evaluation", "canary_evaluation"} <= set(
            page.graph_nodes()
        ), page.graph_nodes()
        # 3. drift hit plant_a: the failed check's record -> the run that evaluated it
        page.open("/assets/drift_metrics?view=checks", "input_drift", "04-drift-checks")
        page.click("//*[normalize-space(text())='Execution history']")
        page.wait_for("process drift at ['plant_a']", "05-drift-check-history")
        rows = page.links_to(f"/runs/{check_run}")
        assert rows, "the failed evaluation that started the retrain is not in the check's history"
        rows[-1].click()
        text = page.wait_for("Check input_drift failed", "06-check-run")
        # "Launched by" (the name is middle-truncated on screen, whole in the page)
        assert "Launched by" in text and "monitor_after_standardize" in page.driver.page_source
        # ... the retrain run that names it (run tag qp/check_run_id)
        tag = quote(f"tag:qp/check_run_id={check_run}", safe="")
        text = page.open(f"/runs?q%5B0%5D={tag}", "train_job", "07-retrain-runs-by-check")
        assert "retrain_on_drift" in text and f"qp/check_run_id: {check_run}" in text, text[:2000]
        assert page.links_to(f"/runs/{retrain_run}")
        page.links_to(f"/runs/{retrain_run}")[0].click()
        text = page.wait_for("defect_model", "08-retrain-run")
        assert "Launched by" in text and "retrain_on_drift" in page.driver.page_source
        # ... and the version it produced, which links back to the check's run
        text = page.open("/assets/defect_model", "trigger_check_run", "09-defect-model")
        assert "retrain_on_drift" in text and "drift_metrics:input_drift" in text
        assert page.links_to(f"/runs/{check_run}"), "defect_model does not link the check run"
        # 4. a KPI plotted over the plant-days (numeric materialisation metadata)
        page.open("/assets/kpi_daily", "Plots", "10-kpi")
        page.click("//button[normalize-space()='Plots']")
        page.click("//button[normalize-space()='Events']")
        page.wait_for("defect_rate", "11-kpi-plots")
        painted = page.driver.execute_script(
            "return Array.from(document.querySelectorAll('canvas')).filter(c => c.width > 0 && "
            "c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v > 0)).length"
        )
        assert painted >= 1, "no KPI plot drawn"
        # 5. column descriptions render their placeholders
        page.open(
            "/assets/drift_metrics", "Monitored feature (<quantity>__<statistic>)", "12-columns"
        )
        # 6. the model documentation is readable in the UI
        page.open("/assets/model_documentation", "documentation", "13-model-docs")
        row = "//tr[.//*[normalize-space(text())='documentation']]"
        page.click(f"{row}//*[normalize-space(text())='[Show Markdown]']")
        text = page.wait_for("Metrics overall and per plant", "14-model-docs-text")
        assert all(title in text for title, _, _ in model_docs.SECTIONS.values()), text[:1500]
