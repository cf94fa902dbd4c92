"""`tweetmood report PATH|s3://bucket/prefix/`: result files in an embedded DuckDB, queried with the named queries' SQL."""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tweetmood.schema import CSV_SCORE_PREFIX, RESULT_COLUMN_NAMES, RESULT_COLUMNS, csv_header, manifest_columns

QUERIES_DIR = Path(__file__).with_name("queries")
THRESHOLD = "${LowConfidenceThreshold}"
"""The one placeholder in the queries: template.yaml fills it from a parameter (!Sub), the report from --low-confidence."""
DEFAULT_LOW_CONFIDENCE = 0.5
RESULT_SUFFIXES = (".jsonl", ".csv")
MANIFEST_SUFFIX = ".manifest.json"
FILES_PER_LOAD = 256
"""Result files read by one DuckDB statement; the progress bar moves once per batch."""

_DUCKDB_TYPES = {"bigint": "BIGINT", "double": "DOUBLE", "string": "VARCHAR", "boolean": "BOOLEAN"}


class ReportError(Exception):
    """A result file or folder the report cannot use; the message names it and says what to do."""


def duckdb_type(glue_type: str) -> str:
    """The DuckDB type of a Glue column type (scalars and map<string,…>)."""
    if glue_type.startswith("map<string,"):
        return f"MAP(VARCHAR, {_DUCKDB_TYPES[glue_type[len('map<string,') : -1]]})"
    return _DUCKDB_TYPES[glue_type]


def query_names() -> list[str]:
    """Every shared query, by file name without .sql: each is also a named query in template.yaml."""
    return sorted(p.stem for p in QUERIES_DIR.glob("*.sql"))


def query_text(name: str) -> str:
    """queries/<name>.sql as written, with its `${LowConfidenceThreshold}` placeholder."""
    return (QUERIES_DIR / f"{name}.sql").read_text(encoding="utf-8")


def query_sql(name: str, low_confidence: float = DEFAULT_LOW_CONFIDENCE) -> str:
    """queries/<name>.sql ready for DuckDB: the threshold filled in."""
    return query_text(name).replace(THRESHOLD, repr(float(low_confidence)))


@dataclass
class Sources:
    """Result and manifest files on local disk, each with the path the report shows for it."""

    results: list[tuple[Path, str]] = field(default_factory=list)
    manifests: list[tuple[Path, str]] = field(default_factory=list)


def is_result_name(name: str) -> bool:
    return name.endswith(RESULT_SUFFIXES)


def outside_staging(paths: Iterable[str]) -> list[str]:
    """`paths` (with "/") less those below a `staging/` folder that sits beside `results/` or `manifests/`.

    In the results/ + manifests/ layout, staging/ holds scale-out plans, parts of results still being written
    and gunzipped inputs: read as results, they would count rows twice or not be results at all.
    """
    paths = list(paths)
    staging = set()
    for path in paths:
        parts = path.split("/")
        staging |= {"/".join([*parts[:i], "staging", ""]) for i, part in enumerate(parts[:-1]) if part in ("results", "manifests")}
    return [p for p in paths if not any(p.startswith(s) for s in staging)]


def find_local(path: Path) -> Sources:
    """The result files (`*.jsonl`, `*.csv`) and manifests (`*.manifest.json`) at a file or below a folder.

    Only names decide, so both S3 layouts work: results and manifests side by side (`scored/x.jsonl` and
    `scored/x.jsonl.manifest.json`) and in separate folders (`scored/results/…`, `scored/manifests/…`).
    """
    if path.is_file():
        if path.name.endswith(MANIFEST_SUFFIX):
            return Sources(manifests=[(path, str(path))])
        if not is_result_name(path.name):
            raise ReportError(f"{path} is not a result file: give a .jsonl or .csv result, or a folder of them")
        sibling = path.with_name(path.name + MANIFEST_SUFFIX)
        return Sources(results=[(path, str(path))], manifests=[(sibling, str(sibling))] if sibling.is_file() else [])
    if not path.is_dir():
        raise ReportError(f"{path} does not exist: give a result file, a folder of results or s3://bucket/prefix/")
    files = [path / rel for rel in outside_staging(sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()))]
    return Sources(
        results=[(p, str(p)) for p in files if is_result_name(p.name)],
        manifests=[(p, str(p)) for p in files if p.name.endswith(MANIFEST_SUFFIX)],
    )


def fetch_s3(s3: Any, uri: str, into: Path, progress: bool = False) -> Sources:
    """Download every result and manifest below s3://bucket/prefix into `into`; shown paths stay s3:// URIs."""
    from tqdm import tqdm

    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ReportError(f"{uri} should look like s3://bucket/prefix/")
    keys = [
        key
        for key in outside_staging(
            obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix) for obj in page.get("Contents", [])
        )
        if is_result_name(key) or key.endswith(MANIFEST_SUFFIX)
    ]
    sources = Sources()
    for i, key in enumerate(tqdm(keys, desc="downloading", unit="file", disable=not progress or len(keys) < 2)):
        # Numbered local names: keys may be longer than a local path may be, or hold characters it may not.
        target = into / f"{i:07d}{MANIFEST_SUFFIX if key.endswith(MANIFEST_SUFFIX) else Path(key).suffix}"
        s3.download_file(bucket, key, str(target))
        found = sources.manifests if key.endswith(MANIFEST_SUFFIX) else sources.results
        found.append((target, f"s3://{bucket}/{key}"))
    return sources


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_sql_string(i) for i in items) + "]"


def _sql_struct(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{_sql_string(k)}: {_sql_string(v)}" for k, v in pairs) + "}"


def _csv_labels(path: Path, shown: str) -> tuple[str, ...]:
    """The labels of a CSV result, from its header, which must be the schema's."""
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), [])
    labels = tuple(h[len(CSV_SCORE_PREFIX) :] for h in header if h.startswith(CSV_SCORE_PREFIX))
    if header != csv_header(labels):
        raise ReportError(
            f"{shown} line 1: the header {','.join(header)!r} is not a tweetmood result header "
            f"({','.join(csv_header(['<label>']))}); give the output of tweetmood score --format csv"
        )
    return labels


def open_database(
    sources: Sources,
    *,
    columns: Iterable[str] | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
    progress: bool = False,
):
    """A DuckDB connection holding table `results` (the schema's columns) and table `manifests` (the manifest's
    fields), each with `"$path"`, the file a row came from, as Athena names it: the shared queries' tables.

    `columns` names the result columns to read (default: all); the others stay NULL, which spares the time and
    memory of texts and score maps when the queries do not look at them.
    """
    import duckdb
    from tqdm import tqdm

    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {_sql_string(memory_limit)}")
    con.execute("SET preserve_insertion_order = false")
    declared = ", ".join(f"{c.name} {duckdb_type(c.glue_type)}" for c in RESULT_COLUMNS)
    con.execute(f'CREATE TABLE results ({declared}, "$path" VARCHAR)')
    con.execute("CREATE TEMP TABLE paths (local VARCHAR, shown VARCHAR)")
    paths = [(str(p), shown) for p, shown in sources.results + sources.manifests]
    renamed = {local for local, shown in paths if local != shown}
    wanted = set(RESULT_COLUMN_NAMES if columns is None else columns) | {"label", "error"}
    if paths:
        con.executemany("INSERT INTO paths VALUES (?, ?)", paths)

    jsonl = [str(p) for p, _ in sources.results if p.name.endswith(".jsonl")]
    by_labels: dict[tuple[str, ...], list[str]] = {}
    for p, shown in sources.results:
        if p.name.endswith(".csv"):
            by_labels.setdefault(_csv_labels(p, shown), []).append(str(p))
    bar = tqdm(total=len(sources.results), desc="reading results", unit="file", disable=not progress or len(sources.results) < 2)
    with bar:
        for start in range(0, len(jsonl), FILES_PER_LOAD):
            batch = jsonl[start : start + FILES_PER_LOAD]
            _load(con, _jsonl_select(batch, wanted, renamed))
            bar.update(len(batch))
        for labels, files in by_labels.items():
            for start in range(0, len(files), FILES_PER_LOAD):
                batch = files[start : start + FILES_PER_LOAD]
                _load(con, _csv_select(batch, labels, wanted, renamed))
                bar.update(len(batch))
    _check_rows_are_results(con)
    _load_manifests(con, sources.manifests)
    return con


def _projection(wanted: set[str], expression: Callable[[str], str]) -> str:
    """Every schema column in order: `expression(name)` when wanted, else a typed NULL."""
    return ", ".join(
        f"{expression(c.name)} AS {c.name}" if c.name in wanted else f"NULL::{duckdb_type(c.glue_type)} AS {c.name}"
        for c in RESULT_COLUMNS
    )


def _from(reader: str, files: Sequence[str], renamed: set[str]) -> str:
    """`reader` with its file name as "$path", through the paths table only where a file was renamed (S3)."""
    if renamed & set(files):
        return f", p.shown FROM {reader} r JOIN paths p ON r.filename = p.local"
    return f", r.filename FROM {reader} r"


def _jsonl_select(files: Sequence[str], wanted: set[str], renamed: set[str]) -> str:
    types = _sql_struct((c.name, duckdb_type(c.glue_type)) for c in RESULT_COLUMNS if c.name in wanted)
    reader = f"read_json({_sql_list(files)}, format = 'newline_delimited', columns = {types}, filename = true)"
    return "SELECT " + _projection(wanted, lambda name: f"r.{name}") + _from(reader, files, renamed)


def _csv_select(files: Sequence[str], labels: Sequence[str], wanted: set[str], renamed: set[str]) -> str:
    glue = {c.name: c.glue_type for c in RESULT_COLUMNS}
    types = [(name, duckdb_type(glue.get(name, "double"))) for name in csv_header(labels)]
    score_columns = ", ".join(f'r."{CSV_SCORE_PREFIX}{lb}"' for lb in labels)
    scores = f"CASE WHEN r.label IS NULL THEN NULL ELSE map({_sql_list(labels)}, [{score_columns}]) END"
    reader = (
        f"read_csv({_sql_list(files)}, header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
        f"columns = {_sql_struct(types)}, filename = true)"
    )
    return "SELECT " + _projection(wanted, lambda name: scores if name == "scores" else f"r.{name}") + _from(reader, files, renamed)


def _load(con, select: str) -> None:
    import duckdb

    try:
        con.execute(f"INSERT INTO results {select}")
    except duckdb.Error as exc:
        raise ReportError(f"{exc}\n  a result file above could not be read: give tweetmood's output, not its input") from exc


def _check_rows_are_results(con) -> None:
    bad = con.execute(
        'SELECT p.shown, p.local FROM results r JOIN paths p ON r."$path" = p.shown '
        "WHERE r.label IS NULL AND r.error IS NULL ORDER BY 1 LIMIT 1"
    ).fetchone()
    if bad:
        raise ReportError(
            f"{bad[0]} line {_first_non_result_line(Path(bad[1]))}: a row with neither a label nor an error is not a "
            "tweetmood result; point the report at scored results (the output of tweetmood score or OutputPrefix), not at inputs"
        )


def _first_non_result_line(path: Path) -> int | None:
    """Where the first row with neither `label` nor `error` is (DuckDB does not keep line numbers)."""
    import orjson

    with open(path, encoding="utf-8", newline="") as f:
        if path.name.endswith(".csv"):
            reader = csv.DictReader(f)
            return next((reader.line_num for row in reader if not row.get("label") and not row.get("error")), None)
        for number, line in enumerate(f, 1):
            row = orjson.loads(line) if line.strip() else {}
            if not (isinstance(row, dict) and (row.get("label") or row.get("error"))):
                return number
    return None


def _load_manifests(con, manifests: Sequence[tuple[Path, str]]) -> None:
    import duckdb

    cols = manifest_columns()
    con.execute("CREATE TABLE manifests (" + ", ".join(f"{c.name} {duckdb_type(c.glue_type)}" for c in cols) + ', "$path" VARCHAR)')
    if not manifests:
        return
    types = _sql_struct((c.name, duckdb_type(c.glue_type)) for c in cols)
    names = ", ".join(f"m.{c.name}" for c in cols)
    files = _sql_list(str(p) for p, _ in manifests)
    # format 'auto': one compact line (the new layout) or the older indented object, both read.
    try:
        con.execute(
            f"INSERT INTO manifests SELECT {names}, p.shown FROM read_json({files}, format = 'auto', columns = {types}, "
            "filename = true) m JOIN paths p ON m.filename = p.local"
        )
    except duckdb.Error as exc:
        raise ReportError(f"{exc}\n  a *.manifest.json above is not a tweetmood manifest") from exc


def run_query(con, name: str, low_confidence: float = DEFAULT_LOW_CONFIDENCE) -> list[dict]:
    """One shared query's rows as dicts."""
    cursor = con.execute(query_sql(name, low_confidence))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


@dataclass
class Summary:
    """What the report shows: each shared query's rows, and the check against the manifests."""

    where: str
    low_confidence: float
    tables: dict[str, list[dict]]
    manifests: list[dict]
    unmatched_results: list[str]
    manifest_sums: dict[str, int]

    @property
    def totals(self) -> dict:
        return self.tables["totals"][0]

    @property
    def counts_match(self) -> bool:
        return all(self.totals[k] == self.manifest_sums[k] for k in ("rows_read", "rows_scored", "rows_rejected"))

    @property
    def failed(self) -> list[dict]:
        return self.tables["failed_files"]


REPORT_COLUMNS = ("line", "label", "score", "model", "error", "message")
"""What REPORT_QUERIES read; the texts, ids and score maps of a million rows are left on disk."""
REPORT_QUERIES = (
    "totals", "label_distribution", "label_distribution_per_file", "rows_per_file", "confidence_histogram",
    "rejected_rows_by_error", "models", "failed_files", "files_over_time", "rows_per_day",
)


def summarise(con, where: str, low_confidence: float = DEFAULT_LOW_CONFIDENCE) -> Summary:
    """Run the report's queries and pair the result files with their complete manifests."""
    tables = {name: run_query(con, name, low_confidence) for name in REPORT_QUERIES}
    fields = ("output_key", "status", "rows_read", "rows_scored", "rows_rejected", "$path")
    manifests = [dict(zip(fields, row)) for row in con.execute(f"SELECT {', '.join(_quoted(f) for f in fields)} FROM manifests").fetchall()]
    complete = [m for m in manifests if m["status"] == "complete"]
    sums = {k: 0 for k in ("rows_read", "rows_scored", "rows_rejected")}
    unmatched = []
    for row in tables["rows_per_file"]:
        found = _manifest_of(row["file"], complete)
        if found is None:
            unmatched.append(row["file"])
            continue
        for k in sums:
            sums[k] += found[k]
    return Summary(where, low_confidence, tables, manifests, unmatched, sums)


def _quoted(name: str) -> str:
    return '"' + name + '"'


def _manifest_of(path: str, manifests: Sequence[dict]) -> dict | None:
    """The complete manifest of a result file: the one beside it (`<result>.manifest.json`), else the one whose
    output_key the path ends with (the longest wins), which also pairs the results/ and manifests/ layout."""
    beside = [m for m in manifests if m["$path"] == path + MANIFEST_SUFFIX]
    if beside:
        return beside[0]
    posix = path.replace(os.sep, "/")
    named = [m for m in manifests if m["output_key"] and (posix == m["output_key"] or posix.endswith("/" + m["output_key"]))]
    return max(named, key=lambda m: len(m["output_key"]), default=None)


def _short(paths: Sequence[str]) -> Callable[[str], str]:
    """Paths without the folder they all share, for narrow tables and plot labels."""
    common = os.path.commonpath(paths) if len(paths) > 1 and not any(p.startswith("s3://") for p in paths) else ""
    if len(paths) > 1 and all(p.startswith("s3://") for p in paths):
        common = os.path.commonprefix(paths).rpartition("/")[0]
    return lambda p: p[len(common) :].lstrip("/") if common else p


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str], indent: str = "  ") -> list[str]:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [bool(rows) and all(_numeric(row[i]) for row in rows) for i in range(len(headers))]
    out = []
    for r in cells:
        out.append(indent + "  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return out


def _numeric(value: Any) -> bool:
    try:
        float(str(value).rstrip("%"))
    except ValueError:
        return False
    return True


def render_text(s: Summary) -> str:
    """The summary a person reads in a terminal."""
    t = s.totals
    n_complete = sum(m["status"] == "complete" for m in s.manifests)
    lines = [
        f"tweetmood report: {s.where}",
        f"files: {t['files']} result files, {len(s.manifests)} manifests ({n_complete} complete, {len(s.failed)} failed)",
    ]
    if not t["rows_read"] and not s.manifests:
        lines.append("nothing to report: no result files (*.jsonl, *.csv) or manifests (*.manifest.json) here")
        return "\n".join(lines)
    check = (
        f"equal to the sums of their {t['files'] - len(s.unmatched_results)} complete manifests"
        if s.counts_match
        else "DIFFERENT from their complete manifests' sums: read {rows_read}, scored {rows_scored}, rejected {rows_rejected}".format(**s.manifest_sums)
    )
    lines.append(f"rows read {t['rows_read']} = scored {t['rows_scored']} + rejected {t['rows_rejected']} ({check})")
    for path in s.unmatched_results:
        lines.append(f"  no complete manifest names {path}: an older result, or not written by tweetmood")
    if s.tables["label_distribution"]:
        lines += ["", "labels:"]
        lines += _table([(r["label"], r["rows_scored"], f"{r['share_pct']:.2f}%", f"{r['mean_score']:.4f}") for r in s.tables["label_distribution"]],
                        ("label", "rows", "share", "mean score"))
        lines.append(
            f"confidence: mean score {t['mean_score']:.4f}; {t['rows_low_confidence']} of {t['rows_scored']} scored rows "
            f"({t['low_confidence_pct'] or 0:.2f}%) below {s.low_confidence}"
        )
    if s.tables["rejected_rows_by_error"]:
        lines += ["", "rejected rows by error code:"]
        lines += _table([(r["error"], r["rows_rejected"], r["files"], _clip(r["example"], 90)) for r in s.tables["rejected_rows_by_error"]],
                        ("error", "rows", "files", "example"))
    if s.tables["models"]:
        lines += ["", "models:"]
        lines += _table([(r["model"], r["rows_scored"], r["files"]) for r in s.tables["models"]], ("model", "rows", "files"))
    if s.tables["rows_per_file"]:
        short = _short([r["file"] for r in s.tables["rows_per_file"]])
        lines += ["", "per file:"]
        lines += _table([(short(r["file"]), r["rows_read"], r["rows_scored"], r["rows_rejected"]) for r in s.tables["rows_per_file"]],
                        ("file", "read", "scored", "rejected"))
    if s.failed:
        lines += ["", "failed files (no result for this version):"]
        lines += [f"  {r['source_key']}: {r['reason']}" for r in s.failed]
    return "\n".join(lines)


def _clip(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


# --- HTML --------------------------------------------------------------------------------------------


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_images(s: Summary) -> dict[str, str]:
    """Title -> base64 PNG for each plot the data allows (counts over time only when several files were scored)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    images: dict[str, str] = {}
    dist = s.tables["label_distribution"]
    if not dist:
        return images
    labels = [r["label"] for r in dist]
    colors = dict(zip(sorted(labels), plt.get_cmap("tab10").colors))

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(labels, [r["rows_scored"] for r in dist], color=[colors[lb] for lb in labels])
    for i, r in enumerate(dist):
        ax.annotate(f"{r['share_pct']:.1f}%", (i, r["rows_scored"]), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("rows scored")
    ax.margins(y=0.12)
    ax.set_title("Label distribution")
    images["Label distribution"] = _png(fig)

    hist = s.tables["confidence_histogram"]
    fig, axes = plt.subplots(1, len(labels), figsize=(2.1 * len(labels) + 1, 2.8), sharex=True, squeeze=False, layout="constrained")
    for ax, label in zip(axes[0], labels):
        bins = [r for r in hist if r["label"] == label]
        ax.bar([float(r["bin_start"]) for r in bins], [r["rows_scored"] for r in bins], width=0.05, align="edge", color=colors[label])
        ax.axvline(s.low_confidence, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.5, 1])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("score", fontsize=8)
    axes[0][0].set_ylabel("rows")
    fig.suptitle(f"Confidence per label (dashed: low-confidence threshold {s.low_confidence})", fontsize=10)
    images["Confidence histogram per label"] = _png(fig)

    per_file = s.tables["label_distribution_per_file"]
    files = [r["file"] for r in s.tables["rows_per_file"]]
    short = _short(files)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(files) + 1.4))
    left = [0] * len(files)
    for label in labels:
        counts = {r["file"]: r["rows_scored"] for r in per_file if r["label"] == label}
        widths = [counts.get(f, 0) for f in files]
        ax.barh([short(f) for f in files], widths, left=left, color=colors[label], label=label)
        left = [a + b for a, b in zip(left, widths)]
    rejected = [r["rows_rejected"] for r in s.tables["rows_per_file"]]
    ax.barh([short(f) for f in files], rejected, left=left, color="lightgrey", hatch="//", label="rejected")
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.set_title("Rows per file, by label")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    images["Rows per file"] = _png(fig)

    over_time = s.tables["files_over_time"]
    if len(over_time) > 1:
        from datetime import datetime

        import matplotlib.dates as mdates

        times = [datetime.fromisoformat(r["finished"].replace("Z", "+00:00")) for r in over_time]
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.step(times, [r["rows_scored_so_far"] for r in over_time], where="post", label="scored", marker="o", markersize=3)
        ax.step(times, [r["rows_rejected_so_far"] for r in over_time], where="post", label="rejected", marker="o", markersize=3)
        ax.set_ylabel("rows so far")
        ax.set_title("Rows over time (complete files, by the time they finished, UTC)")
        ax.legend(fontsize=8)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        images["Counts over time"] = _png(fig)
    return images


def render_html(s: Summary) -> str:
    """One self-contained page: the text summary and the plots as embedded PNGs (no scripts, no network)."""
    images = plot_images(s)
    figures = "\n".join(
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(title)}</figcaption></figure>'
        for title, data in images.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>tweetmood report: {html.escape(s.where)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em auto;padding:0 1.5em;max-width:70em;color:#222}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:13px}}figure{{margin:1.5em 0}}img{{max-width:100%}}
figcaption{{color:#666;font-size:13px}}</style></head>
<body><h1>tweetmood report</h1>
<pre>{html.escape(render_text(s))}</pre>
{figures}
</body></html>
"""


# --- command ------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    """The `tweetmood report` options."""
    parser.add_argument("path", help="a result file, a folder of results, or s3://bucket/prefix/ (every result below it)")
    parser.add_argument("--html", type=Path, help="also write one self-contained HTML page with plots here")
    parser.add_argument("--low-confidence", type=float, default=DEFAULT_LOW_CONFIDENCE,
                        help=f"scores below this count as low confidence (default {DEFAULT_LOW_CONFIDENCE})")
    parser.add_argument("--endpoint-url", help="S3 endpoint, e.g. http://127.0.0.1:5000 for a local stack")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: every core)")


def run(args, s3_client: Callable[[str | None], Any] | None = None) -> int:
    """`tweetmood report`: print the summary (and write --html); 1 when the results and their manifests disagree."""
    progress = sys.stderr.isatty()
    try:
        with tempfile.TemporaryDirectory(prefix="tweetmood-report-") as tmp:
            if args.path.startswith("s3://"):
                sources = _fetch(args, s3_client or _boto3_s3, Path(tmp), progress)
            else:
                sources = find_local(Path(args.path))
            con = open_database(sources, columns=REPORT_COLUMNS, threads=args.threads, progress=progress)
            summary = summarise(con, args.path, args.low_confidence)
    except ReportError as exc:
        print(f"tweetmood report: {exc}", file=sys.stderr)
        return 2
    print(render_text(summary))
    if args.html:
        args.html.write_text(render_html(summary), encoding="utf-8")
        print(f"\nHTML report: {args.html}")
    return 0 if summary.counts_match else 1


def _fetch(args, s3_client: Callable[[str | None], Any], into: Path, progress: bool) -> Sources:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fetch_s3(s3_client(args.endpoint_url), args.path, into, progress=progress)
    except (BotoCoreError, ClientError) as exc:
        raise ReportError(f"{args.path}: {exc} (check the bucket name, your credentials and --endpoint-url)") from exc


def _boto3_s3(endpoint_url: str | None):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url)
