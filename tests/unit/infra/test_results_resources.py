"""The results block of template.yaml: Glue tables from the one schema, named queries from the shared SQL,
a dashboard of metrics the code emits, and an Athena workgroup the functions cannot write into."""

from __future__ import annotations

import ast
import fnmatch
import json
from pathlib import Path

import pytest

from sam_template import BUCKET, FUNCTIONS, SCALE_OUT_FUNCTIONS, TEMPLATE, Resolver, as_list, role_of, role_statements
from tweetmood.schema import RESULT_COLUMNS, manifest_columns
from tweetmood_cli import named_queries
from tweetmood_cli.report import query_names

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
METRIC_SOURCES = [*sorted((REPO / "layers" / "core" / "tweetmood").glob("*.py")), *sorted((REPO / "functions").glob("*/app.py"))]
WRITES = {"s3:PutObject", "s3:AbortMultipartUpload"}


def _columns(cfn: dict, table: str) -> list[tuple[str, str]]:
    columns = cfn["Resources"][table]["Properties"]["TableInput"]["StorageDescriptor"]["Columns"]
    return [(c["Name"], c["Type"]) for c in columns]


def test_the_results_table_declares_exactly_the_schema_columns(cfn):
    assert _columns(cfn, "ResultsTable") == [(c.name, c.glue_type) for c in RESULT_COLUMNS]


def test_the_manifests_table_declares_exactly_the_manifest_fields(cfn):
    assert _columns(cfn, "ManifestsTable") == [(c.name, c.glue_type) for c in manifest_columns()]


@pytest.mark.parametrize("output_prefix", ["scored/", "results/2026/"])
def test_results_and_manifests_tables_read_separate_sub_prefixes_of_the_output_prefix(cfn, output_prefix):
    resolve = Resolver(cfn, OutputPrefix=output_prefix)
    where = {t: resolve(cfn["Resources"][t]["Properties"]["TableInput"]["StorageDescriptor"]["Location"]) for t in ("ResultsTable", "ManifestsTable")}
    assert where == {
        "ResultsTable": f"s3://<Bucket>/{output_prefix}results/",
        "ManifestsTable": f"s3://<Bucket>/{output_prefix}manifests/",
    }
    # Neither location lies inside the other, so a manifest is never read as a result row or the reverse.
    assert not where["ResultsTable"].startswith(where["ManifestsTable"]) and not where["ManifestsTable"].startswith(where["ResultsTable"])


def test_both_tables_read_json_lines():
    from sam_template import load_sam

    for table in ("ResultsTable", "ManifestsTable"):
        serde = load_sam()["Resources"][table]["Properties"]["TableInput"]["StorageDescriptor"]["SerdeInfo"]
        assert serde["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"


def test_the_named_queries_in_the_template_are_the_shared_sql_files():
    """`make queries` writes them; this fails when a .sql file changed and the template was not regenerated."""
    text = TEMPLATE.read_text(encoding="utf-8")
    assert named_queries.rendered_template(text) == text


def test_every_shared_query_is_a_named_query_in_the_results_workgroup(cfn, resolve):
    queries = {k: r["Properties"] for k, r in cfn["Resources"].items() if r["Type"] == "AWS::Athena::NamedQuery"}
    assert sorted(queries) == sorted(named_queries.logical_id(n) for n in query_names())
    assert len(query_names()) >= 6
    for props in queries.values():
        assert props["Database"] == {"Ref": "ResultsDatabase"} and props["WorkGroup"] == {"Ref": "ResultsWorkGroup"}
        assert "${" not in resolve(props["QueryString"]), "every placeholder is a template parameter"


def test_the_low_confidence_query_takes_its_threshold_from_a_parameter(cfn):
    query = cfn["Resources"]["ResultsQueryLowConfidenceRows"]["Properties"]["QueryString"]
    assert "score < 0.3" in Resolver(cfn, LowConfidenceThreshold="0.3")(query)


def test_a_stale_named_query_is_noticed(tmp_path):
    text = TEMPLATE.read_text(encoding="utf-8")
    stale = text.replace("ORDER BY rows_rejected DESC, error", "ORDER BY error", 1)
    assert stale != text and named_queries.rendered_template(stale) != stale


def _emitted_metric_names() -> set[str]:
    """Every `add_metric(name="…")` in the core and the handlers."""
    names = set()
    for path in METRIC_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_metric":
                names |= {k.value.value for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)}
    return names


def _dashboard_metrics(cfn: dict, resolve: Resolver) -> list[list]:
    body = json.loads(resolve(cfn["Resources"]["ResultsDashboard"]["Properties"]["DashboardBody"]))
    return [m for w in body["widgets"] for m in w["properties"].get("metrics", [])]


def dashboard_problems(cfn: dict, resolve: Resolver) -> list[str]:
    """Custom metrics on the dashboard that the code does not emit, under the namespace and service it uses."""
    env = cfn["Globals"]["Function"]["Environment"]["Variables"] if "Globals" in cfn else None
    from sam_template import load_sam

    env = env or load_sam()["Globals"]["Function"]["Environment"]["Variables"]
    namespace, service = env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]
    emitted = _emitted_metric_names()
    problems = []
    for metric in _dashboard_metrics(cfn, resolve):
        if metric[0].startswith("AWS/"):
            continue
        if metric[0] != namespace:
            problems.append(f"{metric[1]} is in namespace {metric[0]}, the code emits into {namespace}")
        if metric[1] not in emitted:
            problems.append(f"{metric[1]} is not emitted by the code ({sorted(emitted)})")
        if metric[2:4] != ["service", service]:
            problems.append(f"{metric[1]} lacks the Powertools dimension service={service}")
    return problems


def test_the_dashboard_shows_only_metrics_the_code_emits(cfn, resolve):
    assert dashboard_problems(cfn, resolve) == []


def test_the_dashboard_shows_rows_failures_durations_errors_throttles_concurrency_and_the_queue(cfn, resolve):
    shown = {(m[0], m[1]) for m in _dashboard_metrics(cfn, resolve)}
    assert {("tweetmood", "RowsScored"), ("tweetmood", "RowsRejected"), ("tweetmood", "FilesFailed")} <= shown
    assert {("AWS/Lambda", n) for n in ("Duration", "Errors", "Throttles", "ConcurrentExecutions")} <= shown
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in shown
    stats = {m[-1].get("stat") for m in _dashboard_metrics(cfn, resolve) if m[1] == "Duration"}
    assert {"p50", "p99"} <= stats


def test_a_misspelled_dashboard_metric_is_noticed(cfn, resolve):
    import copy

    bad = copy.deepcopy(cfn)
    body = bad["Resources"]["ResultsDashboard"]["Properties"]["DashboardBody"]
    body["Fn::Sub"][0] = body["Fn::Sub"][0].replace('"RowsScored"', '"RowScored"')
    assert any("RowScored" in p for p in dashboard_problems(bad, resolve))


def _athena_output(cfn: dict, resolve: Resolver) -> str:
    config = resolve(cfn["Resources"]["ResultsWorkGroup"]["Properties"]["WorkGroupConfiguration"])
    assert config["EnforceWorkGroupConfiguration"] is True, "users could send query results elsewhere"
    assert config["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] in ("SSE_S3", "SSE_KMS", "CSE_KMS")
    return config["ResultConfiguration"]["OutputLocation"]


def _writable(cfn: dict, resolve: Resolver, function: str, key: str) -> bool:
    arn = f"arn:aws:s3:::{BUCKET}/{key}"
    return any(
        fnmatch.fnmatchcase(arn, resource)
        for st in role_statements(cfn, resolve, role_of(cfn, function))
        if st["Effect"] == "Allow" and WRITES & set(as_list(st["Action"]))
        for resource in as_list(st["Resource"])
    )


@pytest.mark.parametrize("output_prefix", ["scored/", "results/"])
@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_functions_cannot_write_the_athena_results_nor_anywhere_outside_the_output_prefix(cfn, function, output_prefix):
    resolve = Resolver(cfn, OutputPrefix=output_prefix)
    location = _athena_output(cfn, resolve)
    assert location == "s3://<Bucket>/athena-results/"
    outside = ["athena-results/0b7e.csv", "athena-results/x/y.metadata", "incoming/x.jsonl", "x.jsonl", f"{output_prefix[:-1]}.jsonl"]
    inside = [f"{output_prefix}results/a/b.jsonl", f"{output_prefix}manifests/a/b.jsonl.manifest.json", f"{output_prefix}x.jsonl"]
    assert [k for k in outside if _writable(cfn, resolve, function, k)] == []
    assert [k for k in inside if not _writable(cfn, resolve, function, k)] == [], "the check must see the grants that exist"


@pytest.mark.parametrize("function", SCALE_OUT_FUNCTIONS)
def test_the_scale_out_functions_cannot_write_the_athena_results_either(cfn, function):
    resolve = Resolver(cfn, OutputPrefix="scored/")
    outside = ["athena-results/0b7e.csv", "athena-results/x/y.metadata", "incoming/x.jsonl", "x.jsonl"]
    assert [k for k in outside if _writable(cfn, resolve, function, k)] == []


def test_the_athena_prefix_cannot_be_made_an_input_or_output_prefix(sam):
    rule = sam["Rules"]["AthenaResultsStayApart"]["Assertions"][0]["Assert"]
    assert "athena-results/" in json.dumps(rule)


REPORT_ONLY = {"duckdb", "matplotlib", "playwright", "tweetmood_cli"}


def test_the_lambda_layers_carry_neither_the_report_nor_its_libraries():
    runtime = (REPO / "layers" / "runtime" / "requirements.txt").read_text(encoding="utf-8").lower()
    assert not [name for name in REPORT_ONLY if name in runtime]
    for path in (REPO / "layers" / "core" / "tweetmood").glob("*.py"):
        # Only module-level imports load in Lambda; the CLI reaches the report lazily, inside a function.
        top = [n for n in ast.parse(path.read_text(encoding="utf-8")).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
        assert not names & REPORT_ONLY, f"{path.name} imports {names & REPORT_ONLY} at module level"
