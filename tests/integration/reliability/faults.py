"""Fault injection for the reliability tests: an S3 client that fails on chosen calls, bodies that break
mid-stream, a clock and a Lambda deadline the test moves by hand."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from botocore.exceptions import ClientError, ReadTimeoutError

BUCKET = "tweetmood-test"


class Killed(BaseException):
    """The Lambda runtime froze or killed the invocation: no code of ours runs after it (not an Exception)."""


@dataclass
class Rule:
    operation: str
    when: Callable[[int, dict], bool]
    error: Callable[[str], BaseException]
    hits: int = 0


def client_error(code: str, status: int, message: str = "injected") -> Callable[[str], ClientError]:
    return lambda operation: ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


THROTTLED = client_error("SlowDown", 503, "Please reduce your request rate.")


class FaultyS3:
    """Wraps an S3 client: calls pass through, except those a rule picks (by operation, call number
    and arguments), which raise instead. `dead = True` makes every call fail, as after a kill."""

    def __init__(self, client: Any):
        self._client = client
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, dict]] = []
        self.rules: list[Rule] = []
        self.before: dict[str, Callable[[dict], None]] = {}
        self.body_wrapper: Callable[[dict, Any], Any] | None = None
        self.dead = False
        self.exceptions = client.exceptions
        self.meta = client.meta

    def fail(self, operation: str, when: Callable[[int, dict], bool] = lambda n, kw: True,
             error: Callable[[str], BaseException] = THROTTLED) -> Rule:
        rule = Rule(operation, when, error)
        self.rules.append(rule)
        return rule

    def get_paginator(self, name: str):
        return self._client.get_paginator(name)

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(**kwargs):
            if self.dead:
                raise ConnectionError(f"{name}: the invocation is gone")
            self.calls[name] += 1
            self.log.append((name, kwargs))
            if name in self.before:
                self.before[name](kwargs)
            for rule in self.rules:
                if rule.operation == name and rule.when(self.calls[name], kwargs):
                    rule.hits += 1
                    raise rule.error(name)
            result = attr(**kwargs)
            if name == "get_object" and self.body_wrapper is not None:
                result = {**result, "Body": self.body_wrapper(kwargs, result["Body"])}
            return result

        return call


class BreakingBody(io.RawIOBase):
    """A GetObject body that delivers `good_bytes` and then fails as a dropped connection does."""

    def __init__(self, body: Any, good_bytes: int):
        super().__init__()
        self._body, self._left = body, good_bytes

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise ReadTimeoutError(endpoint_url="https://s3.amazonaws.com")
        data = self._body.read(min(size if size and size > 0 else self._left, self._left))
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._body.close()
        super().close()


@dataclass
class Deadline:
    """`get_remaining_time_in_millis` of one invocation: starts at `start_ms`, loses `step_ms` per look;
    `kill_at` (a look number) raises `Killed` there, after making `s3` dead."""

    start_ms: int = 100_000
    step_ms: int = 10_000
    kill_at: int | None = None
    s3: FaultyS3 | None = None
    looks: int = 0

    def __call__(self) -> int:
        self.looks += 1
        if self.kill_at is not None and self.looks >= self.kill_at:
            if self.s3 is not None:
                self.s3.dead = True
            raise Killed(f"killed at look {self.looks}")
        return max(0, self.start_ms - self.step_ms * (self.looks - 1))


@dataclass
class Clock:
    """Wall-clock seconds the test moves by hand (for claim leases)."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def put(s3, key: str, body: bytes) -> tuple[str, int, str]:
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"]
    return key, len(body), etag


def get(s3, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def keys_under(s3, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def pending_uploads(s3) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def jsonl(data: bytes) -> list[dict]:
    return [orjson.loads(line) for line in data.splitlines()]


def tweets(n: int) -> bytes:
    moods = ["so happy today", "this is awful", "i miss you", "what a surprise", "so scared", "love it"]
    return "".join(f"{moods[i % 6]} #{i} {'very ' * (i % 5)}\n" for i in range(n)).encode()
