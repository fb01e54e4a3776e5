"""Baseline for bench_json: Python's json module (C-accelerated, as Fustor v1 runs it, before
pydantic validation) parsing the same 1000-row v1 batch and extracting the same row fields.
Usage: python3 json_batch_python.py BATCH.json"""
import json
import sys
import time

FIELDS = ("path", "file_name", "size", "modified_time", "created_time", "is_directory",
          "parent_mtime", "audit_skipped", "is_atomic_write")


def parse(text):
    n = 0
    for ev in json.loads(text)["events"]:
        for row in ev["rows"]:
            for k in FIELDS:
                row.get(k)
            n += 1
    return n


def main():
    text = open(sys.argv[1], "rb").read()
    rows, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        rows += parse(text)
    rate = rows / (time.perf_counter() - t0)
    print(json.dumps({"bench": "json_batch_python", "parse_rows_per_s": round(rate)}))
    print(f"json_batch_python: Python {sys.version.split()[0]} json: parse {rate / 1e6:.2f}M "
          "rows/s", file=sys.stderr)


if __name__ == "__main__":
    main()
