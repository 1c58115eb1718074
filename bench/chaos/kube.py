"""kube - the smallest Kubernetes REST client the chaos run needs.

The storm issues thousands of creates and deletes; a kubectl process per
request would cost more CPU than the operator under test on a 2-core
machine, so requests go straight to the API server over one keep-alive TLS
connection per thread, authenticated as the admin of the kubeconfig
(client certificate, or a bearer token). Only the standard library is used.

Errors are not exceptions: request() returns (status, body) and a status of
0 means the server could not be reached (an API server restart), so callers
decide whether to retry.
"""

import base64
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import threading
import urllib.parse


class Api:
    def __init__(self, kubeconfig, scratch, kubectl="kubectl", timeout=15.0):
        """scratch: a directory of the caller's for the client key and
        certificate (they go with it; the kubeconfig beside them holds them too)."""
        raw = subprocess.run(
            [kubectl, "--kubeconfig", kubeconfig, "config", "view", "--raw", "--minify", "-o", "json"],
            check=True, capture_output=True, text=True).stdout
        cfg = json.loads(raw)
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        url = urllib.parse.urlsplit(cluster["server"])
        self.host, self.port = url.hostname, url.port or 443
        self.timeout = timeout
        self._dir = tempfile.mkdtemp(prefix="kube-", dir=scratch)
        ctx = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif "certificate-authority-data" in cluster:
            ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif "certificate-authority" in cluster:
            ctx.load_verify_locations(cafile=cluster["certificate-authority"])
        self.token = user.get("token")
        cert, key = user.get("client-certificate"), user.get("client-key")
        if "client-certificate-data" in user:
            cert = self._write("client.crt", user["client-certificate-data"])
            key = self._write("client.key", user["client-key-data"])
        if cert:
            ctx.load_cert_chain(cert, key)
        self.ctx = ctx
        self._local = threading.local()

    def _write(self, name, b64):
        path = os.path.join(self._dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(b64))
        return path

    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=self.timeout)
            self._local.conn = c
        return c

    def _drop(self):
        c = getattr(self._local, "conn", None)
        if c is not None:
            try:
                c.close()
            except Exception:
                pass
        self._local.conn = None

    def request(self, method, path, body=None, content_type="application/json"):
        """(status, parsed body or None); status 0 when the server was not reached."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        for attempt in range(2):  # a kept-alive connection the server closed: once more
            try:
                c = self._conn()
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                try:
                    doc = json.loads(raw) if raw else None
                except ValueError:
                    doc = None
                return r.status, doc
            except (OSError, http.client.HTTPException):
                self._drop()
                if attempt == 1:
                    return 0, None
        return 0, None

    def list(self, path):
        """Every item of a collection (pages of 500), or None if unreachable."""
        items, cont = [], ""
        while True:
            q = "?limit=500" + ("&continue=" + urllib.parse.quote(cont) if cont else "")
            st, doc = self.request("GET", path + q)
            if st != 200 or doc is None:
                return None
            items.extend(doc.get("items") or [])
            cont = (doc.get("metadata") or {}).get("continue") or ""
            if not cont:
                return items
