"""The benchmarks' generated tree, built once and kept (ROOT.complete, beside it, holds its shape).

ROOT/t<k>/g<ggg>/d<ddddd>/file_<ffff>.dat: DIRS directories of FILES_PER_DIR empty files, in
ten top-level subtrees (t0..t9, each a tenth of the directories) and groups of 100
directories; plus ROOT/wide, one directory of 1000 files (the `tree` query's directory),
and one `needle-<d>.log` in every 1000th directory (the `search` query's rare name).

tree.build(root, dirs, per_dir) -> dict (the shape: counts, the query paths)."""
import json
import os
import shutil

WIDE = 1000
NEEDLE_EVERY = 1000


def shape(root, dirs, per_dir):
    tops = 10 if dirs >= 10 else 1
    needles = len(range(0, dirs, NEEDLE_EVERY))  # all in t0: NEEDLE_EVERY is a multiple of 10
    groups = sum((len(range(t, dirs, tops)) + 99) // 100 for t in range(tops))
    t0_files = len(range(0, dirs, tops)) * per_dir + needles
    files = dirs * per_dir + WIDE + needles
    # `stats` goes to a subtree of at least 100k files: t0 if it is that big, else the root
    sub, sub_files = ("/t0", t0_files) if t0_files >= 100000 else ("/", files)
    return {"root": root, "dirs": dirs, "per_dir": per_dir, "files": files,
            "all_dirs": 1 + tops + groups + dirs + 1,  # root, t<k>, g<ggg>, d<ddddd>, wide
            "wide_dir": "/wide", "wide_entries": WIDE,
            "subtree": sub, "subtree_files": sub_files,
            "search_pattern": "needle-*", "search_hits": needles}


def dir_path(root, d, dirs):
    """Directory d's path: t = d % 10 spreads the directories over the ten subtrees."""
    tops = 10 if dirs >= 10 else 1
    t, i = d % tops, d // tops
    return f"{root}/t{t}/g{i // 100:03d}/d{d:05d}"


def build(root, dirs, per_dir):
    want = shape(root, dirs, per_dir)
    mark = f"{root}.complete"  # beside the tree, not in it
    if os.path.exists(mark):
        with open(mark) as f:
            if json.load(f) == want:
                return want
    if os.path.exists(root) and not os.path.exists(mark) and os.listdir(root):
        raise SystemExit(f"bench: {root} exists and is not a benchmark tree; not touching it")
    with open(mark, "w") as f:  # ours from here on, even if the build is cut short
        json.dump({"partial": want}, f)
    shutil.rmtree(root, ignore_errors=True)
    for d in range(dirs):
        p = dir_path(root, d, dirs)
        os.makedirs(p)
        for f in range(per_dir):
            open(f"{p}/file_{f:04d}.dat", "wb").close()
        if d % NEEDLE_EVERY == 0:
            with open(f"{p}/needle-{d}.log", "wb") as fh:
                fh.write(b"x" * (d % 4096))
    os.makedirs(f"{root}/wide")
    for f in range(WIDE):
        with open(f"{root}/wide/entry_{f:04d}.bin", "wb") as fh:
            fh.write(b"y" * (f % 512))
    with open(mark, "w") as f:
        json.dump(want, f)
    return want
