from pathlib import Path

import pytest

from jobs.infra.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_overlay_overrides_base_and_keeps_the_rest():
    cfg = load_config(CONFIGS / "test.yaml", environ={})
    assert cfg.train.factors == 16  # from test.yaml
    assert cfg.train.alpha == 20.0  # from base.yaml
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "1"
    assert cfg.spark.conf["spark.sql.session.timeZone"] == "UTC"  # merged key by key


def test_relative_paths_resolve_against_the_project_root():
    cfg = load_config(CONFIGS / "local.yaml", environ={})
    assert cfg.paths.lake == CONFIGS.parent / ".local" / "lake"
    assert cfg.mlflow.tracking_uri == f"sqlite:///{CONFIGS.parent / '.local/mlflow/mlflow.db'}"


def test_environment_overrides_win():
    cfg = load_config(
        CONFIGS / "test.yaml",
        environ={"RECS__EXPORT__TOP_N": "7", "RECS__STORAGE__ENDPOINT_URL": "null"},
    )
    assert cfg.export.top_n == 7
    assert cfg.storage.endpoint_url is None


def test_fingerprint_changes_with_a_setting():
    a = load_config(CONFIGS / "test.yaml", environ={})
    b = load_config(CONFIGS / "test.yaml", environ={"RECS__TRAIN__ALPHA": "3"})
    assert a.fingerprint() == load_config(CONFIGS / "test.yaml", environ={}).fingerprint()
    assert a.fingerprint() != b.fingerprint()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECS__TRAIN__FACTROS": "8"}, "train.factros"),
        ({"RECS__TRAIN__FACTORS": "0"}, "train.factors"),
        ({"RECS__TRAIN__EVENT_WEIGHTS": "{click: 1}"}, "unknown event types ['click']"),
        ({"RECS__EVALUATE__K": "[5, 20]"}, "include 10"),
        ({"RECS__TOPN": "3"}, "RECS__SECTION__KEY"),
    ],
)
def test_bad_settings_are_named(env, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(CONFIGS / "test.yaml", environ=env)


def test_missing_file_and_bad_yaml_are_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "configs" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})


def test_an_overlay_outside_configs_resolves_paths_against_the_project_root(tmp_path):
    overlay = tmp_path / "elsewhere" / "mine.yaml"
    overlay.parent.mkdir()
    overlay.write_text(f"extends: {CONFIGS / 'test.yaml'}\ntrain:\n  factors: 3\n")
    cfg = load_config(overlay, environ={})
    assert cfg.train.factors == 3
    assert cfg.paths.suites == CONFIGS.parent / "great_expectations" / "expectations"
