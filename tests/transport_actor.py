"""A real actor process for the fault tests: sends transitions with ids start, start+1, ...

usage: transport_actor.py ADDRESS ACTOR_ID START COUNT RATE_HZ
Sends COUNT transitions (forever if COUNT < 0) at about RATE_HZ, then flushes, closes and exits 0
if everything was acknowledged. Prints "ready" once connected to the learner.
"""

from __future__ import annotations

import sys
import time

from transport_helpers import SCHEMA, TOKEN, transition

from serl.distributed import ActorClient


def main() -> int:
    address, actor_id, start, count, rate = sys.argv[1:6]
    start, count, period = int(start), int(count), 1.0 / float(rate)
    backoff = (0.02, 0.2)
    with ActorClient(address, TOKEN, actor_id, SCHEMA, max_delay=0.01, backoff=backoff) as client:
        i = start
        while count < 0 or i < start + count:
            client.send(transition(i))
            if i == start:
                client.flush(timeout=10)
                print("ready", flush=True)
            i += 1
            time.sleep(period)
        ok = client.flush(timeout=30)
    print("done", ok, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
