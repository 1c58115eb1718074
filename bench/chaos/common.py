"""common - what every domain of the chaos run shares: reading a claim's
conditions, its key, requests retried across API server restarts, and the
storm's mix of creates and deletes.

A domain subclasses Domain and sets api, lock, live (key -> what it
created, for _delete) and n (with "api_retries" and "deleted_pending"); it
provides _create(rng) -> (key or None, what) and _delete(key, what).
"""

import time


def ready_cond(obj, ctype="Ready"):
    """The condition ctype of obj's status, or None."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_ready(obj):
    return (ready_cond(obj) or {}).get("status") == "True"


def key(obj):
    m = obj["metadata"]
    return "%s/%s" % (m.get("namespace", ""), m["name"])


class Domain:
    def _req(self, method, path, body=None, ok=(200, 201, 202), deadline=120):
        """Retry until the server answers; returns (status, doc)."""
        end = time.monotonic() + deadline
        while True:
            st, doc = self.api.request(method, path, body)
            if st in ok or st in (404, 409, 422):
                return st, doc
            if time.monotonic() > end:
                return st, doc
            with self.lock:
                self.n["api_retries"] += 1
            time.sleep(0.5)

    def storm_op(self, rng, target_live):
        """One operation: a create, a delete of a live claim, or a create
        deleted 0-0.3 s later (usually before the operator made it Ready);
        creates weigh more while fewer than target_live are alive."""
        with self.lock:
            live = len(self.live)
        r = rng.random()
        if live < target_live:
            op = "create" if r < 0.65 else ("delete" if r < 0.85 else "create_delete")
        else:
            op = "create" if r < 0.35 else ("delete" if r < 0.85 else "create_delete")
        if op == "delete":
            with self.lock:
                k = rng.choice(sorted(self.live)) if self.live else None
                what = self.live.pop(k) if k else None
            if k:
                self._delete(k, what)
            return
        k, what = self._create(rng)
        if k and op == "create_delete":
            time.sleep(rng.uniform(0, 0.3))
            with self.lock:
                self.live.pop(k, None)
                self.n["deleted_pending"] += 1
            self._delete(k, what)
