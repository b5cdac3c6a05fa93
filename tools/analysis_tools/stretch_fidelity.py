"""How faithfully the 16-bit stretch gives back an 8-bit picture, for products of several depths.

    python tools/analysis_tools/stretch_fidelity.py IMAGE [IMAGE ...]
        [--config CONFIG --checkpoint CKPT [--sentence "the red vehicle" | --sentences OBJ.json]
         [--files]] [--device cpu]

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
  for the sentence given, or with ``--sentences`` (a synthetic dataset's
  ``synthetic_objects.json``) for every sentence of each scene;
* with ``--files`` as well: the same through files, as a user meets them, read by
  ``inference_model`` from their paths: the scene generator's 16-bit product (x64 + 500) as an
  RGB GeoTIFF, a MINISBLACK GeoTIFF (GDAL's default photometric tag for 3 bands), a 4-band
  GeoTIFF (a constant 4th band, NIR-like) and a 16-bit PNG, against the 8-bit PNG's mask.

Prints one row per product and stretch (and file format), averaged over the images. The files
go to a temporary folder, removed afterwards.
"""

import argparse
import json
import os.path as osp
import sys
import tempfile

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
    parser.add_argument(
        '--sentences',
        help="a synthetic dataset's synthetic_objects.json: every one-target sentence of each "
        'scene instead of --sentence',
    )
    parser.add_argument(
        '--files', action='store_true', help='also through GeoTIFF / PNG files (--checkpoint)'
    )
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    if bool(args.config) != bool(args.checkpoint):
        parser.error('--config and --checkpoint go together')
    if (args.files or args.sentences) and not args.checkpoint:
        parser.error('--files and --sentences need --config and --checkpoint')
    return args


def scene_sentences(objects_file: str | None, default: str) -> callable:
    """image path -> its sentences: the one-target sentences of the scene named by the file
    (``synthetic_objects.json``), or ``[default]``."""
    if objects_file is None:
        return lambda path: [default]
    by_image = {}
    with open(objects_file, encoding='utf-8') as f:
        for record in json.load(f):
            if record.get('kind', 'one') == 'one':
                by_image.setdefault(int(record['image_id']), []).append(record['text'])
    return lambda path: by_image[int(osp.splitext(osp.basename(path))[0])]


def write_formats(bgr: np.ndarray, folder: str) -> dict:
    """The 8-bit image as a PNG, and as the scene generator's 16-bit product (x64 + 500) in
    the formats users meet; name -> path."""
    import rasterio

    rgb16 = (bgr[..., ::-1].astype(np.uint16) * 64 + 500).transpose(2, 0, 1)
    paths = dict(png8=osp.join(folder, 'png8.png'), png16=osp.join(folder, 'png16.png'))
    cv2.imwrite(paths['png8'], bgr)
    cv2.imwrite(paths['png16'], rgb16[::-1].transpose(1, 2, 0))  # OpenCV writes BGR
    nir = np.full_like(rgb16[:1], 3000)
    for name, data, photometric in (
        ('tif_rgb', rgb16, 'RGB'),
        ('tif_minisblack', rgb16, 'MINISBLACK'),
        ('tif_4band', np.concatenate((rgb16, nir)), 'MINISBLACK'),
    ):
        paths[name] = osp.join(folder, f'{name}.tif')
        profile = dict(driver='GTiff', width=bgr.shape[1], height=bgr.shape[0], count=len(data))
        with rasterio.open(
            paths[name], 'w', dtype='uint16', photometric=photometric, **profile
        ) as dst:
            dst.write(data)
    return paths


def file_ious(model, bgr: np.ndarray, sentences: list) -> dict:
    """Mask IoU of each 16-bit file format against the 8-bit PNG, averaged over sentences."""
    from btdnet.apis import inference_model

    with tempfile.TemporaryDirectory() as folder:
        paths = write_formats(bgr, folder)
        masks = {
            name: [
                r.pred_sem_seg.data[0].numpy() > 0 for r in inference_model(model, path, sentences)
            ]
            for name, path in paths.items()
        }
    reference = masks.pop('png8')
    return {
        name: float(np.mean([iou(m, r) for m, r in zip(got, reference, strict=True)]))
        for name, got in masks.items()
    }


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
    sentences_of = scene_sentences(args.sentences, args.sentence)
    files = []
    for path in args.images:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            print(f'error: {path} is not an image OpenCV reads', file=sys.stderr)
            return 1
        reference, sentences = None, sentences_of(path)
        if model is not None:
            reference = [
                r.pred_sem_seg.data[0].numpy() for r in inference_model(model, bgr, sentences)
            ]
        if args.files:
            files.append(file_ious(model, bgr, sentences))
        for name, gain, offset, bits in PRODUCTS:
            deep = np.clip(bgr.astype(np.int64) * gain + offset, 0, 2**bits - 1).astype(np.uint16)
            for stretch in STRETCHES:
                spec = f'{offset},{offset + 255 * gain}' if stretch == 'by hand' else stretch
                read, _ = array_to_bgr(deep, spec)
                diff = float(np.abs(read.astype(np.int16) - bgr).mean())
                row = [diff, hue_shift(bgr, read)]
                if model is not None:
                    results = inference_model(model, read, sentences)
                    masks = [r.pred_sem_seg.data[0].numpy() > 0 for r in results]
                    row.append(np.mean([iou(m, r > 0) for m, r in zip(masks, reference)]))
                rows[(name, stretch)].append(row)
    header = f'{"product":38s} {"stretch":9s} {"mean |d|":>9s} {"hue":>6s}'
    print(header + ('  mask IoU' if model is not None else ''))
    for (name, stretch), values in rows.items():
        mean = np.mean(values, axis=0)
        line = f'{name:38s} {stretch:9s} {mean[0]:9.1f} {mean[1]:6.1f}'
        print(line + (f'  {mean[2]:8.3f}' if model is not None else ''))
    for name in files[0] if files else ():
        values = [f[name] for f in files]
        print(
            f'file {name:15s} (x64 + 500, default stretch): mask IoU against the 8-bit PNG '
            f'{np.mean(values):.3f} (worst image {min(values):.3f})'
        )
    print(f'({len(args.images)} images)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
