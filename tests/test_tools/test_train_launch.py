"""Training through the launch scripts: 2-process DDP on CPU, kill-and-resume, the paper recipe.

These runs use the CPU (gloo) path on every machine, a GPU machine included: two processes over
nccl would need two GPUs, and the bitwise resume check needs CPU kernels (CUDA's atomic adds in
backward passes are not deterministic).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import free_port
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS

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
    """CPU only (see the module docstring), one thread, tests/ importable (sigkill_hook)."""
    path = os.pathsep.join(p for p in (str(ROOT / 'tests'), os.environ.get('PYTHONPATH')) if p)
    return dict(
        os.environ,
        PYTHON=sys.executable,
        OMP_NUM_THREADS='1',
        CUDA_VISIBLE_DEVICES='',
        PYTHONPATH=path,
    )


def _final_val_metrics(work_dir: Path) -> dict:
    """The last validation record of mmengine's scalars log."""
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    records = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    val = [r for r in records if 'oIoU' in r]
    assert val, f'no validation record in {logs}'
    return val[-1]


def _val_scores_by_hand(checkpoint: Path, data_root: Path) -> dict:
    """oIoU and mIoU (percent) of ``checkpoint`` on the val split, in this process, one thread.

    Masks at the original size, I and U per sentence, oIoU = sum I / sum U, mIoU = mean I / U.
    """
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(TINY))
    model = MODELS.build(cfg.model)
    model.load_state_dict(torch.load(str(checkpoint))['state_dict'])
    model.eval()
    dataset = DATASETS.build(dict(cfg.val_dataloader.dataset, data_root=str(data_root)))
    inter, union = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the training processes (OMP_NUM_THREADS=1)
    try:
        with torch.no_grad():
            for k in range(len(dataset)):
                data = model.data_preprocessor(pseudo_collate([dataset[k]]), False)
                (result,) = model(**data, mode='predict')
                pred = result.pred_sem_seg.data[0] > 0
                gt = result.gt_sem_seg.data[0] > 0
                inter.append(int((pred & gt).sum()))
                union.append(int((pred | gt).sum()))
    finally:
        torch.set_num_threads(threads)
    assert len(inter) >= 2, 'the val split should hold several sentences'
    return dict(
        oIoU=100.0 * sum(inter) / sum(union),
        mIoU=100.0 * sum(i / u if u else 0.0 for i, u in zip(inter, union)) / len(inter),
    )


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
    env = dict(_env(), PORT=str(free_port()))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'Distributed training: True' in log
    assert "'world_size': 2" in log or 'GPU number: 2' in log or 'world_size: 2' in log
    # The two ranks' validation at iteration 4, gathered, scores what one process scores with
    # the same weights (iter_4.pth is saved before that validation runs).
    metrics = _final_val_metrics(work_dir)
    expected = _val_scores_by_hand(work_dir / 'iter_4.pth', synthetic_rrsis_root)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-9), name


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

    # A second run SIGKILLs itself (nothing flushed) right after its iteration-4 checkpoint:
    # the same config plus tests/sigkill_hook.py's hook, which runs after the checkpoint hook.
    base = Config.fromfile(str(TINY))
    hooks = [dict(h) for h in base.get('custom_hooks', [])]
    hooks.append(dict(type='SigkillAfterCheckpointHook', iteration=4))
    killed_cfg = tmp_path / 'tiny_killed_after_iter_4.py'
    killed_cfg.write_text(
        f'_base_ = [{str(TINY)!r}]\n'
        "custom_imports = dict(imports=['btdnet', 'sigkill_hook'], allow_failed_imports=False)\n"
        f'custom_hooks = {hooks!r}\n'
    )
    killed = tmp_path / 'killed'
    run = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'train.py'), str(killed_cfg)]
        + ['--work-dir', str(killed), *options],
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == -signal.SIGKILL, run.stdout[-3000:] + run.stderr[-3000:]
    assert (killed / 'iter_4.pth').is_file()
    log = run.stdout + run.stderr
    assert 'Iter(train) [4/8]' in log and 'Iter(train) [5/8]' not in log  # died in iteration 4

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
