"""Prometheus and promtool for tests and local runs, without root, Docker or a build.

Debian's ``prometheus`` package holds both binaries: ``apt-get download`` fetches the
``.deb`` as any user, ``dpkg-deb -x`` unpacks it, and the two binaries (with the web UI's
assets, ``web/``) are kept under ``<home>/tools/prometheus-<version>/``. Later calls find
them there, or on PATH, and fetch nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agon.errors import AgonError

__all__ = ["PrometheusTools", "install", "which_tools"]

PACKAGE = "prometheus"
APT_HINT = (
    "apt needs its package lists and a reachable mirror: run `apt-get update` as root first; "
    "without apt, put Prometheus 2.x's `prometheus` and `promtool` on PATH"
)


@dataclass(frozen=True)
class PrometheusTools:
    prometheus: Path
    promtool: Path


def which_tools(home: Path) -> PrometheusTools | None:
    """The tools kept under ``home/tools`` (the last by name), else both on PATH."""
    for folder in sorted((home / "tools").glob(f"{PACKAGE}-*"), reverse=True):
        tools = PrometheusTools(folder / "prometheus", folder / "promtool")
        if tools.prometheus.is_file() and tools.promtool.is_file():
            return tools
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus and promtool:
        return PrometheusTools(Path(prometheus), Path(promtool))
    return None


def install(home: Path, progress=print) -> PrometheusTools:
    """Fetch and unpack Debian's Prometheus once into ``home/tools``; later calls are free."""
    found = which_tools(home)
    if found is not None:
        return found
    apt = _need("apt-get", "Prometheus for agon comes from Debian's package; " + APT_HINT)
    dpkg = _need("dpkg-deb", "it unpacks Debian's Prometheus package (Debian: apt-get install dpkg)")
    tools = home / "tools"
    tools.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetching-", dir=tools) as tmp:
        work = Path(tmp)
        progress(f"fetching Prometheus: apt-get download {PACKAGE} (about 20 MB, once)")
        _run([apt, "download", PACKAGE], work, f"apt-get download {PACKAGE} failed", APT_HINT, timeout=900)
        debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise AgonError(f"apt-get download {PACKAGE} left no .deb in {work}")
        version = _run([dpkg, "--field", str(debs[0]), "Version"], work, "dpkg-deb cannot read the package")
        _run([dpkg, "--extract", str(debs[0]), str(work / "root")], work, "dpkg-deb cannot unpack it")
        kept = work / f"{PACKAGE}-{version.strip()}"
        kept.mkdir()
        for name in ("prometheus", "promtool"):
            binary = work / "root" / "usr" / "bin" / name
            if not binary.is_file():
                raise AgonError(f"Debian's {PACKAGE} {version.strip()} holds no /usr/bin/{name}")
            binary.rename(kept / name)
        assets = work / "root" / "usr" / "share" / "prometheus" / "web"
        if assets.is_dir():  # Debian's UI, served with --web.local-assets=<kept>/web
            assets.rename(kept / "web")
        for name in ("prometheus", "promtool"):
            _run([str(kept / name), "--version"], work, f"the unpacked {name} does not run")
        final = tools / kept.name
        try:
            kept.rename(final)
        except OSError as exc:  # another process kept the same version first: use that one
            if not (final / "promtool").is_file():
                raise AgonError(f"cannot keep Prometheus in {final} ({exc}): remove it and retry") from exc
    progress(f"Prometheus kept in {final}")
    return PrometheusTools(final / "prometheus", final / "promtool")


def _need(program: str, why: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise AgonError(f"{program} not found on PATH: {why}")
    return found


def _run(cmd: list[str], cwd: Path, failure: str, hint: str = "", timeout: float = 120) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AgonError(f"{failure}: no answer in {timeout:g} s", retriable=True) from exc
    except OSError as exc:
        raise AgonError(f"{failure}: {exc}") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
        raise AgonError(f"{failure} (exit {proc.returncode}): {tail}" + (f" ({hint})" if hint else ""))
    return proc.stdout
