"""Write a synthetic georeferenced scene: a mosaic of synthetic RRSIS scenes as one GeoTIFF.

A command line over :func:`btdnet.datasets.synthetic.write_scene`. The mosaic is ``--size``
pixels square, made of ``--patch``-pixel scenes (textured ground, roads, coloured objects), in a
projected CRS (UTM 33N, ``--pixel-size`` metres), tiled 512 x 512 and deflate-compressed.
``--dtype uint16`` writes 16-bit bands (value = 8-bit value x 64 + 500); ``--nodata-border F``
blanks a frame of F x size pixels on every side with nodata 0 (valid pixels are never 0).
Written strip by strip: memory stays at one row of patches whatever the size.

    python tools/dataset_converters/make_synthetic_scene.py scene.tif --size 4096 --dtype uint16
    python tools/dataset_converters/make_synthetic_scene.py mosaic.tif --size 768 --patch 128 \\
        --object-scale 1.8 --task distractors --seed 7   # the demo model's kind of scene

``--task`` is the generator's: ``colours`` (each object in its own colour) or ``distractors``
(objects share colours and categories, as in the `make demo` data).

Patch ``(r, c)`` is scene ``r * columns + c`` of ``--seed``; the sentence of each object is
printed with ``--list`` (e.g. to pick prompts for the quicklook).
"""

import argparse
import sys

from btdnet.datasets.synthetic import TASKS, write_scene


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
