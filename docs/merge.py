#!/usr/bin/env python3
"""Rebuild docs/PROTOCOL.md's sections from their parts (run from the repo root).

The UDP section lives in PROTOCOL.md itself; the other sections are kept in
docs/*.md files written by their components' owners and spliced in here,
headings demoted one level.
"""
import re, pathlib

doc = pathlib.Path("docs/PROTOCOL.md")
parts = [
    ("## Control channel (TLS 443)", "docs/control-protocol.md"),
    ("## Media over TCP 8801 and TLS 443", "docs/media-stream.md"),
    ("## Zone controller (TLS 443)", "docs/zone-protocol.md"),
    ("## Web tier (HTTPS 443)", "docs/web-tier.md"),
]
text = doc.read_text()

def body(path):
    p = pathlib.Path(path)
    if not p.exists():
        return None
    src = p.read_text()
    src = re.sub(r"\A# .*\n", "", src)                      # drop its title
    src = re.sub(r"\A\s*\*To be merged[^*]*\*\s*", "", src)  # drop the merge note
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", src, flags=re.M).strip() + "\n"

for heading, path in parts:
    b = body(path)
    if b is None:
        continue
    # replace an existing section (up to the next level-2 heading) or append
    pat = re.compile(r"^" + re.escape(heading) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    section = heading + "\n\n" + b + "\n"
    if pat.search(text):
        text = pat.sub(lambda m: section, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
doc.write_text(text)
