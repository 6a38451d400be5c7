from datetime import date

import pytest

from jobs.core.paths import Lake, partition_digest, read_lineage, trace_lineage, write_lineage

D = date(2015, 9, 18)


def test_trace_lineage_walks_back_to_the_landed_files(tmp_path):
    lake = Lake(tmp_path / "lake")
    bronze_old, bronze = (lake.partition("bronze", "events", d) for d in (date(2015, 9, 17), D))
    silver, train = lake.partition("silver", "events", D), lake.partition("splits", "train", D)
    write_lineage(bronze_old, [{"file": "/landing/dt=2015-09-17/events.csv", "sha256": "a"}])
    write_lineage(bronze, [{"file": "/landing/dt=2015-09-18/events.csv", "sha256": "b"}])
    write_lineage(silver, [{"partition": str(bronze_old)}, {"partition": str(bronze)}])
    write_lineage(train, [{"partition": str(silver)}, {"partition": str(tmp_path / "nowhere")}])

    traced = trace_lineage(train)
    assert [f["sha256"] for f in traced["files"]] == ["a", "b"]
    assert len(traced["partitions"]) == 5
    assert traced["untraced"] == [str(tmp_path / "nowhere")]


def test_read_lineage_names_a_partition_without_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no lineage recorded"):
        read_lineage(tmp_path)


def test_partition_digest_ignores_file_names_and_bookkeeping(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, name in ((one, "part-00000-aaa.parquet"), (two, "part-00000-bbb.parquet")):
        folder.mkdir()
        (folder / name).write_bytes(b"rows")
    (two / "_SUCCESS").touch()
    assert partition_digest(one) == partition_digest(two)
    (two / "part-00000-bbb.parquet").write_bytes(b"other rows")
    assert partition_digest(one) != partition_digest(two)
