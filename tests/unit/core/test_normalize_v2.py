"""tweet-v2 normalization: emoji and emoticons become words, HTML entities are unescaped; v1 models keep v1."""

from __future__ import annotations

import json
import shutil

import pytest

from tweetmood.classifier import Classifier, ModelError
from tweetmood.normalize import NORMALIZATION_VERSION, normalize_tweet, normalize_v1, normalize_v2, normalizer_for

pytestmark = pytest.mark.unit


def test_new_models_are_trained_with_tweet_v2():
    assert NORMALIZATION_VERSION == "tweet-v2"
    assert normalize_tweet("I ❤ it") == normalize_v2("I ❤ it")


def test_an_emoji_glued_to_a_word_becomes_its_name_without_eating_the_word():
    assert normalize_v2("happy😀sad") == "happy grinning face sad"


def test_repeated_emoji_each_become_their_name():
    assert normalize_v2("😭😭") == "loudly crying face loudly crying face"


def test_skin_tones_are_dropped_so_every_tone_reads_the_same():
    assert normalize_v2("👍🏽 great") == normalize_v2("👍 great") == "thumbs up great"


def test_a_zwj_sequence_is_one_emoji_not_its_parts():
    assert normalize_v2("👨‍👩‍👧 day") == "family man woman girl day"


def test_variation_selectors_and_flags_are_understood():
    assert normalize_v2("❤️❤") == "red heart red heart"
    assert normalize_v2("🇺🇸") == "united states"


def test_emoticons_become_the_words_of_their_emoji():
    assert normalize_v2("love it <3 :) :( xD") == (
        "love it red heart slightly smiling face frowning face grinning squinting face")


def test_emoticon_lookalikes_inside_words_are_left_alone():
    assert normalize_v2("ratio 3:/ on my xDrive") == "ratio 3 on my xdrive"


def test_html_entities_are_unescaped_before_punctuation_goes():
    assert normalize_v2("salt &amp; pepper &lt;3") == "salt pepper red heart"
    assert "amp" not in normalize_v2("rock &amp; roll")


def test_curly_apostrophes_still_join_the_word_as_in_the_training_data():
    assert normalize_v2("don’t stop") == "dont stop"


def test_v2_keeps_v1s_handling_of_links_mentions_hashtags_and_elongations():
    text = "@bob sooooo #HappyDay https://t.co/x!!!"
    assert normalize_v2(text) == normalize_v1(text) == "sooo happyday"


def test_unknown_normalization_names_the_supported_ones():
    with pytest.raises(ValueError, match="tweet-v1"):
        normalizer_for("tweet-v9")
    assert normalizer_for("none") is None


def _copy_with(tmp_path, model_dir, **fields):
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    meta = json.loads((target / "model.json").read_text())
    for key, value in fields.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (target / "model.json").write_text(json.dumps(meta))
    return target


def test_a_v1_model_is_still_served_with_v1_normalization(tmp_path, tiny_model_dir):
    classifier = Classifier.from_dir(_copy_with(tmp_path, tiny_model_dir, normalization="tweet-v1"), threads=1)
    assert classifier.prepare(["so happy 😀 &amp;"]) == [normalize_v1("so happy 😀 &amp;")]


def test_a_model_without_the_field_predates_it_and_gets_v1(tmp_path, tiny_model_dir):
    classifier = Classifier.from_dir(_copy_with(tmp_path, tiny_model_dir, normalization=None), threads=1)
    assert classifier.prepare(["yay 🎉"]) == ["yay 🎉"]


def test_a_v2_model_reads_emoji_as_words(tmp_path, tiny_model_dir):
    classifier = Classifier.from_dir(_copy_with(tmp_path, tiny_model_dir, normalization="tweet-v2"), threads=1)
    assert classifier.prepare(["yay 🎉"]) == ["yay party popper"]


def test_a_model_asking_for_an_unknown_normalization_is_refused_at_load(tmp_path, tiny_model_dir):
    with pytest.raises(ModelError, match="model.json.*tweet-v9"):
        Classifier.from_dir(_copy_with(tmp_path, tiny_model_dir, normalization="tweet-v9"), threads=1)
