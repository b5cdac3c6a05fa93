"""Write a synthetic georeferenced scene: a mosaic of synthetic RRSIS scenes as one GeoTIFF.

The mosaic is ``--size`` pixels square, made of ``--patch``-pixel scenes from
``make_synthetic_rrsis.make_scene`` (textured ground, roads, coloured objects), in a projected CRS
(UTM 33N, ``--pixel-size`` metres), tiled 512 x 512 and deflate-compressed. ``--dtype uint16``
writes 16-bit bands (value = 8-bit value x 64 + 500); ``--nodata-border F`` blanks a frame of
F x size pixels on every side with nodata 0 (valid pixels are never 0). Written strip by strip:
memory stays at one row of patches whatever the size.

    python tools/dataset_converters/make_synthetic_scene.py scene.tif --size 4096 --dtype uint16
    python tools/dataset_converters/make_synthetic_scene.py mosaic.tif --size 768 --patch 128 \\
        --object-scale 1.8 --task distractors --seed 7   # the demo model's kind of scene

``--task`` is the generator's: ``colours`` (each object in its own colour) or ``distractors``
(objects share colours and categories, as in the `make demo` data).

Patch ``(r, c)`` is scene ``r * columns + c`` of ``--seed``; the sentence of each object is
printed with ``--list`` (e.g. to pick prompts for the quicklook).
"""

import argparse
import os.path as osp
import sys

import numpy as np
import rasterio
from rasterio.transform import from_origin

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from make_synthetic_rrsis import TASKS, make_scene  # noqa: E402


def write_scene(
    path: str,
    size: int,
    patch: int = 512,
    seed: int = 0,
    object_scale: float = 1.0,
    dtype: str = 'uint16',
    nodata_border: float = 0.0,
    pixel_size: float = 0.5,
    crs: str = 'EPSG:32633',
    task: str = 'colours',
) -> list:
    """Write the mosaic; returns ``(row, column, category, colour, sentence)`` per object."""
    if dtype not in ('uint8', 'uint16'):
        raise ValueError(f'--dtype: expected uint8 or uint16, found {dtype!r}')
    border = int(round(nodata_border * size))
    columns = -(-size // patch)
    profile = dict(
        driver='GTiff',
        height=size,
        width=size,
        count=3,
        dtype=dtype,
        crs=crs,
        transform=from_origin(500000.0, 4100000.0, pixel_size, pixel_size),
        nodata=0,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress='deflate',
        predictor=2,
        photometric='RGB',
        BIGTIFF='IF_SAFER',
    )
    objects = []
    with rasterio.open(path, 'w', **profile) as dst:
        for r in range(columns):
            rows = min(patch, size - r * patch)
            strip = np.zeros((rows, size, 3), np.uint8)
            for c in range(columns):
                image, found = make_scene(seed, r * columns + c, patch, object_scale, task)
                width = min(patch, size - c * patch)
                strip[:, c * patch : c * patch + width] = image[:rows, :width]
                objects += [(r, c, o['category'], o['colour'], o['text']) for o in found]
            rgb = strip[..., ::-1].transpose(2, 0, 1)
            if dtype == 'uint16':
                data = rgb.astype(np.uint16) * 64 + 500
            else:
                data = np.maximum(rgb, 1)
            y0 = r * patch
            ys = np.arange(y0, y0 + rows)
            blank_rows = (ys < border) | (ys >= size - border)
            data[:, blank_rows] = 0
            if border:
                data[:, :, :border] = 0
                data[:, :, size - border :] = 0
            dst.write(data, window=((y0, y0 + rows), (0, size)))
    return objects


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out', help='GeoTIFF to write')
    parser.add_argument('--size', type=int, default=4096, help='side in pixels')
    parser.add_argument('--patch', type=int, default=512, help='side of each synthetic scene')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--object-scale', type=float, default=1.0)
    parser.add_argument('--task', choices=TASKS, default='colours', help='the generator task')
    parser.add_argument('--dtype', choices=('uint8', 'uint16'), default='uint16')
    parser.add_argument('--nodata-border', type=float, default=0.0, help='frame, share of side')
    parser.add_argument('--pixel-size', type=float, default=0.5, help='metres')
    parser.add_argument('--list', action='store_true', help="print every object's sentence")
    args = parser.parse_args(argv)
    objects = write_scene(
        args.out,
        args.size,
        args.patch,
        args.seed,
        args.object_scale,
        args.dtype,
        args.nodata_border,
        args.pixel_size,
        task=args.task,
    )
    print(f'{args.out}: {args.size} x {args.size} {args.dtype}, {len(objects)} objects')
    if args.list:
        for r, c, category, colour, text in objects:
            print(f'patch ({r}, {c}): {colour} {category}: "{text}"')
    return 0


if __name__ == '__main__':
    sys.exit(main())
