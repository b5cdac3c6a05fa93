"""The command-line tools start, and their shared config handling does what they promise."""

import subprocess
import sys
from pathlib import Path

import pytest

from btdnet.engine import enable_amp, load_config

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / 'configs' / '_base_' / 'default_runtime.py'


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_tool_help(tool):
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / tool), '--help'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for option in ('--work-dir', '--cfg-options', '--launcher'):
        assert option in result.stdout
    if tool == 'train.py':
        assert '--resume' in result.stdout and '--amp' in result.stdout


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh', 'slurm_train.sh'])
def test_launch_scripts_print_usage_without_arguments(script):
    result = subprocess.run(
        ['bash', str(ROOT / 'tools' / script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert 'usage:' in result.stderr


def test_load_config_applies_work_dir_options_and_gloo(tmp_path):
    cfg = load_config(str(RUNTIME), {'log_level': 'DEBUG'}, None, 'pytorch')
    assert cfg.log_level == 'DEBUG'
    assert cfg.work_dir == './work_dirs/default_runtime'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'  # this machine has no CUDA
    cfg = load_config(str(RUNTIME), None, str(tmp_path), 'none')
    assert cfg.work_dir == str(tmp_path)
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'


def test_load_config_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.py'):
        load_config(str(tmp_path / 'nope.py'))


def test_enable_amp_sets_mixed_precision_wrapper():
    cfg = load_config(str(RUNTIME))
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4))
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    # CPU machine: no bf16-capable GPU, so fp16 with dynamic loss scaling.
    assert cfg.optim_wrapper.dtype == 'float16'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
