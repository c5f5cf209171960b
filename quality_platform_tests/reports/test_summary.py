"""The platform and model summaries as plain data (quality_platform.reports.summary), on one tiny
landed and standardised plant_a day; without a warehouse the summary is a SummaryError, which
``qp summary`` reports as a user error (exit 2)."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest

from quality_platform.cli import main
from quality_platform.definitions import build_definitions
from quality_platform.reports.summary import SummaryError, model_summary, platform_summary
from quality_platform.runner import backfill
from quality_platform.settings import Paths
from quality_platform_tests.conftest import tiny_plant_a_day

DAY = dt.date(2026, 3, 16)


def test_no_warehouse_is_a_summary_error(qp_env: Paths, capsys) -> None:
    expected = f"no warehouse at {qp_env.warehouse_path}: run `make demo` or `qp backfill` first"
    with pytest.raises(SummaryError) as exc:
        platform_summary(qp_env)
    assert str(exc.value) == expected
    assert main(["summary", "--json"]) == 2
    assert json.loads(capsys.readouterr().out) == {"error": expected}
    assert main(["summary"]) == 2
    assert capsys.readouterr().err == f"qp: error: {expected}\n"


def test_platform_summary_of_one_plant_day(qp_env: Paths) -> None:
    tiny_plant_a_day(qp_env, DAY)
    with dg.instance_for_test() as instance:
        runs = backfill(build_definitions(qp_env), instance, "plant_a", DAY, DAY)
    assert all(r.success for r in runs)
    s = platform_summary(qp_env)
    assert s["warehouse"] == str(qp_env.warehouse_path)
    tables = {t["plant"]: t for t in s["tables"]}
    assert set(tables) == {"ai4i2020", "plant_a", "plant_b", "plant_c"}
    a = tables["plant_a"]
    assert a["raw_units_records"] == 1 and a["production_units"] == 1
    assert a["raw_readings_records"] == 1 and a["sensor_readings"] > 0
    assert a["days"] == f"{DAY}..{DAY}"
    assert tables["plant_b"]["production_units"] == 0 and tables["plant_b"]["days"] == ""
    (kpi,) = s["kpis"]
    assert kpi["plant"] == "plant_a" and kpi["produced"] == 1
    (legacy,) = kpi["legacy"]
    assert legacy["name"] == "Ausschussquote" and legacy["maps_to"] == "scrap_rate"
    assert legacy["unit"] == "percent" and legacy["explanation"]
    json.dumps(s)  # plain data, as `qp summary --json` prints it


def test_model_summary_without_a_model(qp_env: Paths) -> None:
    assert model_summary(qp_env) == {"champion": None, "challenger": None}
