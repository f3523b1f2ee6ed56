#!/bin/sh
# The tusd command line for S3-compatible object storage (tusd v2.9.1
# pkg/s3store): the flags of tusd.sh with -upload-dir replaced by the bucket.
# Run by hand: `set -a; . ./tusd-s3.env; set +a; ./tusd-s3.sh`, or from a unit
# like tusd.service with EnvironmentFile=/etc/tusd/tusd-s3.env (drop its
# upload-directory lines: tusd needs no local disk here).
#
# With assetgate's [storage] backend = "s3" (deploy/assetgate-s3.toml,
# docs/scaling-out.md): it publishes tusd's finished uploads from the bucket,
# signs downloads from it, verifies [tusd] upload_ids = "signed" (s3store's IDs
# are <objectId>+<multipartId>, the objectId being pre-create's) and answers
# /session ([upload] session_binding) from the bucket's <prefix><objectId>.info.
# deploy/compose.s3.yaml and deploy/kubernetes/assetgate-s3.yaml run both.
#
# -s3-bucket          the bucket assetgate publishes into as well
#                     ([storage.s3] bucket)
# -s3-endpoint        the engine's URL; forces path-style requests. For AWS use
#                     https://s3.<region>.amazonaws.com
# -s3-object-prefix   covers the upload data, `.info` and `.part` objects; must
#                     equal assetgate's [storage.s3] upload_prefix, and must not
#                     overlap public/ or private/ (the published assets)
# AWS_REGION, AWS_REQUEST_CHECKSUM_CALCULATION, AWS_RESPONSE_CHECKSUM_VALIDATION,
# and the credentials: from the environment (tusd-s3.env), see there.
#
# tusd on S3 keeps its upload locks in memory: several tusd instances need
# sticky routing by upload ID (nginx/assetgate-tusd-fleet.conf.example).
# Every other flag is tusd.sh's, for the same reasons (see there).
exec tusd \
  -host 127.0.0.1 -port 1080 -base-path /files/ -behind-proxy \
  -s3-bucket "${TUSD_S3_BUCKET:?set TUSD_S3_BUCKET}" \
  -s3-endpoint "${TUSD_S3_ENDPOINT:?set TUSD_S3_ENDPOINT}" \
  -s3-object-prefix "${TUSD_S3_OBJECT_PREFIX:?set TUSD_S3_OBJECT_PREFIX}" \
  -max-size "${TUSD_MAX_SIZE:-0}" \
  -hooks-http "${ASSETGATE_HOOK_URL:-http://127.0.0.1:9750/tusd}" \
  -hooks-enabled-events pre-create,pre-finish,post-finish \
  -hooks-http-retry 3 -hooks-http-backoff 1s \
  -disable-download \
  -show-greeting=false
