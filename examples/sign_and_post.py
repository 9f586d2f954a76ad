"""Sign an event the Standard Webhooks way and POST it to Thankly, as a CRM must.

    SECRET=whsec_... python3 examples/sign_and_post.py [EVENT.json] [URL]

Standard library only, so it can be copied into any integration. The README shows this
file, and a test runs it against the real webhook.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request

event_file = sys.argv[1] if len(sys.argv) > 1 else "examples/events/deal_closed.ru.json"
url = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8000/webhooks/generic"
secret = os.environ["SECRET"]  # whsec_<base64>, one of THANKLY_WEBHOOK_SECRETS

with open(event_file, "rb") as handle:
    body = handle.read()  # sign exactly the bytes you send
msg_id = f"evt_{time.time_ns()}"  # your event's own id; reuse it only to retry this event
timestamp = str(int(time.time()))
key = base64.b64decode(secret.removeprefix("whsec_"))  # the key: decoded, without the prefix
mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
request = urllib.request.Request(  # noqa: S310 (the URL is your own Thankly)
    url,
    data=body,
    method="POST",
    headers={
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    },
)
try:
    with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
        print(response.status, json.load(response))
except urllib.error.HTTPError as refused:
    print(refused.code, refused.read().decode(errors="replace"))
    sys.exit(1)
