"""Model soup: runs that share a base and a text path are averaged, kept only when the selection score does not drop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import build_tiny_checkpoint  # noqa: E402
from training.soup import greedy_soup, main, served_greedy_soup  # noqa: E402
from training.transformer import TransformerArgs, _load, train_transformer  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def runs(tiny_splits, tmp_path_factory):
    """Three short fine-tunes of one tiny base with one seed (different learning rates), and one with another seed."""
    root = tmp_path_factory.mktemp("soup-runs")
    base = build_tiny_checkpoint(root / "base", tiny_splits, seed=3, steps=0)
    made = {}
    for name, lr, seed in [("a", 3e-3, 13), ("b", 2e-3, 13), ("c", 1e-3, 13), ("other-seed", 3e-3, 14)]:
        args = TransformerArgs(base_model=str(base), output_dir=str(root / "sweep" / name), lr=lr, epochs=1,
                               batch_size=16, patience=0, device="cpu", cpu_threads=1, progress=False, seed=seed)
        made[name] = train_transformer(args, tiny_splits).output_dir
    return made


def _weights(checkpoint) -> dict[str, torch.Tensor]:
    _, model = _load(str(checkpoint), ["sadness", "joy", "love", "anger", "fear", "surprise"])
    return {k: v.float() for k, v in model.state_dict().items()}


def test_the_soup_checkpoint_is_the_mean_of_the_runs_it_kept(runs, tiny_splits, tmp_path):
    result = greedy_soup([runs["a"], runs["b"], runs["c"]], tiny_splits, tmp_path / "soup", device="cpu")

    metrics = json.loads(result.metrics_path.read_text())
    members = metrics["soup_members"]
    assert metrics["model"] == "transformer-soup" and members and set(members) <= {"a", "b", "c"}
    soup, kept = _weights(result.checkpoint_dir), [_weights(runs[m] / "checkpoint") for m in members]
    name = "classifier.weight"
    torch.testing.assert_close(soup[name], sum(w[name] for w in kept) / len(kept))
    assert (result.checkpoint_dir / "tweetmood_training.json").is_file()
    assert metrics["test"]["n"] == len(tiny_splits.test)


def test_the_soup_never_scores_below_its_best_run_on_the_selection_score(runs, tiny_splits, tmp_path):
    result = greedy_soup([runs["a"], runs["b"], runs["c"]], tiny_splits, tmp_path / "soup", device="cpu")

    best_single = max(json.loads((runs[n] / "metrics.json").read_text())["selection"] for n in "abc")
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["selection"] >= best_single
    assert [h["soup"] for h in metrics["soup_history"]][:3] == ["greedy"] * 3


def test_a_run_with_another_seed_is_tried_and_kept_only_if_the_score_holds(runs, tiny_splits, tmp_path):
    result = greedy_soup([runs["a"], runs["other-seed"]], tiny_splits, tmp_path / "soup", device="cpu")

    metrics = json.loads(result.metrics_path.read_text())
    history = metrics["soup_history"]
    assert {h["member"] for h in history} == {"a", "other-seed"}
    assert metrics["soup_members"] == [h["member"] for h in history if h["accepted"]]
    alone = {n: json.loads((runs[n] / "metrics.json").read_text())["selection"] for n in ("a", "other-seed")}
    assert metrics["selection"] >= max(alone.values())


def test_the_command_line_takes_single_runs_or_a_sweep_directory(runs, tiny_splits, tmp_path, monkeypatch, capsys):
    import training.soup as soup_module

    monkeypatch.setattr(soup_module, "load_splits", lambda *args, **kwargs: tiny_splits)
    assert main(["--runs", str(runs["a"]), str(runs["b"]), "--real-tweets-dir", "none",
                 "--output-dir", str(tmp_path / "two")]) == 0
    assert set(json.loads(capsys.readouterr().out)["members"]) <= {"a", "b"}

    assert soup_module._run_dirs([runs["a"].parent]) == sorted(runs.values())
    assert main(["--runs", str(runs["a"].parent), "--real-tweets-dir", "none", "--output-dir", str(tmp_path / "all")]) == 0
    assert set(json.loads(capsys.readouterr().out)["members"]) <= set(runs)


def test_no_finished_runs_is_an_error_that_names_the_directory(tmp_path):
    from training.soup import _run_dirs

    with pytest.raises(RuntimeError, match=str(tmp_path)):
        _run_dirs([tmp_path])


def test_a_run_that_started_from_another_runs_checkpoint_shares_its_pretrained_base(runs, tiny_splits, tmp_path):
    from training.soup import pretrained_base

    args = TransformerArgs(base_model=str(runs["a"] / "checkpoint"), output_dir=str(tmp_path / "again"), lr=1e-3,
                           epochs=1, batch_size=16, patience=0, device="cpu", cpu_threads=1, progress=False, seed=13)
    again = train_transformer(args, tiny_splits).output_dir
    base = json.loads((runs["a"] / "metrics.json").read_text())["args"]["base_model"]
    assert pretrained_base(str(runs["a"] / "checkpoint")) == base

    result = greedy_soup([runs["b"], again], tiny_splits, tmp_path / "soup", device="cpu")
    history = json.loads(result.metrics_path.read_text())["soup_history"]
    assert {h["member"] for h in history} == {"b", "again"}


def test_a_shallower_run_of_the_same_base_is_left_out(runs, tiny_splits, tmp_path):
    base = json.loads((runs["a"] / "metrics.json").read_text())["args"]["base_model"]
    args = TransformerArgs(base_model=base, output_dir=str(tmp_path / "one-layer"), lr=3e-3, epochs=1, batch_size=16,
                           patience=0, device="cpu", cpu_threads=1, progress=False, seed=13, num_layers=1)
    shallow = train_transformer(args, tiny_splits).output_dir

    result = greedy_soup([runs["a"], runs["b"], shallow], tiny_splits, tmp_path / "soup", device="cpu")
    scored = {h.get("member") for h in json.loads(result.metrics_path.read_text())["soup_history"]}
    assert scored in ({"a", "b"}, {"one-layer"})  # whichever depth ranks first, the other is never averaged in


def _gate_refusing(monkeypatch, refused) -> list[str]:
    """Make the parity gate refuse the soups `refused(names)` names; returns the soups it was asked about."""
    import training.export as export_module

    real, asked = export_module.check_parity, []

    def check_parity(checkpoint, serving_dir, *args, **kwargs):
        names = Path(checkpoint).parent.name.split("+")
        asked.append("+".join(names))
        report = real(checkpoint, serving_dir, *args, **{**kwargs, "raise_on_failure": False})
        report.passed = report.passed and not refused(names)
        return report

    monkeypatch.setattr(export_module, "check_parity", check_parity)
    return asked


def test_the_served_soup_is_chosen_among_the_soups_the_parity_gate_lets_through(runs, tiny_splits, tmp_path,
                                                                                 monkeypatch):
    asked = _gate_refusing(monkeypatch, lambda names: names == ["a"] or {"a", "b"} <= set(names))

    result = served_greedy_soup([runs["a"], runs["b"], runs["c"]], tiny_splits, tmp_path / "soup", "fp32",
                                "tiny", device="cpu")

    metrics = json.loads(result.metrics_path.read_text())
    history = metrics["soup_history"]
    assert asked[:3] == ["a", "b", "c"]  # every run alone first, exported and gated
    assert history[0]["member"] != "a"  # refused alone, so ranked after the runs the gate passes
    assert not {"a", "b"} <= set(metrics["soup_members"]) and metrics["served_selection"]["passed"]
    assert [h["soup"] for h in history][:3] == ["served greedy"] * 3
    assert all(0 <= h["alone"]["selection"] <= 1 for h in history if "alone" in h)
    assert not list((tmp_path / "soup" / "trials").glob("*/checkpoint"))  # the tried weights do not pile up
    assert (tmp_path / "soup" / "trials" / metrics["soup_members"][0] / "serving" / "model.json").is_file()


def test_the_command_line_can_choose_the_soup_as_served(runs, tiny_splits, tmp_path, monkeypatch, capsys):
    import training.soup as soup_module

    monkeypatch.setattr(soup_module, "load_splits", lambda *args, **kwargs: tiny_splits)
    asked = _gate_refusing(monkeypatch, lambda names: False)

    assert main(["--runs", str(runs["a"]), str(runs["b"]), "--real-tweets-dir", "none", "--served", "fp32",
                 "--output-dir", str(tmp_path / "served")]) == 0
    assert set(json.loads(capsys.readouterr().out)["members"]) <= {"a", "b"} and {"a", "b"} <= set(asked)
