"""How faithfully the 16-bit stretch gives back an 8-bit picture, for products of several depths.

    python tools/analysis_tools/stretch_fidelity.py IMAGE [IMAGE ...]
        [--config CONFIG --checkpoint CKPT [--sentence "the red vehicle"]] [--device cpu]

Each 8-bit image is written as a 16-bit product would store it (value x gain + offset, clipped
to the product's bit depth: 11-bit and 12-bit sensors, the synthetic scene generator's x64 + 500,
and a dark 12-bit product using a quarter of its range), read back through the one reader every
entry point uses (``btdnet.utils``) with each stretch (``shared``, the default; ``per-band``; and
``--stretch OFFSET,OFFSET+255*GAIN`` by hand, which undoes the product's scaling), and compared
with the 8-bit original:

* ``mean |d|``: mean absolute difference in grey levels (0-255);
* ``hue``: mean hue shift in degrees on coloured pixels (saturation > 0.25): colour words need
  it small;
* with ``--checkpoint``: the mask IoU against the mask the model draws on the 8-bit original,
  for the sentence given (or, for the demo data, use a sentence of each scene).

Prints one row per product and stretch, averaged over the images. Nothing is written.
"""

import argparse
import sys

import cv2
import numpy as np

from btdnet.utils.image_file import array_to_bgr

# (name, gain, offset, bits): how products store 8-bit-like radiance in 16-bit files.
PRODUCTS = (
    ('11-bit, x8', 8, 0, 11),
    ('12-bit, x16', 16, 0, 12),
    ('12-bit, x4 + 200 (dark)', 4, 200, 12),
    ('16-bit, x64 + 500 (scene generator)', 64, 500, 16),
    ('16-bit, x257 (full range)', 257, 0, 16),
)
STRETCHES = ('shared', 'per-band', 'by hand')  # by hand: --stretch OFFSET,OFFSET+255*GAIN


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='16-bit stretch fidelity against 8-bit images')
    parser.add_argument('images', nargs='+', help='8-bit images (e.g. the demo test scenes)')
    parser.add_argument('--config', help='model config (with --checkpoint: mask IoU)')
    parser.add_argument('--checkpoint', help='trained checkpoint')
    parser.add_argument('--sentence', default='the red vehicle', help='sentence for the masks')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    if bool(args.config) != bool(args.checkpoint):
        parser.error('--config and --checkpoint go together')
    return args


def hue_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute hue difference (degrees) of two BGR images on a's coloured pixels."""
    ha, hb = (cv2.cvtColor(x, cv2.COLOR_BGR2HSV_FULL).astype(np.float32) for x in (a, b))
    coloured = ha[..., 1] > 0.25 * 255
    if not coloured.any():
        return 0.0
    d = np.abs(ha[..., 0] - hb[..., 0])[coloured] * (360 / 256)
    return float(np.minimum(d, 360 - d).mean())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def main(argv=None) -> int:
    args = parse_args(argv)
    model = None
    if args.checkpoint:
        from btdnet.apis import inference_model, init_model

        model = init_model(args.config, args.checkpoint, device=args.device)
    rows = {(p[0], s): [] for p in PRODUCTS for s in STRETCHES}
    for path in args.images:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            print(f'error: {path} is not an image OpenCV reads', file=sys.stderr)
            return 1
        reference = None
        if model is not None:
            reference = inference_model(model, bgr, args.sentence).pred_sem_seg.data[0].numpy()
        for name, gain, offset, bits in PRODUCTS:
            deep = np.clip(bgr.astype(np.int64) * gain + offset, 0, 2**bits - 1).astype(np.uint16)
            for stretch in STRETCHES:
                spec = f'{offset},{offset + 255 * gain}' if stretch == 'by hand' else stretch
                read, _ = array_to_bgr(deep, spec)
                diff = float(np.abs(read.astype(np.int16) - bgr).mean())
                row = [diff, hue_shift(bgr, read)]
                if model is not None:
                    mask = inference_model(model, read, args.sentence).pred_sem_seg.data[0]
                    row.append(iou(mask.numpy() > 0, reference > 0))
                rows[(name, stretch)].append(row)
    header = f'{"product":38s} {"stretch":9s} {"mean |d|":>9s} {"hue":>6s}'
    print(header + ('  mask IoU' if model is not None else ''))
    for (name, stretch), values in rows.items():
        mean = np.mean(values, axis=0)
        line = f'{name:38s} {stretch:9s} {mean[0]:9.1f} {mean[1]:6.1f}'
        print(line + (f'  {mean[2]:8.3f}' if model is not None else ''))
    print(f'({len(args.images)} images)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
