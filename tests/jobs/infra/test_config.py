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


def _overlay(tmp_path: Path, text: str, name: str = "overlay.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"extends: {CONFIGS / 'test.yaml'}\n{text}")
    return path


def test_a_key_given_twice_is_an_error_naming_it_and_its_lines(tmp_path):
    path = _overlay(tmp_path, "schedule:\n  cron: '@daily'\n  timezone: UTC\n  cron: '@hourly'\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert str(err.value) == (
        f"invalid config {path}: duplicate key schedule.cron (line 5; first given on line 3)"
    )


def test_a_bad_key_names_the_file_that_set_it_not_only_the_one_loaded(tmp_path):
    base = _overlay(tmp_path, "train:\n  factorz: 3\n", name="base.yaml")
    top = tmp_path / "top.yaml"
    top.write_text(f"extends: {base}\nexport:\n  top_n: 20\n")
    with pytest.raises(ConfigError, match=rf"train\.factorz: Extra inputs .* \(in {base}\)"):
        load_config(top, environ={})


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("schedule: {cron: '61 * * * *'}", r"schedule\.cron: .*'61 \* \* \* \*' is not a cron"),
        ("schedule: {cron: 'every night'}", r"schedule\.cron: .*is not a cron"),
        ("schedule: {cron: '0 0 30 2 *'}", r"schedule\.cron: .*never fires"),
        ("schedule: {timezone: Mars/Olympus}", r"schedule\.timezone: .*not an IANA time zone"),
        ("schedule: {timezone: ''}", r"schedule\.timezone: .*not an IANA time zone"),
        (
            "schedule: {start_date: 2015-06-01, end_date: 2015-05-31}",
            r"schedule\.end_date: .*2015-05-31 is before start_date 2015-06-01",
        ),
        ("ingest: {min_event_date: 2999-01-01}", r"ingest\.min_event_date: .*in the future"),
        ("storage: {prefix: ../../other}", r"storage\.prefix: .*'\.\./\.\./other' must be"),
        ("storage: {prefix: nightly/../../other}", r"storage\.prefix: "),
        ("storage: {prefix: /etc/recs}", r"storage\.prefix: "),
        ("storage: {prefix: a//b}", r"storage\.prefix: "),
        ("storage: {prefix: 'a\\b'}", r"storage\.prefix: "),
        ("storage: {bucket: ab}", r"storage\.bucket: .*'ab' is not a valid S3 bucket name"),
        ("storage: {bucket: Recs}", r"storage\.bucket: "),
        ("storage: {bucket: recs_nightly}", r"storage\.bucket: "),
        ("storage: {bucket: -recs}", r"storage\.bucket: "),
        ("storage: {bucket: recs-}", r"storage\.bucket: "),
        (f"storage: {{bucket: {'r' * 64}}}", r"storage\.bucket: "),
        ("storage: {bucket: my..recs}", r"storage\.bucket: .*adjacent dots"),
        ("storage: {bucket: 192.168.5.4}", r"storage\.bucket: .*IP address"),
        ("storage: {bucket: xn--recs}", r"storage\.bucket: .*reserves"),
        ("storage: {bucket: recs-s3alias}", r"storage\.bucket: .*reserves"),
    ],
)
def test_impossible_settings_are_errors_naming_the_key_and_the_file(tmp_path, setting, message):
    path = _overlay(tmp_path, setting + "\n")
    with pytest.raises(ConfigError, match=rf"{message}.* \(in {path}\)"):
        load_config(path, environ={})


def test_settings_at_the_edge_of_the_rules_load(tmp_path):
    from datetime import UTC, date, datetime

    today = datetime.now(UTC).date()
    path = _overlay(
        tmp_path,
        "schedule: {cron: '*/15 2 * * 1-5', timezone: Europe/Berlin, "
        "start_date: 2015-06-01, end_date: 2015-06-01}\n"
        f"ingest: {{min_event_date: {today}}}\n"
        f"storage: {{bucket: my.recs-2{'r' * 54}, prefix: recs/nightly/}}\n",
    )
    cfg = load_config(path, environ={})
    assert (cfg.schedule.cron, cfg.schedule.timezone) == ("*/15 2 * * 1-5", "Europe/Berlin")
    assert cfg.schedule.end_date == date(2015, 6, 1) and cfg.ingest.min_event_date == today
    assert len(cfg.storage.bucket) == 63 and cfg.storage.prefix == "recs/nightly/"
    for preset in ("@once", "@continuous", "@hourly", "@weekly"):
        # Variables hold YAML values, and YAML cannot start a plain value with @: quoted.
        env = {"RECS__SCHEDULE__CRON": f"'{preset}'"}
        assert load_config(path, environ=env).schedule.cron == preset


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"recs__train__factors": "8"}, "environment variable recs__train__factors: .*upper case"),
        ({"Recs__TRAIN__FACTORS": "8"}, "environment variable Recs__TRAIN__FACTORS: "),
        ({"RECS__train__factors": "8"}, "environment variable RECS__train__factors: "),
        (
            {"RECS__TRAIN__FACTORZ": "8"},
            "environment variable RECS__TRAIN__FACTORZ names no setting: train.factorz is not a "
            "key of train; did you mean RECS__TRAIN__FACTORS",
        ),
        ({"RECS__TRAINING__FACTORS": "8"}, "RECS__TRAINING__FACTORS names no setting"),
        ({"RECS__TRAIN__FACTORS__MAX": "8"}, "train.factors is a value, not a section"),
        ({"RECS__SOURCE_FILE__X": "8"}, "RECS__SOURCE_FILE__X names no setting"),
        ({"RECS__TRAIN__FACTORS": "[8"}, "RECS__TRAIN__FACTORS is not a YAML value"),
        ({"RECS__TRAIN__FACTORS": "0"}, r"train\.factors: .*set by environment variable RECS__T"),
    ],
)
def test_environment_overrides_are_matched_exactly_and_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIGS / "test.yaml", environ=env)


def test_other_recs_variables_are_not_overrides():
    # RECS_CONFIG and the pseudonymization key share the name's start, with one _.
    env = {
        "RECS_CONFIG": "not a path",
        "RECS_VISITOR_ID_KEY": "k",
        "RECS__SPLIT__TEST_DAYS": "3",
    }
    assert load_config(CONFIGS / "test.yaml", environ=env).split.test_days == 3
