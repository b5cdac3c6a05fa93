"""Compare an exported BTDNet (ONNX Runtime, fp32 and int8) with PyTorch on a dataset split.

    python tools/deployment/verify_onnx.py CONFIG CHECKPOINT DIR [--split test]
        [--data-root DIR] [--batch-size 8] [--threads N] [--cfg-options k=v ...]

Every sample of the split is predicted by the PyTorch model (``CHECKPOINT``) and by the ONNX
Runtime models in ``DIR`` (``model.onnx``, and ``model_int8.onnx`` when exported with
``--int8``). Printed per backend: the split's oIoU and mIoU against the ground truth, the IoU of
its masks with PyTorch's (mean and worst sample) and the largest logit difference.
"""

import argparse
import sys

import torch
from mmengine.config import DictAction

from btdnet.apis import init_model
from btdnet.datasets import build_split_dataset
from btdnet.deployment import ONNXRuntimeSegmentor, compare_backends, read_manifest
from btdnet.engine import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='ONNX Runtime vs PyTorch on a dataset split')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='PyTorch checkpoint the export came from')
    parser.add_argument('model_dir', help='folder written by tools/deployment/pytorch2onnx.py')
    parser.add_argument('--split', default='test', choices=('train', 'val', 'test'))
    parser.add_argument('--data-root', help='override the dataset data_root')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--threads', type=int, default=None, help='CPU threads of each backend')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        manifest = read_manifest(args.model_dir)
        cfg = load_config(args.config, args.cfg_options)
        if args.threads:
            torch.set_num_threads(args.threads)
        dataset = build_split_dataset(cfg, args.split, args.data_root)
        models = dict(pytorch=init_model(cfg, args.checkpoint))
        for precision in ('fp32', 'int8'):
            if precision in manifest['files']:
                models[f'onnxruntime-{precision}'] = ONNXRuntimeSegmentor(
                    args.model_dir, cfg, precision=precision, threads=args.threads
                )
    except (OSError, ValueError, KeyError) as err:
        print(f'error: {type(err).__name__}: {err}', file=sys.stderr)
        return 1
    report = compare_backends(models, dataset, args.batch_size)
    print(f'\n{args.split} split: {len(dataset)} samples, reference: pytorch')
    header = (
        f'{"backend":<18}{"oIoU":>8}{"mIoU":>8}{"mask IoU vs pytorch":>22}'
        f'{"worst sample":>14}{"max |logit diff|":>18}'
    )
    print(header)
    print('-' * len(header))
    for name, row in report.items():
        print(
            f'{name:<18}{row["oIoU"]:>8.2f}{row["mIoU"]:>8.2f}{row["mask_iou_mean"]:>22.4f}'
            f'{row["mask_iou_min"]:>14.4f}{row["max_abs_logit_diff"]:>18.2e}'
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
