"""jobs.tools.cluster without a JVM: the jobs zip for --py-files, and refusing a taken port."""

from __future__ import annotations

import hashlib
import socket
import zipfile
from pathlib import Path

import pytest

from jobs.tools.cluster import ClusterError, package_jobs, start

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def test_the_zip_holds_every_module_of_the_jobs_package_but_the_dev_tools(tmp_path):
    archive = package_jobs(tmp_path)

    names = zipfile.ZipFile(archive).namelist()
    expected = sorted(
        f"jobs/{p.relative_to(JOBS).as_posix()}"
        for p in JOBS.rglob("*.py")
        if "__pycache__" not in p.parts and "tools" not in p.relative_to(JOBS).parts
    )
    assert names == expected
    assert {"jobs/__init__.py", "jobs/infra/config.py", "jobs/clean.py"} <= set(names)
    assert not [n for n in names if n.startswith("jobs/tools/")]


def test_packaging_twice_gives_the_same_bytes(tmp_path):
    first = package_jobs(tmp_path / "a").read_bytes()
    second = package_jobs(tmp_path / "b").read_bytes()

    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()


def test_packaging_a_folder_that_is_not_a_package_fails(tmp_path):
    (tmp_path / "src").mkdir()

    with pytest.raises(FileNotFoundError, match="not a Python package"):
        package_jobs(tmp_path / "out", source=tmp_path / "src")


def test_a_taken_master_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(ClusterError, match=f"port {port} .* in use"):
            start(tmp_path, port=port)

    assert not (tmp_path / "master.log").exists()
