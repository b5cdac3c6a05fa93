"""Write a synthetic referring remote-sensing dataset in the RRSIS-D and/or RefSegRS layout.

A command line over :mod:`btdnet.datasets.synthetic` (scenes, sentences and layouts are described
there). Layouts written under OUT (see ``configs/_base_/datasets/synthetic_*.py``)::

    --format rrsisd    OUT/rrsisd/refs(unc).p, OUT/rrsisd/instances.json,
                       OUT/images/rrsisd/JPEGImages/*.jpg
    --format refsegrs  OUT/refsegrs/images/<id>.tif, OUT/refsegrs/masks/<id>.tif (0/255),
                       OUT/refsegrs/output_phrase_{train,val,test}.txt
    --format grefs     OUT/grefs/grefs(unc).json, OUT/grefs/instances.json, OUT/images/grefs/*.jpg
                       (the gRefCOCO layout; the only one for --task generalized, whose
                       sentences may name no object or several)

Example::

    python tools/dataset_converters/make_synthetic_rrsis.py data/synthetic_rrsis --format both \
        --num-images 300 --seed 0 --size 256
    python tools/dataset_converters/make_synthetic_rrsis.py data/synthetic_grefs --format grefs \
        --task generalized --num-images 300 --size 128 --object-scale 1.8
"""

import argparse
import json
import os.path as osp
import time

from btdnet.datasets.synthetic import TASKS, DistractorOptions, GeneralizedOptions, generate


def _flag(option: str) -> str:
    """The command-line flag of a :class:`DistractorOptions` field."""
    return '--no-category-marks' if option == 'category_marks' else '--' + option.replace('_', '-')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir', help='output root, e.g. data/synthetic_rrsis')
    parser.add_argument(
        '--format',
        choices=('rrsisd', 'refsegrs', 'grefs', 'both'),
        help='both: rrsisd and refsegrs (default; grefs for --task generalized)',
    )
    parser.add_argument('--num-images', type=int, default=300)
    parser.add_argument(
        '--eval-images',
        type=int,
        help='scenes in each of val and test (the last ones; default: 15%% each)',
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=256, help='image side in pixels')
    parser.add_argument(
        '--object-scale',
        type=float,
        default=1.0,
        help='multiply object sizes (objects 9-24%% of the image side at 1.0)',
    )
    parser.add_argument(
        '--task',
        choices=TASKS,
        default='colours',
        help='colours: every object in its own colour, the colour word decides (default); '
        'distractors: objects share colours and categories, sentences name what they need; '
        'generalized: distractor scenes whose sentences may also name no object or several',
    )
    defaults = DistractorOptions()
    group = parser.add_argument_group('distractor task (--task distractors or generalized)')
    group.add_argument(
        '--num-objects',
        type=int,
        nargs=2,
        metavar=('FEWEST', 'MOST'),
        help=f'objects asked for per scene (default {defaults.num_objects[0]} '
        f'{defaults.num_objects[1]})',
    )
    for name, what in (
        ('twin_prob', 'a twin of the anchor object (same colour and category)'),
        ('colour_mate_prob', 'an object of the same colour, another category'),
        ('category_mate_prob', 'an object of the same category, another colour'),
        ('colour_word_prob', 'naming the colour where the sentence could do without'),
        ('extra_word_prob', 'naming the position where the sentence could do without'),
        ('relational_prob', 'relational position words where absolute ones would do'),
    ):
        group.add_argument(
            '--' + name.replace('_', '-'),
            type=float,
            help=f'chance of {what} (default {getattr(defaults, name)})',
        )
    group.add_argument(
        '--no-category-marks',
        dest='category_marks',
        action='store_false',
        default=None,
        help='paint vehicles, tennis courts and buildings without their markings',
    )
    shares = GeneralizedOptions()
    group = parser.add_argument_group('generalized task (--task generalized)')
    for name, what in (
        ('no_target_share', 'sentences that name no object'),
        ('multi_target_share', 'sentences that name several objects'),
    ):
        group.add_argument(
            '--' + name.replace('_', '-'),
            type=float,
            help=f'share of {what} (default {getattr(shares, name)})',
        )
    args = parser.parse_args(argv)
    given = {
        k: tuple(v) if k == 'num_objects' else v
        for k, v in vars(args).items()
        if k in DistractorOptions.__dataclass_fields__ and v is not None
    }
    if args.eval_images is not None and not 0 <= 2 * args.eval_images < args.num_images:
        parser.error(
            f'--eval-images {args.eval_images}: expected >= 0 and less than half of '
            f'--num-images {args.num_images} (training keeps a scene)'
        )
    if given and args.task == 'colours':
        parser.error(
            f'{", ".join(_flag(k) for k in given)} only apply to --task distractors or generalized'
        )
    shares = {k: v for k, v in vars(args).items() if k.endswith('_target_share') and v is not None}
    if shares and args.task != 'generalized':
        parser.error(f'{", ".join(_flag(k) for k in shares)} only apply to --task generalized')
    if args.format is None:
        args.format = 'grefs' if args.task == 'generalized' else 'both'
    if args.task == 'generalized' and args.format != 'grefs':
        parser.error(
            f'--format {args.format}: --task generalized writes the gRefCOCO layout only '
            '(--format grefs): its sentences may name no object or several'
        )
    try:
        args.options = DistractorOptions(**given) if args.task != 'colours' else None
        args.generalized = GeneralizedOptions(**shares) if args.task == 'generalized' else None
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv=None):
    args = parse_args(argv)
    formats = ('rrsisd', 'refsegrs') if args.format == 'both' else (args.format,)
    start = time.perf_counter()
    counts = generate(
        args.out_dir,
        args.num_images,
        args.seed,
        args.size,
        formats,
        verbose=True,
        object_scale=args.object_scale,
        task=args.task,
        options=args.options,
        eval_images=args.eval_images,
        generalized=args.generalized,
    )
    seconds = time.perf_counter() - start
    meta = json.loads(open(osp.join(args.out_dir, 'synthetic_meta.json')).read())
    print(
        f'[make_synthetic_rrsis] wrote {args.num_images} images ({formats}) to {args.out_dir} '
        f'in {seconds:.1f} s ({args.num_images / seconds:.0f} images/s); samples per split: '
        f'{counts}\n[make_synthetic_rrsis] sentences naming {meta["named"]}; targets with a '
        f'distractor of the same category / colour / both (twin): {meta["distractors"]}'
        f'\n[make_synthetic_rrsis] sentences by kind: {meta["kinds"]}'
    )


if __name__ == '__main__':
    main()
