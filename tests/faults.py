"""Fault injection for the output tests of every command: a full disk, a read-only folder, a folder in the way.

- A full disk: where this process may mount (root, and ``mount -t tmpfs`` works), a real tmpfs of
  DISK_BYTES at the folder, filled until ``free`` bytes are left, so every writer meets a real ENOSPC.
  Elsewhere it is simulated: the one function that opens output files (seld_edge.io.open_output) is
  replaced by one whose files raise ENOSPC once more than ``free`` bytes have been written in all.
  Setting SELD_EDGE_SIMULATED_FAULTS=1 forces the simulation where mounting works.
- A read-only folder: a tmpfs remounted read-only where mounting works (root ignores permission bits),
  otherwise the folder and its files lose their write permission; as root without mount, the test is
  skipped.
- A folder in the way of an output file needs no help: ``target.mkdir()``.

:data:`HOW` says which kind this machine gets.
"""

import errno
import os
import subprocess
import tempfile
from pathlib import Path
from typing import IO

import pytest

DISK_BYTES = 256 * 1024


def _can_mount() -> bool:
    if os.environ.get("SELD_EDGE_SIMULATED_FAULTS") == "1" or os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as probe:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True).returncode:
            return False
        subprocess.run(["umount", probe], check=True)
    return True


MOUNT = _can_mount()
HOW = "tmpfs mounts" if MOUNT else "a simulated writer (ENOSPC) and permission bits (read-only)"


class FullDisk:
    """A folder on a disk about to be full: put the earlier content in, then :meth:`fill` it."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch, size: int = DISK_BYTES) -> None:
        self.folder = folder
        self._monkeypatch = monkeypatch
        folder.mkdir(parents=True)
        if MOUNT:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)

    def fill(self, free: int | None = None) -> None:
        """Leave ``free`` bytes for whatever is written next: by default one 4 KiB page of a tmpfs (which any
        file takes at least), or 1 KiB for the simulated writer (which counts bytes), about one small CSV."""
        if MOUNT:
            free = 4096 if free is None else free
            stat = os.statvfs(self.folder)
            filler = stat.f_bavail * stat.f_frsize - free
            (self.folder / ".filler").write_bytes(b"\0" * filler)
            return
        import seld_edge.io

        budget = [1024 if free is None else free]

        def open_output(path: Path) -> IO[bytes]:
            return _Limited(open(path, "wb"), budget)

        self._monkeypatch.setattr(seld_edge.io, "open_output", open_output)

    def files(self) -> dict[str, bytes]:
        """Every file under the folder (the filler left out), by path relative to it, with its content."""
        return {
            str(p.relative_to(self.folder)): p.read_bytes()
            for p in sorted(self.folder.rglob("*"))
            if p.is_file() and p.name != ".filler"
        }

    def entries(self) -> list[str]:
        """Every file and folder under the folder (the filler left out), relative, sorted."""
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.name != ".filler")

    def close(self) -> None:
        if MOUNT:
            subprocess.run(["umount", str(self.folder)], check=True)


class _Limited:
    """A file that raises ENOSPC once the writes of all such files exceed their shared budget of bytes."""

    def __init__(self, handle: IO[bytes], budget: list[int]) -> None:
        self._handle = handle
        self._budget = budget

    def write(self, data: bytes) -> int:
        size = memoryview(data).nbytes
        if size > self._budget[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._handle.name)
        self._budget[0] -= size
        return self._handle.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._handle, name)

    def __enter__(self) -> "_Limited":
        return self

    def __exit__(self, *_: object) -> None:
        self._handle.close()


class ReadOnly:
    """A folder whose content becomes read-only when :meth:`lock` is called."""

    def __init__(self, folder: Path) -> None:
        if not MOUNT and os.geteuid() == 0:
            pytest.skip("root writes through permission bits, and this machine cannot mount a read-only tmpfs")
        self.folder = folder
        folder.mkdir(parents=True)
        if MOUNT:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)], check=True)
        self._locked: list[tuple[Path, int]] = []

    def lock(self) -> None:
        if MOUNT:
            subprocess.run(["mount", "-o", "remount,ro", str(self.folder)], check=True)
            return
        for path in [self.folder, *self.folder.rglob("*")]:
            self._locked.append((path, path.stat().st_mode))
            path.chmod(path.stat().st_mode & ~0o222)

    def close(self) -> None:
        if MOUNT:
            subprocess.run(["umount", str(self.folder)], check=True)
        for path, mode in reversed(self._locked):
            path.chmod(mode)


def one_line_error(output: str, *parts: str) -> str:
    """The error line of a failed command's output (stdout and stderr together, progress bars included),
    checked to be the only ``error:`` line, the last line, with no traceback, containing each of parts."""
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in output, output
    for part in parts:
        assert part in errors[0], (part, errors[0])
    return errors[0]
