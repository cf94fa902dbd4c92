"""`tweetmood report` on local result folders written by the real scoring path (tiny model, no network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tweetmood.classifier import Classifier
from tweetmood_cli.cli import main
from tweetmood.service import score_file
from tweetmood.settings import Settings
from tweetmood_cli.report import Sources, find_local, open_database, run_query, summarise

pytestmark = pytest.mark.unit
TWEETS = "so happy today\n\nwhy is everything late\nlove this song\n"
JSONL = '{"id": 1, "text": "scared of the storm"}\n{"id": 2}\n{"text": "what a surprise"}\n'


def _score(folder: Path, name: str, body: str, classifier, **settings) -> Path:
    source = folder / "inputs" / name
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(body, encoding="utf-8")
    fmt = settings.get("output_format", "jsonl")
    output = folder / "scored" / f"{name}.{fmt}"
    score_file(source, output, classifier=classifier, settings=Settings(**settings))
    return output


@pytest.fixture
def other_model(tiny_model_dir, tmp_path) -> Classifier:
    """The tiny model under another version name: a second model, as after a redeploy."""
    copy = shutil.copytree(tiny_model_dir, tmp_path / "other-model")
    meta = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps({**meta, "version": "tiny-random-v2"}))
    return Classifier.from_dir(copy, threads=1)


def _manifest_sums(folder: Path) -> dict[str, int]:
    manifests = [json.loads(p.read_text()) for p in folder.rglob("*.manifest.json")]
    done = [m for m in manifests if m["status"] == "complete"]
    return {k: sum(m[k] for m in done) for k in ("rows_read", "rows_scored", "rows_rejected")}


def test_the_counts_equal_the_sums_of_the_manifests(tmp_path, tiny_classifier, capsys):
    _score(tmp_path, "a.txt", TWEETS, tiny_classifier)
    _score(tmp_path, "b.jsonl", JSONL, tiny_classifier)
    assert main(["report", str(tmp_path / "scored")]) == 0
    out = capsys.readouterr().out
    sums = _manifest_sums(tmp_path)
    assert sums == {"rows_read": 7, "rows_scored": 5, "rows_rejected": 2}
    assert "rows read 7 = scored 5 + rejected 2 (equal to the sums of their 2 complete manifests)" in out
    assert "empty_text" in out and "missing_text" in out and "tiny-random-test" in out


def test_an_empty_folder_says_there_is_nothing_to_report(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "files: 0 result files, 0 manifests" in out and "nothing to report" in out


def test_a_missing_path_is_an_error_that_says_what_to_give(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist: give a result file, a folder of results or s3://bucket/prefix/" in capsys.readouterr().err


def test_a_failed_file_is_listed_with_its_reason_and_left_out_of_the_sums(tmp_path, tiny_classifier, capsys):
    _score(tmp_path, "good.txt", TWEETS, tiny_classifier)
    _score(tmp_path, "broken.csv", "author,date\nann,today\n", tiny_classifier)
    assert not (tmp_path / "scored" / "broken.csv.jsonl").exists()
    assert main(["report", str(tmp_path / "scored")]) == 0
    out = capsys.readouterr().out
    assert "2 manifests (1 complete, 1 failed)" in out
    assert "failed files (no result for this version):" in out and "broken.csv" in out and "text column" in out
    assert "rows read 4 = scored 3 + rejected 1 (equal to the sums of their 1 complete manifests)" in out


def test_csv_results_read_the_same_as_jsonl_results(tmp_path, tiny_classifier):
    _score(tmp_path / "j", "t.txt", TWEETS, tiny_classifier)
    _score(tmp_path / "c", "t.txt", TWEETS, tiny_classifier, output_format="csv")
    rows = {}
    for fmt in ("j", "c"):
        con = open_database(find_local(tmp_path / fmt / "scored"))
        rows[fmt] = con.execute("SELECT line, id, text, label, score, scores, model, error FROM results ORDER BY line").fetchall()
        scores = [r[4] for r in rows[fmt] if r[3] is not None]
        low = sum(score < 0.5 for score in scores)
        assert run_query(con, "totals") == [{
            "files": 1, "rows_read": 4, "rows_scored": 3, "rows_rejected": 1, "mean_score": round(sum(scores) / 3, 4),
            "rows_low_confidence": low, "low_confidence_pct": round(100 * low / 3, 2),
        }]
    assert rows["c"] == rows["j"]
    assert set(rows["c"][0][5]) == set(tiny_classifier.labels), "the per-label scores are a map in both formats"


def test_a_folder_mixing_csv_and_jsonl_results_is_reported_whole(tmp_path, tiny_classifier, capsys):
    _score(tmp_path, "a.txt", TWEETS, tiny_classifier, output_format="csv")
    _score(tmp_path, "b.jsonl", JSONL, tiny_classifier)
    assert main(["report", str(tmp_path / "scored")]) == 0
    assert "rows read 7 = scored 5 + rejected 2 (equal to the sums of their 2 complete manifests)" in capsys.readouterr().out


def test_a_mix_of_models_is_shown_per_model(tmp_path, tiny_classifier, other_model, capsys):
    _score(tmp_path, "old.txt", TWEETS, tiny_classifier)
    _score(tmp_path, "new.jsonl", JSONL, other_model)
    con = open_database(find_local(tmp_path / "scored"))
    assert run_query(con, "models") == [
        {"model": "tiny-random-test", "rows_scored": 3, "files": 1},
        {"model": "tiny-random-v2", "rows_scored": 2, "files": 1},
    ]
    assert main(["report", str(tmp_path / "scored")]) == 0
    out = capsys.readouterr().out
    assert "tiny-random-test" in out and "tiny-random-v2" in out


def test_counts_that_disagree_with_the_manifest_exit_non_zero(tmp_path, tiny_classifier, capsys):
    output = _score(tmp_path, "a.txt", TWEETS, tiny_classifier)
    output.write_text(output.read_text().splitlines(keepends=True)[0])
    assert main(["report", str(output)]) == 1
    assert "DIFFERENT from their complete manifests' sums: read 4, scored 3, rejected 1" in capsys.readouterr().out


def test_a_result_without_a_manifest_is_named(tmp_path, tiny_classifier, capsys):
    output = _score(tmp_path, "a.txt", TWEETS, tiny_classifier)
    Path(f"{output}.manifest.json").unlink()
    assert main(["report", str(tmp_path / "scored")]) == 1
    assert f"no complete manifest names {output}" in capsys.readouterr().out


def test_an_input_file_is_refused_with_its_file_and_line(tmp_path, capsys):
    (tmp_path / "tweets.jsonl").write_text('{"text": "not a result"}\n')
    assert main(["report", str(tmp_path)]) == 2
    assert f"{tmp_path / 'tweets.jsonl'} line 1: a row with neither a label nor an error is not a tweetmood result" in capsys.readouterr().err


def test_a_csv_that_is_not_a_result_names_the_file_and_its_header(tmp_path, capsys):
    (tmp_path / "people.csv").write_text("name,age\nann,3\n")
    assert main(["report", str(tmp_path)]) == 2
    assert "people.csv line 1: the header 'name,age' is not a tweetmood result header" in capsys.readouterr().err


def test_the_html_page_holds_the_four_plots_as_embedded_images(tmp_path, tiny_classifier, capsys):
    _score(tmp_path, "a.txt", TWEETS, tiny_classifier)
    _score(tmp_path, "b.jsonl", JSONL, tiny_classifier)
    page = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "scored"), "--html", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.count('src="data:image/png;base64,') == 4
    for title in ("Label distribution", "Confidence histogram per label", "Rows per file", "Counts over time"):
        assert f'alt="{title}"' in text
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_the_sources_are_found_by_name_in_both_layouts_and_staging_is_left_out(tmp_path):
    for rel in ("old/x.txt.jsonl", "old/x.txt.jsonl.manifest.json", "old/x.txt.jsonl.claim",
                "new/results/y.csv.jsonl", "new/manifests/y.csv.jsonl.manifest.json", "new/claims/y.csv.jsonl.claim",
                "new/staging/run-1/part-0001.jsonl", "new/staging/run-1/big.csv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    found = find_local(tmp_path)
    assert sorted(Path(s).relative_to(tmp_path).as_posix() for _, s in found.results) == ["new/results/y.csv.jsonl", "old/x.txt.jsonl"]
    assert sorted(Path(s).relative_to(tmp_path).as_posix() for _, s in found.manifests) == [
        "new/manifests/y.csv.jsonl.manifest.json", "old/x.txt.jsonl.manifest.json",
    ]


def test_results_pair_with_manifests_kept_in_a_separate_folder(tmp_path, tiny_classifier):
    """The new layout: scored/results/<rel> with scored/manifests/<rel>.manifest.json, paired by output_key."""
    output = _score(tmp_path, "a.txt", TWEETS, tiny_classifier)
    manifest = json.loads(Path(f"{output}.manifest.json").read_text())
    (tmp_path / "bucket" / "scored" / "results").mkdir(parents=True)
    (tmp_path / "bucket" / "scored" / "manifests").mkdir(parents=True)
    shutil.copy(output, tmp_path / "bucket" / "scored" / "results" / "a.txt.jsonl")
    (tmp_path / "bucket" / "scored" / "manifests" / "a.txt.jsonl.manifest.json").write_text(
        json.dumps({**manifest, "output_key": "scored/results/a.txt.jsonl"})
    )
    summary = summarise(open_database(find_local(tmp_path / "bucket")), "bucket")
    assert summary.unmatched_results == [] and summary.counts_match


def test_no_sources_give_empty_tables_every_query_can_run_on(tmp_path):
    con = open_database(Sources())
    from tweetmood_cli.report import query_names

    for name in query_names():
        run_query(con, name)


def test_only_a_staging_folder_beside_results_or_manifests_is_left_out():
    from tweetmood_cli.report import outside_staging

    paths = ["scored/results/a.jsonl", "scored/staging/r1/a.jsonl", "scored/results/staging/b.jsonl", "staging/c.jsonl"]
    assert outside_staging(paths) == ["scored/results/a.jsonl", "scored/results/staging/b.jsonl", "staging/c.jsonl"]
