"""The steps of ``qp demo`` that are not runs (quality_platform.demo): the reset archives the
previous demo's state and never deletes it; the loop covers two days before the onset to the end.
The whole demo runs in test_cli.py (data layers) and the closed loop in defs/test_loop.py."""

from __future__ import annotations

import datetime as dt

from quality_platform import demo
from quality_platform.settings import Paths


def test_reset_archives_the_previous_state(qp_env: Paths) -> None:
    assert demo.reset(qp_env) is None  # nothing yet
    qp_env.warehouse_path.parent.mkdir(parents=True)
    qp_env.warehouse_path.write_text("old warehouse")
    for name in ("mlflow", "audit"):
        (qp_env.data_dir / name).mkdir()
        (qp_env.data_dir / name / "x").write_text(name)
    dest = demo.reset(qp_env)
    assert dest is not None and dest.parent == qp_env.data_dir / "archive"
    assert not qp_env.warehouse_path.exists()  # rebuilt by the demo
    assert {p.name for p in dest.iterdir()} == {"mlflow", "audit"}
    assert (dest / "audit" / "x").read_text() == "audit"
    assert not (qp_env.data_dir / "mlflow").exists() and (qp_env.data_dir / "plants").exists()


def test_loop_days() -> None:
    truth = {"affected": {"plant": "plant_a"}, "onset_date": "2026-04-07", "end": "2026-04-14"}
    days = demo.loop_days(truth)
    assert days[0] == dt.date(2026, 4, 5) and days[-1] == dt.date(2026, 4, 14)
    assert len(days) == 10
    assert demo.loop_days({"scenario": "stable", "end": "2026-04-14"}) == []
    assert demo.loop_days({**truth, "affected": None}) == []
