#!/usr/bin/env python3
"""chaos.py - provisio under faults (`make chaos`, bench/run-chaos).

On a control plane of its own (hack/kube-local, in a scratch directory) it
runs CHAOS_REPLICAS operator replicas with --leader-elect and one
`provisio agent` per fake node, lets each domain (ip.py, device.py,
volume.py) storm its claims, and meanwhile, many times over and at random moments:
  - kill -9 of the current leader (the Lease's holder), restarted after 0-2 s;
  - API server restarts (the informers' watches end; their next watch gets
    410 Gone from the new watch cache and they relist);
  - etcd compactions, most of them followed by an API server restart (the
    reliable way to make a reflector's watch fail with 410, hack/README.md);
  - kill -9 of a node agent, restarted after 0-3 s;
  - a node's heartbeat stopped for 5-40 s (past the 20 s grace the node goes
    NotReady and is tainted unreachable) and resumed.
After CHAOS_KILLS leader kills the faults stop, every process is running
again, and the run waits for convergence (every claim Ready or resting in
a reason that is true, orphans swept, pool counts settled) and checks the
invariants of API.md exactly, reading only the API server. It prints what
it did and what it found, writes a results file, and exits 1 on any
violation (an invariant broken, no convergence, a process that crashed, a
sanitizer report in a log), 2 when the run itself could not be made.

A domain is a class (see the top of ip.py); DOMAINS names them. The faults
are the functions fault_*; a domain may add its own with a faults() method
returning [(name, weight, function)].

Environment (printed at start, so a run can be repeated):
  CHAOS_SEED          random seed                          (default: from the clock)
  CHAOS_KILLS         leader kills                         (100)
  CHAOS_REPLICAS      operator replicas                    (3)
  CHAOS_LEASE         lease duration/renew deadline/retry  (4s/3s/1s)
  CHAOS_KILL_AFTER    a leader is killed this many seconds after it was
                      seen holding the Lease, uniform in MIN-MAX  (0.2-4)
  CHAOS_FAULT_EVERY   mean seconds between the other faults (6)
  CHAOS_RATE          claim operations per second of the storm (12)
  CHAOS_LIVE          claims the storm keeps alive, about  (150)
  CHAOS_STORM_THREADS threads issuing them                 (4)
  CHAOS_SETTLE        seconds allowed for convergence      (240)
  CHAOS_DOMAINS       domains to storm, comma-separated    (ip,device,volume)
  CHAOS_OUT           results file (default bench/results/chaos-<date>.md; "-": none)
  CHAOS_KEEP          1: keep the scratch directory (logs) even when clean
  CHAOS_WORKERS       --max-concurrent-reconciles of the replicas (default: the flag's)
"""

import datetime
import importlib
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import kube  # noqa: E402

# CHAOS_DOMAINS names -> (module of bench/chaos, class); imported when used
DOMAINS = {"ip": ("ip", "IPDomain"), "device": ("device", "DeviceDomain"),
           "volume": ("volume", "VolumeDomain")}
NODES = ["node-a", "node-b", "node-c"]
LEASE_NS = "provisio-chaos"
LEASE_NAME = "provisio.provisio.dev"
SANITIZER = re.compile(r"runtime error:|ERROR: (AddressSanitizer|LeakSanitizer)|SUMMARY: UndefinedBehaviorSanitizer")

T0 = time.monotonic()
_print_lock = threading.Lock()


def log(msg):
    with _print_lock:
        print("[%7.1f] %s" % (time.monotonic() - T0, msg), flush=True)


def env_num(name, default, kind=int):
    v = os.environ.get(name)
    return kind(v) if v not in (None, "") else default


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Proc:
    """One operator replica or agent, restarted under the same name; its log
    is appended across incarnations."""

    def __init__(self, name, argv_fn, logpath):
        self.name, self.argv_fn, self.logpath = name, argv_fn, logpath
        self.p = None
        self.starts = 0
        self.peak_kib = 0
        self.identity = None
        self.log_offset = 0
        self.killed = False  # by us: an exit we expect
        self.restart_at = None
        self.unexpected = []  # (rc, reason)

    def start(self):
        self.mport, self.hport = free_port(), free_port()
        with open(self.logpath, "ab") as f:
            self.log_offset = f.tell()
            f.write(("=== chaos: start %d of %s\n" % (self.starts + 1, self.name)).encode())
        out = open(self.logpath, "ab")
        self.p = subprocess.Popen(self.argv_fn(self), stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        out.close()
        self.starts += 1
        self.identity = None
        self.killed = False
        self.restart_at = None

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def sample(self):
        if not self.alive():
            return
        try:
            with open("/proc/%d/status" % self.p.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))
        except OSError:
            pass

    def kill9(self, restart_in):
        self.sample()
        self.killed = True
        self.restart_at = time.monotonic() + restart_in  # before the kill: the supervisor sees both
        try:
            os.kill(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()

    def tail(self, n=2000):
        try:
            with open(self.logpath, "rb") as f:
                f.seek(self.log_offset)
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return ""

    def read_identity(self):
        if self.identity is None:
            try:
                with open(self.logpath, "rb") as f:
                    f.seek(self.log_offset)
                    for line in f:
                        if b'"starting manager"' in line:
                            self.identity = json.loads(line).get("identity")
                            break
            except (OSError, ValueError):
                pass
        return self.identity


class Chaos:
    def __init__(self, build):
        self.build = build
        self.provisio = os.path.join(build, "provisio")
        self.seed = env_num("CHAOS_SEED", int(time.time() * 1000) % 1000000007)
        self.kills_wanted = env_num("CHAOS_KILLS", 100)
        self.nrep = env_num("CHAOS_REPLICAS", 3)
        self.lease = (os.environ.get("CHAOS_LEASE") or "4s/3s/1s").split("/")
        ka = (os.environ.get("CHAOS_KILL_AFTER") or "0.2-4").split("-")
        self.kill_after = (float(ka[0]), float(ka[1]))
        self.fault_every = env_num("CHAOS_FAULT_EVERY", 6.0, float)
        self.rate = env_num("CHAOS_RATE", 12.0, float)
        self.live = env_num("CHAOS_LIVE", 150)
        self.storm_threads = env_num("CHAOS_STORM_THREADS", 4)
        self.settle = env_num("CHAOS_SETTLE", 240)
        self.domain_names = (os.environ.get("CHAOS_DOMAINS") or "ip,device,volume").split(",")
        for d in self.domain_names:
            if d not in DOMAINS:
                raise SystemExit("chaos: CHAOS_DOMAINS: no domain %r (known: %s)" % (d, ", ".join(DOMAINS)))
        self.workers = os.environ.get("CHAOS_WORKERS") or ""
        self.out = os.environ.get("CHAOS_OUT") or os.path.join(
            ROOT, "bench", "results", "chaos-%s.md" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H%M"))
        self.keep = os.environ.get("CHAOS_KEEP") == "1"
        self.rng = random.Random(self.seed)
        self.rng_monitor = random.Random(self.seed + 1)
        self.tmp = tempfile.mkdtemp(prefix="chaos.", dir=os.environ.get("TMPDIR", "/tmp"))
        self.kl = os.path.join(self.tmp, "kl")
        self.kubeconfig = os.path.join(self.kl, "kubeconfig")
        self.kubectl = os.path.join(self.kl, "bin", "kubectl")
        self.stop = threading.Event()  # the faults and the storm stop
        self.done = threading.Event()  # the supervisor stops
        self.round_done = threading.Event()  # each kind of fault was injected once
        self.n = {k: 0 for k in ("leader_kills", "apiserver_restarts", "compactions",
                                 "compactions_then_restart", "compactions_then_frozen_restart", "agent_kills", "node_heartbeat_stops",
                                 "nodes_went_notready", "replica_lease_lost_exits", "storm_ops",
                                 "live_checks")}
        self.failovers = []  # kill -9 of a leader -> a live replica holds the Lease, seconds
        self.findings = []  # violations of the run itself (crashes, no leader, ...)
        self.stopped_node = None
        self.node_resume_at = None
        self.kl_lock = threading.Lock()  # one kube-local fault command at a time
        self.count_lock = threading.Lock()
        self.replicas, self.agents = [], []
        self.domains = []

    # ---- the control plane and the processes ---------------------------------------

    def kube_local(self, *args, check=True):
        with open(os.path.join(self.tmp, "kube-local.log"), "ab") as f:
            r = subprocess.run([os.path.join(ROOT, "hack", "kube-local"), args[0], self.kl] + list(args[1:]),
                               stdout=subprocess.PIPE, stderr=f)
        if check and r.returncode != 0:
            raise RuntimeError("hack/kube-local %s failed (log %s/kube-local.log)" % (args[0], self.tmp))
        return r.stdout.decode().strip()

    def replica_argv(self, p):
        a = [self.provisio, "--kubeconfig=" + self.kubeconfig, "--leader-elect",
             "--leader-election-namespace=" + LEASE_NS,
             "--leader-elect-lease-duration=" + self.lease[0],
             "--leader-elect-renew-deadline=" + self.lease[1],
             "--leader-elect-retry-period=" + self.lease[2],
             "--metrics-bind-address=127.0.0.1:%d" % p.mport,
             "--health-probe-bind-address=127.0.0.1:%d" % p.hport]
        if self.workers:
            a.append("--max-concurrent-reconciles=" + self.workers)
        return a

    def node_root(self, node):
        """The --host-root of NODE's agent: a domain's files on that node go under it."""
        return os.path.join(self.tmp, "nodes", node)

    def agent_argv(self, node):
        root = self.node_root(node)
        os.makedirs(root, exist_ok=True)
        return lambda p: [self.provisio, "agent", "--node-name=" + node, "--host-root=" + root,
                          "--kubeconfig=" + self.kubeconfig,
                          "--metrics-bind-address=127.0.0.1:%d" % p.mport,
                          "--health-probe-bind-address=127.0.0.1:%d" % p.hport]

    def setup(self):
        log("control plane: hack/kube-local up %s" % self.kl)
        t = time.monotonic()
        self.kube_local("up")
        log("control plane up in %.0f s" % (time.monotonic() - t))
        k = [self.kubectl, "--kubeconfig", self.kubeconfig]
        subprocess.run(k + ["apply", "--server-side", "--force-conflicts", "-f", os.path.join(ROOT, "crds")],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(k + ["wait", "--for=condition=Established", "--timeout=60s", "-f",
                            os.path.join(ROOT, "crds")], check=True, stdout=subprocess.DEVNULL)
        self.api = kube.Api(self.kubeconfig, self.tmp, self.kubectl)
        st, _ = self.api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                "metadata": {"name": LEASE_NS}})
        if st not in (201, 409):
            raise RuntimeError("namespace %s: HTTP %s" % (LEASE_NS, st))
        t = time.monotonic()
        while any(self.api.request("GET", "/api/v1/nodes/" + n)[0] != 200 for n in NODES):
            if time.monotonic() - t > 60:
                raise RuntimeError("the nodes %s are not registered after 60 s" % NODES)
            time.sleep(0.5)
        for node in NODES:
            a = Proc("agent-" + node, self.agent_argv(node), os.path.join(self.tmp, "agent-%s.log" % node))
            a.start()
            self.agents.append(a)
        for i in range(self.nrep):
            r = Proc("replica-%d" % i, self.replica_argv, os.path.join(self.tmp, "replica-%d.log" % i))
            r.start()
            self.replicas.append(r)
        self.domains = []
        for d in self.domain_names:
            mod, cls = DOMAINS[d]
            self.domains.append(getattr(importlib.import_module(mod), cls)(self.api, log, self))
        for d in self.domains:
            d.setup()
        log("%d replicas, %d agents, domains %s" % (self.nrep, len(self.agents), ", ".join(self.domain_names)))

    def supervise(self):
        """Restart what exited; sample peak RSS; resume a stopped heartbeat."""
        while not self.done.is_set():
            now = time.monotonic()
            for p in self.replicas + self.agents:
                p.sample()
                if p.alive():
                    continue
                if p.restart_at is None:  # exited by itself
                    rc = p.p.returncode
                    tail = p.tail()
                    if p in self.replicas and rc == 1 and "leader election lost" in tail:
                        self.n["replica_lease_lost_exits"] += 1
                    else:
                        p.unexpected.append(rc)
                        self.findings.append("%s exited by itself with status %s; its log ends:\n%s"
                                             % (p.name, rc, tail[-800:]))
                        log("FINDING: %s exited with status %s" % (p.name, rc))
                    p.restart_at = now + 0.5
                if now >= p.restart_at:
                    p.start()
            if self.node_resume_at is not None and now >= self.node_resume_at:
                self.node_resume_at = None  # kube-local may wait for a restart: not on this thread
                threading.Thread(target=self.resume_node, daemon=True).start()
            time.sleep(0.2)

    def resume_node(self):
        node = self.stopped_node
        st, doc = self.api.request("GET", "/api/v1/nodes/" + node)
        if st == 200:
            for c in doc.get("status", {}).get("conditions", []):
                if c.get("type") == "Ready" and c.get("status") != "True":
                    self.n["nodes_went_notready"] += 1
        with self.kl_lock:
            self.kube_local("node-start", node)
        log("fault: heartbeat of %s resumed" % node)
        self.stopped_node = None

    # ---- faults ----------------------------------------------------------------------

    def lease_holder(self):
        st, doc = self.api.request("GET", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s"
                                   % (LEASE_NS, LEASE_NAME))
        return (doc or {}).get("spec", {}).get("holderIdentity") if st == 200 else None

    def live_leader(self):
        h = self.lease_holder()
        if not h:
            return None
        for r in self.replicas:
            if r.alive() and r.read_identity() == h:
                return r
        return None

    def fault_leader_kills(self):
        """The main fault loop: CHAOS_KILLS times, kill -9 the leader at a random moment."""
        last_kill = None
        while self.n["leader_kills"] < self.kills_wanted:
            t = time.monotonic()
            while True:
                leader = self.live_leader()
                if leader:
                    break
                if time.monotonic() - t > 180:
                    self.findings.append("no live replica held the Lease for 180 s (after kill %d)"
                                         % self.n["leader_kills"])
                    log("FINDING: no leader for 180 s")
                    t = time.monotonic()
                time.sleep(0.1)
            if last_kill is not None:
                self.failovers.append(time.monotonic() - last_kill)
                last_kill = None
            time.sleep(self.rng.uniform(*self.kill_after))
            leader = self.live_leader()
            if not leader:
                continue
            leader.kill9(self.rng.uniform(0, 2))
            last_kill = time.monotonic()
            self.n["leader_kills"] += 1
            if self.n["leader_kills"] % 10 == 0 or self.n["leader_kills"] <= 3:
                log("fault: kill -9 of leader %s (%d of %d); %s" % (leader.name, self.n["leader_kills"],
                                                                    self.kills_wanted, self.brief()))
            for d in self.domains:
                d.progress(self.n["leader_kills"] / self.kills_wanted)
        # a short run still injects every kind of fault at least once
        if not self.round_done.wait(600):
            self.findings.append("the first round of the other faults did not finish within 600 s")
        self.stop.set()

    def brief(self):
        return ", ".join("%s %d" % kv for kv in self.n.items() if kv[1])

    def fault_apiserver_restart(self):
        with self.kl_lock:
            self.kube_local("restart-apiserver")
        self.n["apiserver_restarts"] += 1
        log("fault: API server restarted")

    def fault_compaction(self):
        """etcd compaction; then, in two cases of three, an API server restart.
        A replica's watches reconnect while the new API server starts and get
        503s, after which they relist anyway; so in half of those restarts the
        replicas are frozen (SIGSTOP) until it is ready (SIGCONT): the first
        watch of each informer then asks for a compacted revision, older than
        the new watch cache, and gets 410 Gone."""
        with self.kl_lock:
            rev = self.kube_local("compact")
        self.n["compactions"] += 1
        r = self.rng.random()
        if r < 1 / 3:
            log("fault: etcd compacted to revision %s" % rev)
            return
        frozen = []
        if r < 2 / 3:
            frozen = [p for p in self.replicas if p.alive()]
            for p in frozen:
                os.kill(p.p.pid, signal.SIGSTOP)
        try:
            with self.kl_lock:
                self.kube_local("restart-apiserver")
        finally:
            for p in frozen:
                try:
                    os.kill(p.p.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        self.n["apiserver_restarts"] += 1
        if frozen:
            self.n["compactions_then_frozen_restart"] += 1
            log("fault: etcd compacted to revision %s, then API server restarted with the replicas frozen" % rev)
        else:
            self.n["compactions_then_restart"] += 1
            log("fault: etcd compacted to revision %s, then API server restarted" % rev)

    def fault_agent_kill(self):
        a = self.rng.choice(self.agents)
        if not a.alive():
            return
        a.kill9(self.rng.uniform(0, 3))
        self.n["agent_kills"] += 1

    def fault_node_heartbeat(self):
        if self.stopped_node:
            return
        node = self.rng.choice(NODES)
        with self.kl_lock:
            self.kube_local("node-stop", node)
        self.stopped_node = node
        secs = self.rng.uniform(5, 40)
        self.node_resume_at = time.monotonic() + secs
        self.n["node_heartbeat_stops"] += 1
        log("fault: heartbeat of %s stopped for %.0f s" % (node, secs))

    def fault_others(self):
        faults = [("apiserver", 1, self.fault_apiserver_restart), ("compact", 1, self.fault_compaction),
                  ("agent", 2, self.fault_agent_kill), ("node", 1, self.fault_node_heartbeat)]
        for d in self.domains:
            faults += getattr(d, "faults", lambda: [])()
        deck = []
        while not self.stop.wait(self.rng.expovariate(1 / self.fault_every)):
            if not deck:  # every kind comes once per round, in random order
                deck = [f for _, w, f in faults for _ in range(w)]
                self.rng.shuffle(deck)
            try:
                deck.pop()()
            except Exception as e:  # noqa: BLE001 - a fault that failed is a finding
                self.findings.append("a fault could not be injected: %s" % e)
                log("FINDING: %s" % e)
            if not deck:
                self.round_done.set()

    def storm(self, idx):
        rng = random.Random(self.seed * 1000 + idx)
        period = self.storm_threads / self.rate
        nxt = time.monotonic()
        while not self.stop.is_set():
            d = rng.choice(self.domains)
            d.storm_op(rng, self.live // len(self.domains))
            with self.count_lock:
                self.n["storm_ops"] += 1
            nxt += period
            time.sleep(max(0, nxt - time.monotonic()))

    def monitor(self):
        """Invariant 1 must hold at every moment, not only after convergence."""
        while not self.stop.wait(self.rng_monitor.uniform(2, 8)):
            for d in self.domains:
                v = d.check_live()
                if v is None:
                    continue
                self.n["live_checks"] += 1
                for x in v:
                    log("FINDING: " + x)
                    self.findings.append("%s: %s" % (d.name, x))

    # ---- the end -----------------------------------------------------------------------

    def converge(self):
        t = time.monotonic()
        last = None
        while True:
            snaps = [d.snapshot() for d in self.domains]
            if all(s is not None for s in snaps):
                why = [w for d, s in zip(self.domains, snaps) for w in d.pending(s)]
                if not why:
                    return snaps, time.monotonic() - t, []
                if time.monotonic() - t > self.settle:
                    return snaps, time.monotonic() - t, why
                if last is None or time.monotonic() - last > 15:
                    last = time.monotonic()
                    log("converging: %d things pending, e.g. %s" % (len(why), why[0]))
            time.sleep(2)

    def run(self):
        params = {"CHAOS_SEED": self.seed, "CHAOS_KILLS": self.kills_wanted, "CHAOS_REPLICAS": self.nrep,
                  "CHAOS_LEASE": "/".join(self.lease), "CHAOS_KILL_AFTER": "%g-%g" % self.kill_after,
                  "CHAOS_FAULT_EVERY": self.fault_every, "CHAOS_RATE": self.rate, "CHAOS_LIVE": self.live,
                  "CHAOS_STORM_THREADS": self.storm_threads, "CHAOS_SETTLE": self.settle,
                  "CHAOS_DOMAINS": ",".join(self.domain_names), "CHAOS_WORKERS": self.workers or "default"}
        self.params = params
        r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
        self.commit = r.stdout.strip() or "?"
        log("chaos run: " + " ".join("%s=%s" % kv for kv in params.items()))
        log("binary %s, scratch %s" % (self.provisio, self.tmp))
        self.setup()
        sup = threading.Thread(target=self.supervise, daemon=True)
        sup.start()
        # start the storm only once a replica leads, so the first claims race a leader
        t = time.monotonic()
        while not self.live_leader():
            if time.monotonic() - t > 120:
                raise RuntimeError("no replica leads 120 s after start (logs in %s)" % self.tmp)
            time.sleep(0.2)
        storm_t0 = time.monotonic()
        threads = [threading.Thread(target=self.storm, args=(i,), daemon=True) for i in range(self.storm_threads)]
        threads.append(threading.Thread(target=self.fault_others, daemon=True))
        threads.append(threading.Thread(target=self.monitor, daemon=True))
        for th in threads:
            th.start()
        self.fault_leader_kills()
        for th in threads:
            th.join()
        self.storm_secs = time.monotonic() - storm_t0
        log("faults over after %.0f s: %s" % (self.storm_secs, self.brief()))
        while self.stopped_node and self.node_resume_at is None:  # its resume is under way
            time.sleep(0.2)
        if self.stopped_node:
            self.node_resume_at = None
            self.resume_node()
        for d in self.domains:
            d.finish()
        snaps, self.settle_secs, pending = self.converge()
        self.done.set()
        sup.join()
        violations = ["not converged after %d s: %s" % (self.settle, w) for w in pending[:50]]
        if len(pending) > 50:
            violations.append("... and %d more not converged" % (len(pending) - 50))
        for d, s in zip(self.domains, snaps):
            violations += ["%s: %s" % (d.name, v) for v in d.check(s)]
        violations += self.findings
        violations += self.final_processes()
        self.report(snaps, violations)
        return violations

    def final_processes(self):
        """Every process still running, exactly one leader, no sanitizer report."""
        v = []
        for p in self.replicas + self.agents:
            p.sample()
            if not p.alive():
                v.append("%s is not running at the end (status %s)" % (p.name, p.p.returncode))
            try:
                with open(p.logpath, errors="replace") as f:
                    for line in f:
                        if SANITIZER.search(line):
                            v.append("sanitizer report in %s: %s" % (p.logpath, line.strip()[:200]))
                            break
            except OSError:
                pass
        if not self.live_leader():
            v.append("no live replica holds the Lease at the end")
        text = "".join(open(r.logpath, errors="replace").read() for r in self.replicas)
        self.relists_410 = text.count("watch expired (410)")
        self.relists_other = text.count("watch failed; relisting")
        return v

    def report(self, snaps, violations):
        fig = {}
        for d, s in zip(self.domains, snaps):
            fig.update({"%s.%s" % (d.name, k): v for k, v in d.figures(s).items()})
        fo = sorted(self.failovers)
        lines = [
            "# Chaos run %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "",
            "`make chaos` (bench/chaos/chaos.py) at commit %s on %s, %d cores, load average at the end %s."
            % (self.commit, socket.gethostname(), os.cpu_count(), " ".join(open("/proc/loadavg").read().split()[:3])),
            "",
            "Parameters: `%s`" % " ".join("%s=%s" % kv for kv in self.params.items()),
            "",
            "| what | figure |",
            "|---|---|",
            "| duration | %.0f s of faults and storm, %.0f s to converge, %.0f s in all |"
            % (self.storm_secs, self.settle_secs, time.monotonic() - T0),
        ]
        for k, v in self.n.items():
            lines.append("| %s | %s |" % (k.replace("_", " "), v))
        if fo:
            lines.append("| leader kill -9 -> a live replica holds the Lease | p50 %.1f s, max %.1f s (%d) |"
                         % (statistics.median(fo), fo[-1], len(fo)))
        lines.append("| informer watches ended by 410 Gone, relisted (all replicas' logs) | %d |" % self.relists_410)
        lines.append("| informer watches failed otherwise and relisted (e.g. 503 while the API server starts) | %d |"
                     % self.relists_other)
        lines.append("| operator starts (replicas, all incarnations) | %d |" % sum(r.starts for r in self.replicas))
        lines.append("| peak RSS of a replica (VmHWM, any incarnation) | %.1f MiB |"
                     % (max(r.peak_kib for r in self.replicas) / 1024))
        lines.append("| peak RSS of an agent | %.1f MiB |" % (max(a.peak_kib for a in self.agents) / 1024))
        for k, v in fig.items():
            lines.append("| %s | %s |" % (k.replace("_", " "), v))
        lines.append("| **violations found** | **%d** |" % len(violations))
        lines.append("")
        if violations:
            lines.append("Violations:")
            lines.append("")
            lines += ["- " + v.replace("\n", "\n  ") for v in violations]
        else:
            lines.append("No violation: every invariant of API.md held for the domains %s after convergence."
                         % ", ".join(self.domain_names))
        text = "\n".join(lines) + "\n"
        print("\n" + text, flush=True)
        if self.out != "-":
            os.makedirs(os.path.dirname(self.out), exist_ok=True)
            with open(self.out, "w") as f:
                f.write(text)
            log("results written to %s" % self.out)

    def cleanup(self, clean):
        self.stop.set()
        self.done.set()
        for p in self.replicas + self.agents:
            if p.alive():
                p.p.terminate()
        for p in self.replicas + self.agents:
            try:
                p.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.p.kill()
        try:
            self.kube_local("down", check=False)
        except Exception:  # noqa: BLE001
            pass
        if clean and not self.keep:
            subprocess.run(["rm", "-rf", self.tmp])
        else:
            log("logs kept in %s" % self.tmp)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build-chaos")
    if not os.access(os.path.join(build, "provisio"), os.X_OK):
        print("chaos: %s/provisio missing: build it first (make chaos does)" % build, file=sys.stderr)
        return 2
    c = Chaos(os.path.abspath(build))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    violations = None
    try:
        violations = c.run()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001
        log("the run could not be made: %s" % e)
        return 2
    finally:
        c.cleanup(clean=violations == [])
    log("%d violation(s)" % len(violations))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
