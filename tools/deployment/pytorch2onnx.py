"""Export a trained BTDNet to ONNX, with its tokenizer, for ONNX Runtime.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --out DIR [--shape H W]
        [--int8] [--opset 18] [--no-optimize] [--overwrite] [--cfg-options k=v ...]

Writes ``DIR/model.onnx`` (image + token ids -> (B, 2, H/4, W/4) logits [O_bg, O_fg], H x W with a
refiner; batch dynamic, checked with ``onnx.checker``; torch's dynamo exporter, a few minutes), the
tokenizer files, ``DIR/deploy.json`` (inputs, size, normalisation, the ONNX Runtime vs PyTorch
difference measured on a seeded batch) and, with ``--int8``, ``DIR/model_int8.onnx`` (ONNX Runtime's
dynamic int8 quantisation). Run it with ``tools/infer.py --config CONFIG --checkpoint DIR --backend
onnxruntime``; check it on a dataset split with ``tools/deployment/verify_onnx.py``.

``--shape`` defaults to the size the config feeds the network (the test pipeline's resize, or
``crop_size`` in slide mode) and must equal it. A config that cannot be exported (not a
BTDNet, a keep-ratio resize in whole mode, ...) stops with why before anything is loaded.

A folder that is not empty is refused, naming the files the export would replace, unless
``--overwrite`` is given. The export is written into a temporary folder beside DIR and moved into
place at the end: a failed export (a bad checkpoint, ...) leaves no folder behind.
"""

import argparse
import sys

from mmengine.config import DictAction

from btdnet.deployment import ExportError, export_onnx


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a BTDNet checkpoint to ONNX')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='trained checkpoint (.pth)')
    parser.add_argument('--out', required=True, help='folder to write model.onnx etc. into')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), help='input size')
    parser.add_argument('--int8', action='store_true', help='also write model_int8.onnx')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset (>= 16)')
    parser.add_argument(
        '--no-optimize', action='store_true', help="skip the exporter's graph optimisation"
    )
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='write into a folder that is not empty (files the export writes are replaced)',
    )
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        manifest = export_onnx(
            args.config,
            args.checkpoint,
            args.out,
            shape=tuple(args.shape) if args.shape else None,
            opset=args.opset,
            optimize=not args.no_optimize,
            int8=args.int8,
            overwrite=args.overwrite,
            cfg_options=args.cfg_options,
        )
    except (ExportError, OSError, ValueError) as err:
        print(f'error: {type(err).__name__}: {err}', file=sys.stderr)
        return 1
    diffs = ', '.join(f'{k}: {v:.2e}' for k, v in manifest['parity_on_export'].items())
    print(f'wrote {args.out}: {", ".join(manifest["files"].values())}; {diffs}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
