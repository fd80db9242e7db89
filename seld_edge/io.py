"""Outputs that appear whole or not at all: one file (:func:`atomic_write`) or a set of files (:class:`OutputSet`).

A failed run (a full disk, a read-only folder, a folder where a file should go, an error in the input)
changes nothing on disk: earlier outputs keep their content, and no partial file, staging folder or
empty output folder is left behind. Every OSError while writing becomes one SeldEdgeError naming the
file, so the command line reports it in one line.

How: a set's files are written into a hidden staging folder inside the output folder (the same file
system, so moving them is a rename), and only when every one is complete are they moved into place,
each replacing its target in one rename. An earlier file is kept (hard-linked) until the whole set
is in place, so a failure halfway through the moves puts every earlier file back. The targets are
checked (no folder in the way, writable folders) when the set is opened, before any work.
"""

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import numpy as np

from seld_edge.errors import SeldEdgeError

STAGING_PREFIX = ".seld-edge-staging-"


def cannot_write(path: str | Path, err: OSError) -> SeldEdgeError:
    """The one-line error for an OSError while writing path (no space left, read-only, no permission, ...)."""
    return SeldEdgeError(f"{path}: cannot write ({err.strerror or err})")


def open_output(path: Path) -> IO[bytes]:
    """Open a staged file for writing. Every output byte goes through here, so tests can simulate a full
    disk by replacing this one function (tests/faults.py)."""
    return open(path, "wb")


class OutputSet:
    """Files under ``folder`` written as one set: all of them, or (on any error) none.

    Use as a context manager: the set is committed when the block ends normally and discarded when it
    raises. ``targets`` (paths under folder) are checked at once, so a run fails before any work when
    an output cannot be written::

        with OutputSet(out_dir, targets) as outputs:
            for target in targets:
                outputs.write_text(target, compute(target))

    Files of an earlier run that the new set does not replace can be removed with it (:meth:`remove`),
    so a folder never mixes two runs' outputs.
    """

    def __init__(self, folder: str | Path, targets: Iterable[str | Path] = ()) -> None:
        self.folder = Path(folder)
        self._created = make_folders(self.folder)
        try:
            self._staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=STAGING_PREFIX))
        except OSError as err:
            remove_folders(self._created)
            raise cannot_write(self.folder, err) from None
        self._staged: dict[Path, Path] = {}
        self._removed: list[Path] = []
        try:
            self.check(targets)
        except BaseException:
            self.discard()
            raise

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def check(self, targets: Iterable[str | Path]) -> None:
        """Refuse, naming the path, targets that cannot be written: a folder in the way of a file, a file in
        the way of a folder, a read-only file or folder."""
        for target in map(Path, targets):
            self._relative(target)
            if target.is_dir():
                raise SeldEdgeError(f"{target}: a folder is in the way of this output file")
            if os.path.lexists(target) and not os.access(target, os.W_OK, follow_symlinks=False):
                raise SeldEdgeError(f"{target}: read-only; not replaced")
            parent = target.parent
            while not parent.exists():
                parent = parent.parent
            if not parent.is_dir():
                raise SeldEdgeError(f"{target}: cannot write ({parent} is a file, not a folder)")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise SeldEdgeError(f"{parent}: cannot write (read-only or no permission)")

    def path(self, target: str | Path) -> Path:
        """Where target's content is written for now; the set moves it to target when committed."""
        target = Path(target)
        relative = self._relative(target)
        self.check([target])
        staged = self._staging / "new" / relative
        try:
            staged.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise cannot_write(target, err) from None
        self._staged[target] = staged
        return staged

    @contextmanager
    def open(self, target: str | Path) -> Iterator["StagedFile"]:
        """A handle on target's staged file, for output written piece by piece while other work goes on
        (only the handle's own OSErrors become "cannot write" errors)."""
        staged = self.path(target)
        try:
            handle = open_output(staged)
        except OSError as err:
            raise cannot_write(target, err) from None
        try:
            yield StagedFile(handle, target)
        except BaseException:
            with suppress(OSError):
                handle.close()
            raise
        try:
            handle.close()
        except OSError as err:
            raise cannot_write(target, err) from None

    def write(self, target: str | Path, write: Callable[["StagedFile"], object]) -> None:
        """Stage target's content: ``write`` is called with a binary file-like handle and only writes."""
        with self.open(target) as handle:
            write(handle)

    def write_text(self, target: str | Path, text: str) -> None:
        self.write(target, lambda handle: handle.write(text.encode()))

    def remove(self, target: str | Path) -> None:
        """Remove target (a file of an earlier run) when the set is committed; it stays if the set fails."""
        target = Path(target)
        self._relative(target)
        self._removed.append(target)

    def commit(self) -> None:
        """Move every staged file into place (and remove what :meth:`remove` named); on any error, put every
        earlier file back and raise one SeldEdgeError."""
        kept = self._staging / "old"
        done: list[tuple[Path, Path | None, bool]] = []  # (target, the earlier file kept, new file in place)
        target = self.folder
        try:
            kept.mkdir()
            for index, (target, staged) in enumerate(self._staged.items()):
                self._created += make_folders(target.parent)
                backup = kept / str(index) if os.path.lexists(target) else None
                if backup is not None:
                    _keep(target, backup)
                done.append((target, backup, False))
                os.replace(staged, target)
                done[-1] = (target, backup, True)
            for index, target in enumerate(self._removed):
                if os.path.lexists(target):
                    os.rename(target, kept / f"removed-{index}")
                    done.append((target, kept / f"removed-{index}", False))
        except (OSError, SeldEdgeError) as err:
            _roll_back(done)
            self.discard()
            raise err if isinstance(err, SeldEdgeError) else cannot_write(target, err) from None
        shutil.rmtree(self._staging, ignore_errors=True)

    def discard(self) -> None:
        """Forget the staged files and remove the folders this set created."""
        shutil.rmtree(self._staging, ignore_errors=True)
        remove_folders(self._created)

    def _relative(self, target: Path) -> Path:
        try:
            return Path(os.path.abspath(target)).relative_to(os.path.abspath(self.folder))
        except ValueError:
            raise ValueError(f"{target} is not inside the output folder {self.folder}") from None


class StagedFile:
    """A staged output file being written, a file-like object whose errors name the target in one line.

    Not an io class on purpose: numpy and soundfile then write through :meth:`write` rather than around
    it (numpy's own C write loses the reason, "No space left on device", of a failed write).
    """

    def __init__(self, handle: IO[bytes], target: Path) -> None:
        self._handle = handle
        self.target = target

    def write(self, data: bytes) -> int:
        try:
            return self._handle.write(data)
        except OSError as err:
            raise cannot_write(self.target, err) from None

    def read(self, size: int = -1) -> bytes:
        return self._handle.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def flush(self) -> None:
        try:
            self._handle.flush()
        except OSError as err:
            raise cannot_write(self.target, err) from None


def _keep(target: Path, backup: Path) -> None:
    """Keep target's earlier file as backup: a hard link, so target itself stays in place until replaced
    (a rename where the file system has no hard links)."""
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        os.rename(target, backup)


def _roll_back(done: list[tuple[Path, Path | None, bool]]) -> None:
    """Undo a partial commit, last move first: earlier files back in place, new ones gone."""
    for target, backup, replaced in reversed(done):
        with suppress(OSError):  # best effort: the error that stopped the commit is what gets reported
            if backup is not None:
                os.replace(backup, target)
            elif replaced:
                os.unlink(target)


def make_folders(folder: str | Path) -> list[Path]:
    """Create folder and its missing parents; returns the folders created, outermost first.

    A file in the way, or a folder that cannot be created, is a SeldEdgeError naming it.
    """
    folder = Path(folder)
    missing = []
    existing = folder
    while not existing.is_dir():
        if os.path.lexists(existing):
            what = "it is" if existing == folder else f"{existing} is"
            raise SeldEdgeError(f"{folder}: cannot write ({what} a file, not a folder)")
        missing.append(existing)
        existing = existing.parent
    created: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except OSError as err:
            remove_folders(created)
            raise cannot_write(path, err) from None
        created.append(path)
    return created


def remove_folders(created: list[Path]) -> None:
    """Remove folders made by :func:`make_folders` (innermost first) that are empty again."""
    for path in reversed(created):
        with suppress(OSError):
            path.rmdir()


def check_writable(folder: str | Path, targets: Iterable[str | Path] = ()) -> None:
    """Fail now, in one line, if files cannot be written in folder (or at targets); leaves nothing behind.

    For work that writes its outputs much later (training writes its run folder after an epoch)."""
    OutputSet(folder, targets).discard()


def atomic_write(path: str | Path, write: Callable[["StagedFile"], object]) -> None:
    """Write one file whole or not at all: ``write`` is called with a binary handle (a set of one file)."""
    path = Path(path)
    with OutputSet(path.parent, [path]) as outputs:
        outputs.write(path, write)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    atomic_write(path, lambda handle: np.save(handle, array))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes: how exported models name the checkpoint they came from, and the
    training feature cache the audio it was computed from."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
