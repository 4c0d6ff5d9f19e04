"""A picluster worker in Python: the original seed format, {"n", "pi_approx"}.

Each batch is an anonymous report: the collector counts it once, as received.
Run:  python3 worker.py --redis redis://localhost:6379 --batches 10
"""
import argparse
import json
import random

import redis


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://localhost:6379")
    ap.add_argument("--channel", default="pi_collector")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    r = redis.Redis.from_url(args.redis)
    rng = random.Random(args.seed)
    for _ in range(args.batches):
        hits = sum(1 for _ in range(args.n) if rng.random() ** 2 + rng.random() ** 2 < 1.0)
        r.publish(args.channel, json.dumps({"n": args.n, "pi_approx": 4 * hits / args.n}))


if __name__ == "__main__":
    main()
