"""Segment what a sentence names in your own image(s).

One image and one sentence:

    python tools/infer.py IMAGE "SENTENCE" --config CONFIG --checkpoint CKPT \\
        [--out mask.png] [--overlay overlay.png] [--device cpu]

Many (a CSV with the columns ``image`` and ``sentence``; relative image paths are read from the
CSV's folder; one image may appear on several rows):

    python tools/infer.py --csv pairs.csv --out-dir results/ --config CONFIG --checkpoint CKPT

writes ``results/masks/<row>_<image>.png``, ``results/overlays/<row>_<image>.png`` and
``results/results.csv`` (row, image, sentence, mask, overlay, fg_pixels, fg_fraction, fg_margin,
error). A row that fails (unreadable image, empty sentence) is recorded with its error and the
others go on; the exit status is 1 if any row failed.

An exported model (``tools/deployment/pytorch2onnx.py CONFIG CKPT --out DIR``) runs through
ONNX Runtime with ``--checkpoint DIR --backend onnxruntime`` (or ``onnxruntime-int8`` for its
int8 copy), in both modes, with the same outputs.

Masks are 8-bit PNGs at the image's original size, target = 255. ``fg_fraction`` (share of
pixels the target wins) and ``fg_margin`` (mean target-minus-background logit over them) tell how
strongly the model claims the target exists.

Images are read as every entry point reads them (``btdnet.utils.read_image_file``): ``--bands``
picks the bands taken as R, G, B (default 1,2,3), and data deeper than 8 bits get one 2-98 %
stretch shared by the bands unless ``--stretch`` says otherwise (``per-band``, ``none`` or
``MIN,MAX``); the stretch used is printed (and is a column of ``results.csv``).

Paths, sentences, the CSV header and the outputs are checked before the model loads. Existing
outputs (``--out``, ``--overlay``, or ``results.csv`` in ``--out-dir``) are not replaced unless
``--overwrite`` is given.
"""

import argparse
import csv
import os.path as osp
import sys

import mmcv
from mmengine.config import DictAction
from mmengine.utils import ProgressBar, mkdir_or_exist

from btdnet.apis import (
    BACKENDS,
    inference_model,
    init_model,
    read_image,
    read_image_header,
    read_pairs_csv,
)
from btdnet.apis.tiled import check_text
from btdnet.evaluation import safe_file_stem, write_mask_png
from btdnet.utils import parse_bands, parse_stretch
from btdnet.utils.image_file import BANDS_HELP, STRETCH_HELP
from btdnet.utils.output_files import check_replaceable
from btdnet.visualization import overlay_from_sample

RESULT_FIELDS = (
    'row',
    'image',
    'sentence',
    'mask',
    'overlay',
    'fg_pixels',
    'fg_fraction',
    'fg_margin',
    'stretch',
    'error',
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='BTDNet: segment what a sentence names')
    parser.add_argument('image', nargs='?', help='image file (single mode)')
    parser.add_argument('sentence', nargs='?', help='referring sentence (single mode)')
    parser.add_argument('--config', required=True, help='model config file')
    parser.add_argument(
        '--checkpoint', required=True, help='trained checkpoint, or the exported folder (ONNX)'
    )
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ...')
    parser.add_argument(
        '--backend',
        default='pytorch',
        choices=BACKENDS,
        help='pytorch (a .pth checkpoint) or onnxruntime[-int8] (an exported folder)',
    )
    parser.add_argument('--out', help='single mode: write the mask PNG here')
    parser.add_argument('--overlay', help='single mode: write the overlay picture here')
    parser.add_argument('--csv', help='batch mode: CSV with columns image,sentence')
    parser.add_argument('--out-dir', help='batch mode: results folder')
    parser.add_argument('--bands', help=BANDS_HELP)
    parser.add_argument('--stretch', default='shared', help=STRETCH_HELP)
    parser.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. model.test_cfg.mode=slide',
    )
    args = parser.parse_args(argv)
    if args.csv:
        if args.image or args.sentence or args.out or args.overlay:
            parser.error('--csv (batch mode) takes no IMAGE, SENTENCE, --out or --overlay')
        if not args.out_dir:
            parser.error('--csv needs --out-dir')
    elif args.image is None or args.sentence is None:
        parser.error('give IMAGE and "SENTENCE", or --csv FILE --out-dir DIR')
    try:
        args.bands = parse_bands(args.bands)
        parse_stretch(args.stretch)
    except ValueError as err:
        parser.error(str(err))
    return args


def check_inputs(args) -> list | None:
    """What can fail before the model loads: image, sentence, CSV header, outputs.

    Returns:
        list | None: The CSV's rows in batch mode (rows with a bad image or sentence are
        recorded as failed later, the others still run).
    """
    if args.csv:
        pairs = read_pairs_csv(args.csv)
        check_replaceable([osp.join(args.out_dir, 'results.csv')], args.overwrite)
        return pairs
    check_text(args.sentence)
    read_image_header(args.image)  # a missing, foreign or headless file fails here
    check_replaceable([p for p in (args.out, args.overlay) if p], args.overwrite)
    return None


def read_rgb(model, path: str, args):
    """The image as the model read it (3-channel 8-bit), in RGB for drawing."""
    return read_image(model, path, args.bands, args.stretch)[..., ::-1]


def describe(result) -> str:
    mask = result.pred_sem_seg.data
    return (
        f'target pixels: {int(mask.sum())} of {mask.numel()} '
        f'({100 * result.fg_fraction:.1f}%), mean target margin {result.fg_margin:.3f}'
    )


def run_single(model, args) -> int:
    result = inference_model(
        model, args.image, args.sentence, bands=args.bands, stretch=args.stretch
    )
    print(describe(result))
    if result.stretch.mode != 'none':
        print(f'{result.stretch} (--stretch to change it)')
    if args.out:
        write_mask_png(args.out, result.pred_sem_seg.data[0].cpu().numpy())
        print(f'mask written to {args.out}')
    if args.overlay:
        drawn = overlay_from_sample(read_rgb(model, args.image, args), result)
        mmcv.imwrite(mmcv.rgb2bgr(drawn), args.overlay)
        print(f'overlay written to {args.overlay}')
    return 0


def run_batch(model, args, pairs: list) -> int:
    for sub in ('masks', 'overlays'):
        mkdir_or_exist(osp.join(args.out_dir, sub))
    records, failed = [], 0
    progress = ProgressBar(len(pairs))
    for row, (name, path, sentence) in enumerate(pairs):
        stem = f'{row}_{safe_file_stem(osp.splitext(osp.basename(name))[0])}'
        record = dict(row=row, image=name, sentence=sentence)
        try:
            result = inference_model(model, path, sentence, bands=args.bands, stretch=args.stretch)
            mask = result.pred_sem_seg.data[0].cpu().numpy()
            record.update(
                mask=osp.join('masks', f'{stem}.png'),
                overlay=osp.join('overlays', f'{stem}.png'),
                fg_pixels=int(mask.sum()),
                fg_fraction=result.fg_fraction,
                fg_margin=result.fg_margin,
                stretch=str(result.stretch),
            )
            write_mask_png(osp.join(args.out_dir, record['mask']), mask)
            drawn = overlay_from_sample(read_rgb(model, path, args), result)
            mmcv.imwrite(mmcv.rgb2bgr(drawn), osp.join(args.out_dir, record['overlay']))
        except (OSError, ValueError, TypeError) as err:
            failed += 1
            record['error'] = f'{type(err).__name__}: {err}'
        records.append(record)
        progress.update()
    results_csv = osp.join(args.out_dir, 'results.csv')
    with open(results_csv, 'w', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        writer.writerows(records)
    print(f'\n{len(records) - failed} of {len(records)} rows done; results in {results_csv}')
    for record in records:
        if record.get('error'):
            print(f'row {record["row"]} ({record["image"]}): {record["error"]}', file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        pairs = check_inputs(args)
        model = init_model(
            args.config,
            args.checkpoint,
            device=args.device,
            cfg_options=args.cfg_options,
            backend=args.backend,
        )
        return run_batch(model, args, pairs) if args.csv else run_single(model, args)
    except (OSError, ValueError, TypeError) as err:  # bad input: say what, without a traceback
        print(f'error: {type(err).__name__}: {err}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
