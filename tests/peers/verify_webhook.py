"""Verifies one recorded delivery with the real `standardwebhooks` library,
exactly as a receiver would: exit 0 verified, 1 rejected (the message on
stdout). The delivery is a JSON object on stdin with the keys
events_receiver.py records; the test tampers with it first.

  python verify_webhook.py --secret whsec_... < delivery.json
"""

import argparse
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secret", required=True)
    args = ap.parse_args()
    d = json.load(sys.stdin)
    headers = {
        "webhook-id": d["webhook_id"],
        "webhook-timestamp": d["webhook_timestamp"],
        "webhook-signature": d["webhook_signature"],
    }
    try:
        Webhook(args.secret).verify(d["body"].encode(), headers)
    except WebhookVerificationError as e:
        print("rejected:", e)
        return 1
    print("verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
