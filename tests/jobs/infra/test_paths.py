from datetime import date

import pytest

from jobs.infra.paths import (
    IncompletePartitionError,
    Lake,
    partition_digest,
    read_lineage,
    trace_lineage,
    write_lineage,
)

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
    import pyarrow as pa
    import pyarrow.parquet as pq

    one, two = tmp_path / "one", tmp_path / "two"
    rows = pa.table({"item_id": [3, 1, 2]})
    for folder, name in ((one, "part-00000-aaa.parquet"), (two, "part-00000-bbb.parquet")):
        folder.mkdir()
        pq.write_table(rows, folder / name)
    (two / "_SUCCESS").touch()
    assert partition_digest(one) == partition_digest(two)
    # Same rows, different file bytes (another compression): the same digest.
    pq.write_table(rows, two / "part-00000-bbb.parquet", compression="gzip")
    assert partition_digest(one) == partition_digest(two)
    pq.write_table(pa.table({"item_id": [3, 1, 4]}), two / "part-00000-bbb.parquet")
    assert partition_digest(one) != partition_digest(two)


def test_complete_names_a_missing_or_unfinished_partition_and_its_producer(tmp_path):
    lake = Lake(tmp_path)
    day = date(2015, 9, 18)
    with pytest.raises(IncompletePartitionError, match="no silver/events partition at .*run clean"):
        lake.complete("silver", "events", day, producer="clean")
    partition = lake.partition("silver", "events", day)
    partition.mkdir(parents=True)
    (partition / "part-00000.parquet").write_bytes(b"half a file")  # a killed clean's leftovers
    with pytest.raises(IncompletePartitionError, match=r"dt=2015-09-18 is incomplete .*clean"):
        lake.complete("silver", "events", day, producer="clean")
    (partition / "_SUCCESS").touch()
    assert lake.complete("silver", "events", day, producer="clean") == partition
