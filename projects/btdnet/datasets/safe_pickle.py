"""Reading the REFER-style ``refs(*).p`` pickles without running code from them.

RRSIS-D ships its referring expressions as a pickle. Loaders in the wild call ``pickle.load``,
which builds any global a file names (``os.system``, ``subprocess.Popen``, ...) and calls it while
loading. The refs only hold lists, dicts, strings and numbers, and pickle encodes those with
opcodes that need no global at all, so :class:`RestrictedUnpickler` refuses every global outside
:data:`ALLOWED_GLOBALS` (sets and an ``OrderedDict``, which older writers may use; and
``_codecs.encode``, which protocol-2 pickles written by Python 3 use to store ``bytes``). A refused
global raises :class:`UnsafePickleError` naming the file and the global before it is looked up,
so nothing in the file runs.
"""

import io
import pickle
from typing import Any

from mmengine.fileio import get

# (module, name) pairs a refs pickle may name. Python 2 pickles spell builtins `__builtin__`.
ALLOWED_GLOBALS = frozenset(
    {
        ('builtins', 'set'),
        ('builtins', 'frozenset'),
        ('builtins', 'bytearray'),
        ('__builtin__', 'set'),
        ('__builtin__', 'frozenset'),
        ('__builtin__', 'bytearray'),
        ('collections', 'OrderedDict'),
        ('_codecs', 'encode'),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asks for a global that plain data does not need."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only builds plain containers and scalars.

    Args:
        file: A binary file object to read from.
        filename (str): The file's name, for error messages.
        **kwargs: Passed to :class:`pickle.Unpickler` (e.g. ``encoding`` for Python 2 pickles).
    """

    def __init__(self, file, filename: str = '<bytes>', **kwargs):
        super().__init__(file, **kwargs)
        self.filename = filename

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f'{self.filename}: refused to load the global {module}.{name}; a refs pickle '
                'should hold only lists, dicts, strings and numbers (allowed globals: '
                f'{sorted(".".join(g) for g in ALLOWED_GLOBALS)}). Nothing from the file was run.'
            )
        return super().find_class(module, name)


def safe_load_pickle(filename: str, backend_args: dict | None = None) -> Any:
    """Load a pickle of plain data, refusing any other global.

    Args:
        filename (str): Path (or URI understood by ``mmengine.fileio``) of the pickle.
        backend_args (dict, optional): mmengine file backend arguments.

    Returns:
        The unpickled object (lists, dicts, strings, numbers, sets).

    Raises:
        FileNotFoundError: The file does not exist.
        UnsafePickleError: The pickle names a global outside :data:`ALLOWED_GLOBALS`.
        pickle.UnpicklingError: The file is not a readable pickle.
    """
    try:
        content = get(filename, backend_args=backend_args)
    except FileNotFoundError:
        raise FileNotFoundError(
            f'Expected the refs pickle at {filename}, found no such file.'
        ) from None
    try:
        # Python 2 `str` objects are decoded as UTF-8 (what REFER-style writers stored).
        return RestrictedUnpickler(io.BytesIO(content), filename, encoding='utf-8').load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise pickle.UnpicklingError(
            f'{filename}: expected a pickle of refs, could not read it: {type(exc).__name__}: {exc}'
        ) from exc
