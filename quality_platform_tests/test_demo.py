"""The steps of ``qp demo`` that are not runs (quality_platform.demo): the reset archives the
previous demo's state and never deletes it; the loop covers two days before the onset to the end.
The whole demo runs in test_cli.py (data layers), the closed loop in defs/test_loop.py (in-process)
and test_daemon.py (under the daemon, as the demo runs it)."""

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


def test_hold_back_moves_the_loop_days_out_of_the_landing_folder(qp_env: Paths) -> None:
    """The loop's days are not in the landing folder when the daemon takes its baseline: the demo
    delivers them one at a time (quality_platform.daemon.deliver)."""
    from quality_platform.daemon import deliver

    landing = qp_env.landing_dir / "plant_a"
    for d in ("2026-04-04", "2026-04-05", "2026-04-06"):
        (landing / d).mkdir(parents=True)
        (landing / d / "sensoren.csv").write_text(d)
    held = demo.hold_back(qp_env, "plant_a", [dt.date(2026, 4, 5), dt.date(2026, 4, 6)])
    assert sorted(p.name for p in landing.iterdir()) == ["2026-04-04"]
    assert sorted(p.name for p in held.iterdir()) == ["2026-04-05", "2026-04-06"]
    deliver(held / "2026-04-05", landing / "2026-04-05")
    assert (landing / "2026-04-05" / "sensoren.csv").read_text() == "2026-04-05"
    assert not list(landing.glob(".*"))  # no partial copy left behind
