"""Command-line settings that `tools/train.py` and `tools/test.py` apply to a config."""

import gc
import logging
import os.path as osp

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log


def load_config(
    path: str, cfg_options: dict | None = None, work_dir: str | None = None, launcher: str = 'none'
) -> Config:
    """Read a config and apply the options every tool shares.

    Args:
        path (str): Config file.
        cfg_options (dict, optional): ``--cfg-options`` overrides, merged last.
        work_dir (str, optional): ``--work-dir``; defaults to the config's own ``work_dir`` or
            ``./work_dirs/<config name>``.
        launcher (str): ``none``, ``pytorch``, ``slurm`` or ``mpi``. Without CUDA, a
            ``pytorch`` (torchrun) launch uses the gloo backend, so ``tools/dist_train.sh`` and
            ``tools/dist_test.sh`` also work on a CPU machine (see :func:`init_cpu_distributed`;
            mmengine's slurm and mpi set-ups need a GPU).

    Returns:
        Config: The config, ready for ``Runner.from_cfg``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config {path!r} is not a file')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    if launcher == 'pytorch' and not torch.cuda.is_available():
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    return cfg


def enable_amp(cfg: Config) -> None:
    """Switch the config's optimizer wrapper to mixed precision.

    bf16 where the GPU supports it (no loss scaling needed), fp16 with dynamic loss scaling
    otherwise. mmengine's ``AmpOptimWrapper`` needs a GPU; on a CPU-only machine building the
    runner fails with mmengine's own message.
    """
    wrapper = cfg.optim_wrapper
    if wrapper.get('type') == 'AmpOptimWrapper':
        print_log('AMP is already enabled in the config', logger='current', level=logging.WARNING)
        return
    if wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
        raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper, found {wrapper.type!r}')
    wrapper.type = 'AmpOptimWrapper'
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        wrapper.dtype = 'bfloat16'
    else:
        wrapper.dtype = 'float16'
        wrapper.loss_scale = 'dynamic'


def init_cpu_distributed(cfg: Config) -> None:
    """Let a torchrun launch (``--launcher pytorch``) run on a machine without CUDA.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device``, which fails without a GPU, and its
    default DDP wrapper pins ``device_ids`` to the local rank. Where CUDA is absent this starts the
    gloo process group from torchrun's environment before the Runner would, and wraps the model
    in DDP without device ids. Elsewhere it does nothing.
    """
    if cfg.get('launcher') != 'pytorch' or torch.cuda.is_available() or dist.is_initialized():
        return
    dist.init_process_group(backend=cfg.env_cfg.dist_cfg.backend)  # gloo, from load_config
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False),
    )
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)


def close_distributed() -> None:
    """End a launch's process group once the runner is done (nothing without one).

    Call it after the last reference to the runner is dropped. Every rank waits for the others,
    then the group is destroyed before the interpreter exits: a gloo group's worker threads stop
    only when its last owner goes, and DDP's reducer owns it too. Left to the interpreter's
    teardown, those threads can outlive Python and abort the rank (``terminate called without an
    active exception``, SIGABRT) after its work was done. The runner sits in reference cycles
    (hooks point back at it), hence the collection first.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
