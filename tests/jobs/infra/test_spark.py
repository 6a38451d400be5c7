from pathlib import Path

import pytest

from jobs.infra.config import ConfigError, SparkConfig, load_config
from jobs.infra.spark import is_local, session_conf

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
LOOPBACK = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}


@pytest.mark.parametrize("master", ["local", "local[1]", "local[*]", "local-cluster[2,1,1024]"])
def test_a_local_driver_listens_on_loopback_only_and_shows_no_ui(master):
    spark = SparkConfig(conf={"spark.sql.shuffle.partitions": "1"})
    assert session_conf(spark, master, local_ip=None) == {
        "spark.sql.shuffle.partitions": "1",
        **LOOPBACK,
        "spark.ui.enabled": "false",
    }


def test_the_shipped_configs_bind_local_runs_to_loopback():
    cfg = load_config(CONFIGS / "local.yaml", environ={})
    conf = session_conf(cfg.spark, cfg.spark.master, local_ip=None)
    assert {k: conf[k] for k in LOOPBACK} == LOOPBACK and conf["spark.ui.enabled"] == "false"


@pytest.mark.parametrize("master", ["spark://spark-master:7077", "yarn", "k8s://https://api:443"])
def test_a_cluster_driver_keeps_sparks_own_address_unless_one_is_configured(master):
    # Executors on other hosts must reach the driver: loopback would cut them off.
    spark = SparkConfig(conf={"spark.ui.enabled": "true"})
    assert session_conf(spark, master, local_ip=None) == {"spark.ui.enabled": "true"}
    pinned = SparkConfig(bind_address="10.0.0.5")
    assert session_conf(pinned, master, local_ip=None) == {
        "spark.driver.bindAddress": "10.0.0.5",
        "spark.driver.host": "10.0.0.5",
        "spark.ui.enabled": "false",
    }


def test_a_ui_switched_on_must_be_bound_where_the_driver_is():
    spark = SparkConfig(conf={"spark.ui.enabled": "true"})
    with pytest.raises(ValueError, match="every interface: set SPARK_LOCAL_IP=127.0.0.1"):
        session_conf(spark, "local[1]", local_ip=None)
    with pytest.raises(ValueError, match="listen on 192.0.2.2"):
        session_conf(spark, "local[1]", local_ip="192.0.2.2")
    # Spark binds the UI to SPARK_LOCAL_IP: on loopback it may stay on.
    assert session_conf(spark, "local[1]", local_ip="127.0.0.1")["spark.ui.enabled"] == "true"


def test_is_local_reads_the_master_url_not_a_host_name():
    assert is_local("local[4]") and not is_local("spark://localhost:7077")
    assert not is_local("localhost") and not is_local("yarn")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECS__SPARK__BIND_ADDRESS": "0.0.0.0"}, r"spark\.bind_address: .*must name one"),
        ({"RECS__SPARK__BIND_ADDRESS": "''"}, r"spark\.bind_address: "),
        (
            {"RECS__SPARK__CONF__SPARK.DRIVER.HOST": "10.0.0.5"},
            r"spark\.conf: .*set spark\.bind_address instead",
        ),
        ({"RECS__SPARK__CONF__SPARK.DRIVER.BINDADDRESS": "10.0.0.5"}, r"spark\.conf: "),
    ],
)
def test_bind_settings_have_one_place(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIGS / "test.yaml", environ=env)


def test_no_shipped_config_needs_a_connect_server():
    # make demo, make bench and the tests run each stage's own session; the stack sets
    # RECS__SPARK__REMOTE when it starts the server (jobs/tools/stack.py).
    for name in ("base.yaml", "local.yaml", "test.yaml"):
        assert load_config(CONFIGS / name, environ={}).spark.remote is None


@pytest.mark.parametrize("url", ["sc://localhost:15002", "sc://spark-connect.internal:443"])
def test_a_connect_server_is_named_by_host_and_port(url):
    cfg = load_config(CONFIGS / "test.yaml", environ={"RECS__SPARK__REMOTE": url})
    assert cfg.spark.remote == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:15002", r"'localhost:15002' is not sc://<host>:<port> \(set by"),
        ("sc://localhost", r"is not sc://<host>:<port>"),
        ("sc://localhost:15002/", r"is not sc://<host>:<port>"),
        ("sc://localhost:15002/;token=abc", r"a ;token= belongs in SPARK_CONNECT_AUTHENTICATE"),
        ("sc://localhost:0", r"port 0 is not in 1\.\.65535"),
        ("sc://localhost:70000", r"port 70000 is not in 1\.\.65535"),
        ("sc://127.0.0.1:15002", r"write sc://localhost:15002 for this machine"),
        ("sc://0.0.0.0:15002", r"0\.0\.0\.0 names no server"),
        ("''", r"is not sc://<host>:<port>"),
    ],
)
def test_a_connect_url_that_cannot_work_names_the_setting(url, message):
    with pytest.raises(ConfigError, match=r"spark\.remote: .*" + message):
        load_config(CONFIGS / "test.yaml", environ={"RECS__SPARK__REMOTE": url})
