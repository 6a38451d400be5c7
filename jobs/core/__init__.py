"""Shared core of the pipeline: config, Spark session, storage layout, schemas, metrics."""
