"""Every S3 call the core makes, in one place: get, ranged get, put, conditional put, multipart, copy, list, delete.

`S3Storage` wraps a boto3 S3 client passed in by the caller. `LocalStorage` offers the same calls over local
files (the bucket is a directory), so planning and merging have one implementation for S3 and for a laptop.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, NamedTuple

from botocore.exceptions import ClientError

log = logging.getLogger("tweetmood")

# S3 multipart parts (at least 5 MiB except the last): bounded memory, at most ~160 GB of output.
PART_SIZE = 16 << 20
# S3's smallest part but the last.
MIN_PART_SIZE = 5 << 20
# S3's largest part and largest single copy.
MAX_PART_SIZE = 5 << 30
MAX_PARTS = 10_000
_CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def temp_beside(path: Path) -> tuple[int, str]:
    """A temporary file in `path`'s folder, to be renamed over `path`: mkstemp's, but readable by others like any
    file written under the usual umask (mkstemp makes 0600, which a Lambda layer or a teammate could not read)."""
    fd, name = tempfile.mkstemp(prefix=".tweetmood-", dir=path.parent)
    os.fchmod(fd, 0o644)
    return fd, name


class ObjectGone(Exception):
    """The object named by an event no longer exists (deleted or renamed before it was scored)."""


class ObjectInfo(NamedTuple):
    """What a listing or a GET says about one object."""

    key: str
    size: int | None
    etag: str | None


def plain_etag(value: str | None) -> str | None:
    """An ETag without the quotes S3 puts around it."""
    return value.strip('"') if value else None


def is_conflict(exc: Exception) -> bool:
    """True when a conditional write lost (412 PreconditionFailed, 409 ConditionalRequestConflict)."""
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code in _CONFLICTS or status in ("412", "409")


class S3Storage:
    """The core's S3 access over a boto3 client (created once per container by the caller)."""

    def __init__(self, s3_client: Any):
        self.client = s3_client

    # --- reading -----------------------------------------------------------------------

    def get(self, bucket: str, key: str) -> tuple[BinaryIO, ObjectInfo]:
        """A streaming body of the whole object and its ETag/size; raises `ObjectGone` if it is not there."""
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise ObjectGone(f"s3://{bucket}/{key} no longer exists (deleted or replaced before it was scored)") from None
        return response["Body"], ObjectInfo(key, response.get("ContentLength"), plain_etag(response.get("ETag")))

    def get_range(self, bucket: str, key: str, start: int, end: int, etag: str | None = None) -> BinaryIO:
        """A streaming body of bytes `start` (inclusive) to `end` (exclusive); with `etag`, only of that version."""
        if end <= start:
            return io.BytesIO(b"")
        extra = {"IfMatch": f'"{etag}"'} if etag else {}
        try:
            response = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **extra)
        except self.client.exceptions.NoSuchKey:
            raise ObjectGone(f"s3://{bucket}/{key} no longer exists") from None
        return response["Body"]

    def read_bytes(self, bucket: str, key: str) -> bytes | None:
        """The whole (small) object, or None when it is absent (checked by listing, see `exists`)."""
        if not self.exists(bucket, key):
            return None
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        except self.client.exceptions.NoSuchKey:
            return None
        try:
            return body.read()
        finally:
            body.close()

    def exists(self, bucket: str, key: str) -> bool:
        """Whether `key` exists, asked by listing: without an unconditioned s3:ListBucket (the functions' listing is
        limited to their prefixes) S3 answers a GetObject of a missing key with 403 AccessDenied, not 404."""
        listing = self.client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        # Keys sort by bytes, so the key itself comes before any longer key it is a prefix of.
        return [o["Key"] for o in listing.get("Contents", [])] == [key]

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order, page by page."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield ObjectInfo(obj["Key"], obj.get("Size"), plain_etag(obj.get("ETag")))

    # --- writing -----------------------------------------------------------------------

    def put(
        self, bucket: str, key: str, body: bytes | BinaryIO, content_type: str = "application/octet-stream", *,
        if_none_match: bool = False, if_match: str | None = None,
    ) -> str | None:
        """Write an object; its new ETag, or None when `if_none_match` / `if_match` did not hold."""
        condition: dict = {}
        if if_none_match:
            condition["IfNoneMatch"] = "*"
        if if_match is not None:
            condition["IfMatch"] = if_match
        try:
            response = self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, **condition)
        except ClientError as exc:
            if condition and is_conflict(exc):
                return None
            raise
        return response["ETag"]

    def upload_file(self, bucket: str, key: str, path: str | Path, content_type: str) -> None:
        """Upload a local file (multipart when large) to `key`."""
        self.client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type})

    def sink(self, bucket: str, key: str, content_type: str, part_size: int | None = None, *,
             upload_id: str | None = None, parts: Iterable[dict] = ()) -> "MultipartSink":
        """A write-only stream into `key` that becomes visible only on `commit()`."""
        return MultipartSink(self.client, bucket, key, content_type, part_size, upload_id=upload_id, parts=parts)

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Drop a multipart upload left unfinished (the bucket's lifecycle rule cleans up what this misses)."""
        try:
            self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:
            log.warning("could not abort the stale upload %s of %s", upload_id, key, exc_info=True)

    def concatenate(self, bucket: str, sources: list[str], key: str, content_type: str,
                    sizes: list[int] | None = None) -> str:
        """Write `key` as the concatenation of `sources` in order, without passing their bytes through this process
        when S3 allows it (multipart UploadPartCopy: every part but the last >= 5 MiB); streamed otherwise.
        Returns "copy" or "stream", the way it was built."""
        if sizes is None:
            sizes = [self._size(bucket, s) for s in sources]
        if len(sources) > 1 and len(sources) <= MAX_PARTS and all(
            MIN_PART_SIZE <= n <= MAX_PART_SIZE for n in sizes[:-1]
        ) and sizes[-1] <= MAX_PART_SIZE:
            self._copy_parts(bucket, sources, key, content_type)
            return "copy"
        sink = self.sink(bucket, key, content_type)
        try:
            for source in sources:
                body = self.client.get_object(Bucket=bucket, Key=source)["Body"]
                try:
                    while data := body.read(1 << 20):
                        sink.write(data)
                        sink.flush_part(PART_SIZE)
                finally:
                    body.close()
            sink.commit()
        except BaseException:
            sink.abort()
            raise
        return "stream"

    def _size(self, bucket: str, key: str) -> int:
        return self.client.head_object(Bucket=bucket, Key=key)["ContentLength"]

    def _copy_parts(self, bucket: str, sources: list[str], key: str, content_type: str) -> None:
        upload_id = self.client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)["UploadId"]
        try:
            parts = []
            for number, source in enumerate(sources, 1):
                result = self.client.upload_part_copy(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                    CopySource={"Bucket": bucket, "Key": source},
                )
                parts.append({"ETag": result["CopyPartResult"]["ETag"], "PartNumber": number})
            self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self.abort_upload(bucket, key, upload_id)
            raise

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        """Delete `keys` (absent ones are fine), a thousand per request."""
        batch: list[dict] = []
        for key in keys:
            batch.append({"Key": key})
            if len(batch) == 1000:
                self._delete_batch(bucket, batch)
                batch = []
        if batch:
            self._delete_batch(bucket, batch)

    def _delete_batch(self, bucket: str, batch: list[dict]) -> None:
        response = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if response.get("Errors"):
            first = response["Errors"][0]
            raise RuntimeError(f"could not delete s3://{bucket}/{first.get('Key')}: {first.get('Message')}")

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        """Delete every object under `prefix`."""
        self.delete(bucket, (o.key for o in self.list(bucket, prefix)))


class MultipartSink(io.RawIOBase):
    """A write-only stream into one S3 object that becomes visible only on `commit()`.

    Output goes up in parts of at least `part_size`, cut only where the caller says (`end_row()`),
    so neither memory nor /tmp (512 MB by default on Lambda) limits the output size; `abort()`
    discards the parts. An upload left by an earlier invocation goes on from `upload_id` and `parts`.
    A bucket lifecycle rule should abort incomplete uploads left by a killed invocation.
    """

    def __init__(
        self, s3: Any, bucket: str, key: str, content_type: str, part_size: int | None = None, *,
        upload_id: str | None = None, parts: Iterable[dict] = (),
    ):
        super().__init__()
        self._s3, self._bucket, self._key, self._type = s3, bucket, key, content_type
        self._part_size = part_size or PART_SIZE
        self._buffer = bytearray()
        self._parts: list[dict] = [dict(p) for p in parts]
        self._upload_id = upload_id
        self._done = False

    @property
    def upload_id(self) -> str | None:
        return self._upload_id

    @property
    def parts(self) -> list[dict]:
        return self._parts

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buffer += data
        return len(data)

    def end_row(self) -> bool:
        """A row ends here: upload the buffer as a part if it is big enough; True if it did."""
        return self.flush_part(self._part_size)

    def flush_part(self, min_size: int) -> bool:
        """Upload the buffer as one part if it holds at least `min_size` bytes; True if it did."""
        if not self._buffer or len(self._buffer) < min_size:
            return False
        self._upload_part(bytes(self._buffer))
        self._buffer.clear()
        return True

    def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._type
            )["UploadId"]
        number = len(self._parts) + 1
        etag = self._s3.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=data
        )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})

    def commit(self) -> None:
        """Make the object visible with everything written so far."""
        if self._upload_id is None:  # small output: one plain PUT
            self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), ContentType=self._type)
        else:
            if self._buffer:
                self._upload_part(bytes(self._buffer))
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        self._buffer.clear()
        self._done = True

    def abort(self) -> None:
        """Drop an uncommitted upload; nothing becomes visible."""
        if not self._done and self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        self._buffer.clear()
        self._done = True


class LocalStorage:
    """The same calls as `S3Storage` over local files: `bucket` is a directory (\"\" for paths as given)."""

    def _path(self, bucket: str, key: str) -> Path:
        return Path(bucket) / key if bucket else Path(key)

    def get(self, bucket: str, key: str) -> tuple[BinaryIO, ObjectInfo]:
        path = self._path(bucket, key)
        try:
            stream = open(path, "rb")
        except FileNotFoundError:
            raise ObjectGone(f"{path} no longer exists") from None
        return stream, ObjectInfo(key, os.fstat(stream.fileno()).st_size, None)

    def get_range(self, bucket: str, key: str, start: int, end: int, etag: str | None = None) -> BinaryIO:
        with open(self._path(bucket, key), "rb") as f:
            f.seek(start)
            return io.BytesIO(f.read(max(0, end - start)))

    def read_bytes(self, bucket: str, key: str) -> bytes | None:
        path = self._path(bucket, key)
        return path.read_bytes() if path.is_file() else None

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        root = self._path(bucket, prefix)
        base = root if root.is_dir() else root.parent
        found = sorted(str(p) for p in base.rglob("*") if p.is_file() and str(p).startswith(str(root)))
        for path in found:
            key = os.path.relpath(path, bucket) if bucket else path
            yield ObjectInfo(key, os.path.getsize(path), None)

    def put(self, bucket: str, key: str, body: bytes | BinaryIO, content_type: str = "", *,
            if_none_match: bool = False, if_match: str | None = None) -> str | None:
        path = self._path(bucket, key)
        if if_none_match and path.exists():
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)
        with os.fdopen(fd, "wb") as out:
            if isinstance(body, (bytes, bytearray)):
                out.write(body)
            else:
                shutil.copyfileobj(body, out, 1 << 20)
        os.replace(tmp, path)
        return ""

    def sink(self, bucket: str, key: str, content_type: str = "", part_size: int | None = None) -> "LocalSink":
        return LocalSink(self._path(bucket, key))

    def concatenate(self, bucket: str, sources: list[str], key: str, content_type: str,
                    sizes: list[int] | None = None) -> str:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)
        try:
            with os.fdopen(fd, "wb") as out:
                for source in sources:
                    with open(self._path(bucket, source), "rb") as part:
                        shutil.copyfileobj(part, out, 1 << 20)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return "stream"

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        for key in keys:
            self._path(bucket, key).unlink(missing_ok=True)

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        root = self._path(bucket, prefix)
        if root.is_dir():
            shutil.rmtree(root)
        else:
            for info in list(self.list(bucket, prefix)):
                self._path(bucket, info.key).unlink(missing_ok=True)


class LocalSink(io.RawIOBase):
    """`MultipartSink`'s behaviour for a local file: written to a temporary file, renamed into place on `commit()`."""

    def __init__(self, path: Path):
        super().__init__()
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = temp_beside(path)
        self._file = os.fdopen(fd, "wb")

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return self._file.write(data)

    def end_row(self) -> bool:
        return False

    def flush_part(self, min_size: int) -> bool:
        return False

    def commit(self) -> None:
        self._file.close()
        os.replace(self._tmp, self._path)

    def abort(self) -> None:
        self._file.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)
