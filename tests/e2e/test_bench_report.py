"""bench/report.py: the HTML report of a benchmark results file (tests/fixtures/bench-results.json),
run as a script the way people run it and imported for render(). Checks that the report is
self-contained, that its inline SVG charts parse as XML with one bar per measured item and
lengths proportional to the values, that everything from the runner is escaped, and that
missing optional keys do not break it."""
import html
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT = os.path.normpath(os.path.join(HERE, "..", "..", "bench", "report.py"))
FIXTURE = os.path.normpath(os.path.join(HERE, "..", "fixtures", "bench-results.json"))
SVG_NS = "http://www.w3.org/2000/svg"


def load_report():
    spec = importlib.util.spec_from_file_location("bench_report", REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = load_report()


def svgs(page):
    """Every <svg> element of the page, parsed."""
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", page, re.S)]


def bars(svg):
    return [r for r in svg.iter(f"{{{SVG_NS}}}rect") if "bar" in r.get("class", "").split()]


def measured(group):
    return [i for i in group["items"] if i.get("value") is not None]


class BenchReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(FIXTURE, encoding="utf-8") as f:
            cls.results = json.load(f)
        cls.groups = [g for w in cls.results["workloads"] for g in w["groups"]]
        cls.tmp = tempfile.TemporaryDirectory(prefix="fustor-report-")
        out = os.path.join(cls.tmp.name, "out.html")
        cls.proc = subprocess.run([sys.executable, REPORT, FIXTURE, out], cwd=cls.tmp.name,
                                 capture_output=True, text=True, timeout=60)
        cls.page = ""
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                cls.page = f.read()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_fixture_covers_the_schema(self):
        ids = [w["id"] for w in self.results["workloads"]]
        self.assertEqual(ids, ["indexing", "memory", "query", "realtime", "ingest"])
        items = [i for g in self.groups for i in g["items"]]
        self.assertTrue(any(i.get("skipped") for i in items))
        self.assertTrue(any(i.get("value") is None and not i.get("skipped") for i in items))
        self.assertTrue(any(t["measured"] is None for t in self.results["targets"]))

    def test_script_writes_the_report(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        self.assertTrue(self.page.startswith("<!DOCTYPE html>"))
        self.assertIn("Fustor benchmarks", self.page)
        for w in self.results["workloads"]:
            self.assertIn(html.escape(w["title"]), self.page)

    def test_default_output_is_beside_the_results(self):
        with tempfile.TemporaryDirectory(prefix="fustor-report-") as tmp:
            results = os.path.join(tmp, "results.json")
            with open(results, "w", encoding="utf-8") as f:
                json.dump(self.results, f)
            r = subprocess.run([sys.executable, REPORT, results], cwd=HERE,
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(os.path.exists(os.path.join(tmp, "results.html")))

    def test_usage_error(self):
        r = subprocess.run([sys.executable, REPORT], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("usage", r.stderr)

    def test_no_external_assets(self):
        rest = self.page.replace(f'xmlns="{SVG_NS}"', "")
        self.assertNotIn("http://", rest)
        self.assertNotIn("https://", rest)
        for banned in ("<script", "<link", "<img", "@import", "url(", "<iframe"):
            self.assertNotIn(banned, self.page.lower())

    def test_one_chart_per_group_that_parses(self):
        charts = svgs(self.page)
        self.assertEqual(len(charts), len(self.groups))
        for svg in charts:
            self.assertEqual(svg.tag, f"{{{SVG_NS}}}svg")
            self.assertEqual(svg.get("role"), "img")
            self.assertTrue(svg.get("viewBox"))
            title = svg.find(f"{{{SVG_NS}}}title")
            self.assertIsNotNone(title)
            self.assertTrue(title.text.strip())

    def test_one_bar_per_measured_item(self):
        charts = svgs(self.page)
        total = sum(len(measured(g)) for g in self.groups)
        self.assertEqual(sum(len(bars(svg)) for svg in charts), total)
        for group, svg in zip(self.groups, charts):
            found = bars(svg)
            self.assertEqual(len(found), len(measured(group)), group["title"])
            ours = [b for b in found if "fustor" in b.get("class").split()]
            self.assertEqual(len(ours), len([i for i in measured(group) if i.get("fustor")]))
            self.assertNotEqual({b.get("fill") for b in ours},
                                {b.get("fill") for b in found if b not in ours})
            base = [b for b in found if "baseline" in b.get("class").split()]
            expected = [i for i in measured(group) if i["name"] == group.get("baseline")]
            self.assertEqual(len(base), len(expected), group["title"])

    def test_linear_bars_are_proportional(self):
        for group, svg in zip(self.groups, svgs(self.page)):
            values = [i["value"] for i in measured(group)]
            if max(values) / min(values) > 50:
                continue
            widths = [float(b.get("width")) for b in bars(svg)]
            for v, w in zip(values, widths):
                self.assertAlmostEqual(w / max(widths), v / max(values), delta=0.01)

    def test_log_scale(self):
        for group, svg in zip(self.groups, svgs(self.page)):
            text = " ".join(svg.itertext())
            values = [i["value"] for i in measured(group)]
            is_log = max(values) / min(values) > 50
            self.assertEqual("log scale" in text, is_log, group["title"])
            if is_log:
                widths = [float(b.get("width")) for b in bars(svg)]
                self.assertEqual(sorted(widths), [w for _, w in sorted(zip(values, widths))])
                self.assertGreater(min(widths), 0)
        self.assertTrue(any(min(i["value"] for i in measured(g)) <= 0.5 and
                            max(i["value"] for i in measured(g)) >= 3000 for g in self.groups))

    def test_bar_labels(self):
        svg = svgs(self.page)[0]
        texts = [t.text for t in svg.iter(f"{{{SVG_NS}}}text")]
        self.assertIn("fustor (inotify)", texts)
        self.assertIn("0.33 s (0.89×)", texts)
        self.assertIn("0.37 s (1×, baseline)", texts)
        self.assertIn("skipped: watchman not installed", texts)

    def test_commands_are_escaped(self):
        commands = [i["command"] for g in self.groups for i in g["items"] if i.get("command")]
        nasty = [c for c in commands if "<" in c and "&" in c and '"' in c]
        self.assertTrue(nasty)
        shown = [html.unescape(c) for c in re.findall(r"<code>(.*?)</code>", self.page, re.S)]
        for command in nasty:
            self.assertNotIn(command, self.page)
            self.assertIn(command, shown)
        for code in re.findall(r"<code>(.*?)</code>", self.page, re.S):
            self.assertNotRegex(code, r"[<>\"]|&(?!(lt|gt|amp|quot|#x27);)")

    def test_targets_have_badges(self):
        rows = re.findall(r"<tr>.*?</tr>", self.page.split('id="targets"')[1].split("</table>")[0])
        for target in self.results["targets"]:
            row = [r for r in rows if html.escape(target["text"]) in r]
            self.assertEqual(len(row), 1, target["text"])
            if target["measured"] is None:
                expected = ">n/a<"
            else:
                expected = ">PASS<" if target["pass"] else ">FAIL<"
            self.assertIn(expected, row[0], target["text"])
            others = {">PASS<", ">FAIL<", ">n/a<"} - {expected}
            self.assertFalse([b for b in others if b in row[0]], target["text"])

    def test_numbers(self):
        self.assertEqual(report.fmt_number(1853402), "1,853,402")
        self.assertEqual(report.fmt_number(999.6), "1,000")
        self.assertEqual(report.fmt_number(0.27), "0.27")
        self.assertEqual(report.fmt_number(3.14159), "3.14")
        self.assertEqual(report.fmt_number(None), "—")
        self.assertIn("1,853,402 rows/s", self.page)

    def test_missing_optional_keys(self):
        results = {"workloads": [{"id": "w", "groups": [
            {"items": [{"name": "a", "value": 1}, {"name": "b", "value": 2.5, "fustor": True},
                       {"name": "c"}, {"value": 3, "future": {"x": 1}}]},
            {"title": "empty"}]}],
            "targets": [{"text": "t"}], "future_key": [1, 2]}
        page = report.render(results)
        charts = svgs(page)
        self.assertEqual(len(charts), 1)
        self.assertEqual(len(bars(charts[0])), 3)
        self.assertIn(">n/a<", page)
        self.assertIn("Fustor benchmarks", report.render({}))

    def test_write(self):
        with tempfile.TemporaryDirectory(prefix="fustor-report-") as tmp:
            path = os.path.join(tmp, "r.html")
            report.write(self.results, path)
            with open(path, encoding="utf-8") as f:
                self.assertEqual(f.read(), report.render(self.results))


if __name__ == "__main__":
    unittest.main()
