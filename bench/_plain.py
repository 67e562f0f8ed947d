"""The baseline of bench/send_10k.py: a plain loop of the same ``twilio`` client calls.

    python bench/_plain.py --url URL --account-sid AC... --auth-token T --recipients 10000

One ``twilio.rest.Client`` per thread (as the engine's TwilioBackend keeps), pointed at
the fake, ``max_workers`` threads sending one ``client.messages.create`` per recipient.
No Django, no database: what is left is the HTTP client's own cost. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BODY, FROM_NUMBER, first_name, phone  # noqa: E402
from twilio.http.http_client import TwilioHttpClient  # noqa: E402
from twilio.rest import Client  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--recipients", type=int, required=True)
    parser.add_argument("--max-workers", type=int, default=10)
    args = parser.parse_args()

    local = threading.local()

    def client() -> Client:
        found = getattr(local, "client", None)
        if found is None:
            # The same construction as messaging.sms.TwilioBackend._client.
            http = TwilioHttpClient(timeout=15.0, pool_connections=True)
            found = Client(args.account_sid, args.auth_token, http_client=http)
            found.region = None
            found.edge = None
            found.api.base_url = args.url
            local.client = found
        return found

    def send(i: int) -> str:
        body = BODY.replace("{first_name}", first_name(i))
        message = client().messages.create(to=phone(i), from_=FROM_NUMBER, body=body)
        return message.sid or ""

    cpu0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.max_workers) as pool:
        sids = list(pool.map(send, range(args.recipients)))
    cpu1, t1 = time.process_time(), time.perf_counter()
    result = {
        "recipients": args.recipients,
        "sent": sum(1 for sid in sids if sid),
        "total_s": t1 - t0,
        "cpu_s": cpu1 - cpu0,
    }
    print(json.dumps(result))
    return 0 if result["sent"] == args.recipients else 1


if __name__ == "__main__":
    sys.exit(main())
