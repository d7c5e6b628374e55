"""Real servers for the cluster tests, each started on 127.0.0.1 by its test's fixture with
private ports, config and data under the test's temp folder, and stopped by PID.

- ``Slurm``: a one-node SLURM cluster (Debian's slurm-wlm and munge; `.ci/run` installs them),
  its own munged on a private socket, slurmctld and slurmd on private ports. Ready in ~1 s.
- ``Postgres``: a throwaway PostgreSQL (initdb + postgres as the ``postgres`` user).

``unavailable()`` says why a server cannot run here (not root, a package missing), for the skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import free_port

SLURM_BIN = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel")


def _which(names: tuple[str, ...], extra: tuple[str, ...] = ()) -> list[str]:
    """The programs of ``names`` that are not found (PATH, then the ``extra`` folders)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", *extra])
    return [n for n in names if shutil.which(n, path=path) is None]


def slurm_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "a SLURM cluster needs root (munged and slurmd run as root)"
    missing = _which(SLURM_BIN)
    if missing:
        return f"{', '.join(missing)} not installed: apt-get install slurm-wlm munge"
    return None


def _stop(pid: int, wait_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """``sig`` to one process we started, then SIGKILL if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child (a daemon): poll its existence
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_for(check, what: str, log: Path | None = None, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up in {timeout_s:.0f} s\n{tail}")


class Slurm:
    """A one-node SLURM cluster on 127.0.0.1: ``env`` points the SLURM commands at it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.pids: list[int] = []
        self.env = {"SLURM_CONF": str(self.conf)}
        for folder in ("state", "spool", "munge", "log"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def command(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            list(args), env={**os.environ, **self.env}, capture_output=True, text=True, timeout=30
        )
        if check and proc.returncode:
            raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def _daemon(self, argv: list[str], pid_file: Path, log: Path) -> None:
        """Start a daemon in the foreground (we hold its PID), detached from our signals."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,  # a Ctrl-C to pytest does not reach it; we stop it
            )
        self.pids.append(proc.pid)

    def start(self) -> Slurm:
        munge = self.root / "munge"
        key, sock = munge / "munge.key", munge / "munge.socket"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._daemon(
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={sock}",
                f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
                f"--log-file={munge / 'munged.log'}",
            ],
            munge / "munged.pid",
            munge / "munged.out",
        )
        _wait_for(sock.exists, "munged", munge / "munged.out")
        host = socket.gethostname().split(".")[0]
        cpus = os.cpu_count() or 1
        memory_mb = min(2000, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**21)
        ctld, slurmd = free_port(), free_port()
        log = self.root / "log"
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=athanor-test",
                    f"SlurmctldHost={host}(127.0.0.1)",
                    f"SlurmctldPort={ctld}",
                    f"SlurmdPort={slurmd}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={log / 'slurmctld.log'}",
                    f"SlurmdLogFile={log / 'slurmd.log'}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    # cred_expire=10: a requeued job starts again after ~20 s, not ~2 min
                    f"AuthInfo=socket={sock},cred_expire=10",
                    "ProctrackType=proctrack/linuxproc",  # no cgroups in a container
                    "TaskPlugin=task/none",
                    "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",  # loopback only
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",  # no sacct: athanor needs none
                    "KillWait=30",
                    "SchedulerParameters=sched_interval=1",
                    # less than the machine has, or slurmd drains the node ("Low RealMemory")
                    f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} "
                    "State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        self._daemon(["slurmctld", "-D", "-i"], self.root / "slurmctld.pid", log / "ctld.out")
        self._daemon(["slurmd", "-D"], self.root / "slurmd.pid", log / "slurmd.out")

        def idle() -> bool:
            out = self.command("sinfo", "-h", "-o", "%t", check=False).split()
            return bool(out) and all(state in ("idle", "mix", "alloc") for state in out)

        _wait_for(idle, "the SLURM node", log / "slurmctld.log")
        return self

    def stop(self) -> None:
        self.command("scancel", "--full", "--user=root", check=False)  # jobs end with the cluster
        for pid in reversed(self.pids):
            _stop(pid)
        self.pids.clear()

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job``'s fields of one job (JobState, RestartCnt, ...)."""
        out = self.command("scontrol", "-o", "show", "job", job_id)
        fields = {}
        for part in out.split():
            key, _, value = part.partition("=")
            fields[key] = value
        return fields


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def postgres_unavailable() -> str | None:
    if postgres_bin() is None:
        return "PostgreSQL is not installed: apt-get install postgresql"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` user to run the server as (apt-get install postgresql makes one)"
    if os.geteuid() != 0:
        return "the test runs PostgreSQL as the `postgres` user, which needs root"
    return None


class Postgres:
    """A throwaway PostgreSQL on 127.0.0.1, run as the ``postgres`` user; ``url(db)``."""

    def __init__(self) -> None:
        # not under pytest's temp folder: that is private to root, and the server runs as postgres
        self.root = Path(tempfile.mkdtemp(prefix="athanor-pg-"))
        self.port, self.pid = free_port(), None
        self.data = self.root / "pgdata"

    def _as_postgres(self, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        user = pwd.getpwnam("postgres")

        def demote() -> None:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        return subprocess.run(
            list(argv),
            preexec_fn=demote,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            **kwargs,
        )

    def start(self) -> Postgres:
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)
        bin_dir = postgres_bin()
        init = self._as_postgres(
            str(bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N"
        )
        if init.returncode:
            raise RuntimeError(f"initdb failed: {init.stderr}")
        log = self.root / "postgres.log"

        def demote() -> None:
            os.setsid()  # our signals do not reach it; we stop it by PID
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(self.data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),  # the unix socket in our folder, not /var/run
                    "-c",
                    "fsync=off",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=demote,
            )
        self.pid = proc.pid

        def ready() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        _wait_for(ready, "PostgreSQL", log)
        return self

    def create_db(self, name: str) -> str:
        created = self._as_postgres(
            str(postgres_bin() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), name
        )
        if created.returncode:
            raise RuntimeError(f"createdb {name} failed: {created.stderr}")
        return self.url(name)

    def url(self, db: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.pid is not None:
            _stop(self.pid, sig=signal.SIGINT)  # "fast" shutdown: it ends open sessions too
            self.pid = None
        shutil.rmtree(self.root, ignore_errors=True)
