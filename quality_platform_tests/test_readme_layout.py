"""The README's layout names every module and package at the root of the package and every
committed configuration file, so a newcomer's map is complete (issue 12)."""

from __future__ import annotations

import re

from quality_platform.settings import CONFIG_DIR, REPO_ROOT


def _layout() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Layout", 1)[1].split("\n## ", 1)[0]


def test_every_root_module_is_in_the_layout() -> None:
    layout = _layout()
    words = set(re.findall(r"[A-Za-z_][\w.]*/?", layout))
    pkg = REPO_ROOT / "quality_platform"
    names = {p.name for p in pkg.glob("*.py") if p.name != "__init__.py"}
    names |= {p.name + "/" for p in pkg.iterdir() if (p / "__init__.py").exists()}
    missing = sorted(n for n in names if n not in words)
    assert not missing, f"README layout omits {missing}"


def test_every_committed_config_file_is_in_the_layout() -> None:
    layout = _layout()
    files = [
        p.relative_to(CONFIG_DIR).as_posix()
        for p in CONFIG_DIR.rglob("*.yaml")
        if "state" not in p.relative_to(CONFIG_DIR).parts and p.parent.name != "plants"
    ]
    missing = sorted(f for f in files if f not in layout)
    assert not missing, f"README layout omits {missing}"
