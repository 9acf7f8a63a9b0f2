"""The few S3 operations Bedrock batch inference needs, answered the way boto3's ``s3`` client parses.

Path-style addressing only (``{endpoint}/{bucket}/{key}``; boto3 with an ``endpoint_url`` and
``addressing_style: path``). Served: CreateBucket, HeadBucket, PutObject, GetObject, HeadObject,
DeleteObject, ListObjectsV2 (XML, ``prefix``, ``continuation-token``, ``max-keys``). Errors are S3's
XML ``<Error><Code>`` bodies (NoSuchBucket, NoSuchKey), which botocore reads into ``ClientError``.
Objects live in memory; the Bedrock jobs of ``models.py`` read and write the same store.
"""

from __future__ import annotations

import hashlib
from email.utils import formatdate
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

LIST_PAGE = 1000  # S3's own max-keys


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Response:
        body = (
            "<?xml version='1.0' encoding='UTF-8'?>"
            f"<Error><Code>{self.code}</Code><Message>{escape(self.message)}</Message></Error>"
        )
        return Response(body, status_code=self.status, media_type="application/xml")


class ObjectStore:
    """Buckets of objects, in memory. Callers hold the emulator's lock."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, bytes]] = {}

    def reset(self) -> None:
        self.buckets.clear()

    def bucket(self, name: str) -> dict[str, bytes]:
        if name not in self.buckets:
            raise S3Error(404, "NoSuchBucket", f"The specified bucket does not exist: {name}")
        return self.buckets[name]

    def get(self, bucket: str, key: str) -> bytes:
        objects = self.bucket(bucket)
        if key not in objects:
            raise S3Error(404, "NoSuchKey", f"The specified key does not exist: {key}")
        return objects[key]

    def put(self, bucket: str, key: str, content: bytes) -> None:
        self.bucket(bucket)[key] = content

    def keys(self, bucket: str, prefix: str) -> list[str]:
        return sorted(key for key in self.bucket(bucket) if key.startswith(prefix))


def _etag(content: bytes) -> str:
    return '"' + hashlib.md5(content, usedforsecurity=False).hexdigest() + '"'


async def handle(store: ObjectStore, lock: object, request: Request, path: str) -> Response:
    """One S3 request; ``path`` is ``/bucket[/key]`` below the emulator's AWS prefix."""
    bucket, _, key = path.lstrip("/").partition("/")
    method = request.method
    body = await request.body() if method == "PUT" else b""
    try:
        with lock:  # type: ignore[attr-defined]
            if not key:
                return _bucket_call(store, method, bucket, request)
            if method == "PUT":
                store.put(bucket, key, body)
                return Response(b"", headers={"ETag": _etag(body)})
            if method in ("GET", "HEAD"):
                content = store.get(bucket, key)
                headers = {"ETag": _etag(content), "Last-Modified": formatdate(usegmt=True)}
                if method == "HEAD":
                    headers["Content-Length"] = str(len(content))
                    return Response(b"", headers=headers)
                return Response(content, headers=headers, media_type="application/octet-stream")
            if method == "DELETE":
                store.bucket(bucket).pop(key, None)
                return Response(b"", status_code=204)
    except S3Error as error:
        return error.response()
    return S3Error(405, "MethodNotAllowed", f"{method} is not emulated on objects").response()


def _bucket_call(store: ObjectStore, method: str, bucket: str, request: Request) -> Response:
    if method == "PUT":
        if bucket in store.buckets:
            raise S3Error(409, "BucketAlreadyOwnedByYou", f"Your previous request to create {bucket} succeeded.")
        store.buckets[bucket] = {}
        return Response(b"", headers={"Location": f"/{bucket}"})
    if method == "HEAD":
        store.bucket(bucket)
        return Response(b"")
    if method == "GET" and request.query_params.get("list-type") == "2":
        return _list_v2(store, bucket, request)
    raise S3Error(405, "MethodNotAllowed", f"{method} on a bucket is not emulated (ListObjectsV2 only)")


def _list_v2(store: ObjectStore, bucket: str, request: Request) -> Response:
    query = request.query_params
    prefix = query.get("prefix", "")
    limit = min(int(query.get("max-keys") or LIST_PAGE), LIST_PAGE)
    keys = store.keys(bucket, prefix)
    start = query.get("continuation-token") or query.get("start-after") or ""
    keys = [key for key in keys if key > start] if start else keys
    page, more = keys[:limit], len(keys) > limit
    objects = store.bucket(bucket)
    contents = "".join(
        f"<Contents><Key>{escape(key)}</Key><Size>{len(objects[key])}</Size><ETag>{escape(_etag(objects[key]))}</ETag>"
        "<StorageClass>STANDARD</StorageClass></Contents>"
        for key in page
    )
    token = f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>" if more else ""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount>"
        f"<MaxKeys>{limit}</MaxKeys><IsTruncated>{'true' if more else 'false'}</IsTruncated>{token}{contents}"
        "</ListBucketResult>"
    )
    return Response(body, media_type="application/xml")
