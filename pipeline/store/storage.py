"""Output files: atomic writes (temp file, fsync, rename), names and checksums.

A file is either wholly there under its final name or not there at all; a crash leaves at
most a temp file, which ``clean_temp_files`` removes on the next start. Images are written
through ``DIR/.tmp/`` (short names, outside ``images/``), so no output name, however long or
odd, can collide with a temp file or be taken for one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.mime import extension
from pipeline.core.pngsize import HEADER_BYTES, png_size
from pipeline.core.types import ImagePart

IMAGES_DIR = "images"
TMP_DIR = ".tmp"  # in-progress image files: a sibling of images/, so renames stay atomic
_TMP_PREFIX = ".tmp-"
_tmp_names = itertools.count()

# Errors no other file name would escape: every later write fails too. (A name the file system
# rejects, ENAMETOOLONG, is one row's problem and fails that row alone.)
DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}
)


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image durable on disk."""

    rel_path: str  # relative to the output directory, with forward slashes
    sha256: str
    width: int | None  # None: the bytes did not parse as an image (kept anyway: it was paid for)
    height: int | None
    mime_type: str


def is_disk_error(error: BaseException) -> bool:
    """Whether ``error`` means the output disk cannot take more writes (not one bad name)."""
    return isinstance(error, OSError) and error.errno in DISK_ERRNOS


def output_names(row_id: str, images: tuple[ImagePart, ...]) -> list[str]:
    """``images/<id>.<ext>``, or ``images/<id>_<n>.<ext>`` when a row produced several."""
    if len(images) == 1:
        return [f"{IMAGES_DIR}/{row_id}.{extension(images[0].mime_type)}"]
    return [
        f"{IMAGES_DIR}/{row_id}_{n}.{extension(im.mime_type)}" for n, im in enumerate(images, 1)
    ]


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to ``fd``. The one place file contents are written: a test replaces it
    to make the disk fail (ENOSPC, EIO) without filling a real one."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(
    path: str | Path, data: bytes, tmp_dir: str | Path | None = None, *, drop_cache: bool = False
) -> None:
    """Write ``data`` so that ``path`` is either complete or absent, even across a power cut.

    The temp file is next to ``path``, or in ``tmp_dir`` (same file system) when given.
    A failed write removes its temp file: a full disk gets its space back. ``drop_cache``:
    the file is an output nothing reads back (``drop_cached``). Paths may be text: a row's
    image is named without ``pathlib``, whose joins cost more calls than the write.
    """
    if tmp_dir is None:
        path = Path(path)
        tmp: str | Path = path.with_name(f"{_TMP_PREFIX}{os.getpid()}-{path.name}")
    else:
        tmp = f"{os.fspath(tmp_dir)}/{os.getpid()}-{next(_tmp_names)}"
    try:
        fd = _create(tmp, tmp_dir)
        try:
            write_all(fd, data)
            os.fsync(fd)
            if drop_cache:
                drop_cached(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _create(tmp: str | Path, tmp_dir: str | Path | None) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        return os.open(tmp, flags, 0o644)
    except FileNotFoundError:
        if tmp_dir is None:
            raise
        # Made here, the first time it is missing, not checked before every image: a mkdir
        # and a stat per image were a fifth of a row's file system calls.
        with contextlib.suppress(FileExistsError):
            os.mkdir(tmp_dir)
        return os.open(tmp, flags, 0o644)


def drop_cached(fd: int) -> None:
    """Let the kernel reuse the memory that caches an fsynced file nothing reads back (a run's
    images). On a virtual machine, memory the kernel takes fresh is backed by the host on first
    touch: writing an image into it cost ~3 ms of CPU per MB here, into pages the kernel had
    just freed ~0.5 ms (docs/benchmarks.md). Kept cached, a night's images would also push the
    user's other files out of the cache. Best effort: the data is on disk either way."""
    if _fadvise is not None:
        with contextlib.suppress(OSError):
            _fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


_fadvise = getattr(os, "posix_fadvise", None)  # not on macOS


def create_new(folder: Path, prefix: str, mode: int, *, make_folder: bool) -> tuple[int, Path]:
    """A new file ``folder/<prefix><pid>-<n>``, opened for writing, created exclusively (a name
    an earlier process with this id left is skipped). Named by a counter, not ``mkstemp``'s
    random draw and working-directory lookup: system calls a row paid for. ``make_folder``:
    the folder is made the first time it is missing, not checked before every file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    made = False
    while True:
        path = folder / f"{prefix}{os.getpid()}-{next(_new_names)}"
        try:
            return os.open(path, flags, mode), path
        except FileExistsError:
            continue
        except FileNotFoundError:
            if made or not make_folder:
                raise
            folder.mkdir(exist_ok=True)
            made = True


_new_names = itertools.count()


def fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable."""
    fsync_path(path)


def fsync_path(path: Path) -> None:
    """fsync the file or folder at ``path`` (one this process has no descriptor for)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_images(out_dir: Path, row_id: str, images: tuple[ImagePart, ...]) -> list[StoredImage]:
    """Write a row's images and describe them. Blocking: the disk guard runs it on the event
    loop only while the disk keeps up (``store/placement.py``), else in a worker thread.

    The files' contents are fsynced; their names become durable with the directory's fsync,
    which the ledger does once per group of records, before the records themselves. A stem
    with ``/`` (``--name-template "{category}/{sku}"``) makes sub-folders of ``images/``;
    raises OSError if one would lead outside it (a symlinked folder).
    """
    stored = []
    out = os.fspath(out_dir)  # paths as text: see write_atomic
    tmp_dir = f"{out}/{TMP_DIR}"  # made by write_atomic if missing
    named = list(zip(output_names(row_id, images), images, strict=True))
    # Spooled images are made durable before any is renamed, so a failure (EIO) leaves every
    # spool in place for the disk guard's second try; one a first try moved is not looked for.
    moved = {
        rel
        for rel, image in named
        if image.spooled and not os.path.exists(image.spooled.path) and (out_dir / rel).exists()
    }
    synced: dict[str, int] = {}  # spools made durable, open until their pages are dropped
    try:
        for rel, image in named:
            if image.spooled and rel not in moved:
                synced[rel] = _synced(image.spooled.path)
        for rel, image in named:
            target = f"{out}/{rel}"
            if "/" in rel[len(IMAGES_DIR) + 1 :]:  # in a sub-folder of images/
                make_folders(out_dir / IMAGES_DIR, (out_dir / rel).parent)
            if image.spooled:
                # Written and hashed while the answer arrived, in DIR/.tmp/: moved, not
                # rewritten; its header read before its pages are let go.
                if rel not in moved:
                    os.replace(image.spooled.path, target)
                width, height = image_size(Path(target))
                if rel in synced:
                    drop_cached(synced[rel])
            else:
                write_atomic(target, image.data, tmp_dir, drop_cache=True)
                width, height = image_size(image.data)
            stored.append(StoredImage(rel, image.sha256, width, height, image.mime_type))
    finally:
        for fd in synced.values():
            os.close(fd)
    return stored


def _synced(path: str | Path) -> int:
    """``path`` opened and fsynced; the caller closes it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def image_size(data: bytes | Path) -> tuple[int | None, int | None]:
    """Pixel size from the image header (no full decode); (None, None) if it is not an image."""
    if isinstance(data, Path):
        with open(data, "rb") as f:
            head = f.read(HEADER_BYTES)
    else:
        head = data[:HEADER_BYTES]
    if (size := png_size(head)) is not None:
        return size  # the common case, read without Pillow (core/pngsize.py)
    from PIL import Image  # here, so a run's first request does not wait for Pillow to load

    try:
        with Image.open(data if isinstance(data, Path) else io.BytesIO(data)) as im:
            return im.size
    except Exception:  # Pillow raises many types for bad data; any of them means "not an image"
        return None, None


def make_folders(images: Path, folder: Path) -> None:
    """Create ``folder`` under ``images`` a level at a time (durably); a symbolic link or a
    file on the way is refused, so an output never lands outside ``images/``."""
    current = images
    for part in folder.relative_to(images).parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise OSError(f"{current} is not a folder nanobatch made: not writing through it")
        if not current.exists():
            current.mkdir(exist_ok=True)
            fsync_dir(current.parent)  # the new folder's name is durable like a file's


def image_files(folder: Path) -> list[str]:
    """Every file under ``folder`` (sub-folders included), relative to it, with ``/``."""
    found = []
    for parent, _, files in os.walk(folder):
        prefix = Path(parent).relative_to(folder).as_posix()
        found += [name if prefix == "." else f"{prefix}/{name}" for name in files]
    return found


def output_folders(rel_paths: list[str]) -> set[str]:
    """The folders (relative to the output directory) whose renames a record depends on."""
    return {rel.rsplit("/", 1)[0] for rel in rel_paths}


def clean_temp_files(out_dir: Path) -> int:
    """Remove temp files a killed run left behind; returns how many.

    Only in ``DIR/.tmp/`` and ``DIR/.tmp-*`` (the ledger's own files): never in ``images/``,
    where every file, whatever its name, is an output.
    """
    removed = 0
    leftovers = [*out_dir.glob(f"{_TMP_PREFIX}*")]
    if (out_dir / TMP_DIR).is_dir():
        leftovers += (out_dir / TMP_DIR).iterdir()
    for tmp in leftovers:
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
