"""Fustor's benchmark suite: Fustor beside the physical limit and its real peers, in one run.

    python3 bench/run.py [--quick] [--bin-dir build/bin] [--out bench/results] [--tree ROOT]

`make bench` runs the full set on 1M files in 20k directories; `make bench-quick` (--quick) a
subset on 100k files in 2k directories that takes under two minutes once its tree exists.
The tree (tree.py) is generated once and kept beside its shape in /tmp. Results go to
OUT/<date>.json (<date>-quick.json for --quick) and an HTML report beside it (report.py).

Workloads, each figure with a ratio to its baseline from the same run:
1. indexing: until every file is known: the bare C walker, `find -printf`, plocate's
   `updatedb`, watchman (`watch` then its first full query), and Fustor (an agent's snapshot
   into a fresh Fusion, with inotify and, as root, fanotify); warm, then cold (drop_caches);
2. memory: Fusion's RSS per file, watchman's, the agent's peak;
3. query: tree of the 1000-entry directory, stats of a >= 100k-file subtree, search for a rare
   name, at concurrency 1, 8 and 32 (bench_load, a closed-loop C client), beside `find`,
   watchman queries over its socket (bench_load too), and plocate for the search;
4. realtime: files created at 1k and 10k per second, create -> visible p50/p99, and the
   highest rate sustained with nothing lost;
5. ingest: rows/s applied in-process from parsed batches (bench_apply), and over HTTP
   (fusion_http.py).
Peers that are not installed are reported as skipped, with the reason."""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import agent_realtime  # noqa: E402
import agent_snapshot  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
import tree  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CONCURRENCY = (1, 8, 32)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def item(name, value, command, fustor=False, **kw):
    """A result row; group() fills in its ratio to the group's baseline."""
    it = {"name": name, "value": None if value is None else round(value, 4), "ratio": None,
          "command": command, "fustor": fustor}
    it.update({k: v for k, v in kw.items() if v is not None})
    return it


def group(title, unit, baseline, items, better="lower"):
    base = next((i["value"] for i in items if i["name"] == baseline), None)
    for i in items:
        if i["value"] is not None and base:
            i["ratio"] = round(i["value"] / base, 4)
    return {"title": title, "unit": unit, "better": better, "baseline": baseline, "items": items}


def skipped(name, command, why, fustor=False):
    return {"name": name, "value": None, "ratio": None, "command": command, "skipped": why,
            "fustor": fustor}


# ---------------------------------------------------------------- machine

def machine(root):
    cpu = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 2**20
    # findmnt names ext4 as such (stat -f says "ext2/ext3" for all three)
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", root],
                        capture_output=True, text=True).stdout.strip() or None
    return {"cores": os.cpu_count(), "kernel": platform.release(), "cpu": cpu,
            "mem_gib": round(mem, 1), "fs": fs, "hostname": platform.node()}


def versions(bin_dir):
    git = subprocess.run(["git", "-C", HERE, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    return {"fustor": git or None, "find": peers.version(["find", "--version"]),
            "watchman": peers.version(["watchman", "--version"]),
            "plocate": peers.version(["plocate", "--version"]),
            "updatedb": peers.version(["updatedb.plocate", "--version"]),
            "gcc": peers.version(["gcc", "--version"]), "python": platform.python_version(),
            "kernel": platform.release()}


# ---------------------------------------------------------------- 1. indexing, 2. memory

class Indexing:
    """Runs the indexing workload; leaves a watched watchman and an indexed Fusion up for the
    memory and query workloads (stop() ends them)."""

    def __init__(self, args, shape):
        self.a, self.shape, self.root = args, shape, shape["root"]
        self.bin = args.bin_dir
        self.db = f"{self.root}.plocate.db"
        self.wm = None
        self.stack = None
        self.mem = {}

    def commands(self):
        return {"bare walk": f"{self.bin}/bare_walk ROOT",
                "find -printf": "find ROOT -printf '%s %T@ %p\\n' > /dev/null",
                "plocate updatedb": shlex.join(peers.updatedb_cmd("ROOT", "DB"))
                + " (DB removed first)",
                "watchman": "watchman watch ROOT; watchman query ROOT "
                            "'{\"expression\": [\"type\", \"f\"], \"fields\": [\"name\"]}'",
                "fustor (inotify)": "fustor-fusion start; fustor-agent start "
                                    "(source fs, watcher inotify, max_scan_workers = cores, "
                                    "batch_size 1000) until Fusion's stats count every file",
                "fustor (fanotify)": "as fustor (inotify), with watcher: fanotify"}

    def run(self):
        runs = 2 if self.a.quick else 3
        cmd = self.commands()
        peers.timed(peers.find_cmd(self.root))  # warm
        warm = {}
        log("indexing: bare walk, find, updatedb (warm)")
        warm["bare walk"] = min(peers.timed([f"{self.bin}/bare_walk", self.root])
                                for _ in range(runs))
        warm["find -printf"] = min(peers.timed(peers.find_cmd(self.root)) for _ in range(runs))
        if peers.have("updatedb.plocate"):
            warm["plocate updatedb"] = min(peers.updatedb(self.root, self.db)
                                           for _ in range(runs))
        if peers.have("watchman"):
            log("indexing: watchman (warm)")
            self.wm = peers.Watchman()
            warm["watchman"] = self.wm.crawl(self.root, self.shape["files"])
            self.mem["watchman"] = peers.rss(self.wm.pid())
        fan = []
        if os.geteuid() == 0:
            log("indexing: fustor with fanotify (warm)")
            fan = [agent_snapshot.index(self.bin, self.shape, "fanotify")[0]
                   for _ in range(runs)]
            warm["fustor (fanotify)"] = min(fan)
        log("indexing: fustor with inotify (warm)")
        best = None
        for _ in range(runs):
            dt, hwm, rss0, st = agent_snapshot.index(self.bin, self.shape, keep=True)
            if best is None or dt < best[0]:
                if self.stack:
                    self.stack.stop()
                best = (dt, hwm, rss0)
                self.stack = st
                self.mem["fusion"] = peers.rss(st.fusion_pid())
                self.mem["fusion_before"] = rss0
                self.mem["agent_hwm"] = hwm
            else:
                st.stop()
        warm["fustor (inotify)"] = best[0]
        groups = [self.group("warm cache", warm, cmd)]
        notes = []
        cold = self.cold(cmd)
        if cold:
            groups.append(self.group("cold cache (drop_caches before each run; one run each)",
                                     cold, cmd))
        else:
            notes.append("No cold-cache figures: /proc/sys/vm/drop_caches is not writable "
                         "here (needs root).")
        if os.geteuid() != 0:
            notes.append("fanotify needs CAP_SYS_ADMIN: not measured (not root).")
        notes.append(f"Warm figures are the best of {runs} runs (watchman: one run). Each "
                     "Fustor run starts a fresh Fusion; the time runs from `fustor-agent "
                     "start` to Fusion's stats counting every file, after the snapshot's end "
                     "marker.")
        notes.append("plocate's updatedb only stores names: it stats directories, not files, "
                     "so it knows no size or mtime. find, the bare walk, watchman and Fustor "
                     "stat every file.")
        return {"id": "indexing", "title": "Initial indexing",
                "description": f"Time until every one of the {self.shape['files']:,} files "
                               f"(in {self.shape['all_dirs']:,} directories) is known, on "
                               f"{self.a.machine['fs']}.",
                "groups": groups, "notes": notes}

    def group(self, title, secs, cmd):
        items = [item(n, secs.get(n), cmd[n], fustor=n.startswith("fustor"),
                      note="physical limit" if n == "bare walk" else None) for n in cmd
                 if n in secs]
        for n in cmd:
            if n not in secs and n != "fustor (fanotify)":
                items.append(skipped(n, cmd[n], "not installed"))
        return group(title, "s", "find -printf", items)

    def cold(self, cmd):
        if not peers.drop_caches():
            return None
        log("indexing: cold cache")
        out = {}
        peers.drop_caches()
        out["bare walk"] = peers.timed([f"{self.bin}/bare_walk", self.root])
        peers.drop_caches()
        out["find -printf"] = peers.timed(peers.find_cmd(self.root))
        if peers.have("updatedb.plocate"):
            db = f"{self.db}.cold"
            peers.drop_caches()
            out["plocate updatedb"] = peers.updatedb(self.root, db)
            os.unlink(db)
        if peers.have("watchman"):
            wm = peers.Watchman()
            try:
                peers.drop_caches()
                out["watchman"] = wm.crawl(self.root, self.shape["files"])
            finally:
                wm.stop()
        if os.geteuid() == 0:
            peers.drop_caches()
            out["fustor (fanotify)"] = agent_snapshot.index(self.bin, self.shape,
                                                            "fanotify")[0]
        peers.drop_caches()
        out["fustor (inotify)"] = agent_snapshot.index(self.bin, self.shape)[0]
        peers.timed(peers.find_cmd(self.root))  # warm again for what follows
        return out

    def memory(self):
        files = self.shape["files"]
        entries = files + self.shape["all_dirs"]
        m = self.mem
        items = [item("fustor-fusion (growth)", (m["fusion"] - m["fusion_before"]) / files,
                      "VmRSS of fustor-fusion after the snapshot minus before the agent "
                      "started, per file", fustor=True,
                      extra={"bytes_per_entry_incl_dirs":
                             round((m["fusion"] - m["fusion_before"]) / entries, 1)}),
                 item("fustor-fusion (whole process)", m["fusion"] / files,
                      "VmRSS of fustor-fusion after the snapshot, per file", fustor=True,
                      extra={"rss_mib": round(m["fusion"] / 2**20, 1)})]
        if "watchman" in m:
            items.append(item("watchman", m["watchman"] / files,
                              "VmRSS of the watchman daemon after its crawl, per file",
                              extra={"rss_mib": round(m["watchman"] / 2**20, 1)}))
        else:
            items.append(skipped("watchman", "", "not installed"))
        agent = item("fustor-agent peak", m["agent_hwm"] / 2**20,
                     "VmHWM of fustor-agent at the end of its snapshot (inotify: one watch "
                     "per directory)", fustor=True)
        return {"id": "memory", "title": "Memory",
                "description": f"Resident memory with {files:,} files indexed.",
                "groups": [group("per file indexed", "B/file", "watchman", items),
                           group("agent", "MiB", None, [agent])],
                "notes": ["The growth figure is the view's own cost (tree, name heap, indexes, "
                          "aggregates, lineage); the whole-process figure adds the HTTP "
                          "server, journal buffers and the allocator's slack."]}

    def stop(self):
        if self.stack:
            self.stack.stop()
        if self.wm:
            self.wm.stop()
        if os.path.exists(self.db):
            os.unlink(self.db)


# ---------------------------------------------------------------- 3. query

def bench_load(bin_dir, conc, secs, target, options=(), request=()):
    out = subprocess.run([f"{bin_dir}/bench_load", "-c", str(conc), "-d", str(secs)]
                         + list(options) + [target] + list(request), capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"bench_load {target} (exit {out.returncode}): {out.stdout} "
                           f"{out.stderr}")
    return json.loads(out.stdout)


def query(args, shape, ix):
    root, st, wm = shape["root"], ix.stack, ix.wm
    secs = 1 if args.quick else 3
    budget = 8 if args.quick else 60  # seconds a cell of find may take
    rel_wide, sub = shape["wide_dir"].lstrip("/"), shape["subtree"]
    api = f"http://127.0.0.1:{st.api}/api/v1/views/v"
    kinds = {
        "tree": {
            "title": f"tree of a {shape['wide_entries']}-entry directory",
            "fustor": f"{api}/tree?path={shape['wide_dir']}&max_depth=1",
            "find": ["find", f"{root}/{rel_wide}", "-maxdepth", "1", "-printf",
                     "%s %T@ %p\n"],
            "watchman": {"path": [{"path": rel_wide, "depth": 0}],
                         "fields": ["name", "size", "mtime_ms", "type"]},
            "check": shape["wide_entries"]},
        "stats": {
            "title": f"stats of a {shape['subtree_files']:,}-file subtree ({sub})",
            "fustor": f"{api}/stats?path={sub}",
            "find": ["find", root + (sub if sub != "/" else ""), "-printf", "%s\n"],
            "watchman": dict({"expression": ["type", "f"], "fields": ["size"]},
                             **({"path": [sub.lstrip("/")]} if sub != "/" else {})),
            "check": shape["subtree_files"]},
        "search": {
            "title": f"search for {shape['search_pattern']} ({shape['search_hits']} files)",
            "fustor": f"{api}/search?pattern={shape['search_pattern']}",
            "find": ["find", root, "-name", shape["search_pattern"], "-printf", "%p\n"],
            "watchman": {"expression": ["match", shape["search_pattern"], "basename"],
                         "fields": ["name"]},
            "plocate": ["plocate", "-d", ix.db, "-b", shape["search_pattern"]],
            "check": shape["search_hits"]}}
    groups, targets = [], {}
    log("query: HTTP round trip")
    health = {c: bench_load(args.bin_dir, c, secs, f"http://127.0.0.1:{st.api}/health")
              for c in CONCURRENCY}
    for kind, k in kinds.items():
        log(f"query: {kind}")
        if wm:  # the peer's answer must be the same set of files before it is timed
            got = wm.query(root, k["watchman"]).get("files", [])
            if len(got) != k["check"]:
                raise RuntimeError(f"watchman {kind}: {len(got)} files, not {k['check']}")
        single = peers.timed(k["find"])
        qps = []
        for conc in CONCURRENCY:
            items = []
            items.append(load_item("HTTP round trip (/health)", health[conc],
                                   f"bench_load -c {conc} GET /health", note="the floor"))
            f = bench_load(args.bin_dir, conc, secs, k["fustor"], ["-H", "X-API-Key: r"])
            items.append(load_item("fustor", f, f"bench_load -c {conc} GET {k['fustor']}",
                                   fustor=True))
            # each of conc threads runs find at least once: about single * conc / cores
            if conc == 1 or single * conc / os.cpu_count() <= budget:
                p = peers.proc_load(k["find"], conc, secs)
                items.append(load_item("find", p, " ".join(k["find"])))
            else:
                items.append(skipped("find", " ".join(k["find"]),
                                     f"one run takes {single:.2f} s: {conc} at once would take "
                                     f"{single * conc / os.cpu_count():.0f} s"))
            if wm:
                line = json.dumps(["query", root, k["watchman"]])
                w = bench_load(args.bin_dir, conc, secs, f"unix:{wm.sock}", request=[line])
                items.append(load_item("watchman", w, f"bench_load -c {conc} unix:SOCK '{line}'"))
            else:
                items.append(skipped("watchman", "", "not installed"))
            if "plocate" in k:
                if os.path.exists(ix.db):
                    p = peers.proc_load(k["plocate"], conc, secs)
                    items.append(load_item("plocate", p, " ".join(k["plocate"])))
                else:
                    items.append(skipped("plocate", "", "not installed"))
            g = group(f"{k['title']}: p50 at concurrency {conc}", "ms", "find", items)
            groups.append(g)
            targets[(kind, conc)] = g
            qps += [dict(i, name=f"{i['name']} c={conc}", value=i["extra"]["qps"])
                    for i in items if i.get("extra")]
        groups.append(group(f"{k['title']}: queries per second", "qps", None, qps,
                            better="higher"))
    notes = ["Fustor and watchman are queried by bench_load (bench/load.c): C threads, one "
             "keep-alive connection each, requests back to back; latency is send to last "
             "byte, nearest-rank percentiles. find and plocate are one process per query, "
             "timed from Python (fork and exec included, as a user pays them).",
             "watchman cannot total a subtree: its stats answer is every file's size, which "
             "the client must add up; Fustor keeps per-directory aggregates.",
             "HTTP round trip: Fusion's /health, no work and 15 bytes: the floor of any "
             "request on this machine, set mostly by waking a thread on the other CPU (on "
             "this VM, 0.15-0.4 ms; with client and server pinned to one CPU, 0.04 ms).",
             f"Each cell ran {secs} s. The charts show p50; the tables add p99, queries per "
             "second and the number of requests."]
    return {"id": "query", "title": "Queries", "groups": groups, "notes": notes,
            "description": "Latency and throughput of three questions, asked of the indexed "
                           "view and of the peers."}, targets


def load_item(name, res, command, fustor=False, note=None):
    it = {"name": name, "value": res["p50_ms"], "ratio": None, "command": command,
          "fustor": fustor}
    if note:
        it["note"] = note
    it["extra"] = {k: res.get(k) for k in ("p99_ms", "qps", "requests")}
    return it


# ---------------------------------------------------------------- 4. realtime

def realtime(args):
    secs = 2 if args.quick else 5
    items, lat = [], {}
    for rate in (1000, 10000):
        log(f"realtime: {rate}/s for {secs} s")
        r = agent_realtime.measure(args.bin_dir, rate, secs)
        lat[rate] = r
    ramp = (20000, 40000, 80000)
    best = max((r for r in lat.values() if sustained(r)), key=lambda r: r["rate_per_s"],
               default=None)
    for rate in ramp:
        if best is None or best["rate_per_s"] < rate // 2:
            break
        log(f"realtime: {rate}/s for {secs} s")
        r = agent_realtime.measure(args.bin_dir, rate, secs)
        lat[rate] = r
        if not sustained(r):
            break
        best = r
    for rate, r in lat.items():
        for metric in ("p50_ms", "p99_ms"):
            items.append(item(f"{rate} files/s {metric[:3]}", r[metric],
                              f"agent_realtime.py BIN {rate} {secs}", fustor=True,
                              extra={"visible": f"{r['visible']}/{r['files']}",
                                     "writer_rate_per_s": r["achieved_rate_per_s"],
                                     "max_ms": r["max_ms"]}))
    top = [item("highest sustained rate", best["achieved_rate_per_s"] if best else None,
                "the fastest rate tried with every file visible, the writer on pace (>= 90%) "
                "and p99 <= 1 s", fustor=True,
                extra={"inotify_events_per_s": 3 * best["achieved_rate_per_s"] if best else None})]
    where = "tmpfs (/dev/shm)" if agent_realtime.shm() else "the temp directory's filesystem"
    notes = ["Files are created (open, write 1 byte, close: three inotify events each) in one "
             f"directory on {where} by bench_create (bench/create_files.c) at a steady rate; "
             "Python polls Fusion's stats of that directory every 2 ms and stamps the first k "
             "files visible when it counts k. On this VM's ext4, sustained creation stalls on "
             "the journal (openat at 0.6 ms), which would measure the disk, not the pipeline. "
             "No peer is measured here; the reference is the 200 ms target.",
             f"Rates tried (files/s): {', '.join(str(r) for r in lat)}; a rate counts as "
             "sustained when every file arrives, the writer keeps at least 90% of the pace, "
             "and p99 stays under 1 s."]
    return {"id": "realtime", "title": "Realtime",
            "description": "Create -> visible in Fusion, through inotify, the agent's realtime "
                           "batches and Fusion's apply.",
            "groups": [group("create -> visible latency", "ms", None, items),
                       group("sustained rate", "files/s", None, top, better="higher")],
            "notes": notes}, lat, best


def sustained(r):
    return (r["visible"] == r["files"] and r["achieved_rate_per_s"]
            and r["achieved_rate_per_s"] >= 0.9 * r["rate_per_s"] and r["p99_ms"] <= 1000)


# ---------------------------------------------------------------- 5. ingest

def ingest(args, shape, bare_s):
    n = 100000 if args.quick else 1000000
    dirs = n // 50
    log("ingest: in-process")
    res = {}
    for journal in (False, True):
        cmd = [f"{args.bin_dir}/bench_apply", str(n), str(dirs)]
        jdir = None
        if journal:
            jdir = f"{shape['root']}.journal"
            os.makedirs(jdir, exist_ok=True)
            cmd.append(jdir)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        res[journal] = json.loads(out)
        if jdir:
            subprocess.run(["rm", "-rf", jdir], check=True)
    log("ingest: over HTTP")
    http = json.loads(subprocess.run(
        [sys.executable, f"{HERE}/fusion_http.py", args.bin_dir, str(n // 1000)],
        capture_output=True, text=True, check=True).stdout.splitlines()[0])
    walk_rate = shape["files"] / bare_s if bare_s else None
    items = [
        item("bare walk (rows a walk can produce)", walk_rate,
             "files / the bare walker's warm time, from the indexing workload",
             note="the rate a storage walk hands rows over"),
        item("in-process, snapshot rows", res[False]["snapshot_rows_per_s"],
             f"bench_apply {n} {dirs}", fustor=True),
        item("in-process, realtime updates", res[False]["realtime_rows_per_s"],
             f"bench_apply {n} {dirs}", fustor=True),
        item("in-process with the journal, snapshot rows", res[True]["snapshot_rows_per_s"],
             f"bench_apply {n} {dirs} JOURNAL_DIR", fustor=True),
        item("HTTP, 2 connections, 1000-row batches", http["ingest_rows_per_s"],
             f"fusion_http.py BIN {n // 1000}", fustor=True,
             extra={"mb_per_s": http.get("ingest_mb_per_s"),
                    "restart_to_queryable_s": http.get("restart_to_queryable_s"),
                    "journal_mb": http.get("journal_mb")})]
    return {"id": "ingest", "title": "Ingest",
            "description": f"Rows/s applied to a view ({n:,} files in {dirs:,} directories).",
            "groups": [group("rows applied per second", "rows/s",
                             "bare walk (rows a walk can produce)", items, better="higher")],
            "notes": ["In-process: fu_view_apply (lock, arbitration, tree, aggregates; with "
                      "the journal, encoding and append, fsync per batch) from rows parsed "
                      "beforehand, 1000 per batch. HTTP: v1 ingest requests prepared "
                      "beforehand, pushed by two Python keep-alive connections; JSON parsing "
                      "and the journal included."]}, res, http


# ---------------------------------------------------------------- targets

def targets(ix_wl, mem_wl, q_targets, rt, ing):
    out = []

    def t(workload, text, measured, limit, op="<=", unit="x"):
        ok = None if measured is None else (measured <= limit if op == "<=" else
                                            measured >= limit)
        out.append({"workload": workload, "text": text, "measured": measured, "limit": limit,
                    "op": op, "unit": unit, "pass": ok})

    warm = {i["name"]: i for i in ix_wl["groups"][0]["items"]}
    fu, find, bare = warm["fustor (inotify)"], warm["find -printf"]["value"], \
        warm["bare walk"]["value"]
    fan = warm.get("fustor (fanotify)")
    wm = warm.get("watchman", {}).get("value")
    t("indexing", "Indexing <= 0.75x find -printf (inotify)", fu["ratio"], 0.75)
    if fan and fan["value"] is not None:
        t("indexing", "Indexing <= 0.75x find -printf (fanotify)", fan["ratio"], 0.75)
    t("indexing", "Indexing <= 2.5x the bare C walker", round(fu["value"] / bare, 3), 2.5)
    t("indexing", "Indexing >= 5x faster than watchman's crawl",
      round(wm / fu["value"], 2) if wm else None, 5, ">=")
    per = {i["name"]: i["value"] for i in mem_wl["groups"][0]["items"]}
    t("memory", "Fusion <= 100 B per file (RSS growth)",
      round(per["fustor-fusion (growth)"], 1), 100, unit="B/file")
    w = per.get("watchman")
    t("memory", "Fusion >= 5x less memory than watchman (whole process)",
      round(w / per["fustor-fusion (whole process)"], 1) if w else None, 5, ">=")
    g = q_targets[("tree", 1)]
    vals = {i["name"]: i["value"] for i in g["items"]}
    t("query", "tree p50 <= 1 ms (concurrency 1)", vals["fustor"], 1, unit="ms")
    t("query", "tree >= 100x faster than find (p50, concurrency 1)",
      round(vals["find"] / vals["fustor"], 1) if vals.get("find") else None, 100, ">=")
    r = rt.get(1000)
    t("realtime", "Create -> visible p99 <= 200 ms at 1k/s", r["p99_ms"] if r else None, 200,
      unit="ms")
    t("ingest", "Ingest >= 500k rows/s in-process", ing[False]["snapshot_rows_per_s"], 500000,
      ">=", "rows/s")
    return out


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k files, shorter runs")
    ap.add_argument("--bin-dir", default=os.path.join(HERE, "..", "build", "bin"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--tree", help="where the generated tree is kept")
    args = ap.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    t0 = time.perf_counter()
    dirs = 2000 if args.quick else 20000
    files = tree.shape("", dirs, 50)["files"]
    root = args.tree or agent_snapshot.tree_root(files)
    log(f"tree: {files:,} files under {root}")
    tg = time.perf_counter()
    shape = tree.build(root, dirs, 50)
    shape["generated_s"] = round(time.perf_counter() - tg, 1)
    args.machine = machine(root)
    res = {"schema": 1, "date": datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"), "mode": "quick" if args.quick else "full",
        "machine": args.machine, "versions": versions(args.bin_dir), "tree": shape}
    ix = Indexing(args, shape)
    try:
        ix_wl = ix.run()
        mem_wl = ix.memory()
        q_wl, q_targets = query(args, shape, ix)
    finally:
        ix.stop()
    rt_wl, rt, _ = realtime(args)
    bare = next(i["value"] for i in ix_wl["groups"][0]["items"] if i["name"] == "bare walk")
    ing_wl, ing, _ = ingest(args, shape, bare)
    res["workloads"] = [ix_wl, mem_wl, q_wl, rt_wl, ing_wl]
    res["targets"] = targets(ix_wl, mem_wl, q_targets, rt, ing)
    res["duration_s"] = round(time.perf_counter() - t0, 1)
    os.makedirs(args.out, exist_ok=True)
    day = res["date"][:10] + ("-quick" if args.quick else "")
    path = os.path.join(args.out, f"{day}.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    report.write(res, re.sub(r"\.json$", ".html", path))
    for t in res["targets"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
        print(f"{mark}  {t['text']}: {t['measured']} {t['unit']}")
    print(f"results: {path} and its .html ({res['duration_s']} s)")


if __name__ == "__main__":
    main()
