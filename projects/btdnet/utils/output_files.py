"""Writing outputs without replacing a user's files unasked, and without leaving half a result.

Every tool that writes follows the rule ``tools/infer_scene.py`` set: files that exist are
named and kept unless ``--overwrite`` is given; a run that fails leaves no empty or partial
folder behind.
"""

from __future__ import annotations

import contextlib
import os
import os.path as osp
import shutil
import tempfile
from collections.abc import Iterable, Iterator


def check_replaceable(paths: Iterable[str], overwrite: bool, what: str = 'this run') -> None:
    """Refuse to replace existing files unless ``overwrite``.

    Raises:
        FileExistsError: Some of ``paths`` exist; the message names them and ``--overwrite``.
    """
    found = [str(p) for p in paths if osp.lexists(p)]
    if found and not overwrite:
        raise FileExistsError(
            f'{what} would replace {", ".join(found)}; pass --overwrite to replace '
            f'{"it" if len(found) == 1 else "them"}'
        )


def check_folder_replaceable(folder: str, writes: Iterable[str], overwrite: bool) -> None:
    """Refuse a non-empty output folder unless ``overwrite``; name what would be replaced.

    Args:
        folder (str): The output folder (may not exist yet).
        writes (Iterable[str]): Names of the files the run writes into it.
        overwrite (bool): Allow writing into a non-empty folder (files the run writes are
            replaced; others are kept).

    Raises:
        FileExistsError: ``folder`` is a file, or is not empty and ``overwrite`` is False.
    """
    if osp.lexists(folder) and not osp.isdir(folder):
        raise FileExistsError(f'{folder} is a file; expected a folder to write into')
    present = sorted(os.listdir(folder)) if osp.isdir(folder) else []
    if not present or overwrite:
        return
    replaced = [name for name in present if name in set(writes)]
    kept = [name for name in present if name not in set(writes)]
    parts = []
    if replaced:
        parts.append(f'would replace {", ".join(replaced)}')
    if kept:
        parts.append(f'holds {", ".join(kept[:10])}{" ..." if len(kept) > 10 else ""}')
    raise FileExistsError(
        f'{folder} is not empty: the export {" and ".join(parts)}; pass --overwrite to write '
        'into it anyway, or choose an empty folder'
    )


@contextlib.contextmanager
def staged_folder(folder: str) -> Iterator[str]:
    """A temporary folder beside ``folder`` to write into; on success its files move into
    ``folder`` (created if missing), on failure it is removed and ``folder`` is as it was.

    Yields:
        str: The temporary folder.
    """
    parent = osp.dirname(osp.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f'.{osp.basename(osp.abspath(folder))}.partial-', dir=parent)
    try:
        yield staging
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(staging):
            os.replace(osp.join(staging, name), osp.join(folder, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
