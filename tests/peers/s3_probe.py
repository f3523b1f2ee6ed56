"""A small S3 client for the S3 tests and the capability probes (issue 21):
boto3 (pinned in requirements.txt, already in the peers venv) against a real
engine on loopback. Prints one JSON object on stdout.

  python s3_probe.py --endpoint http://127.0.0.1:PORT --access-key A \
      --secret-key S [--region us-east-1] COMMAND ...

  mkbucket BUCKET                  create it (ok when it already exists)
  get BUCKET KEY                   {"ok", "size", "sha256", "content_type", "metadata"}
  list BUCKET PREFIX               {"ok", "objects": [{"key", "size"}], "uploads": [...]}
  capabilities BUCKET PREFIX       what the engine *does* with the conditional
                                   writes and RenameObject, each judged by its
                                   effect on scratch keys under PREFIX (a 200
                                   proves nothing): see docs/s3-groundwork.md

Checksums are only sent when an operation requires them (what assetgate and
tusd are told to do for non-AWS engines).
"""

import argparse
import hashlib
import json
import sys
import uuid

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError


def client(args):
    return boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=args.access_key,
        aws_secret_access_key=args.secret_key,
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


def error_of(e: ClientError) -> dict:
    meta = e.response.get("ResponseMetadata", {})
    return {
        "status": meta.get("HTTPStatusCode"),
        "code": e.response.get("Error", {}).get("Code"),
    }


def attempt(fn) -> dict:
    """Runs one request: {"status": 200} or {"status": 4xx, "code": ...}."""
    try:
        r = fn()
        return {"status": r["ResponseMetadata"]["HTTPStatusCode"]}
    except ClientError as e:
        return error_of(e)


def read(s3, bucket, key):
    """(bytes, content type, user metadata) or None when there is no object."""
    try:
        r = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if error_of(e)["status"] == 404:
            return None
        raise
    return r["Body"].read(), r.get("ContentType"), r.get("Metadata", {})


def cmd_mkbucket(s3, a):
    try:
        s3.create_bucket(Bucket=a.bucket)
    except ClientError as e:
        if error_of(e)["code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return {"ok": True}


def cmd_get(s3, a):
    got = read(s3, a.bucket, a.key)
    if got is None:
        return {"ok": False, "status": 404}
    body, ct, meta = got
    return {
        "ok": True,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "content_type": ct,
        "metadata": meta,
    }


def cmd_put(s3, a):
    """PutObject of a local file with a Content-Type (the download tests)."""
    with open(a.file, "rb") as f:
        body = f.read()
    s3.put_object(Bucket=a.bucket, Key=a.key, Body=body, ContentType=a.content_type)
    return {"ok": True, "size": len(body)}


def cmd_list(s3, a):
    objs = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=a.prefix):
        objs += [{"key": o["Key"], "size": o["Size"]} for o in page.get("Contents", [])]
    ups = s3.list_multipart_uploads(Bucket=a.bucket, Prefix=a.prefix).get("Uploads", [])
    return {
        "ok": True,
        "objects": objs,
        "uploads": [{"key": u["Key"], "upload_id": u["UploadId"]} for u in ups],
    }


def verdict(result: dict, intact: bool, expect_refusal: bool = True) -> str:
    """honoured: refused with 412 and nothing overwritten; ignored: accepted and
    overwritten; anything else is spelled out."""
    if result["status"] == 412 and intact:
        return "honoured"
    if result["status"] == 200 and not intact:
        return "ignored (overwrote)"
    return f"other: status {result['status']} {result.get('code')}, destination intact={intact}"


def cmd_capabilities(s3, a):
    b, p = a.bucket, a.prefix.rstrip("/") + "/" + uuid.uuid4().hex + "/"
    old, new = b"old bytes: must survive", b"new bytes that must not land"
    out = {"prefix": p}

    # PutObject If-None-Match: * onto an existing key.
    s3.put_object(Bucket=b, Key=p + "put", Body=old)
    r = attempt(lambda: s3.put_object(Bucket=b, Key=p + "put", Body=new, IfNoneMatch="*"))
    out["put_if_none_match"] = {**r, "verdict": verdict(r, read(s3, b, p + "put")[0] == old)}
    r = attempt(lambda: s3.put_object(Bucket=b, Key=p + "put-fresh", Body=new, IfNoneMatch="*"))
    out["put_if_none_match_fresh"] = {**r, "landed": (read(s3, b, p + "put-fresh") or [b""])[0] == new}

    # CompleteMultipartUpload If-None-Match: * onto an existing key.
    s3.put_object(Bucket=b, Key=p + "mpu", Body=old)
    up = s3.create_multipart_upload(Bucket=b, Key=p + "mpu")["UploadId"]
    etag = s3.upload_part(Bucket=b, Key=p + "mpu", UploadId=up, PartNumber=1, Body=new)["ETag"]
    r = attempt(
        lambda: s3.complete_multipart_upload(
            Bucket=b,
            Key=p + "mpu",
            UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
            IfNoneMatch="*",
        )
    )
    out["complete_mpu_if_none_match"] = {**r, "verdict": verdict(r, read(s3, b, p + "mpu")[0] == old)}
    attempt(lambda: s3.abort_multipart_upload(Bucket=b, Key=p + "mpu", UploadId=up))

    # CopyObject If-None-Match: * (destination) with a new Content-Type.
    s3.put_object(Bucket=b, Key=p + "src", Body=new, ContentType="application/octet-stream")
    s3.put_object(Bucket=b, Key=p + "copy", Body=old)
    copy = lambda key: s3.copy_object(  # noqa: E731
        Bucket=b,
        Key=key,
        CopySource={"Bucket": b, "Key": p + "src"},
        IfNoneMatch="*",
        MetadataDirective="REPLACE",
        ContentType="image/png",
        Metadata={"assetgate-upload": "probe"},
    )
    r = attempt(lambda: copy(p + "copy"))
    out["copy_if_none_match"] = {**r, "verdict": verdict(r, read(s3, b, p + "copy")[0] == old)}
    r = attempt(lambda: copy(p + "copy-fresh"))
    got = read(s3, b, p + "copy-fresh")
    out["copy_if_none_match_fresh"] = {
        **r,
        "landed": got is not None and got[0] == new,
        "content_type": got and got[1],
        "metadata": got and got[2],
    }

    # RenameObject onto a fresh key: the effect (source gone, destination the
    # source's bytes), then with DestinationIfNoneMatch onto an existing key.
    src = b"r" * 1000
    s3.put_object(Bucket=b, Key=p + "ren-src", Body=src)
    r = attempt(lambda: s3.rename_object(Bucket=b, Key=p + "ren-dst", RenameSource=f"{b}/{p}ren-src"))
    dst, left = read(s3, b, p + "ren-dst"), read(s3, b, p + "ren-src")
    out["rename"] = {
        **r,
        "source_gone": left is None,
        "destination_size": None if dst is None else len(dst[0]),
        "destination_equal": dst is not None and dst[0] == src,
    }
    # The same rename replayed (a crash before the answer was recorded).
    r = attempt(
        lambda: s3.rename_object(
            Bucket=b, Key=p + "ren-dst", RenameSource=f"{b}/{p}ren-src", DestinationIfNoneMatch="*"
        )
    )
    out["rename_replayed"] = r
    s3.put_object(Bucket=b, Key=p + "ren-src2", Body=new)
    s3.put_object(Bucket=b, Key=p + "ren-taken", Body=old)
    r = attempt(
        lambda: s3.rename_object(
            Bucket=b, Key=p + "ren-taken", RenameSource=f"{b}/{p}ren-src2", DestinationIfNoneMatch="*"
        )
    )
    out["rename_if_none_match"] = {
        **r,
        "verdict": verdict(r, read(s3, b, p + "ren-taken")[0] == old),
        "source_kept": read(s3, b, p + "ren-src2") is not None,
    }

    # The portable method: CreateMultipartUpload (Content-Type, metadata) +
    # UploadPartCopy + CompleteMultipartUpload If-None-Match: *.
    def portable(key):
        up = s3.create_multipart_upload(
            Bucket=b, Key=key, ContentType="image/png", Metadata={"assetgate-upload": "probe"}
        )["UploadId"]
        part = s3.upload_part_copy(
            Bucket=b, Key=key, UploadId=up, PartNumber=1, CopySource={"Bucket": b, "Key": p + "src"}
        )["CopyPartResult"]["ETag"]
        r = attempt(
            lambda: s3.complete_multipart_upload(
                Bucket=b,
                Key=key,
                UploadId=up,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part}]},
                IfNoneMatch="*",
            )
        )
        if r["status"] != 200:
            attempt(lambda: s3.abort_multipart_upload(Bucket=b, Key=key, UploadId=up))
        return r

    r = portable(p + "pcopy-fresh")
    got = read(s3, b, p + "pcopy-fresh")
    out["portable_copy_fresh"] = {
        **r,
        "landed": got is not None and got[0] == new,
        "content_type": got and got[1],
        "metadata": got and got[2],
    }
    s3.put_object(Bucket=b, Key=p + "pcopy", Body=old)
    r = portable(p + "pcopy")
    out["portable_copy_if_none_match"] = {**r, "verdict": verdict(r, read(s3, b, p + "pcopy")[0] == old)}

    # Multipart listing and abort (the reconciler's stale uploads).
    up = s3.create_multipart_upload(Bucket=b, Key=p + "stale")["UploadId"]
    listed = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=b, Prefix=p).get("Uploads", [])]
    r = attempt(lambda: s3.abort_multipart_upload(Bucket=b, Key=p + "stale", UploadId=up))
    after = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=b, Prefix=p).get("Uploads", [])]
    out["list_abort_multipart"] = {"listed": up in listed, "abort": r, "gone_after_abort": up not in after}

    # Ranged GET (check_content reads the leading bytes).
    r = s3.get_object(Bucket=b, Key=p + "src", Range="bytes=0-3")
    out["ranged_get"] = {
        "status": r["ResponseMetadata"]["HTTPStatusCode"],
        "body_ok": r["Body"].read() == new[:4],
        "content_range": r.get("ContentRange"),
    }
    # What the engine stores as checksums of an object put without any (as
    # tusd's parts are with checksums "when_required"): the event's sha256
    # cannot come from here unless it says ChecksumSHA256.
    h = s3.head_object(Bucket=b, Key=p + "src", ChecksumMode="ENABLED")
    out["stored_checksums"] = sorted(k for k in h if k.startswith("Checksum"))
    out["ok"] = True
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--region", default="us-east-1")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("mkbucket").add_argument("bucket")
    g = sub.add_parser("get")
    g.add_argument("bucket")
    g.add_argument("key")
    p = sub.add_parser("put")
    for arg in ("bucket", "key", "file", "content_type"):
        p.add_argument(arg)
    for name in ("list", "capabilities"):
        c = sub.add_parser(name)
        c.add_argument("bucket")
        c.add_argument("prefix")
    a = ap.parse_args()
    s3 = client(a)
    out = {
        "mkbucket": cmd_mkbucket,
        "get": cmd_get,
        "put": cmd_put,
        "list": cmd_list,
        "capabilities": cmd_capabilities,
    }[a.cmd](s3, a)
    out.setdefault("boto3", boto3.__version__)
    out.setdefault("botocore", botocore.__version__)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
