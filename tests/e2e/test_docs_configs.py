"""The configs published in docs/user-guide.md stay true. Every YAML block there is marked by
the HTML comment before it, `<!-- config: KIND MODE -->`: KIND is `fusion` or `agent` (which
binary validates it), MODE names the deployment it belongs to (`standalone`, `ha`, ...) or is
`fragment` for a partial snippet. Each block passes `validate` on its own; each deployment is
then started as published (only ports, host names and source paths swapped for the test's)
and must give the sessions, roles and tree that the guide describes."""
import json
import os
import re
import shutil
import tempfile
import unittest
import urllib.parse

from harness import Home, free_port, view_paths, wait_for
from v1agent import request

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs")
GUIDE = os.path.join(DOCS, "user-guide.md")

BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)
MARK = re.compile(r"<!-- config: (fusion|agent) ([\w-]+) -->\s*$")
# The one warning a published config may give on a machine that is not the user's.
MISSING_PATH = "does not exist on this machine (yet)"


def guide_blocks(path=GUIDE):
    """[(kind, mode, text, line)] of every YAML block; a block without a mark is an error."""
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    out = []
    for m in BLOCK.finditer(doc):
        line = doc.count("\n", 0, m.start()) + 1
        before = doc[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.match(before.strip())
        if not mark:
            raise AssertionError(f"{path}:{line}: a YAML block without a `<!-- config: KIND "
                                 f"MODE -->` mark on the line before it")
        out.append((mark.group(1), mark.group(2), m.group(1), line))
    return out


def validate(kind, text):
    home = Home(kind)
    try:
        home.put("default.yaml", text)
        return home.run("validate")
    finally:
        home.cleanup()


class GuideConfigsValidate(unittest.TestCase):
    def test_every_block_is_marked_and_valid(self):
        blocks = guide_blocks()
        modes = {mode for _, mode, _, _ in blocks}
        self.assertTrue({"standalone", "ha", "aggregation", "fan-out"} <= modes, modes)
        for kind, mode, text, line in blocks:
            with self.subTest(block=f"user-guide.md:{line} ({kind}, {mode})"):
                r = validate(kind, text)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertNotIn("error:", r.stdout + r.stderr)
                if mode == "fragment":
                    continue
                m = re.search(r"config OK: 1 file\(s\), (\d+) pipe\(s\), (\d+) active", r.stdout)
                self.assertTrue(m, r.stdout)
                self.assertGreaterEqual(int(m.group(1)), 1, r.stdout)
                self.assertEqual(m.group(1), m.group(2), "every pipe of a published config "
                                                         "is active: " + r.stdout)
                for w in r.stderr.splitlines():
                    if "warning:" in w:
                        self.assertIn(MISSING_PATH, w)


def effective(home):
    r = home.run("status", "--config")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def push_key(text):
    """The agent's sender key (status --config hides it)."""
    m = re.search(r"credential:\s*(?:\{\s*key:\s*|\n\s+key:\s*)\"?([^\"\s,}]+)", text)
    assert m, text
    return m.group(1)


class GuideDeploymentsRun(unittest.TestCase):
    """Each deployment of the guide, started: every agent gets a session, each Fusion pipe has
    one leader and the others follow, and each view shows the files of every storage that
    feeds it, read with a key that may read it."""

    def run_mode(self, mode, blocks):
        fusion_text = [t for k, m, t, _ in blocks if m == mode and k == "fusion"]
        agent_texts = [t for k, m, t, _ in blocks if m == mode and k == "agent"]
        self.assertEqual(len(fusion_text), 1, f"{mode}: one Fusion config")
        self.assertTrue(agent_texts, f"{mode}: agent configs")

        # Fusion as published, with its receivers on free ports.
        fusion = Home("fusion")
        self.addCleanup(fusion.cleanup)
        conf = effective_of(fusion, fusion_text[0])
        ports = {r["port"]: free_port() for r in conf["receivers"].values()}
        text = re.sub(r"(\bport:\s*)(\d+)",
                      lambda m: m.group(1) + str(ports.get(int(m.group(2)), m.group(2))),
                      fusion_text[0])
        fusion.put("default.yaml", text)
        fusion.start_daemon(self)

        # Agents: one storage per push key (agents sharing a key share a pipe, so a storage:
        # that is HA); each storage gets its own small tree.
        storages, agents = {}, []
        for i, text in enumerate(agent_texts):
            key = push_key(text)
            if key not in storages:
                root = tempfile.mkdtemp(prefix=f"fustor-e2e-docs-{mode}-")
                self.addCleanup(shutil.rmtree, root, True)
                files = {f"/storage-{len(storages)}/sample-{n}.dat" for n in range(3)}
                for f in files:
                    os.makedirs(os.path.dirname(root + f), exist_ok=True)
                    with open(root + f, "w") as fh:
                        fh.write(f)
                storages[key] = (root, files)
            agent = Home("agent")
            self.addCleanup(agent.cleanup)
            conf = effective_of(agent, text)
            for src in conf["sources"].values():
                text = text.replace(f'"{src["uri"]}"', f'"{storages[key][0]}"')
            for snd in conf["senders"].values():
                for uri in snd["uri"]:
                    u = urllib.parse.urlsplit(uri)
                    text = text.replace(uri, f"http://127.0.0.1:{ports[u.port]}")
            agent.put("default.yaml", text)
            agent.start_daemon(self)
            agents.append((agent, key))

        def roles():
            out = {}
            for agent, key in agents:
                st = json.loads(agent.run("status", "--json").stdout)["status"]
                for p in (st.get("runtime") or {}).get("pipes", []):
                    out.setdefault(key, []).append(p["role"])
            return out
        wait_for(lambda: all(r in ("leader", "follower") for rs in roles().values() for r in rs)
                 and sum(len(rs) for rs in roles().values()) == len(agents), timeout=20,
                 what=f"{mode}: every agent's session")
        for key, rs in roles().items():
            self.assertEqual(sorted(rs), sorted(["leader"] + ["follower"] * (len(rs) - 1)),
                             f"{mode}: one leader per Fusion pipe, the others follow")

        api = f"http://127.0.0.1:{fusion.api_port}/api/v1/views"
        views = effective(fusion)["views"]
        fed = set()
        for view in views:
            want, readers = set(), []
            for key, (root, files) in storages.items():
                status, _, _ = request("GET", f"{api}/{view}/stats", key)
                if status == 403:
                    continue  # this storage's pipe does not feed this view
                want |= files
                readers.append(key)
                fed.add(key)

            def paths():
                return view_paths(f"{api}/{view}", readers[0], set())
            self.assertTrue(readers, f"{mode}: view {view} is fed by no agent")
            wait_for(lambda: want <= paths(), timeout=20, what=f"{mode}: the tree of {view}")
        self.assertEqual(fed, set(storages), f"{mode}: every storage feeds a view")

    def test_each_published_deployment_runs(self):
        blocks = guide_blocks()
        for mode in sorted({m for _, m, _, _ in blocks if m != "fragment"}):
            with self.subTest(mode=mode):
                self.run_mode(mode, blocks)
                self.doCleanups()


def effective_of(home, text):
    """The effective config of `text` as published (before any swap)."""
    home.put("default.yaml", text)
    return effective(home)


if __name__ == "__main__":
    unittest.main()
