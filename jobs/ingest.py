"""Ingest: the files that landed for logical date D -> typed bronze events, item facts, catalog.

Each configured source (`ingest.sources`) delivers files to
``<paths.landing>/<source>/dt=D/``. Its layout says how they read: `retailrocket` (events.csv
plus item_properties*.csv), `rees46` (the "multi-category store" export) or `generic` (column
names, timestamp format and event names mapped in the config; CSV or Parquet). Every row of every
file ends in exactly one place:

    raw rows = accepted + quarantined + ignored + erased          (per file)
    accepted = written to bronze + duplicates                     (per day)

- accepted: typed bronze events in ``bronze/events/dt=D`` (exact duplicates dropped, counted);
- quarantined: ``quarantine/events/dt=D`` with the source, file, reason code and raw line;
- ignored: event names the source sends that we do not learn from (REES46 remove_from_cart);
- erased: rows of visitors on the erasure list (``python -m jobs.erase``).

Item facts (category, price, availability, first sighting) go to ``bronze/item_facts/dt=D``;
the catalog snapshot ``bronze/catalog/dt=D`` folds the facts of every date up to D, never later.
A file whose quarantined share exceeds ``ingest.max_quarantine_rate`` fails the run, naming the
file and its top reasons, and the day's bronze partitions are removed so nothing downstream reads
half a day. A day with no files succeeds and says so. A historical export is ingested the same
way: land the whole file in one dt= folder (docs/ingestion.md).

Run alone:
    spark-submit jobs/ingest.py --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import fnmatch
import gzip
import logging
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.feeds.catalog import accepted_facts, facts_from_events, snapshot_catalog
from jobs.feeds.privacy import pseudonymize, visitor_key
from jobs.feeds.sources import (
    FIELDS_OK,
    ID_COLUMN,
    MAPPED_COLUMNS,
    OUTCOMES,
    PROPERTIES_COLUMNS,
    QUOTES_OK,
    RAW_ID,
    RETAILROCKET,
    STATUS,
    IdCollisionError,
    Layout,
    SchemaMismatchError,
    Window,
    accepted_events,
    check_columns,
    id_dictionary,
    layout_for,
    mark_erased,
    parse_events,
    parse_item_properties,
    quarantined_rows,
)
from jobs.infra.cli import parse_stage_args
from jobs.infra.config import Config, SourceConfig
from jobs.infra.paths import Lake, partition_digest, sha256_file, write_lineage
from jobs.infra.schemas import (
    EVENT_KEY,
    EVENT_TS,
    EVENT_TYPES,
    FACT_TS,
    FILE,
    ITEM_ID,
    RAW_LINE,
    REASON,
    SOURCE,
    VISITOR_ID,
)
from jobs.infra.spark import get_spark

log = logging.getLogger("ingest")


class QuarantineRateError(RuntimeError):
    """Too large a share of a file's rows was malformed."""


class ReconciliationError(AssertionError):
    """Rows went missing: the counts of a file or of the day do not add up."""


def count_outcomes(parsed: DataFrame) -> dict[str, dict]:
    """Per file: raw_rows, one count per outcome, and quarantine reasons, most frequent first."""
    per_file: dict[str, dict] = {}
    for row in parsed.groupBy(FILE, STATUS, REASON).count().collect():
        counts = per_file.setdefault(
            row[FILE], {"raw_rows": 0, **dict.fromkeys(OUTCOMES, 0), "reasons": Counter()}
        )
        counts["raw_rows"] += row["count"]
        counts[row[STATUS]] += row["count"]
        if row[REASON] is not None:
            counts["reasons"][row[REASON]] += row["count"]
    for counts in per_file.values():
        counts["reasons"] = dict(sorted(counts["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
    return dict(sorted(per_file.items()))


def reconcile(files: dict[str, dict], accepted_events: int, written_events: int) -> int:
    """Raise ReconciliationError unless every row is accounted for; return the duplicates.

    Per file: raw_rows = accepted + quarantined + ignored + erased. Per day: accepted event rows
    = rows written to bronze + exact duplicates (so duplicates can never be negative).
    """
    for name, c in files.items():
        if c["raw_rows"] != sum(c[o] for o in OUTCOMES):
            raise ReconciliationError(f"{name}: counts do not reconcile: {c}")
    duplicates = accepted_events - written_events
    if duplicates < 0:
        raise ReconciliationError(
            f"bronze holds {written_events} events but only {accepted_events} were accepted"
        )
    return duplicates


def check_quarantine_rate(files: dict[str, dict], max_rate: float, quarantine: Path) -> None:
    """Raise QuarantineRateError naming each file over the limit and its top three reasons."""
    over = []
    for name, c in files.items():
        rate = c["quarantined"] / c["raw_rows"] if c["raw_rows"] else 0.0
        if rate > max_rate:
            top = ", ".join(f"{k}={v}" for k, v in list(c["reasons"].items())[:3])
            over.append(f"{name}: {rate:.2%} of {c['raw_rows']} rows quarantined ({top})")
    if over:
        raise QuarantineRateError(
            f"quarantine rate above the limit of {max_rate:.2%}:\n  "
            + "\n  ".join(over)
            + f"\nthe rows and their reasons are in {quarantine}"
        )


# --- reading landed files (I/O) -------------------------------------------------------------


@dataclass
class Landed:
    """What one source delivered for the day, parsed; and the files, for lineage."""

    events: list[DataFrame] = field(default_factory=list)
    properties: list[DataFrame] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


class UnreadableFileError(ValueError):
    """A landed file is not text in the declared format (binary, or another compression)."""


def _first_line(path: Path) -> str:
    """The file's first line as text (through gzip for .gz); UnreadableFileError names it."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            return handle.readline()
    except (UnicodeDecodeError, OSError, EOFError) as err:
        raise UnreadableFileError(
            f"{path}: not UTF-8 CSV text{' in gzip' if opener is gzip.open else ''} "
            f"({type(err).__name__}: {err}); binary, or compressed another way?"
        ) from None


def _csv_rows(
    spark: SparkSession,
    path: Path,
    columns: dict[str, str],
    source: str,
    layout: Layout,
    visitor_key: bytes | None = None,
) -> DataFrame:
    """Records of a CSV file (plain or gzip) as RFC 4180 reads them, and each mapped column's text.

    Fields are split by Spark's CSV parser with `"` as quote and escape, so a doubled quote in
    a quoted field is one quote. A record whose quoted field holds a line break is put back
    together from its lines and parsed whole (its raw line keeps the break). A quote that never
    closes makes every line from there to the end `unclosed_quote`, one row each, rather than one
    record swallowing the rest of the file. The field count of each record is checked against
    the header (or the declared column_names), so short and long records are quarantined, not
    guessed at.

    With a `visitor_key`, the raw line's visitor field is pseudonymized as bronze's id is (so a
    quarantined line never keeps the shop's id); a line whose fields cannot be told apart
    (wrong field count, unclosed quote) is redacted whole.
    """
    import csv

    first = _first_line(path)
    if layout.header:
        if not first.strip():
            raise SchemaMismatchError(f"{path}: empty file, expected a header with {list(columns)}")
        line = first.strip("\r\n")
        header = [c.strip() for c in next(csv.reader([line], delimiter=layout.delimiter))]
    else:
        header = list(layout.column_names)
    check_columns(header, tuple(columns.values()), str(path))
    ddl = ", ".join(f"`_c{i}` string" for i in range(len(header)))
    sep = re.escape(layout.delimiter)
    value = F.col("value")
    lines = spark.read.text(str(path)).withColumn("_row", F.monotonically_increasing_id())
    # The header is row 0 of the file's first split; a headerless file keeps every line.
    body = lines.where(F.col("_row") != 0) if layout.header else lines
    records, unclosed_from = _join_quoted_line_breaks(body, sep)
    # Most records have no quotes: a plain split is cheaper than the CSV parser, so the parser
    # (and the quote-aware field count) only runs on records that need it.
    quoted = value.contains('"')
    plain = F.split(value, sep, -1)
    n_fields = F.when(
        quoted, F.size(F.split(F.regexp_replace(value, r'"([^"]|"")*"', ""), sep, -1))
    ).otherwise(F.size(plain))
    csv_options = {"sep": layout.delimiter, "quote": '"', "escape": '"'}
    parsed = records.select(
        value.alias(RAW_LINE),
        quoted.alias("_quoted"),
        plain.alias("_plain"),
        F.when(quoted, F.from_csv(value, ddl, csv_options)).alias("_f"),
        n_fields.alias("_n"),
        (F.lit(True) if unclosed_from is None else F.col("_row") < unclosed_from).alias(QUOTES_OK),
    )

    def field(src: str) -> Column:
        i = header.index(src)
        return F.when(F.col("_quoted"), F.col(f"_f._c{i}")).otherwise(F.get("_plain", i))

    line = F.col(RAW_LINE)
    if visitor_key is not None and VISITOR_ID in columns:
        line = _pseudonymized_line(
            header.index(columns[VISITOR_ID]), len(header), layout.delimiter, visitor_key
        )
    return parsed.select(
        line.alias(RAW_LINE),
        F.lit(str(path)).alias(FILE),
        F.lit(source).alias(SOURCE),
        (F.col("_n") == len(header)).alias(FIELDS_OK),
        QUOTES_OK,
        *[field(src).alias(ours) for ours, src in columns.items()],
    )


def _raw_lines_of_quarantined(parsed: DataFrame) -> DataFrame:
    """RAW_LINE kept only where the quarantine will store it: the line is then neither rebuilt
    (pseudonymized) nor cached for the accepted rows, which never read it."""
    return parsed.withColumn(RAW_LINE, F.when(F.col(STATUS) == "quarantined", F.col(RAW_LINE)))


def _pseudonymized_line(visitor: int, width: int, delimiter: str, key: bytes) -> Column:
    """The record (over _csv_rows' `_plain`, `_f`, `_quoted`, `_n`) written back as RFC 4180
    CSV with field `visitor` replaced by its keyed hash; other fields keep their text (a quoted
    one is quoted again only where it needs to be). Redacted whole when the record has not
    `width` fields or an unclosed quote: then no field is surely the visitor's."""

    def cell(j: int) -> Column:
        text = F.when(F.col("_quoted"), F.col(f"_f._c{j}")).otherwise(F.get("_plain", j))
        if j == visitor:
            trimmed = F.trim(text)  # as parse_events reads the id
            text = F.when(trimmed != "", pseudonymize(trimmed, key).cast("string")).otherwise(text)
        text = F.coalesce(text, F.lit(""))
        special = F.lit(False)
        for char in (delimiter, '"', "\n", "\r"):
            special = special | text.contains(char)
        quoted = F.concat(F.lit('"'), F.regexp_replace(text, '"', '""'), F.lit('"'))
        return F.when(special, quoted).otherwise(text)

    whole = F.concat_ws(delimiter, *[cell(j) for j in range(width)])
    located = (F.col("_n") == width) & F.col(QUOTES_OK)
    return F.when(located, whole).otherwise(
        F.format_string("<redacted: %d fields, the visitor field not located>", F.col("_n"))
    )


# A line read from outside any quoted field that ends inside one: complete fields (quoted, or
# free of quotes) each followed by the separator, then a quote opening the last field.
_OPENS_FIELD = r'^(?:(?:"(?:[^"]|"")*"|[^"{sep}]*){sep})*"(?:[^"]|"")*$'


def _join_quoted_line_breaks(lines: DataFrame, sep: str) -> tuple[DataFrame, int | None]:
    """`lines` (value, _row in file order) as records: the lines of a record whose quoted field
    spans line breaks joined into one row (at its first line's _row), other lines as they are.

    Returns (records, unclosed_from): the _row of a quote still open at the end of the file,
    or None. Only lines with an odd number of quotes can open or close such a record; they are
    rare and few, so they are paired on the driver in file order.
    """
    value = F.col("value")
    quotes = F.length(value) - F.length(F.regexp_replace(value, '"', ""))
    opens = value.rlike(_OPENS_FIELD.format(sep=sep))
    odd = (
        lines.where(value.contains('"') & (quotes % 2 == 1))
        .select("_row", opens.alias("_opens"))
        .orderBy("_row")
        .collect()
    )
    spans, start = [], None
    for row in odd:
        if start is None and row["_opens"]:
            start = row["_row"]
        elif start is not None:
            spans.append((start, row["_row"]))
            start = None
        # else: a stray quote inside an unquoted field (5" screen): the line stands alone.
    if not spans:
        return lines, start
    # _row is (split index << 33) + line in split: join each line to the span of its split(s).
    bounds = lines.sparkSession.createDataFrame(
        [(s, e, b) for s, e in spans for b in range(s >> 33, (e >> 33) + 1)],
        "_start long, _end long, _split long",
    )
    row = F.col("_row")
    tagged = lines.join(
        F.broadcast(bounds),
        (F.shiftright(row, 33) == F.col("_split")) & row.between(F.col("_start"), F.col("_end")),
        "left",
    )
    alone = tagged.where(F.col("_start").isNull()).select("value", "_row")
    joined = (
        tagged.where(F.col("_start").isNotNull())
        .groupBy("_start")
        .agg(F.array_sort(F.collect_list(F.struct("_row", "value"))).alias("_parts"))
        .select(
            F.array_join(F.transform("_parts", lambda p: p["value"]), "\n").alias("value"),
            F.col("_start").alias("_row"),
        )
    )
    return alone.unionByName(joined), start


def _parquet_rows(
    spark: SparkSession,
    path: Path,
    columns: dict[str, str],
    source: str,
    visitor_key: bytes | None = None,
) -> tuple[DataFrame, bool]:
    """Rows of a Parquet file as JSON raw lines plus mapped columns as text; with a
    `visitor_key`, the raw line holds the visitor's keyed hash, not the shop's id.

    Returns (rows, native_ts): a timestamp column is passed on as epoch milliseconds.
    """
    frame = spark.read.parquet(str(path))
    check_columns(frame.columns, tuple(columns.values()), str(path))
    ts_type = dict(frame.dtypes)[columns[EVENT_TS]]
    native_ts = ts_type.startswith("timestamp")

    def text(ours: str, src: str) -> Column:
        if ours == EVENT_TS and native_ts:
            return F.unix_millis(F.col(src)).cast("string")
        return F.col(src).cast("string")

    def raw(name: str) -> Column:
        if visitor_key is None or name != columns.get(VISITOR_ID):
            return F.col(name)
        trimmed = F.trim(F.col(name).cast("string"))
        return F.when(trimmed != "", pseudonymize(trimmed, visitor_key)).alias(name)

    rows = frame.select(
        F.to_json(F.struct(*[raw(c) for c in frame.columns])).alias(RAW_LINE),
        F.lit(str(path)).alias(FILE),
        F.lit(source).alias(SOURCE),
        F.lit(True).alias(FIELDS_OK),
        *[text(ours, src).alias(ours) for ours, src in columns.items()],
    )
    return rows, native_ts


def _describe_file(path: Path) -> dict:
    return {"file": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def read_landed(
    spark: SparkSession,
    source: SourceConfig,
    folder: Path,
    window: Window,
    visitor_key: bytes | None,
) -> Landed:
    """Parse every file the source delivered to `folder` (none: an empty day)."""
    from dataclasses import replace

    layout = layout_for(source)
    landed = Landed()
    if not folder.is_dir():
        log.warning("source %s: nothing landed for this day (no folder %s)", source.name, folder)
        return landed
    files = sorted(p for p in folder.iterdir() if p.is_file())
    event_files = [p for p in files if _matches(p, layout.events_globs)]
    property_files = []
    if layout.properties_glob:
        property_files = [p for p in files if _matches(p, (layout.properties_glob,))]
        event_files = [p for p in event_files if p not in property_files]
    for path in event_files:
        if layout.format == "parquet":
            rows, native_ts = _parquet_rows(spark, path, layout.columns, source.name, visitor_key)
            file_layout = replace(layout, timestamp_format="epoch_ms") if native_ts else layout
        else:
            rows = _csv_rows(spark, path, layout.columns, source.name, layout, visitor_key)
            file_layout = layout
        landed.events.append(parse_events(rows, file_layout, window, visitor_key))
        landed.files.append({**_describe_file(path), "kind": "events"})
    patterns = [*layout.events_globs, *([layout.properties_glob] if layout.properties_glob else [])]
    for path in files:
        if path not in event_files and path not in property_files:
            landed.skipped.append({"file": str(path), "matches_none_of": patterns})
            log.warning("source %s: %s matches none of %s: skipped", source.name, path, patterns)
    props = {c: c for c in PROPERTIES_COLUMNS}
    for path in property_files:
        rows = _csv_rows(spark, path, props, source.name, RETAILROCKET)
        landed.properties.append(parse_item_properties(rows, window))
        landed.files.append({**_describe_file(path), "kind": "item_properties"})
    if not landed.files:
        log.warning("source %s: no files matched in %s", source.name, folder)
    return landed


def check_id_dictionary(dictionary: DataFrame, path: Path) -> None:
    """Raise IdCollisionError naming the texts if two of them share an id in `dictionary`."""
    clashes = (
        dictionary.groupBy(ID_COLUMN, "id")
        .agg(F.sort_array(F.collect_set(RAW_ID)).alias("texts"))
        .where(F.size("texts") > 1)
        .limit(5)
        .collect()
    )
    if clashes:
        named = "; ".join(f"{r[ID_COLUMN]} {list(r['texts'])} -> {r['id']}" for r in clashes)
        raise IdCollisionError(f"{path}: different text ids hash to one integer: {named}")


def _matches(path: Path, patterns: tuple[str, ...]) -> bool:
    # Shops name files as they like (Events.CSV); a pattern matches without regard to case.
    return any(fnmatch.fnmatch(path.name.lower(), p.lower()) for p in patterns)


def _union(frames: list[DataFrame], empty: DataFrame) -> DataFrame:
    result = empty
    for frame in frames:
        result = result.unionByName(frame)
    return result


def _empty_parsed(spark: SparkSession, window: Window) -> DataFrame:
    """A parsed frame with no rows but every column, for days with no files."""
    rows = spark.createDataFrame(
        [],
        f"{RAW_LINE} string, {FILE} string, {SOURCE} string, {FIELDS_OK} boolean, "
        + ", ".join(f"{c} string" for c in MAPPED_COLUMNS),
    )
    layout = Layout(
        "csv", "", {c: c for c in MAPPED_COLUMNS}, "epoch_ms", {t: (t,) for t in EVENT_TYPES}
    )
    return parse_events(rows, layout, window)


def _remove_partitions(lake: Lake, run_date: date, tables: tuple[tuple[str, str], ...]) -> None:
    for layer, table in tables:
        shutil.rmtree(lake.partition(layer, table, run_date), ignore_errors=True)


BRONZE_TABLES = (
    ("bronze", "events"),
    ("bronze", "item_facts"),
    ("bronze", "catalog"),
    ("bronze", "id_dictionary"),
)


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    spark = get_spark("ingest", args.cfg)
    try:
        run(args.cfg, args.run_date, spark)
    finally:
        spark.stop()
    return 0


def run(cfg: Config, run_date: date, spark: SparkSession) -> dict:
    """Ingest every source's files for run_date; write bronze, quarantine, lineage and report."""
    lake = Lake(cfg.paths.lake)
    window = Window.for_date(run_date, cfg.ingest.min_event_date)
    key = visitor_key(cfg)
    erased_path = lake.table("erasure", "visitors")
    erased = spark.read.parquet(str(erased_path)) if (erased_path / "_SUCCESS").exists() else None

    landed = [
        read_landed(spark, s, cfg.paths.landing / s.name / f"dt={run_date}", window, key)
        for s in cfg.ingest.sources
    ]
    empty = _empty_parsed(spark, window)
    events = _raw_lines_of_quarantined(
        mark_erased(_union([f for x in landed for f in x.events], empty), erased)
    ).cache()
    props_frames = [f for x in landed for f in x.properties]
    files = [f for x in landed for f in x.files]
    skipped = [f for x in landed for f in x.skipped]
    properties = None
    try:
        counts = count_outcomes(events)
        if props_frames:
            properties = _raw_lines_of_quarantined(
                _union(props_frames[1:], props_frames[0])
            ).cache()
            counts.update(count_outcomes(properties))
            quarantine = quarantined_rows(events).unionByName(quarantined_rows(properties))
            facts = accepted_facts(properties)
        else:
            quarantine = quarantined_rows(events)
            facts = facts_from_events(events)

        quarantine_path = lake.partition("quarantine", "rows", run_date)
        quarantine.orderBy(SOURCE, FILE, REASON, RAW_LINE).write.mode("overwrite").parquet(
            str(quarantine_path)
        )
        report: dict = {"run_date": run_date.isoformat(), "files": counts}
        try:
            check_quarantine_rate(counts, cfg.ingest.max_quarantine_rate, quarantine_path)
        except QuarantineRateError as err:
            # Nothing of a rejected day may reach silver: drop its bronze so the next clean stops at
            # the gap instead of training on half a day.
            _remove_partitions(lake, run_date, BRONZE_TABLES)
            lake.write_stage_report(run_date, "ingest", {**report, "error": str(err)})
            raise

        ingest_run = f"ingest/{run_date.isoformat()}"
        events_path = lake.partition("bronze", "events", run_date)
        accepted_events(events, ingest_run).orderBy(*EVENT_KEY).write.mode("overwrite").parquet(
            str(events_path)
        )
        dictionary_path = lake.partition("bronze", "id_dictionary", run_date)
        id_dictionary(events).orderBy(ID_COLUMN, "id").write.mode("overwrite").parquet(
            str(dictionary_path)
        )
        check_id_dictionary(spark.read.parquet(str(dictionary_path)), dictionary_path)
        facts_path = lake.partition("bronze", "item_facts", run_date)
        facts.orderBy(ITEM_ID, FACT_TS, SOURCE).write.mode("overwrite").parquet(str(facts_path))
        fact_dates = lake.dates_until("bronze", "item_facts", run_date)
        all_facts = spark.read.parquet(
            *[str(lake.partition("bronze", "item_facts", d)) for d in fact_dates]
        )
        catalog_path = lake.partition("bronze", "catalog", run_date)
        snapshot_catalog(all_facts, window.until).orderBy(ITEM_ID).write.mode("overwrite").parquet(
            str(catalog_path)
        )

        # Count what was written (cheap Parquet reads), not what was meant to be written.
        written = spark.read.parquet(str(events_path)).count()
        accepted_rows = sum(c["accepted"] for name, c in counts.items() if _is_events(name, files))
        duplicates = reconcile(counts, accepted_rows, written)
        quarantined = spark.read.parquet(str(quarantine_path)).count()
        if quarantined != sum(c["quarantined"] for c in counts.values()):
            raise ReconciliationError(
                f"{quarantine_path} holds {quarantined} rows, counted {counts}"
            )

        catalog_items = spark.read.parquet(str(catalog_path)).count()
        raw_rows = sum(c["raw_rows"] for c in counts.values())
        report.update(
            raw_rows=raw_rows,
            accepted=written,
            duplicates=duplicates,
            quarantined=quarantined,
            ignored=sum(c["ignored"] for c in counts.values()),
            erased=sum(c["erased"] for c in counts.values()),
            quarantine_rate=quarantined / raw_rows if raw_rows else 0.0,
            quarantine_reasons=dict(
                sum((Counter(c["reasons"]) for c in counts.values()), Counter()).most_common()
            ),
            catalog_items=catalog_items,
            empty_day=not files,
            skipped_files=skipped,
            window=[window.earliest.isoformat(), window.until.isoformat()],
        )
        for file in files:
            file["rows"] = counts.get(file["file"], {}).get("raw_rows", 0)
        write_lineage(events_path, files, rows=written, ingest_run=ingest_run)
        write_lineage(quarantine_path, files, rows=quarantined)
        write_lineage(facts_path, files)
        write_lineage(
            catalog_path,
            [
                {
                    "partition": str(lake.partition("bronze", "item_facts", d)),
                    "sha256": partition_digest(lake.partition("bronze", "item_facts", d)),
                }
                for d in fact_dates
            ],
            rows=catalog_items,
        )
        lake.write_stage_report(run_date, "ingest", report)
        if not files:
            log.warning("ingest %s: empty day, no files landed for any source", run_date)
        log.info("ingest %s: %s", run_date, report)
        return report
    finally:
        # On a shared Spark Connect server a cache outlives the session that made it.
        events.unpersist()
        if properties is not None:
            properties.unpersist()


def _is_events(name: str, files: list[dict]) -> bool:
    return any(f["file"] == name and f["kind"] == "events" for f in files)


if __name__ == "__main__":
    raise SystemExit(main())
