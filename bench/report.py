"""One benchmark results file (the runner's JSON, schema 1) as a self-contained HTML report:
header (date, mode, machine, versions, test tree), the targets with PASS/FAIL badges, then per
workload one horizontal bar chart (inline SVG) and one table per group, and the notes.
No external assets: no scripts, fonts, images or style sheets by URL.

Usage: python3 report.py RESULTS.json [OUT.html]   (default OUT: RESULTS with .html for .json)
   or: from report import render, write
       render(results) -> str (the HTML);  write(results, path)

Every key but the item values is optional and unknown keys are ignored; a null value is
"not measured" (an item's `skipped` says why). Items with `fustor: true` are ours: they get
their own colour in charts and tables. A group whose values span more than 50x (all positive)
is drawn on a log10 scale."""
import html
import json
import math
import os
import re
import sys

FUSTOR_COLOUR = "#e8590c"
PEER_COLOUR = "#4c6ef5"
LOG_SPAN = 50           # max/min above which a chart uses a log scale
CHART_W = 860           # chart geometry, in SVG user units (px at 100%)
ROW_H, BAR_H = 26, 16
CAPTION_H = 22
AXIS_H = 20             # room under a log chart for its decade labels
CHAR_W = 8              # a generous average width of a character at 13px sans-serif
MAX_LABEL_W = 290       # widest name (left) or value label (right) before truncation
OPS = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "="}

CSS = f"""
body {{ font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 2em auto;
        max-width: 1100px; padding: 0 1em; }}
h1 {{ margin-bottom: .2em; }}
h2 {{ border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }}
h3 {{ margin: 1.4em 0 .3em; }}
table {{ border-collapse: collapse; margin: .5em 0 1em; }}
th, td {{ border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
td.num {{ text-align: right; white-space: nowrap; }}
tr.fustor td {{ background: #fff4e6; }}
tr.fustor td:first-child {{ border-left: 4px solid {FUSTOR_COLOUR}; }}
code {{ font: 12px ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }}
.meta {{ color: #555; margin: .2em 0; }}
.chart {{ width: 100%; max-width: {CHART_W}px; height: auto; display: block; }}
.badge {{ display: inline-block; min-width: 3em; text-align: center; border-radius: 3px;
          color: #fff; font-weight: bold; font-size: 12px; padding: 0 .4em; }}
.pass {{ background: #2b8a3e; }}
.fail {{ background: #c92a2a; }}
.na {{ background: #868e96; }}
.tag {{ font-size: 11px; border: 1px solid #222; border-radius: 3px; padding: 0 .3em;
        margin-left: .4em; }}
.skipped {{ color: #777; font-style: italic; }}
.swatch {{ display: inline-block; width: 1.6em; height: .9em; vertical-align: middle;
           margin: 0 .3em 0 1em; }}
"""

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def esc(value):
    """Text for HTML and for the SVG inside it (valid XML too: no control characters)."""
    return html.escape(_CONTROL.sub("", str(value)), quote=True)


def number(value):
    """The value as a float if it is a finite number, else None (not measured)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt_number(value):
    """3 significant digits; thousands separators from 1,000 up; other values as text."""
    v = number(value)
    if v is None:
        return "—" if value is None else str(value)
    if abs(v) >= 999.5:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def with_unit(value, unit):
    """A number and its unit: '0.41 ms', '1,850,000 rows/s', '0.89×' for the unit 'x'."""
    if unit == "x":
        return f"{fmt_number(value)}×"
    return f"{fmt_number(value)} {unit}".rstrip()


def text_w(text):
    return len(text) * CHAR_W


def fit(text, width):
    """The text, cut with an ellipsis to about `width` units."""
    if text_w(text) <= width:
        return text
    return text[:max(int(width / CHAR_W) - 1, 1)] + "…"


# ---------------------------------------------------------------- charts

def is_log(values):
    """True when the values are all positive and span more than LOG_SPAN times."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > LOG_SPAN


def scale(values):
    """(fraction, decades): fraction maps a value to 0..1 of the bar length; decades are the
    powers of ten to mark, empty for a linear scale."""
    if is_log(values):
        hi, lo = math.log10(max(values)), math.log10(min(values))
        lo -= 0.1 * (hi - lo)  # the smallest bar keeps a visible length

        def fraction(v):
            return (math.log10(v) - lo) / (hi - lo)
        return fraction, range(math.ceil(lo), math.floor(hi) + 1)

    top = max(values, default=0)

    def fraction(v):
        return max(v, 0) / top if top > 0 else 0
    return fraction, range(0)


def bar_label(item, value, unit, is_baseline):
    """'0.33 s (0.89×)', with 'baseline' in the parentheses for the baseline item."""
    extras = []
    ratio = number(item.get("ratio"))
    if ratio is not None:
        extras.append(f"{fmt_number(ratio)}×")
    if is_baseline:
        extras.append("baseline")
    label = with_unit(value, unit)
    return f"{label} ({', '.join(extras)})" if extras else label


def caption(group, log):
    """The chart's first line: unit, which way is better, and whether the scale is log."""
    parts = [group.get("unit") or ""]
    if group.get("better") in ("lower", "higher"):
        parts.append(f"{group['better']} is better")
    if log:
        parts.append("log scale")
    return " · ".join(p for p in parts if p)


def svg_text(x, y, text, anchor="start", extra=""):
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{esc(text)}</text>'


def bar_row(item, value, y, geometry, group):
    """The SVG of one item: its name, then its bar and label, or why it has no bar."""
    name_w, bar_w, fraction = geometry
    name = str(item.get("name", ""))
    mid = y + ROW_H / 2 + 4.5  # text baseline, centred on the bar
    out = [svg_text(name_w - 8, mid, fit(name, MAX_LABEL_W), "end")]
    if value is None:
        why = f"skipped: {item['skipped']}" if item.get("skipped") else "not measured"
        out.append(svg_text(name_w + 6, mid, fit(why, CHART_W - name_w - 8),
                            extra=' fill="#888" font-style="italic"'))
        return out
    unit = group.get("unit") or ""
    is_baseline = name == group.get("baseline")
    length = bar_w * fraction(value)
    ours = bool(item.get("fustor"))
    classes = "bar" + (" fustor" if ours else "") + (" baseline" if is_baseline else "")
    colour = FUSTOR_COLOUR if ours else PEER_COLOUR
    stroke = ' stroke="#111" stroke-width="2"' if is_baseline else ""
    out.append(f'<rect class="{classes}" x="{name_w}" y="{y + (ROW_H - BAR_H) / 2:.1f}" '
               f'width="{length:.1f}" height="{BAR_H}" fill="{colour}"{stroke}>'
               f'<title>{esc(name)}: {esc(with_unit(value, unit))}</title></rect>')
    label = bar_label(item, value, unit, is_baseline)
    out.append(svg_text(name_w + length + 6, mid, label))
    return out


def decade_marks(decades, geometry, top, bottom):
    """Faint vertical lines at the powers of ten of a log chart, labelled underneath."""
    name_w, bar_w, fraction = geometry
    out = []
    for k in decades:
        x = name_w + bar_w * fraction(10.0 ** k)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
        out.append(svg_text(x, bottom + 14, fmt_number(10.0 ** k), "middle",
                            ' fill="#777" font-size="11"'))
    return out


def chart(group, title):
    """One horizontal bar chart, as an <svg> element, for the group's items."""
    unit = group.get("unit") or ""
    rows = [(item, number(item.get("value"))) for item in group.get("items") or []]
    values = [v for _, v in rows if v is not None]
    fraction, decades = scale(values)
    names = [str(i.get("name", "")) for i, _ in rows]
    labels = [bar_label(i, v, unit, True) for i, v in rows if v is not None]
    name_w = min(max(map(text_w, names), default=0), MAX_LABEL_W) + 14
    label_w = min(max(map(text_w, labels), default=0), MAX_LABEL_W) + 14
    geometry = (name_w, CHART_W - name_w - label_w, fraction)
    bottom = CAPTION_H + ROW_H * len(rows)
    height = bottom + (AXIS_H if decades else 4)
    note = caption(group, is_log(values))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
           f'viewBox="0 0 {CHART_W} {height}" width="{CHART_W}" height="{height}" '
           f'font-family="sans-serif" font-size="13" fill="#222">',
           f'<title>{esc(f"{title} ({note})" if note else title)}</title>',
           svg_text(name_w, 15, note, extra=' fill="#555" font-size="12"')]
    out += decade_marks(decades, geometry, CAPTION_H, bottom)
    out.append(f'<line x1="{name_w}" y1="{CAPTION_H}" x2="{name_w}" y2="{bottom}" stroke="#999"/>')
    for n, (item, value) in enumerate(rows):
        out += bar_row(item, value, CAPTION_H + n * ROW_H, geometry, group)
    out.append("</svg>")
    return "\n".join(out)


# ---------------------------------------------------------------- tables and sections

def table(head, rows):
    """An HTML table; head is a list of header texts, rows a list of (tr class, [cell html])."""
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for cls, cells in rows:
        attr = f' class="{cls}"' if cls else ""
        out.append(f"<tr{attr}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def num_cell(text):
    return f'<td class="num">{esc(text)}</td>'


def item_row(item, group):
    """One item of a group's table: name, value, unit, ratio, command, extra, note/skipped."""
    name = str(item.get("name", ""))
    tag = ' <span class="tag">baseline</span>' if name == group.get("baseline") else ""
    ratio = number(item.get("ratio"))
    command = f"<code>{esc(item['command'])}</code>" if item.get("command") else ""
    extra = item.get("extra") if isinstance(item.get("extra"), dict) else {}
    extras = "<br>".join(f"{esc(k)}: {esc(fmt_number(v))}" for k, v in extra.items())
    notes = [esc(item["note"])] if item.get("note") else []
    if item.get("skipped"):
        notes.append(f'<span class="skipped">skipped: {esc(item["skipped"])}</span>')
    cells = [f"<td>{esc(name)}{tag}</td>", num_cell(fmt_number(item.get("value"))),
             f"<td>{esc(group.get('unit') or '')}</td>",
             num_cell(f"{fmt_number(ratio)}×" if ratio is not None else "—"),
             f"<td>{command}</td>", f"<td>{extras}</td>", f"<td>{'<br>'.join(notes)}</td>"]
    return ("fustor" if item.get("fustor") else "", cells)


def group_section(group, workload_title):
    title = str(group.get("title", ""))
    items = group.get("items") or []
    out = [f"<h3>{esc(title)}</h3>"]
    if not items:
        return "\n".join(out + ["<p>No results.</p>"])
    baseline = group.get("baseline")
    ratio_head = f"ratio to {baseline}" if baseline else "ratio"
    head = ["name", "value", "unit", ratio_head, "command", "extra", "note"]
    out.append(chart(group, f"{workload_title}: {title}" if title else workload_title))
    out.append(table(head, [item_row(item, group) for item in items]))
    return "\n".join(out)


def workload_section(workload):
    title = str(workload.get("title") or workload.get("id", ""))
    out = [f'<section id="w-{esc(workload.get("id", ""))}">', f"<h2>{esc(title)}</h2>"]
    if workload.get("description"):
        out.append(f"<p>{esc(workload['description'])}</p>")
    out += [group_section(g, title) for g in workload.get("groups") or []]
    if workload.get("notes"):
        out.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in workload["notes"]) + "</ul>")
    out.append("</section>")
    return "\n".join(out)


def badge(target):
    if number(target.get("measured")) is None or not isinstance(target.get("pass"), bool):
        return '<span class="badge na">n/a</span>'
    if target["pass"]:
        return '<span class="badge pass">PASS</span>'
    return '<span class="badge fail">FAIL</span>'


def target_row(target):
    unit = target.get("unit") or ""
    measured = target.get("measured")
    limit = target.get("limit")
    op = OPS.get(target.get("op"), target.get("op") or "")
    wid = target.get("workload")
    link = f'<a href="#w-{esc(wid)}">{esc(wid)}</a>' if wid else ""
    cells = [f"<td>{link}</td>", f"<td>{esc(target.get('text', ''))}</td>",
             num_cell(with_unit(measured, unit) if measured is not None else "—"),
             num_cell(f"{op} {with_unit(limit, unit)}".strip() if limit is not None else "—"),
             f"<td>{badge(target)}</td>"]
    return ("", cells)


def targets_section(targets):
    if not targets:
        return ""
    return "\n".join(['<section id="targets">', "<h2>Targets</h2>",
                      table(["workload", "target", "measured", "limit", "result"],
                            [target_row(t) for t in targets]),
                      "</section>"])


MACHINE = (("cores", "{} cores"), ("cpu", "{}"), ("mem_gib", "{} GiB RAM"),
           ("fs", "file system {}"), ("kernel", "kernel {}"), ("hostname", "host {}"))


def machine_line(machine):
    """'2 cores · AMD EPYC … · 23.4 GiB RAM · file system ext4 · kernel 6.18.44 · host h'."""
    return " · ".join(form.format(fmt_number(machine[key])) for key, form in MACHINE
                      if machine.get(key) not in (None, ""))


def tree_line(tree):
    """'100,000 files in 2,000 directories · wide directory /wide (1,000 entries) · …'."""
    parts = []
    if tree.get("files") is not None:
        dirs = f" in {fmt_number(tree['dirs'])} directories" if tree.get("dirs") is not None else ""
        parts.append(f"{fmt_number(tree['files'])} files{dirs}")
    if tree.get("wide_dir"):
        entries = fmt_number(tree.get("wide_entries"))
        parts.append(f"wide directory {tree['wide_dir']} ({entries} entries)")
    if tree.get("subtree"):
        parts.append(f"subtree {tree['subtree']} ({fmt_number(tree.get('subtree_files'))} files)")
    if tree.get("root"):
        parts.append(f"at {tree['root']}")
    return " · ".join(parts)


def header(results):
    run = [str(results["date"])] if results.get("date") else []
    if results.get("mode"):
        run.append(f"{results['mode']} mode")
    if number(results.get("duration_s")) is not None:
        run.append(f"took {fmt_number(results['duration_s'])} s")
    out = ["<header>", "<h1>Fustor benchmarks</h1>"]
    lines = [" · ".join(run), machine_line(results.get("machine") or {}),
             tree_line(results.get("tree") or {})]
    labels = ["Run", "Machine", "Test tree"]
    out += [f'<p class="meta"><b>{label}:</b> {esc(line)}</p>'
            for label, line in zip(labels, lines) if line]
    versions = results.get("versions") or {}
    if versions:
        out.append(table(["software", "version"],
                         [("", [f"<td>{esc(k)}</td>", f"<td>{esc('—' if v is None else v)}</td>"])
                          for k, v in versions.items()]))
    out.append("</header>")
    return "\n".join(out)


def contents(workloads):
    """The legend of the charts' colours, and links to each workload."""
    links = " · ".join(f'<a href="#w-{esc(w.get("id", ""))}">'
                       f'{esc(w.get("title") or w.get("id", ""))}</a>' for w in workloads)
    legend = (f'<span class="swatch" style="background:{FUSTOR_COLOUR}"></span>Fustor'
              f'<span class="swatch" style="background:{PEER_COLOUR}"></span>other tools'
              f'<span class="swatch" style="background:{PEER_COLOUR};outline:2px solid #111">'
              "</span>the baseline that ratios are taken against")
    return f'<p class="meta"><b>Workloads:</b> {links}</p>\n<p class="meta">{legend}</p>'


def render(results):
    """The report for one results dict, as a complete HTML document."""
    workloads = results.get("workloads") or []
    title = "Fustor benchmarks" + (f" — {results['date']}" if results.get("date") else "")
    body = [header(results), targets_section(results.get("targets") or []), contents(workloads)]
    body += [workload_section(w) for w in workloads]
    return "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>",
                      "<body>", *[b for b in body if b], "</body>", "</html>", ""])


def write(results, path):
    """Writes the report for one results dict to path."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(results))


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit("usage: python3 report.py RESULTS.json [OUT.html]")
    out = argv[2] if len(argv) == 3 else os.path.splitext(argv[1])[0] + ".html"
    with open(argv[1], encoding="utf-8") as f:
        write(json.load(f), out)
    print(out)


if __name__ == "__main__":
    main(sys.argv)
