"""A private pcscd with vsmartcard's virtual reader, for tests that go through real PC/SC.

Nothing of the machine's own PC/SC set-up is used or touched: no system pcscd, no /etc/reader.conf.d, no
real card.

- pcscd 1.9.9 always listens on /run/pcscd/pcscd.comm, except when it is socket-activated: then it serves
  the listening socket it inherits as fd 3 (systemd's LISTEN_FDS=1 / LISTEN_PID protocol, which needs no
  systemd). We bind that socket in a private directory and hand it over; libpcsclite in this process finds
  it through PCSCLITE_CSOCK_NAME.
- libpcsclite reads PCSCLITE_CSOCK_NAME once per process, so `use_private_socket()` has to run before the
  session's first PC/SC call; the test module calls it when it is imported.
- `pcscd --foreground --config DIR` reads reader.conf files from DIR only. Ours declares one vpcd reader
  whose slots listen on a free port pair (vpcd binds them on all interfaces, for the test's duration).
- pcscd still writes /run/pcscd/pcscd.pid when it may (as root). That would clobber a running system
  pcscd's pid file, so `PrivatePcscd.start` refuses when one is running.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from smartcard import scard

from devstack.processes import stop

PCSCD = "/usr/sbin/pcscd"
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
SYSTEM_PID_FILE = Path("/run/pcscd/pcscd.pid")
READER_NAME = "JPKI Test PCD"  # pcscd names its slots "JPKI Test PCD 00 00", "JPKI Test PCD 00 01"
VPCD_SLOTS = 2  # vpcd offers PCSCLITE_MAX_READERS_CONTEXTS - 6 slots; 2 with Debian's pcsc-lite

# Hands fd 0 (the listening socket) to pcscd as fd 3 under its own pid: sh's $$ survives `exec`.
_ACTIVATE = 'exec 3<&0 </dev/null; LISTEN_PID=$$; LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; exec "$@"'

_private_socket: Path | None = None


class PcscdNotInstalled(RuntimeError):
    """pcscd or vsmartcard's vpcd driver is missing. scripts/bootstrap.sh installs both, so this is a broken
    install, and the tests that need them fail with it rather than skip."""


class SystemPcscdRunning(Exception):
    """A system pcscd runs and this process is root: a private one would overwrite its pid file. The tests skip
    with it: the machine is fine, it is only not ours to disturb."""


def use_private_socket() -> Path:
    """Point this process's libpcsclite at a private socket path, once; return the path."""
    global _private_socket
    if _private_socket is None:
        directory = Path(tempfile.mkdtemp(prefix="jpki-pcscd-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        _private_socket = directory / "pcscd.comm"
        os.environ["PCSCLITE_CSOCK_NAME"] = str(_private_socket)
    return _private_socket


def free_port_block(count: int = VPCD_SLOTS) -> int:
    """A port p such that p .. p+count-1 are all free on every interface (vpcd binds INADDR_ANY)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        held = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no block of free TCP ports for vpcd")


def running_system_pcscd() -> int | None:
    """The pid of a live pcscd that owns /run/pcscd/pcscd.pid, if any."""
    try:
        pid = int(SYSTEM_PID_FILE.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "pcscd" else None


class PrivatePcscd:
    """`with PrivatePcscd(work_dir, vpcd_port=p) as pcscd:` — a pcscd that only this test process talks to.

    `vpcd_port=None` starts it with no reader at all.
    """

    def __init__(self, work_dir: Path, vpcd_port: int | None = None):
        self.work_dir = Path(work_dir)
        self.vpcd_port = vpcd_port
        self.socket_path = use_private_socket()
        self.log_path = self.work_dir / "pcscd.log"
        self.process: subprocess.Popen | None = None

    @property
    def reader_names(self) -> list[str]:
        if self.vpcd_port is None:
            return []
        return [f"{READER_NAME} 00 {slot:02X}" for slot in range(VPCD_SLOTS)]

    def start(self, timeout: float = 5.0) -> PrivatePcscd:
        for path in (PCSCD, VPCD_DRIVER):
            if not Path(path).exists():
                raise PcscdNotInstalled(f"{path} is missing: scripts/bootstrap.sh installs Debian's pcscd and "
                                        "vsmartcard-vpcd")
        if os.geteuid() == 0 and (pid := running_system_pcscd()):
            raise SystemPcscdRunning(
                f"a system pcscd (pid {pid}) is running; a private one started as root would overwrite its "
                f"{SYSTEM_PID_FILE}")
        config_dir = self.work_dir / "reader.conf.d"
        config_dir.mkdir(parents=True, exist_ok=True)
        if self.vpcd_port is not None:
            # DEVICENAME /dev/null:<port> puts vpcd in server mode on that port (vsmartcard's ifd-vpcd.c).
            (config_dir / "vpcd").write_text(
                f'FRIENDLYNAME "{READER_NAME}"\n'
                f"DEVICENAME   /dev/null:{self.vpcd_port}\n"
                f"LIBPATH      {VPCD_DRIVER}\n"
                f"CHANNELID    {self.vpcd_port}\n")
        self.socket_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener, open(self.log_path, "ab") as log:
            listener.bind(str(self.socket_path))
            listener.listen(16)
            command = [PCSCD, "--foreground", "--info", "--config", str(config_dir)]
            self.process = subprocess.Popen(["sh", "-c", _ACTIVATE, "pcscd", *command],
                                            stdin=listener.fileno(), stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until pcscd answers and lists every reader of our config (it adds them before serving)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"pcscd exited at start; see {self.log_path}")
            rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if rv == scard.SCARD_S_SUCCESS:
                rv, names = scard.SCardListReaders(context, [])
                scard.SCardReleaseContext(context)
                if set(self.reader_names) <= set(names if rv == scard.SCARD_S_SUCCESS else []):
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pcscd was not ready within {timeout} s; see {self.log_path}")
            time.sleep(0.02)

    def stop(self) -> None:
        stop(self.process, timeout=5)
        self.process = None
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> PrivatePcscd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for_card(reader: str, present: bool, timeout: float) -> bool:
    """Whether pcscd reports a card in `reader` (or none, with present=False) within `timeout` seconds."""
    rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert rv == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(rv)
    try:
        deadline = time.monotonic() + timeout
        known, wait_ms = scard.SCARD_STATE_UNAWARE, 0  # the first call only asks for the current state
        while wait_ms >= 0:
            rv, states = scard.SCardGetStatusChange(context, wait_ms, [(reader, known)])
            if rv != scard.SCARD_S_SUCCESS:
                return False
            known = states[0][1] & ~scard.SCARD_STATE_CHANGED
            if bool(known & scard.SCARD_STATE_PRESENT) == present:
                return True
            wait_ms = int(1000 * (deadline - time.monotonic()))
        return False
    finally:
        scard.SCardReleaseContext(context)
