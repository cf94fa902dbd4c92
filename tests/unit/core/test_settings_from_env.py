"""Settings.from_env: defaults, parsing, normalization and failing fast with the variable's name."""

from __future__ import annotations

import dataclasses

import pytest

from tweetmood.settings import GiB, MiB, Settings, SettingsError

pytestmark = pytest.mark.unit


def test_defaults_match_the_documented_contract():
    s = Settings.from_env({})
    assert (s.input_prefix, s.output_prefix, s.model_dir, s.model_uri) == ("incoming/", "scored/", "/opt/model", None)
    assert (s.batch_size, s.output_format, s.text_column) == (64, "jsonl", None)
    assert (s.max_object_bytes, s.max_decompressed_bytes, s.max_compression_ratio) == (GiB, 4 * GiB, 100)
    assert (s.max_text_chars, s.max_line_bytes, s.ort_threads) == (2000, MiB, None)
    assert (s.sweep_safety_ms, s.bucket, s.max_attempts) == (20_000, None, 3)


def test_every_variable_is_read():
    s = Settings.from_env({
        "INPUT_PREFIX": "uploads", "OUTPUT_PREFIX": "/results/tweets", "MODEL_DIR": "/m", "MODEL_URI": "s3://b/models/v1/",
        "BATCH_SIZE": "128", "OUTPUT_FORMAT": "CSV", "TEXT_COLUMN": "body", "MAX_OBJECT_BYTES": "1_000",
        "MAX_DECOMPRESSED_BYTES": "2000", "MAX_COMPRESSION_RATIO": "50", "MAX_TEXT_CHARS": "280",
        "MAX_LINE_BYTES": "4096", "ORT_THREADS": "2", "SWEEP_SAFETY_MS": "0", "BUCKET_NAME": "bkt", "MAX_ATTEMPTS": "5",
    })
    assert (s.input_prefix, s.output_prefix) == ("uploads/", "results/tweets/")
    assert (s.model_dir, s.model_uri, s.batch_size, s.output_format, s.text_column) == ("/m", "s3://b/models/v1/", 128, "csv", "body")
    assert (s.max_object_bytes, s.max_decompressed_bytes, s.max_compression_ratio) == (1000, 2000, 50)
    assert (s.max_text_chars, s.max_line_bytes, s.ort_threads, s.sweep_safety_ms) == (280, 4096, 2, 0)
    assert (s.bucket, s.max_attempts) == ("bkt", 5)


def test_an_empty_input_prefix_means_the_whole_bucket():
    assert Settings.from_env({"INPUT_PREFIX": ""}).input_prefix == ""


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"BATCH_SIZE": "lots"}, "BATCH_SIZE"),
        ({"BATCH_SIZE": "0"}, "BATCH_SIZE"),
        ({"MAX_ATTEMPTS": "-1"}, "MAX_ATTEMPTS"),
        ({"OUTPUT_FORMAT": "parquet"}, "OUTPUT_FORMAT"),
        ({"OUTPUT_PREFIX": ""}, "OUTPUT_PREFIX"),
        ({"OUTPUT_PREFIX": "data", "INPUT_PREFIX": "data/in"}, "INPUT_PREFIX"),
        ({"INPUT_PREFIX": "in/../x"}, "INPUT_PREFIX"),
        ({"MODEL_URI": "https://example.com/model"}, "MODEL_URI"),
        ({"ORT_THREADS": "1.5"}, "ORT_THREADS"),
    ],
)
def test_a_bad_variable_fails_fast_naming_it(env, variable):
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(env)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().batch_size = 1
