"""Read picluster reports in Python: every worker's latest totals, then live reports.

Run:  python3 reader.py --redis redis://localhost:6379 --count 5
"""
import argparse
import json
import time

import redis


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://localhost:6379")
    ap.add_argument("--channel", default="pi_collector")
    ap.add_argument("--count", type=int, default=5, help="live reports to print before exiting")
    args = ap.parse_args()
    r = redis.Redis.from_url(args.redis)
    p = r.pubsub()
    p.subscribe(args.channel)
    while True:  # wait for Redis to confirm: from here on nothing is missed
        m = p.get_message(timeout=10)
        if m is not None and m["type"] == "subscribe":
            break
    print(json.dumps({"subscribed": args.channel}), flush=True)
    n = hits = 0
    for worker, raw in r.hgetall("{%s}:totals" % args.channel).items():
        rep = json.loads(raw)
        n, hits = n + rep["total_n"], hits + rep["total_hits"]
    if n:
        print(json.dumps({"workers_total_n": n, "pi": 4 * hits / n}), flush=True)
    seen, deadline = 0, time.monotonic() + 60
    while seen < args.count and time.monotonic() < deadline:
        m = p.get_message(timeout=1)
        if m is None or m["type"] != "message":
            continue
        rep = json.loads(m["data"])
        print(json.dumps({"worker": rep.get("worker"), "seq": rep.get("seq"), "n": rep["n"],
                          "pi_approx": rep["pi_approx"]}), flush=True)
        seen += 1


if __name__ == "__main__":
    main()
