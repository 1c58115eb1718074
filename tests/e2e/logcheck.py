#!/usr/bin/env python3
"""Checks of the operator's JSON logs shared by the e2e tests.

  logcheck.py no-forbidden WINDOW LOG...
      No log line (ts aside) mentions a 403 or Forbidden, except lines whose
      ts falls in WINDOW ("start,end" epoch seconds, or "-" for none): a
      kube-apiserver that was just restarted serves requests a moment before
      its RBAC caches have synced and answers 403 meanwhile. Those are
      counted and reported on the last line as "tolerated N". Exit 1 when
      any other line mentions one.
"""
import json
import re
import sys


def log_time(ts):
    """Seconds since the epoch of an RFC 3339 "ts" of the JSON log."""
    from datetime import datetime
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def cmd_no_forbidden(window, *logs):
    """No log line (ts aside) mentions a 403 or Forbidden, except lines whose
    ts falls in WINDOW ("start,end" epoch seconds, or "-" for none): those
    are counted and reported on the last line as "tolerated N"."""
    lo, hi = (float(x) for x in window.split(",")) if window != "-" else (1, 0)
    hits = []
    tolerated = 0
    for log in logs:
        with open(log, errors="replace") as f:
            for n, line in enumerate(f, 1):
                text = line
                when = None
                try:
                    d = json.loads(line)
                    if isinstance(d, dict):
                        if isinstance(d.get("ts"), str):
                            when = log_time(d["ts"])
                        d.pop("ts", None)
                        text = json.dumps(d)
                except ValueError:
                    pass
                if re.search(r"\b403\b|forbidden", text, re.I):
                    if when is not None and lo <= when <= hi:
                        tolerated += 1
                    else:
                        hits.append("%s:%d: %s" % (log, n, line.strip()[:600]))
    for h in hits[:20]:
        print(h)
    print("tolerated %d" % tolerated)
    return 1 if hits else 0


def main():
    cmd = sys.argv[1].replace("-", "_")
    return globals()["cmd_" + cmd](*sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
