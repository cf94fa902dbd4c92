"""Where every object of a run lives in S3: results, manifests, claims and staging each under their own sub-prefix.

Below OUTPUT_PREFIX (default `scored/`):

    results/<path below INPUT_PREFIX>.<jsonl|csv>                 result rows only (a Glue/Athena table reads these)
    manifests/<path below INPUT_PREFIX>.<fmt>.manifest.json       one compact JSON line per input
    claims/<path below INPUT_PREFIX>.<fmt>.claim                  who scores which source version
    staging/<run id>/...                                          plans, parts, gunzipped copies of one run

Results scored by versions before this layout sit at the legacy keys `<OUTPUT_PREFIX><path>.<fmt>` with the
manifest beside them (`legacy_manifest_key_for`); an input whose manifest is there counts as already scored.
Every other module gets keys only from these functions.
"""

from __future__ import annotations

from tweetmood.readers import FORMAT_NAMES, input_format
from tweetmood.settings import Settings

RESULTS, MANIFESTS, CLAIMS, STAGING = "results/", "manifests/", "claims/", "staging/"
MANIFEST_SUFFIX = ".manifest.json"
CLAIM_SUFFIX = ".claim"
# S3 refuses longer keys; the longest key written for an input is its manifest's.
S3_MAX_KEY_BYTES = 1024


def relative_key(key: str, settings: Settings) -> str:
    """`key` below INPUT_PREFIX; raises ValueError for a key outside it."""
    if not key.startswith(settings.input_prefix):
        raise ValueError(f"{key} is not under INPUT_PREFIX={settings.input_prefix!r}")
    return key[len(settings.input_prefix):]


def _below(sub: str, key: str, settings: Settings, suffix: str = "") -> str:
    return f"{settings.output_prefix}{sub}{relative_key(key, settings)}.{settings.output_format}{suffix}"


def output_key_for(key: str, settings: Settings) -> str:
    """The result object of input `key`: `<OUTPUT_PREFIX>results/<path>.<fmt>`."""
    return _below(RESULTS, key, settings)


def manifest_key_for(key: str, settings: Settings) -> str:
    """The manifest of input `key`: `<OUTPUT_PREFIX>manifests/<path>.<fmt>.manifest.json`."""
    return _below(MANIFESTS, key, settings, MANIFEST_SUFFIX)


def claim_key_for(key: str, settings: Settings) -> str:
    """The claim object of input `key`: `<OUTPUT_PREFIX>claims/<path>.<fmt>.claim`."""
    return _below(CLAIMS, key, settings, CLAIM_SUFFIX)


def staging_prefix_for(run_id: str, settings: Settings) -> str:
    """Everything one scale-out run writes before its merge: `<OUTPUT_PREFIX>staging/<run id>/`."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ValueError(f"run id {run_id!r} must be a non-empty name without '/'")
    return f"{settings.output_prefix}{STAGING}{run_id}/"


def plan_key_in(staging: str) -> str:
    """The plan of a run (a JSON array of chunk items, read by the Distributed Map) in its staging prefix."""
    return staging + "plan.json"


def part_key_in(staging: str, index: int) -> str:
    """The result rows of chunk `index`: fixed by (run, chunk), so a retried chunk overwrites its own part."""
    return f"{staging}parts/{index:06d}"


def part_counts_key_in(staging: str, index: int) -> str:
    """What chunk `index` counted, written after its part: the part is complete once this exists."""
    return f"{staging}counts/{index:06d}.json"


def gunzipped_key_in(staging: str, key: str) -> str:
    """The decompressed copy of a `.gz` input that a run plans and range-reads instead of the original."""
    name = key.rsplit("/", 1)[-1]
    return f"{staging}source/{name[:-3] if name.lower().endswith('.gz') else name}"


def backlog_key_for(stamp: str, settings: Settings) -> str:
    """A list of pending input keys handed to the backlog state machine: `<OUTPUT_PREFIX>staging/backlog-<stamp>.json`."""
    return f"{settings.output_prefix}{STAGING}backlog-{stamp}.json"


def legacy_output_key_for(key: str, settings: Settings) -> str:
    """Where versions before the results/ layout wrote the result of `key`: `<OUTPUT_PREFIX><path>.<fmt>`."""
    return _below("", key, settings)


def legacy_manifest_key_for(key: str, settings: Settings) -> str:
    """Where versions before the results/ layout wrote the manifest: beside the legacy result."""
    return _below("", key, settings, MANIFEST_SUFFIX)


def longest_key_bytes(key: str, settings: Settings) -> int:
    """Bytes of the longest key written for input `key` (its manifest's), to check against S3's limit."""
    return len(manifest_key_for(key, settings).encode("utf-8"))


def is_scoreable_key(key: str, size: int | None, settings: Settings) -> tuple[bool, str]:
    """Whether an object should be scored, and if not, why (for the skip list)."""
    if not key or key.endswith("/"):
        return False, f"{key!r} is a folder marker, not a file"
    if key.startswith(settings.output_prefix):
        return False, f"{key} is under OUTPUT_PREFIX={settings.output_prefix!r}: results are never scored again"
    if not key.startswith(settings.input_prefix):
        return False, f"{key} is outside INPUT_PREFIX={settings.input_prefix!r}; upload it below that prefix"
    if ".." in key.split("/"):
        return False, f"{key} has a '..' path segment; rename it"
    if size == 0:
        return False, f"{key} is a zero-byte object: there is nothing to score"
    if input_format(key) is None:
        return False, f"{key} is not {FORMAT_NAMES} (optionally .gz); it was left alone"
    longest = longest_key_bytes(key, settings)
    if longest > S3_MAX_KEY_BYTES:
        limit = len(key.encode("utf-8")) - (longest - S3_MAX_KEY_BYTES)
        return False, (
            f"{key[:60]}… is too long: its result's manifest key would be {longest} bytes, over S3's "
            f"{S3_MAX_KEY_BYTES}; rename it to at most {limit} bytes (UTF-8)"
        )
    return True, ""
