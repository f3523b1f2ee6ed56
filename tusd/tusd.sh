#!/bin/sh
# The tusd command line assetgate expects, tested with tusd v2.9.1 (the
# end-to-end tests run exactly these flags: tests/e2e_stack.rs). Run by
# tusd.service, or by hand: `set -a; . ./tusd.env; set +a; ./tusd.sh`.
#
# -behind-proxy                 nginx terminates TLS and proxies /files/ (see nginx/)
# -hooks-http                   every hook goes to assetgate's /tusd
# -hooks-enabled-events         pre-create: token + policy check (blocking);
#                               pre-finish: optional content check ([upload] check_content);
#                               post-finish: assetgate moves the file into the asset tree
# -hooks-http-retry/backoff     transport errors and 5xx are retried; assetgate's
#                               answers are idempotent, duplicates are harmless
# -disable-download             finished uploads are served by nginx from the
#                               asset tree, with secure links; tusd's GET /files/<id>
#                               would serve them to anyone holding the upload URL
# (no -disable-concatenation)   parallel uploads stay enabled: every partial upload
#                               needs its own valid token, and assetgate checks the
#                               parts a final upload names at pre-create
exec tusd \
  -host 127.0.0.1 -port 1080 -base-path /files/ -behind-proxy \
  -upload-dir "${TUSD_UPLOAD_DIR:?set TUSD_UPLOAD_DIR}" \
  -max-size "${TUSD_MAX_SIZE:-0}" \
  -hooks-http "${ASSETGATE_HOOK_URL:-http://127.0.0.1:9750/tusd}" \
  -hooks-enabled-events pre-create,pre-finish,post-finish \
  -hooks-http-retry 3 -hooks-http-backoff 1s \
  -disable-download \
  -show-greeting=false
