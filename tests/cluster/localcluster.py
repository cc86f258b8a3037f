"""A real, local Kubernetes control plane for tests: etcd + kube-apiserver +
kube-controller-manager built from Go modules, plus ``kubesim`` (fake nodes
and kubelet-like pod statuses).  Standard library only.

    python3 tests/cluster/localcluster.py build      # or tests/cluster/cluster build
    python3 tests/cluster/localcluster.py start --state-dir /tmp/k8s
    python3 tests/cluster/localcluster.py env   --state-dir /tmp/k8s
    python3 tests/cluster/localcluster.py stop  --state-dir /tmp/k8s

See tests/cluster/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTEXT_NAME = "fediops-local"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
# Start order; stop runs in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kubesim")
# Controllers that would need a real kubelet or cloud: nodelifecycle would
# taint/evict simulated nodes if a heartbeat were ever late.
KCM_CONTROLLERS = ("*,-node-lifecycle-controller,-cloud-node-lifecycle-controller,"
                   "-service-lb-controller,-node-route-controller")

# --authorization-mode per choice. RBAC comes with Node (what kubeadm and managed clusters run); the
# admin token is in group system:masters, so the controller manager, kubesim and the tests' admin
# calls keep full access, while other users (ServiceAccount tokens) get only what Roles grant.
AUTHORIZATION_MODES = {"AlwaysAllow": "AlwaysAllow", "RBAC": "Node,RBAC"}

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""


def log(msg: str) -> None:
    print(f"[localcluster] {msg}", file=sys.stderr, flush=True)


def _gomod_version(gomod: Path, module: str) -> str:
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", gomod.read_text(), re.M)
    if not m:
        raise RuntimeError(f"{module} not found in {gomod}")
    return m.group(1)


def k8s_version() -> str:
    return _gomod_version(HERE / "go.mod", "k8s.io/kubernetes")


def etcd_version() -> str:
    return _gomod_version(HERE / "etcd" / "go.mod", "go.etcd.io/etcd/server/v3")


# Gateway API's standard channel (HTTPRoute, Gateway, ...): the CRDs ship in the Go module, under
# config/crd/standard/; fetched from the Go module proxy into <cache>/gateway-api/<version>/standard/.
GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"
GATEWAY_API_VERSION = "v1.3.0"


def gateway_api_crds(cache_dir=None, version: str = GATEWAY_API_VERSION) -> Path:
    """The directory of the Gateway API standard-channel CRDs (YAML files), fetched once with
    `go mod download` (the Go module proxy) and kept in the cache."""
    cache = Path(cache_dir or default_cache_dir()).resolve()
    target = cache / "gateway-api" / version / "standard"
    if target.is_dir() and any(target.glob("*.yaml")):
        return target
    go = shutil.which("go")
    if not go:
        raise ClusterError("`go` not found in PATH; needed to fetch the Gateway API CRDs (Go module "
                           f"{GATEWAY_API_MODULE})")
    with _flock(cache / "gateway-api" / ".fetch.lock"):
        if target.is_dir() and any(target.glob("*.yaml")):
            return target
        work = cache / "gateway-api" / f".download-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            env = dict(os.environ, GOMODCACHE=str(work / "mod"), GOPATH=str(work / "gopath"), GOFLAGS="-modcacherw",
                       GOTOOLCHAIN="local")
            proc = subprocess.run([go, "mod", "download", "-json", f"{GATEWAY_API_MODULE}@{version}"], cwd=work,
                                  env=env, capture_output=True, text=True, timeout=600, check=False)
            try:
                source = Path(json.loads(proc.stdout)["Dir"]) / "config" / "crd" / "standard"
            except (ValueError, KeyError):
                raise ClusterError(f"go mod download {GATEWAY_API_MODULE}@{version} failed: "
                                   f"{proc.stdout.strip()} {proc.stderr.strip()}")
            files = sorted(source.glob("*.yaml"))
            if not files:
                raise ClusterError(f"no CRD in {source}")
            tmp = target.with_name("standard.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for f in files:
                shutil.copyfile(f, tmp / f.name)
            tmp.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log(f"Gateway API {version} standard CRDs in {target}")
    return target


def default_cache_dir() -> Path:
    base = os.environ.get("FEDIOPS_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fediops-mastodon")
    return Path(base)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_start_time(pid: int) -> str | None:
    """Start time of a process (field 22 of /proc/PID/stat); guards PID reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    st = _proc_start_time(pid)
    if st is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        # A zombie is dead, but when it is our child it must be reaped, which
        # is only possible once all its threads are gone: until then, wait.
        return not _reap(pid)
    return start is None or st == start


def _reap(pid: int) -> bool:
    """Reap ``pid`` if it is our exited child.  False while it is our child
    and cannot be reaped yet; True when reaped or not our child."""
    try:
        done = os.waitpid(pid, os.WNOHANG)[0]
    except ChildProcessError:
        return True
    except OSError:
        return True
    return done != 0


@contextlib.contextmanager
def _flock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class ClusterError(RuntimeError):
    pass


class LocalCluster:
    """One local cluster whose files live in ``state_dir``.

    Binaries are cached in ``<cache_dir>/k8s/<k8s-version>/bin/``.
    """

    def __init__(self, state_dir, cache_dir=None, *, audit: bool | None = None,
                 nodes: int = 1, job_duration: str = "1s", verbose: bool = True,
                 authorization: str | None = None, ready_delay: str = "0s"):
        self.state_dir = Path(state_dir).resolve()
        self.cache_dir = Path(cache_dir or default_cache_dir()).resolve()
        self.version = k8s_version()
        self.bin_dir = self.cache_dir / "k8s" / self.version / "bin"
        if audit is None:
            audit = os.environ.get("FEDIOPS_CLUSTER_AUDIT", "1").lower() not in ("0", "false", "no", "off")
        self.audit = audit
        authorization = authorization or os.environ.get("FEDIOPS_CLUSTER_AUTHORIZATION") or "AlwaysAllow"
        if authorization not in AUTHORIZATION_MODES:
            raise ClusterError(f"authorization {authorization!r}: choose one of {', '.join(AUTHORIZATION_MODES)}")
        self.authorization = authorization
        self.nodes = nodes
        self.job_duration = job_duration
        self.ready_delay = ready_delay
        self.verbose = verbose
        self._procs: dict[str, subprocess.Popen] = {}

    # ------------------------------------------------------------ paths
    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "pids.json"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "logs" / "audit.log"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def _say(self, msg: str) -> None:
        if self.verbose:
            log(msg)

    # ------------------------------------------------------------ build
    def _targets(self):
        """(binary name, go module dir, package, stamp inputs)."""
        ldflags = "-s -w"
        ver = self.version
        major, minor = ver.lstrip("v").split(".")[:2]
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            ldflags += (f" -X {pkg}.gitVersion={ver} -X {pkg}.gitMajor={major}"
                        f" -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
                        f" -X {pkg}.gitCommit=go-module-build"
                        f" -X {pkg}.buildDate=1970-01-01T00:00:00Z")
        mod = [HERE / "go.mod", HERE / "go.sum"]
        etcd_mod = [HERE / "etcd" / "go.mod", HERE / "etcd" / "go.sum"]
        return [
            ("etcd", HERE / "etcd", "go.etcd.io/etcd/server/v3", "-s -w", etcd_mod),
            ("kube-apiserver", HERE, "k8s.io/kubernetes/cmd/kube-apiserver", ldflags, mod),
            ("kube-controller-manager", HERE, "k8s.io/kubernetes/cmd/kube-controller-manager", ldflags, mod),
            ("kubesim", HERE, "./kubesim", ldflags, mod + sorted((HERE / "kubesim").glob("*.go"))),
        ]

    @staticmethod
    def _stamp(inputs, ldflags: str) -> str:
        h = hashlib.sha256(ldflags.encode())
        for p in inputs:
            h.update(p.name.encode())
            h.update(p.read_bytes())
        return h.hexdigest()

    def built(self) -> bool:
        for name, _moddir, _pkg, ldflags, inputs in self._targets():
            stamp = self.bin_dir / f".{name}.stamp"
            if not self.binary(name).exists() or not stamp.exists() \
                    or stamp.read_text().strip() != self._stamp(inputs, ldflags):
                return False
        return True

    def build(self, force: bool = False) -> Path:
        """Build (or reuse) all binaries; returns the bin directory."""
        go = shutil.which("go")
        with _flock(self.cache_dir / "k8s" / ".build.lock"):
            self.bin_dir.mkdir(parents=True, exist_ok=True)
            todo = []
            for name, moddir, pkg, ldflags, inputs in self._targets():
                stamp = self.bin_dir / f".{name}.stamp"
                want = self._stamp(inputs, ldflags)
                if (not force and self.binary(name).exists() and stamp.exists()
                        and stamp.read_text().strip() == want):
                    continue
                todo.append((name, moddir, pkg, ldflags, stamp, want))
            if not todo:
                self._say(f"binaries for Kubernetes {self.version} cached in {self.bin_dir}")
                return self.bin_dir
            if not go:
                raise ClusterError("`go` not found in PATH; needed to build the cluster binaries")
            env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0")
            env.setdefault("GOFLAGS", "-mod=readonly")
            t0 = time.monotonic()
            self._say(f"building {', '.join(t[0] for t in todo)} (Kubernetes {self.version}, "
                      f"etcd {etcd_version()}) into {self.bin_dir}; this takes minutes on a cold cache")
            for name, moddir, pkg, ldflags, stamp, want in todo:
                t1 = time.monotonic()
                self._say(f"  go build {pkg} -> {name} ...")
                tmp = self.bin_dir / f".{name}.tmp"
                cmd = [go, "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(tmp), pkg]
                proc = subprocess.Popen(cmd, cwd=moddir, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
                out: list[str] = []
                downloads = 0
                done = threading.Event()

                def ticker(name=name, t1=t1):
                    while not done.wait(30):
                        self._say(f"  ... still building {name} ({time.monotonic() - t1:.0f}s)")

                th = threading.Thread(target=ticker, daemon=True)
                th.start()
                assert proc.stdout
                for line in proc.stdout:
                    out.append(line)
                    if line.startswith("go: downloading"):
                        downloads += 1
                        if downloads == 1 or downloads % 25 == 0:
                            self._say(f"  downloading Go modules ({downloads}): {line[16:].strip()}")
                if downloads:
                    self._say(f"  downloaded {downloads} Go modules")
                rc = proc.wait()
                done.set()
                if rc != 0:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                    raise ClusterError(f"building {name} failed (rc={rc}):\n{''.join(out[-60:])}")
                os.replace(tmp, self.binary(name))
                stamp.write_text(want + "\n")
                self._say(f"  built {name} in {time.monotonic() - t1:.0f}s "
                          f"({self.binary(name).stat().st_size / 1e6:.0f} MB)")
            self._say(f"build finished in {time.monotonic() - t0:.0f}s")
        return self.bin_dir

    # ------------------------------------------------------------ state
    def _read_pids(self) -> dict:
        try:
            return json.loads(self.pids_file.read_text())
        except (OSError, ValueError):
            return {}

    def _write_pids(self, data: dict) -> None:
        tmp = self.pids_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the token
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.pids_file)

    def processes(self) -> dict[str, dict]:
        """Recorded processes with an ``alive`` flag."""
        data = self._read_pids()
        out = {}
        for name, info in data.get("processes", {}).items():
            out[name] = dict(info, alive=_alive(info["pid"], info.get("start")))
        return out

    @property
    def info(self) -> dict:
        return self._read_pids()

    @property
    def api_url(self) -> str | None:
        return self._read_pids().get("api_url")

    def running(self) -> bool:
        procs = self.processes()
        return bool(procs) and all(p["alive"] for p in procs.values()) and set(procs) == set(COMPONENTS)

    # ------------------------------------------------------------ Gateway API
    def install_gateway_api(self, version: str = GATEWAY_API_VERSION, timeout: float = 120.0) -> list[str]:
        """Install the Gateway API standard-channel CRDs into the running cluster (idempotent: server-side
        apply; the HTTPRoute CRD is too large for a client-side apply's annotation) and wait until the API
        server serves them. Returns the CRD names."""
        crds = gateway_api_crds(self.cache_dir, version)
        kubectl = shutil.which("kubectl")
        if not kubectl:
            raise ClusterError("`kubectl` not found in PATH; needed to install the Gateway API CRDs")
        base = [kubectl, "--kubeconfig", str(self.kubeconfig)]
        proc = subprocess.run(base + ["apply", "--server-side", "--force-conflicts", "--field-manager",
                                      "fediops-localcluster", "-o", "name", "-f", str(crds)],
                              capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode:
            raise ClusterError(f"installing the Gateway API CRDs failed: {proc.stderr.strip()}")
        names = [line.split("/", 1)[1] for line in proc.stdout.split() if "/" in line]
        proc = subprocess.run(base + ["wait", "--for", "condition=Established", f"--timeout={int(timeout)}s"]
                              + [f"crd/{n}" for n in names], capture_output=True, text=True,
                              timeout=timeout + 10, check=False)
        if proc.returncode:
            raise ClusterError(f"the Gateway API CRDs were not established: {proc.stderr.strip()}")
        self._say(f"Gateway API {version} CRDs installed: {', '.join(names)}")
        return names

    # ------------------------------------------------------------ http
    def _ssl_ctx(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.state_dir / "pki" / "ca.crt"))
        return ctx

    def _get(self, path: str, timeout: float = 5.0):
        info = self._read_pids()
        req = urllib.request.Request(info["api_url"] + path,
                                     headers={"Authorization": f"Bearer {info['token']}"})
        with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_ctx()) as r:
            return r.status, r.read()

    def healthy(self) -> bool:
        try:
            status, body = self._get("/readyz", timeout=3)
            return status == 200 and body.strip() == b"ok"
        except (OSError, urllib.error.URLError, KeyError, ValueError, ssl.SSLError):
            return False

    # ------------------------------------------------------------ pki
    def _openssl(self, *args: str) -> None:
        r = subprocess.run(["openssl", *args], cwd=self.state_dir / "pki", check=False,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise ClusterError(f"openssl {' '.join(args)} failed:\n{r.stdout}")

    def _make_pki(self) -> None:
        pki = self.state_dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        if (pki / "apiserver.crt").exists() and (pki / "sa.key").exists():
            return
        ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        self._openssl("genpkey", *ec, "-out", "ca.key")
        self._openssl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "3650",
                      "-subj", "/CN=fediops-local-ca", "-out", "ca.crt")
        self._openssl("genpkey", *ec, "-out", "apiserver.key")
        self._openssl("req", "-new", "-key", "apiserver.key", "-subj", "/CN=kube-apiserver",
                      "-out", "apiserver.csr")
        sans = ",".join([
            "IP:127.0.0.1", f"IP:{SERVICE_IP}", "DNS:localhost", "DNS:kubernetes",
            "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local"])
        (pki / "apiserver.ext").write_text(
            f"subjectAltName={sans}\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n")
        self._openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                      "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", "apiserver.ext",
                      "-out", "apiserver.crt")
        self._openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                      "-out", "sa.key")
        self._openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        for f in pki.iterdir():
            if f.suffix == ".key":
                f.chmod(0o600)

    def _write_kubeconfig(self, api_url: str, token: str) -> None:
        ca = (self.state_dir / "pki" / "ca.crt").read_bytes()
        import base64
        ca_b64 = base64.b64encode(ca).decode()
        text = f"""\
apiVersion: v1
kind: Config
clusters:
  - name: {CONTEXT_NAME}
    cluster:
      server: {api_url}
      certificate-authority-data: {ca_b64}
users:
  - name: {CONTEXT_NAME}-admin
    user:
      token: {token}
contexts:
  - name: {CONTEXT_NAME}
    context:
      cluster: {CONTEXT_NAME}
      user: {CONTEXT_NAME}-admin
      namespace: default
current-context: {CONTEXT_NAME}
"""
        tmp = self.kubeconfig.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, self.kubeconfig)

    # ------------------------------------------------------------ start
    def _spawn(self, name: str, argv: list[str], pids: dict) -> subprocess.Popen:
        logf = open(self.state_dir / "logs" / f"{name}.log", "ab")
        logf.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        logf.flush()
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        env["GOMAXPROCS"] = env.get("FEDIOPS_CLUSTER_GOMAXPROCS", str(os.cpu_count() or 2))
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             cwd=self.state_dir, env=env, start_new_session=True, close_fds=True)
        logf.close()
        self._procs[name] = p
        pids.setdefault("processes", {})[name] = {
            "pid": p.pid, "start": _proc_start_time(p.pid), "argv": argv,
            "log": str(self.state_dir / "logs" / f"{name}.log")}
        self._write_pids(pids)
        return p

    def _wait(self, what: str, cond, timeout: float, procs: list[str]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in procs:
                p = self._procs.get(name)
                if p is not None and p.poll() is not None:
                    tail = (self.state_dir / "logs" / f"{name}.log").read_text(errors="replace")
                    raise ClusterError(f"{name} exited with {p.returncode} while waiting for {what}; "
                                       f"log tail:\n{tail[-4000:]}")
            if cond():
                return
            time.sleep(0.1)
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}; logs in "
                           f"{self.state_dir / 'logs'}")

    def start(self, timeout: float = 120.0) -> Path:
        """Start the cluster (or return the kubeconfig of the running one)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _flock(self.state_dir / ".lock"):
            if self.running() and self.healthy():
                self._say(f"already running: {self.api_url}")
                return self.kubeconfig
            self._stop_locked(quiet=True)
            if not self.built():
                self.build()
            t0 = time.monotonic()
            try:
                self._start_locked(timeout)
            except BaseException:
                self._stop_locked(quiet=True)
                raise
            self._say(f"cluster ready at {self.api_url} in {time.monotonic() - t0:.1f}s; "
                      f"KUBECONFIG={self.kubeconfig}")
            return self.kubeconfig

    def _start_locked(self, timeout: float) -> None:
        sd = self.state_dir
        (sd / "logs").mkdir(parents=True, exist_ok=True)
        self._make_pki()
        # A fresh etcd each start: ports change, and tests want a clean slate.
        shutil.rmtree(sd / "etcd-data", ignore_errors=True)
        token = secrets.token_hex(24)
        (sd / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')
        (sd / "tokens.csv").chmod(0o600)
        (sd / "audit-policy.yaml").write_text(AUDIT_POLICY)

        etcd_port, peer_port, api_port, kcm_port = (free_port() for _port in range(4))
        api_url = f"https://127.0.0.1:{api_port}"
        pids = {"version": self.version, "api_url": api_url, "token": token,
                "ports": {"etcd": etcd_port, "etcd-peer": peer_port, "kube-apiserver": api_port,
                          "kube-controller-manager": kcm_port},
                "audit_log": str(self.audit_log) if self.audit else None,
                "authorization": self.authorization,
                "kubeconfig": str(self.kubeconfig), "processes": {}}
        self._write_pids(pids)
        self._write_kubeconfig(api_url, token)
        pki = sd / "pki"
        t0 = time.monotonic()

        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn("etcd", [
            str(self.binary("etcd")), "--name=local", f"--data-dir={sd / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=local={peer_url}", "--initial-cluster-state=new",
            "--unsafe-no-fsync=true", "--log-level=warn", "--quota-backend-bytes=2147483648",
        ], pids)

        def etcd_ok():
            try:
                with urllib.request.urlopen(etcd_url + "/health", timeout=1) as r:
                    return b'"true"' in r.read()
            except OSError:
                return False
        self._wait("etcd /health", etcd_ok, 30, ["etcd"])
        self._say(f"etcd up on {etcd_url} ({time.monotonic() - t0:.1f}s)")

        api_args = [
            str(self.binary("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={sd / 'tokens.csv'}",
            f"--authorization-mode={AUTHORIZATION_MODES[self.authorization]}",
            "--anonymous-auth=false",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            "--endpoint-reconciler-type=none",
            "--v=0",
        ]
        if self.audit:
            api_args += [f"--audit-policy-file={sd / 'audit-policy.yaml'}",
                         f"--audit-log-path={self.audit_log}", "--audit-log-format=json",
                         "--audit-log-maxsize=0", "--audit-log-maxbackup=0"]
        self._spawn("kube-apiserver", api_args, pids)
        self._wait("kube-apiserver /readyz", self.healthy, timeout, ["etcd", "kube-apiserver"])
        self._say(f"kube-apiserver ready on {api_url} ({time.monotonic() - t0:.1f}s)")

        kc = str(self.kubeconfig)
        self._spawn("kube-controller-manager", [
            str(self.binary("kube-controller-manager")),
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", f"--cert-dir={pki}",
            "--leader-elect=false",
            f"--controllers={KCM_CONTROLLERS}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false", "--v=0",
        ], pids)
        self._spawn("kubesim", [
            str(self.binary("kubesim")), f"--kubeconfig={kc}", f"--nodes={self.nodes}",
            f"--job-duration={self.job_duration}", f"--ready-delay={self.ready_delay}", "--v=1",
        ], pids)

        def sa_and_node():
            try:
                st = self._get("/api/v1/namespaces/default/serviceaccounts/default")[0]
                if st != 200:
                    return False
                st, body = self._get("/api/v1/nodes?labelSelector=sim.fediops.test%2Fnode%3Dtrue")
                items = json.loads(body).get("items", [])
                return len(items) >= self.nodes and all(
                    not n.get("spec", {}).get("taints") and
                    any(c["type"] == "Ready" and c["status"] == "True"
                        for c in n.get("status", {}).get("conditions", [])) for n in items)
            except (OSError, ValueError, KeyError):
                return False
        self._wait("default ServiceAccount and Ready nodes", sa_and_node, timeout, list(COMPONENTS))
        self._say(f"controller-manager and kubesim ready ({time.monotonic() - t0:.1f}s)")

    # ------------------------------------------------------------ stop
    def stop(self, timeout: float = 15.0) -> None:
        if not self.state_dir.exists():
            return
        with _flock(self.state_dir / ".lock"):
            self._stop_locked(timeout=timeout)

    def _stop_locked(self, timeout: float = 15.0, quiet: bool = False) -> None:
        data = self._read_pids()
        procs = data.get("processes", {})
        order = [n for n in reversed(COMPONENTS) if n in procs] + \
                [n for n in procs if n not in COMPONENTS]
        for name in order:
            self._stop_process(name, procs[name], timeout, quiet)
        if data:
            data["processes"] = {}
            data["stopped"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            self._write_pids(data)
        self._procs.clear()

    def _stop_process(self, name: str, info: dict, timeout: float, quiet: bool = False) -> None:
        """SIGTERM one recorded process (its group), SIGKILL after ``timeout`` s, and reap it."""
        pid, start = info["pid"], info.get("start")
        if not _alive(pid, start):
            return
        if not quiet:
            self._say(f"stopping {name} (pid {pid})")
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid, start) and time.monotonic() < deadline:
            self._reap_child(name, pid)
            time.sleep(0.05)
        if _alive(pid, start):
            self._say(f"{name} (pid {pid}) ignored SIGTERM; killing")
            self._signal(pid, signal.SIGKILL)
            while _alive(pid, start):
                self._reap_child(name, pid)
                time.sleep(0.05)
        self._reap_child(name, pid)

    def restart_apiserver(self, down: float = 0.0, timeout: float = 120.0) -> float:
        """Stop kube-apiserver and start it again with the same arguments on the SAME etcd (data kept),
        as a control-plane upgrade or a crash does; ``down`` seconds pass in between. Clients see their
        connections and watches dropped, then refused; the restarted server's watch cache begins at
        etcd's current revision, so a watch from an older resourceVersion gets HTTP 410. Returns the
        seconds from the stop until /readyz is ok again."""
        with _flock(self.state_dir / ".lock"):
            pids = self._read_pids()
            info = pids.get("processes", {}).get("kube-apiserver")
            if not info or not self.running():
                raise ClusterError(f"no running cluster in {self.state_dir}")
            t0 = time.monotonic()
            self._stop_process("kube-apiserver", info, timeout=15.0)
            if down:
                time.sleep(down)
            self._spawn("kube-apiserver", info["argv"], pids)
            self._wait("kube-apiserver /readyz after the restart", self.healthy, timeout, ["kube-apiserver"])
            elapsed = time.monotonic() - t0
            self._say(f"kube-apiserver restarted on the same etcd, ready again after {elapsed:.1f}s")
            return elapsed

    def _reap_child(self, name: str, pid: int) -> None:
        p = self._procs.get(name)
        if p is not None and p.pid == pid:
            p.poll()
        else:
            _reap(pid)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        # Each component leads its own process group (start_new_session).
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # ------------------------------------------------------------ misc
    def status(self) -> dict:
        data = self._read_pids()
        procs = self.processes()
        return {
            "state_dir": str(self.state_dir), "version": self.version,
            "api_url": data.get("api_url"), "kubeconfig": str(self.kubeconfig),
            "audit_log": data.get("audit_log"), "ports": data.get("ports"),
            "running": self.running(), "healthy": self.healthy() if procs else False,
            "processes": {n: {"pid": p["pid"], "alive": p["alive"], "log": p.get("log")}
                          for n, p in procs.items()},
            "rss_kib": self.rss_kib(),
        }

    def rss_kib(self) -> int:
        total = 0
        for p in self.processes().values():
            if not p["alive"]:
                continue
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{p['pid']}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["build", "start", "stop", "status", "env", "restart", "restart-apiserver",
                                        "fetch-gateway-api", "install-gateway-api"],
                    help="fetch-gateway-api: download the Gateway API CRDs into the cache; install-gateway-api: "
                         "install them into the running cluster (fetching them first if needed)")
    ap.add_argument("--state-dir", default=os.environ.get("FEDIOPS_CLUSTER_STATE", ".cluster"),
                    help="where kubeconfig, pki, logs and pids live (default: $FEDIOPS_CLUSTER_STATE or ./.cluster)")
    ap.add_argument("--cache-dir", default=None,
                    help="binary cache (default: ${FEDIOPS_CACHE:-~/.cache/fediops-mastodon})")
    ap.add_argument("--no-audit", action="store_true", help="disable the API server audit log")
    ap.add_argument("--nodes", type=int, default=1, help="number of simulated nodes")
    ap.add_argument("--job-duration", default="1s", help="how long Job pods run (Go duration)")
    ap.add_argument("--ready-delay", default="0s",
                    help="how long Deployment (restartPolicy Always) pods take to become Ready (Go duration)")
    ap.add_argument("--force", action="store_true", help="build: rebuild even if cached")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--authorization", choices=sorted(AUTHORIZATION_MODES), default=None,
                    help="start: AlwaysAllow (default, or $FEDIOPS_CLUSTER_AUTHORIZATION) or RBAC (Node,RBAC)")
    ap.add_argument("--down", type=float, default=0.0,
                    help="restart-apiserver: seconds the API server stays stopped")
    args = ap.parse_args(argv)

    c = LocalCluster(args.state_dir, args.cache_dir, audit=False if args.no_audit else None,
                     nodes=args.nodes, job_duration=args.job_duration, authorization=args.authorization,
                     ready_delay=args.ready_delay)
    try:
        if args.command == "build":
            print(c.build(force=args.force))
        elif args.command in ("start", "restart"):
            if args.command == "restart":
                c.stop()
            print(c.start(timeout=args.timeout))
        elif args.command == "stop":
            c.stop()
        elif args.command == "fetch-gateway-api":
            print(gateway_api_crds(args.cache_dir))
        elif args.command == "install-gateway-api":
            print("\n".join(c.install_gateway_api(timeout=args.timeout)))
        elif args.command == "restart-apiserver":
            c.restart_apiserver(down=args.down, timeout=args.timeout)
        elif args.command == "status":
            st = c.status()
            print(json.dumps(st, indent=2))
            return 0 if st["running"] and st["healthy"] else 3
        elif args.command == "env":
            if not c.kubeconfig.exists():
                log("no kubeconfig; run start first")
                return 1
            print(f"export KUBECONFIG={c.kubeconfig}")
            print(f"export FEDIOPS_KUBECONFIG={c.kubeconfig}")
            if c.api_url:
                print(f"export FEDIOPS_API_URL={c.api_url}")
    except ClusterError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
