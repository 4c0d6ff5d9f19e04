"""Read picluster reports in Python: the ledger's entries, then live reports.

Run:  python3 reader.py --redis redis://localhost:6379 --count 5
      python3 reader.py --sum 30      # sum n over every report on the channel for 30 s
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
    ap.add_argument("--sum", type=float, default=0, help="instead, sum n of every report for this many seconds")
    args = ap.parse_args()
    r = redis.Redis.from_url(args.redis)
    p = r.pubsub()
    p.subscribe(args.channel)
    while True:  # wait for Redis to confirm: from here on nothing is missed
        m = p.get_message(timeout=10)
        if m is not None and m["type"] == "subscribe":
            break
    print(json.dumps({"subscribed": args.channel}), flush=True)
    if args.sum:
        total, reports, deadline = 0, 0, time.monotonic() + args.sum
        while time.monotonic() < deadline:
            m = p.get_message(timeout=0.2)
            if m is not None and m["type"] == "message":
                total += json.loads(m["data"])["n"]
                reports += 1
        print(json.dumps({"sum_n": total, "reports": reports}), flush=True)
        return
    # Every batch of a Go worker is an entry of the ledger: one Redis stream
    # per worker, {channel}:ledger:<worker id>.
    n = hits = 0
    prefix = "{%s}:ledger:" % args.channel
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    for key in r.scan_iter(match=pattern, _type="stream", count=1000):
        for _id, fields in r.xrange(key):
            e = json.loads(fields[b"e"])
            n, hits = n + e["n"], hits + e["hits"]
    if n:
        print(json.dumps({"ledger_n": n, "pi": 4 * hits / n}), flush=True)
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
