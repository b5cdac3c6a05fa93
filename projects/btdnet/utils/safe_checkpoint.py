"""Loading mmengine checkpoints with ``torch.load(weights_only=True)``.

torch >= 2.6 loads with ``weights_only=True`` by default: the unpickler only builds globals on an
allow-list. mmengine 0.10.7 predates that and saves objects it does not allow:

* its message hub's ``HistoryBuffer`` (log history kept for resuming), holding numpy arrays;
* numpy scalars (e.g. the best validation score), arrays and dtypes;
* ``builtins.getattr``: ``HistoryBuffer.__getstate__`` pickles its class-level table of statistics
  methods, and a method is pickled as ``getattr(HistoryBuffer, 'min')``.

Allow-listing ``getattr`` would hand a crafted file a general tool (``getattr(os, 'system')``), so
instead the statistics table is not saved at all: :func:`_reduce_history_buffer` pickles a buffer as
``HistoryBuffer(log_history, count_history, max_length)``. The table lives on the class and is
rebuilt on import, so nothing is lost. Importing :mod:`btdnet` then allow-lists exactly the globals
such a checkpoint holds (:data:`SAFE_GLOBALS`) and routes mmengine's local-file loading through
:func:`load_local_checkpoint`, which refuses anything else with an error naming the file.
"""

import copyreg
import logging
import os.path as osp
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import CheckpointLoader

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray

# numpy's dtype objects are rebuilt by calling np.dtype, then restored with BUILD, which needs
# their concrete class (numpy.dtypes.Float64DType, ...): plain numeric ones only.
_NUMERIC_DTYPE_CLASSES = tuple(
    type(np.dtype(name))
    for name in (
        'bool',
        'int8',
        'int16',
        'int32',
        'int64',
        'uint8',
        'uint16',
        'uint32',
        'uint64',
        'float16',
        'float32',
        'float64',
    )
)

# The globals an mmengine Runner checkpoint needs beyond torch's own allow-list.
SAFE_GLOBALS = (
    HistoryBuffer,
    np.ndarray,
    np.dtype,
    *_NUMERIC_DTYPE_CLASSES,
    _multiarray._reconstruct,
    _multiarray.scalar,
)


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint asks the unpickler for a global that is not allow-listed."""


def _reduce_history_buffer(buffer: HistoryBuffer):
    """Pickle a ``HistoryBuffer`` through its constructor, without its methods table."""
    return HistoryBuffer, (buffer._log_history, buffer._count_history, buffer.max_length)


def _unsafe_globals(filename: str) -> list:
    """Names of the globals in ``filename`` that torch and this module do not allow."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # legacy (non-zip) files cannot be inspected
        return []
    allowed = {f'{g.__module__}.{g.__qualname__}' for g in SAFE_GLOBALS}
    return [name for name in names if name not in allowed]


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """Load a local checkpoint with ``weights_only=True``; replaces mmengine's local loader.

    Args:
        filename (str): Path of the checkpoint.
        map_location: As in :func:`torch.load`.

    Returns:
        dict: The checkpoint.

    Raises:
        FileNotFoundError: ``filename`` is not a file.
        UnsafeCheckpointError: the file holds globals outside the allow-list (nothing in it ran).
        ValueError: the file is not a PyTorch checkpoint at all.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename!r} is not a file')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _unsafe_globals(filename)
        if unsafe or 'Unsupported global' in str(err) or 'unrecognized function' in str(err):
            names = ', '.join(unsafe) or _last_line(err)
            raise UnsafeCheckpointError(
                f'refusing to load checkpoint {filename!r}: it holds globals outside the '
                f'allow-list of btdnet.utils.safe_checkpoint ({names}). Unpickling them could run '
                'code from the file. If you trust it, add them with '
                'torch.serialization.add_safe_globals before loading.'
            ) from None
        raise _not_a_checkpoint(filename, err) from None
    except Exception as err:  # torch's legacy reader fails on other files with assorted errors
        raise _not_a_checkpoint(filename, err) from None


def _not_a_checkpoint(filename: str, err: Exception) -> ValueError:
    """The plain message; torch's own text (which asks to file an issue) only in the debug log."""
    print_log(
        f'torch.load({filename!r}, weights_only=True) said: {type(err).__name__}: {err}',
        logger='current',
        level=logging.DEBUG,
    )
    return ValueError(f'{filename} is not a PyTorch checkpoint (a .pth file written by training)')


def _last_line(err: Exception) -> str:
    """The informative part of torch's long unpickling messages."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = [line for line in lines if 'WeightsUnpickler error' in line]
    return (detail or lines or [''])[-1]


def register_safe_checkpointing() -> None:
    """Make mmengine's checkpoints save and load under ``weights_only=True``.

    Called once when :mod:`btdnet` is imported; calling it again is harmless.
    """
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    torch.serialization.add_safe_globals(list(SAFE_GLOBALS))
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
