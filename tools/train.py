"""Train a BTDNet model (or any mmseg model) from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]] [--amp]
                          [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]

Multi-GPU: ``tools/dist_train.sh CONFIG GPUS``; SLURM: ``tools/slurm_train.sh``.
"""

import argparse
import os

from mmengine.config import DictAction
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from btdnet.engine import close_distributed, enable_amp, init_cpu_distributed, load_config


def parse_args():
    parser = argparse.ArgumentParser(description='Train a BTDNet segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        metavar='CHECKPOINT',
        help='resume training: from CHECKPOINT, or without a value from the latest checkpoint '
        'in the work dir (model, optimizer, scheduler, iteration and RNG state)',
    )
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision: bf16 where the GPU supports it, else fp16',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. train_dataloader.batch_size=4',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    # torchrun passes --local-rank (older launchers --local_rank)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        enable_amp(cfg)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    init_cpu_distributed(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    try:
        runner.train()
    finally:
        del runner  # DDP holds the process group: let it go before the group is destroyed
        close_distributed()


if __name__ == '__main__':
    main()
