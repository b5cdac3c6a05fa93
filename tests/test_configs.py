"""Every config in configs/ loads, and sets up the btdnet plugin the way mmseg expects."""

from pathlib import Path

import pytest
from mmengine.config import Config

CONFIG_ROOT = Path(__file__).resolve().parents[1] / 'configs'
CONFIGS = sorted(CONFIG_ROOT.rglob('*.py'))


def test_configs_exist():
    assert (CONFIG_ROOT / '_base_' / 'default_runtime.py') in CONFIGS


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_ROOT)))
def test_config_loads(path):
    cfg = Config.fromfile(str(path))
    if '_base_' in path.parts:
        return
    # A runnable config imports the plugin and resolves types in mmseg's scope.
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports == dict(imports=['btdnet'], allow_failed_imports=False)
