"""Podman for .ci/container-check: the base image, the build, containers and
volumes, the previous release's database, and the check's timings.

What works on a sandboxed CI machine (no registry, cgroups crun refuses,
resource limits that cannot be raised): podman with `--runtime runc`, a
Debian base made with mmdebstrap, `--format docker` (the OCI format drops
HEALTHCHECK), `--network host` for pip with the host's CA bundle mounted,
and lower ulimits.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from donations import ROOT, Donation, Fixture, f

__all__ = ["ROOT", "Donation", "Fixture", "f"]

with (ROOT / "pyproject.toml").open("rb") as _file:
    VERSION: str = tomllib.load(_file)["project"]["version"]
PREVIOUS_RELEASE = "0.2.0"
IMAGE = os.environ.get("CAREFORALL_CHECK_IMAGE", f"localhost/careforall:{VERSION}")
# Containers and volumes are named after the checkout, so that two checkouts
# on one machine never remove each other's.
PREFIX = "careforall-check-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
BASE_IMAGE = os.environ.get(
    "CAREFORALL_CHECK_BASE_IMAGE", "localhost/careforall-check-base:bookworm"
)
DEBIAN_PACKAGES = "python3,python3-venv,ca-certificates,passwd"
PODMAN = ["podman", "--runtime", "runc"]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
START_WAIT = 120.0
BUDGET = 300.0
# Each step's seconds, and the CPU seconds it and its children used (the
# build's and mmdebstrap's work; not the containers', which podman runs
# apart): on a busy machine, the second figure says what an idle one needs.
TIMINGS: list[tuple[str, float, float]] = []


class CheckFailed(Exception):
    """What the container did not do, said for the person reading CI's log."""


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


def report(line: str) -> None:
    print(f"container-check: {line}", flush=True)


@contextmanager
def step(name: str) -> Iterator[None]:
    report(f"{name} ...")
    began, cpu = time.monotonic(), cpu_seconds()
    yield
    seconds, used = time.monotonic() - began, cpu_seconds() - cpu
    TIMINGS.append((name, seconds, used))
    report(f"{name}: {seconds:.1f} s ({used:.1f} s of CPU)")


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def summary(total: float) -> None:
    print("  seconds  (of CPU)")
    for name, seconds, used in TIMINGS:
        print(f"  {seconds:6.1f}  ({used:6.1f})  {name}")
    used = sum(timing[2] for timing in TIMINGS)
    print(f"  {total:6.1f}  ({used:6.1f})  container check, all passed")
    if total > BUDGET:
        # Said, not failed: a busy machine is no fault of the image.
        print(f"  (over its budget of {BUDGET:.0f} s in CI)")


def podman(*args: str, check: bool = True, timeout: float = 600) -> str:
    done = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        # Without systemd, podman says at every removal that it cannot remove
        # a healthcheck timer it never made.
        said = "\n".join(
            line for line in done.stderr.splitlines() if "systemd" not in line
        )
        raise CheckFailed(f"podman {' '.join(args[:2])} failed:\n{said[-3000:]}")
    return done.stdout.strip()


def missing_tools() -> list[str]:
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    needs_debian = "CAREFORALL_CHECK_BASE" not in os.environ
    if needs_debian and shutil.which("mmdebstrap") is None:
        missing.append("mmdebstrap")
    if os.geteuid() != 0:
        missing.append("root (podman's volumes and runc are used as root)")
    return [f"no {tool}" for tool in missing]


def base_is_there() -> bool:
    """False on a clean machine: the base image is yet to be made."""
    if "CAREFORALL_CHECK_BASE" in os.environ:
        return True
    exists = subprocess.run([*PODMAN, "image", "exists", BASE_IMAGE], check=False)
    return exists.returncode == 0


def base_image() -> str:
    """The image to build on: CAREFORALL_CHECK_BASE, or Debian's Python made
    with mmdebstrap the first time and kept for later runs."""
    if "CAREFORALL_CHECK_BASE" in os.environ:
        return os.environ["CAREFORALL_CHECK_BASE"]
    if base_is_there():
        report(f"{BASE_IMAGE} is there (podman rmi it to make it anew)")
        return BASE_IMAGE
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / "base.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={DEBIAN_PACKAGES}",
                "--aptopt=APT::Install-Recommends false",
                # As Docker's Debian images: no fsync for each file dpkg
                # writes, no translated package descriptions.
                "--dpkgopt=force-unsafe-io",
                '--aptopt=Acquire::Languages "none"',
                # Manuals and translations nobody reads in a container.
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "bookworm",
                str(tarball),
                "http://deb.debian.org/debian",
            ],
            check=True,
            timeout=600,
        )
        podman("import", str(tarball), BASE_IMAGE)
    return BASE_IMAGE


def requirements() -> list[str]:
    """What the image installs: the dependencies, and what `pip install .`
    builds the package with."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)
    needed: list[str] = project["project"]["dependencies"]
    return needed + project["build-system"]["requires"]


class Wheelhouse:
    """The image's wheels in `folder`, made by the host's pip from its cache
    (which `pip install -e '.[test]'` filled) while the base image is made;
    the build installs them without the package index."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pip = subprocess.Popen(
            [sys.executable, "-m", "pip", "wheel", "--quiet",
             "--disable-pip-version-check", f"--wheel-dir={folder}", *requirements()],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def stop(self) -> None:
        if self.pip.poll() is None:
            self.pip.kill()
            self.pip.wait()

    def ready(self, base: str) -> Path | None:
        """The folder, or None (pip then uses the index) when pip failed or
        the base runs another Python than the host."""
        _, errors = self.pip.communicate(timeout=600)
        if self.pip.returncode != 0:
            report(f"pip wheel failed, the build uses the index: {errors[-500:]}")
            return None
        host = f"{sys.version_info.major}.{sys.version_info.minor}"
        said = podman("run", "--rm", *ULIMITS, "--entrypoint=python3", base, "-c",
                      "import sys; print('%d.%d' % sys.version_info[:2])")  # fmt: skip
        if said != host:
            report(f"the base runs Python {said}, not {host}: the build uses the index")
            return None
        return self.folder


def build(base: str, wheels: Path | None, *, fresh: bool) -> str:
    """Build the image (from `wheels` when given); the log, each line with
    its second, names the slowest steps. `fresh`: on a machine with no layer
    to reuse, where committing each step as a layer only costs time."""
    log = Path(tempfile.gettempdir()) / f"{PREFIX}-build.log"
    mount = [f"--volume={wheels}:/wheels:ro", "--build-arg=WHEELS=/wheels"]
    command = [
        *PODMAN,
        "build",
        "--format=docker",
        "--network=host",
        "--volume=/etc/ssl/certs:/etc/ssl/certs:ro",
        *(mount if wheels else []),
        *(["--no-cache", "--layers=false"] if fresh else []),
        *ULIMITS,
        f"--build-arg=BASE={base}",
        f"--build-arg=VERSION={VERSION}",
        f"--tag={IMAGE}",
        str(ROOT),
    ]
    code, steps = _logged(command, log)
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise CheckFailed(f"the build failed (whole log: {log}):\n{tail}")
    for name, seconds in sorted(steps.items(), key=lambda step: -step[1])[:3]:
        report(f"  {seconds:5.1f} s in {name[:90]}")
    return IMAGE


def _logged(command: list[str], log: Path) -> tuple[int, dict[str, float]]:
    """Run `command`, writing its output to `log` with each line's second;
    returns its exit code and the seconds each build STEP took."""
    began = time.monotonic()
    steps: dict[str, float] = {}
    step, since = "", began
    with (
        log.open("w") as out,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            now = time.monotonic()
            out.write(f"[{now - began:6.1f} s] {line}")
            if "STEP " in line and ": " in line:
                if step:
                    steps[step] = now - since
                step, since = line.split(": ", 1)[1].strip(), now
        code = process.wait(timeout=900)
    if step:
        steps[step] = time.monotonic() - since
    return code, steps


def inspect_image(image: str) -> dict[str, Any]:
    (inspected,) = json.loads(podman("image", "inspect", image))
    config: dict[str, Any] = inspected["Config"]
    # Podman keeps a Docker-format image's HEALTHCHECK beside its config.
    config.setdefault("Healthcheck", inspected.get("Healthcheck"))
    return config


def image_size(image: str) -> int:
    return int(podman("image", "inspect", "--format={{.Size}}", image))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Volume:
    def __init__(self, name: str) -> None:
        self.name = name

    def remove(self) -> None:
        podman("volume", "rm", "--force", self.name, check=False)

    def fill_with(self, database: bytes, image: str = IMAGE) -> None:
        """A new volume holding `database` as careforall.db, owned by the
        image's user, as a volume the service made itself would be."""
        self.remove()
        podman("volume", "create", self.name)
        where = Path(podman("volume", "inspect", "--format={{.Mountpoint}}", self.name))
        # `id` as the image's user: uid=10001(careforall) gid=10001(...) ...
        said = podman("run", "--rm", *ULIMITS, "--entrypoint=id", image).split()
        uid, gid = (part.split("=")[1].split("(")[0] for part in said[:2])
        (where / "careforall.db").write_bytes(database)
        for path in (where, where / "careforall.db"):
            os.chown(path, int(uid), int(gid))


class Container:
    """One container of the image, publishing port 8000 on 127.0.0.1:port and
    keeping /data in `volume`."""

    def __init__(self, name: str, volume: Volume, image: str = IMAGE) -> None:
        self.name, self.volume, self.image = name, volume, image
        self.port = free_port()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self) -> float:
        """Start it and wait until /healthz answers; returns the seconds."""
        began = time.monotonic()
        podman(
            "run",
            "--detach",
            f"--name={self.name}",
            *ULIMITS,
            f"--publish=127.0.0.1:{self.port}:8000",
            f"--volume={self.volume.name}:/data",
            # Campaigns take donations without an admin's review here.
            "--env=CAREFORALL_CAMPAIGN_REVIEW=off",
            self.image,
        )
        with httpx.Client(base_url=self.base_url, timeout=2.0) as http:
            while time.monotonic() - began < START_WAIT:
                if self.state() != "running":
                    raise CheckFailed(f"{self.name} exited:\n{self.logs()}")
                try:
                    if http.get("/healthz").status_code == 200:
                        seconds = time.monotonic() - began
                        report(f"{self.name} answered /healthz in {seconds:.1f} s")
                        return seconds
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
        raise CheckFailed(f"{self.name} not healthy in {START_WAIT} s:\n{self.logs()}")

    def state(self) -> str:
        return podman("inspect", "--format={{.State.Status}}", self.name)

    def logs(self, lines: int = 40) -> str:
        # The service logs to stderr, which `podman logs` passes on as such.
        done = subprocess.run(
            [*PODMAN, "logs", f"--tail={lines}", self.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        return done.stdout

    def healthcheck(self) -> bool:
        done = subprocess.run(
            [*PODMAN, "healthcheck", "run", self.name], capture_output=True, check=False
        )
        return done.returncode == 0

    def process_uids(self) -> list[int]:
        status = podman("exec", self.name, "cat", "/proc/1/status")
        (line,) = [x for x in status.splitlines() if x.startswith("Uid:")]
        return [int(uid) for uid in line.split()[1:]]

    def stop(self, timeout: float) -> tuple[float, int]:
        """SIGTERM; returns the seconds until it ended and its exit code."""
        began = time.monotonic()
        podman("kill", "--signal=TERM", self.name)
        try:
            code = podman("wait", self.name, timeout=timeout)
        except subprocess.TimeoutExpired:
            podman("kill", self.name, check=False)
            raise CheckFailed(f"SIGTERM left {self.name} running {timeout} s") from None
        return time.monotonic() - began, int(code)

    def remove(self) -> None:
        podman("rm", "--force", "--ignore", "--time=0", self.name, check=False)

    def sql(self, query: str) -> Any:
        script = (
            "import json, sqlite3, sys; "
            "c = sqlite3.connect('file:/data/careforall.db?mode=ro', uri=True); "
            "print(json.dumps(c.execute(sys.argv[1]).fetchall()))"
        )
        return json.loads(podman("exec", self.name, "python", "-c", script, query))

    def row_counts(self, tables: list[str]) -> dict[str, int]:
        return {t: self.sql(f"SELECT count(*) FROM {t}")[0][0] for t in tables}

    def revision(self) -> str:
        return str(self.sql("SELECT version_num FROM alembic_version")[0][0])
