#!/usr/bin/env python3
"""Prints criterion's results as Markdown tables, one row per policy.

Usage: python3 benches/compare/criterion_table.py [target/criterion]
Reads <group>/<id>/new/estimates.json (median point estimate, ns) for
the groups pick/, pick_reader/, lookup/, pick_failover/, build/ and
pick_contended/.
"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
results = {}
for dirpath, _, files in os.walk(root):
    if "estimates.json" not in files or not dirpath.endswith(os.sep + "new"):
        continue
    bench = os.path.dirname(os.path.relpath(dirpath, root))
    with open(os.path.join(dirpath, "estimates.json")) as f:
        ns = json.load(f)["median"]["point_estimate"]
    # criterion writes "pick/round_robin/n=10" as pick_round_robin/n=10 or
    # pick/round_robin/n=10 depending on the API; benchmark.json has the id.
    meta = os.path.join(os.path.dirname(dirpath), "new", "benchmark.json")
    with open(meta) as f:
        full = json.load(f)["full_id"]
    results[full] = ns


def fmt(ns):
    if ns is None:
        return "–"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def table(kind, sizes=("n=10", "n=100", "n=1000")):
    names = sorted({k.split("/")[1] for k in results if k.startswith(kind + "/")})
    if not names:
        return
    print(f"\n| {kind} | " + " | ".join(sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name in names:
        cells = [fmt(results.get(f"{kind}/{name}/{s}")) for s in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")


for kind in ("pick", "pick_reader", "lookup", "pick_failover", "build"):
    table(kind)
for prefix in ("pick_contended/", "pick_contended_reader/"):
    contended = sorted(k for k in results if k.startswith(prefix))
    if not contended:
        continue
    # The bench reports wall time per pick over both threads: its inverse is
    # the picks per second of the two threads together.
    print(f"\n| {prefix[:-1]} (2 threads, n=100) | ns per pick | picks/s (both threads) |")
    print("|---|---:|---:|")
    for k in contended:
        ns = results[k]
        print(f"| {k.split('/', 1)[1]} | {ns:.1f} | {1e3 / ns:.1f} M |")
