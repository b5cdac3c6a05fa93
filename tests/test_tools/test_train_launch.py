"""Training through the launch scripts: 2-process DDP on CPU, kill-and-resume, the paper recipe."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import btdnet  # noqa: F401  (checkpoints load with weights_only=True)

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py'


def _options(data_root, max_iters, val_interval, ckpt_interval):
    opts = [
        f'train_cfg.max_iters={max_iters}',
        f'train_cfg.val_interval={val_interval}',
        f'default_hooks.checkpoint.interval={ckpt_interval}',
        'default_hooks.checkpoint.max_keep_ckpts=-1',
        'default_hooks.logger.interval=1',
        f'param_scheduler.0.end={max_iters}',
        'randomness.seed=0',
        'randomness.deterministic=True',
    ]
    for split in ('train', 'val', 'test'):
        opts += [
            f'{split}_dataloader.dataset.data_root={data_root}',
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False',
        ]
    return ['--cfg-options', *opts]


def _env():
    return dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1')


def _final_val_metrics(work_dir: Path) -> dict:
    """The last validation record of mmengine's scalars log."""
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    records = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    val = [r for r in records if 'oIoU' in r]
    assert val, f'no validation record in {logs}'
    return val[-1]


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_train_two_cpu_processes(synthetic_rrsis_root, tmp_path):
    work_dir = tmp_path / 'ddp'
    cmd = [
        'bash',
        str(ROOT / 'tools' / 'dist_train.sh'),
        str(TINY),
        '2',
        '--work-dir',
        str(work_dir),
        *_options(synthetic_rrsis_root, 4, 4, 4),
    ]
    env = dict(_env(), PORT=str(_free_port()))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'Distributed training: True' in log
    assert "'world_size': 2" in log or 'GPU number: 2' in log or 'world_size: 2' in log
    assert (work_dir / 'iter_4.pth').is_file()
    assert 0.0 <= _final_val_metrics(work_dir)['oIoU'] <= 100.0


def test_killed_run_resumes_to_the_uninterrupted_result(synthetic_rrsis_root, tmp_path):
    train = [sys.executable, str(ROOT / 'tools' / 'train.py'), str(TINY)]
    options = _options(synthetic_rrsis_root, 8, 8, 4)

    full = tmp_path / 'full'
    subprocess.run(
        [*train, '--work-dir', str(full), *options],
        check=True,
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        timeout=600,
    )

    # Kill a second run (SIGKILL, nothing flushed) once its iteration-4 checkpoint is complete.
    killed = tmp_path / 'killed'
    proc = subprocess.Popen(
        [*train, '--work-dir', str(killed), *options],
        env=_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while not (killed / 'last_checkpoint').is_file() and proc.poll() is None:
        assert time.time() < deadline, 'no checkpoint written in time'
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / 'iter_8.pth').exists(), 'the run finished before it could be killed'

    subprocess.run(
        [*train, '--work-dir', str(killed), '--resume', *options],
        check=True,
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        timeout=600,
    )
    expected = torch.load(str(full / 'iter_8.pth'))
    resumed = torch.load(str(killed / 'iter_8.pth'))
    assert resumed['meta']['iter'] == expected['meta']['iter'] == 8
    for key, value in expected['state_dict'].items():
        torch.testing.assert_close(
            resumed['state_dict'][key], value, rtol=0, atol=1e-6, msg=lambda m, k=key: f'{k}: {m}'
        )
    full_metrics, resumed_metrics = _final_val_metrics(full), _final_val_metrics(killed)
    for name in ('oIoU', 'mIoU', 'Pr@0.5'):
        assert resumed_metrics[name] == pytest.approx(full_metrics[name], abs=1e-6)
