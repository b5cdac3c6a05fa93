"""The command-line tools start, and their shared config handling does what they promise."""

import glob
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from btdnet.engine import close_distributed, enable_amp, load_config

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


def test_demo_refuses_a_run_too_short_to_warm_up_and_decay(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'demo.py'), '--max-iters', '1'],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert '--max-iters: expected at least 2' in result.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was generated


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh', 'slurm_train.sh'])
def test_launch_scripts_print_usage_without_arguments(script):
    result = subprocess.run(
        ['bash', str(ROOT / 'tools' / script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert 'usage:' in result.stderr


def test_load_config_applies_work_dir_options_and_backend(tmp_path):
    cfg = load_config(str(RUNTIME), {'log_level': 'DEBUG'}, None, 'pytorch')
    assert cfg.log_level == 'DEBUG'
    assert cfg.work_dir == './work_dirs/default_runtime'
    # A torchrun launch keeps the config's nccl where CUDA is present, gloo where it is absent.
    assert cfg.env_cfg.dist_cfg.backend == ('nccl' if torch.cuda.is_available() else 'gloo')
    cfg = load_config(str(RUNTIME), None, str(tmp_path), 'none')
    assert cfg.work_dir == str(tmp_path)
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'


@pytest.mark.parametrize('cuda, backend', [(True, 'nccl'), (False, 'gloo')])
def test_load_config_backend_follows_cuda(monkeypatch, cuda, backend):
    """Both branches, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    assert load_config(str(RUNTIME), launcher='pytorch').env_cfg.dist_cfg.backend == backend


def test_load_config_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.py'):
        load_config(str(tmp_path / 'nope.py'))


def _amp_wrapper():
    cfg = load_config(str(RUNTIME))
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4))
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    return cfg.optim_wrapper


def _check_amp_dtype(wrapper, bf16: bool):
    if bf16:  # no loss scaling needed
        assert wrapper.dtype == 'bfloat16' and 'loss_scale' not in wrapper
    else:
        assert wrapper.dtype == 'float16' and wrapper.loss_scale == 'dynamic'


def test_enable_amp_sets_mixed_precision_wrapper():
    """bf16 where this machine's GPU supports it, fp16 with dynamic loss scaling otherwise."""
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    _check_amp_dtype(_amp_wrapper(), bf16)


@pytest.mark.parametrize('cuda, bf16', [(True, True), (True, False), (False, False)])
def test_enable_amp_dtype_follows_the_gpu(monkeypatch, cuda, bf16):
    """Every branch, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *args, **kwargs: bf16)
    _check_amp_dtype(_amp_wrapper(), cuda and bf16)


def _gloo_threads() -> int:
    """Threads of this process that gloo started (Linux names them in /proc)."""
    names = (Path(task, 'comm').read_text() for task in glob.glob('/proc/self/task/*'))
    return sum('gloo' in name for name in names)


@pytest.mark.skipif(not Path('/proc/self/task').is_dir(), reason='needs /proc')
def test_close_distributed_stops_the_group_threads_ddp_held(tmp_path):
    """train.py / test.py end a launch's process group before exiting; without a group this does
    nothing. DDP's reducer co-owns the group, and a runner sits in reference cycles: the group's
    threads must be gone once the last name for the runner is dropped and the group closed (left
    to the interpreter's exit, they can abort a rank after its work was done)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    close_distributed()  # no group: nothing to do, no error
    assert not dist.is_initialized()
    before = _gloo_threads()
    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1
    )
    try:
        runner = {'model': DistributedDataParallel(torch.nn.Linear(3, 2))}
        runner['self'] = runner  # a cycle, as a runner and its hooks make
        runner['model'](torch.ones(4, 3)).sum().backward()
        assert _gloo_threads() > before
        del runner
        close_distributed()
        assert not dist.is_initialized()
        assert _gloo_threads() == before
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
