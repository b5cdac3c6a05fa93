"""Shared fixtures: a small synthetic referring dataset in both layouts.

``synthetic_rrsis_root`` (session scope) is a ``pathlib.Path`` holding 6 generated scenes
(96 x 96 px, seed 0; 4 train / 1 val / 1 test, 2-4 sentences each):

* RRSIS-D layout under the root: ``RRSISDDataset(data_root=root, split=...)``;
* RefSegRS layout under ``root / 'refsegrs'``: ``RefSegRSDataset(data_root=root / 'refsegrs')``;
* ``root / 'synthetic_meta.json'``: the generation arguments (seed, size, samples per split).

``synthetic`` is the generator package :mod:`btdnet.datasets.synthetic`
(``make_scene(seed, index, size)`` re-renders any scene with its masks).
"""

import importlib.util
import os
import socket
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = dict(num_images=6, seed=0, size=96)
TINY_CONFIG = ROOT / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py'

# The POS tagger for the key-phrase transform: the shared copy unless the caller set NLTK_DATA.
os.environ.setdefault('NLTK_DATA', str(ROOT / '.venv' / 'nltk_data'))


def load_tool(relative_path: str):
    """Import a script under tools/ as a module (tools/ is not a package)."""
    path = ROOT / 'tools' / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A local TCP port nobody listens on right now (for torchrun's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True, scope='module')
def _denormals_as_computed():
    """``init_model`` flushes denormals process-wide on the CPU: no test module inherits it."""
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


@pytest.fixture(scope='module')
def one_intra_op_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures(...)``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory) -> str:
    """A randomly initialised tiny BTDNet (seed 0) saved as mmengine's Runner saves it."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(TINY_CONFIG)).model)
    path = tmp_path_factory.mktemp('tiny_ckpt') / 'tiny.pth'
    torch.save(dict(meta=dict(iter=0), state_dict=model.state_dict()), path)
    return str(path)


@pytest.fixture(scope='session')
def synthetic():
    """The generator package, :mod:`btdnet.datasets.synthetic`."""
    import btdnet.datasets.synthetic

    return btdnet.datasets.synthetic


@pytest.fixture(scope='session')
def synthetic_rrsis_root(tmp_path_factory, synthetic) -> Path:
    root = tmp_path_factory.mktemp('synthetic_rrsis')
    synthetic.generate(str(root), formats=('rrsisd', 'refsegrs'), **SYNTHETIC)
    return root


@pytest.fixture
def log_messages():
    """Messages logged through mmengine's current logger (``print_log(..., 'current')``)."""
    import logging

    from mmengine.logging import MMLogger

    records = []

    class _Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = _Collect(level=logging.DEBUG)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
