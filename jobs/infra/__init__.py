"""The platform: config, lake layout, Spark session, tracking, storage, alerts, CLI."""
