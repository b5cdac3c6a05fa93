"""Evaluate a checkpoint on a config's test split.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out DIR] [--show-dir DIR]
                         [--dump FILE.json|FILE.csv] [--overwrite] [--cfg-options k=v ...]
                         [--launcher {none,pytorch,slurm,mpi}]

Multi-GPU: ``tools/dist_test.sh CONFIG CHECKPOINT GPUS [options]`` (same options and outputs).

* the scores (Pr@0.5-0.9, oIoU, mIoU, per-category mIoU) are printed as tables and saved by
  mmengine under the work dir;
* ``--out DIR``: predicted masks ``DIR/masks/<sample_id>.png`` (target = 255, original size;
  every rank writes the masks it predicted) and ``DIR/index.csv`` (written by rank 0: sample_id,
  mask, text, category, img_path, I, U, IoU, fg_fraction, fg_margin);
* ``--show-dir DIR``: ``DIR/<sample_id>.png``, the image with ground truth and prediction, the
  sentence, the IoU and the existence score;
* ``--dump FILE``: the per-sample records (without masks) as JSON or CSV, for error analysis.

An ``--out`` or ``--show-dir`` folder that is not empty, or a ``--dump`` file that exists, is
refused before anything loads, unless ``--overwrite`` is given. Every rank checks before the
process group starts, and no rank writes before all of them have joined it.

The checkpoint must match the config's model exactly: missing, unexpected or reshaped weights
stop the run with their list (mmengine alone would only warn and evaluate a half-random model).
"""

import argparse
import os
import os.path as osp

from mmengine.config import DictAction
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from btdnet.apis import load_checkpoint_strict
from btdnet.engine import close_distributed, init_cpu_distributed, load_config


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a BTDNet segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for the evaluation log and metrics')
    parser.add_argument('--out', help='directory to write the predicted masks to')
    parser.add_argument('--show-dir', help='directory to write prediction overlays to')
    parser.add_argument('--dump', help='write per-sample results to this .json or .csv file')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='write into non-empty --out / --show-dir folders and replace a --dump file',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. test_dataloader.batch_size=4',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _evaluators(cfg) -> list:
    """The test evaluator entries as a list (the config may hold one dict or a list)."""
    if isinstance(cfg.test_evaluator, (list, tuple)):
        cfg.test_evaluator = list(cfg.test_evaluator)
    else:
        cfg.test_evaluator = [cfg.test_evaluator]
    evaluators = cfg.test_evaluator
    if not any(e.get('type') == 'RRSISMetric' for e in evaluators):
        raise SystemExit(
            '--out / --dump need an RRSISMetric in test_evaluator; found '
            f'{[e.get("type") for e in evaluators]}'
        )
    return [e for e in evaluators if e.get('type') == 'RRSISMetric']


def check_outputs(args) -> None:
    """Refuse to write into a non-empty ``--out`` / ``--show-dir`` or over a ``--dump`` file."""
    if args.overwrite:
        return
    for flag, folder in (('--out', args.out), ('--show-dir', args.show_dir)):
        if folder and osp.isdir(folder) and os.listdir(folder):
            raise SystemExit(
                f'{flag} {folder} is not empty (it holds {len(os.listdir(folder))} entries): '
                'pass --overwrite to write into it, or choose another folder'
            )
    if args.dump and osp.lexists(args.dump):
        raise SystemExit(f'--dump {args.dump} exists: pass --overwrite to replace it')


def main():
    args = parse_args()
    check_outputs(args)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint {args.checkpoint!r} is not a file')
    # Loaded below with every key checked, rather than through load_from (which only warns).
    cfg.load_from = None
    if args.show_dir:
        cfg.default_hooks.visualization = dict(
            type='ReferringVisualizationHook', draw=True, interval=1, out_dir=args.show_dir
        )
    if args.out or args.dump:
        for evaluator in _evaluators(cfg):
            if args.out:
                evaluator['output_dir'] = args.out
            if args.dump:
                evaluator['dump_file'] = args.dump
    init_cpu_distributed(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    load_checkpoint_strict(runner.model, args.checkpoint, map_location='cpu')
    try:
        runner.test()
    finally:
        del runner  # DDP holds the process group: let it go before the group is destroyed
        close_distributed()


if __name__ == '__main__':
    main()
