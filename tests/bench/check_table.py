#!/usr/bin/env python3
"""Smoke check of one bench/ script: runs it (the command line after this script's name, which
should include --smoke) and checks that it printed at least one well-formed Markdown table.

Timings are never checked. Exit 77 (skipped) when the script says it cannot run here, e.g. wrk,
nginx or etcd could not be installed; the reason is printed.
"""

import re
import subprocess
import sys

SKIP = 77


def tables(text):
    """Lists of rows (lists of cells) for each Markdown table in text."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|") and line.endswith("|"):
            current.append([c.strip() for c in line[1:-1].split("|")])
        elif current:
            found.append(current)
            current = []
    return found


def check(table):
    if len(table) < 3:
        return "a table needs a header, a separator and at least one row: %r" % table
    width = len(table[0])
    if any(not re.fullmatch(r":?-{3,}:?", c) for c in table[1]) or len(table[1]) != width:
        return "bad separator line: %r" % table[1]
    for row in table[2:]:
        if len(row) != width:
            return "row of %d cells under a header of %d: %r" % (len(row), width, row)
        if any(c == "" or c.lower() in ("nan", "none", "inf") for c in row):
            return "empty or non-numeric cell: %r" % row
    if not any(re.search(r"\d", c) for row in table[2:] for c in row):
        return "no number in the table: %r" % table
    return None


def main():
    proc = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=280)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr[-4000:])
    if proc.returncode == SKIP:
        reason = [l for l in (proc.stdout + proc.stderr).splitlines() if l.startswith("SKIP")]
        print(reason[-1] if reason else "SKIP: the script cannot run here")
        return SKIP
    if proc.returncode != 0:
        print("FAIL: exit status %d" % proc.returncode)
        return 1
    found = tables(proc.stdout)
    if not found:
        print("FAIL: no Markdown table in the output")
        return 1
    for table in found:
        problem = check(table)
        if problem:
            print("FAIL: " + problem)
            return 1
    print("ok: %d well-formed table(s)" % len(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
