"""How well the existence score tells named targets from absent ones, and where to threshold it.

    python tools/analysis_tools/existence_threshold.py CONFIG CHECKPOINT
        [--data-root data/synthetic_rrsis_demo] [--num-scenes 60] [--device cpu]

On the test scenes of a synthetic dataset (made by make_synthetic_rrsis.py; the scenes are
re-rendered from its seed, so only ``synthetic_meta.json`` is read, and the `make demo` settings
are used when the folder is missing), every object's own sentence is a *present* query, and each
sentence that names its target's colour, with that colour swapped for one no object in the scene
has, is an *absent* query ("the red vehicle on the left" -> "the blue vehicle on the left": same
words, nothing to find). Prints quantiles of the existence score the web app thresholds
(``fg_margin`` of :func:`btdnet.evaluation.existence_score`: the mean target-minus-background logit
over the pixels the target wins) for both, the share of each the app's default threshold classifies
right, and the threshold with the best balanced accuracy.
"""

import argparse
import os.path as osp
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/
from app_screenshot import load_app_module  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Existence score: present vs absent targets')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('--data-root', help='synthetic dataset (default: the make demo data)')
    parser.add_argument('--num-scenes', type=int, default=60, help='test scenes (default 60)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, ... (default cpu)')
    args = parser.parse_args(argv)
    for name in ('config', 'checkpoint'):
        if not osp.isfile(getattr(args, name)):
            parser.error(f'{name}: expected a file, found nothing at {getattr(args, name)}')
    if args.num_scenes < 1:
        parser.error(f'--num-scenes: expected at least 1, found {args.num_scenes}')
    return args


def queries(generator, meta: dict, num_scenes: int):
    """(image BGR, present sentences, absent sentences) per test scene.

    The absent sentences are those that name their target's colour, with that colour swapped
    for one no object of the scene has (a sentence that names no colour has nothing to swap).
    """
    for _, image, objects in generator.split_scenes(meta, 'test', num_scenes):
        used = {obj['colour'] for obj in objects}
        free = [c for c in generator.COLOURS if c not in used]
        present = [obj['text'] for obj in objects]
        absent = [
            obj['text'].replace(obj['colour'], free[k % len(free)], 1)
            for k, obj in enumerate(objects)
            if obj['colour'] in obj['text'].split()
        ]
        yield image, present, absent


def best_threshold(present: np.ndarray, absent: np.ndarray) -> tuple[float, float]:
    """The threshold (between observed scores) with the best balanced accuracy, and that."""
    scores = np.unique(np.concatenate([present, absent]))
    candidates = np.concatenate([[0.0], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1]])
    best = max(candidates, key=lambda t: (present >= t).mean() + (absent < t).mean())
    return float(best), float(((present >= best).mean() + (absent < best).mean()) / 2)


def main(argv=None) -> int:
    args = parse_args(argv)
    app_module = load_app_module()
    generator = app_module._load_generator()
    root = args.data_root or app_module.DEMO_DATA_ROOT
    meta = app_module.demo_meta(root)
    model = app_module.init_model(args.config, args.checkpoint, device=args.device)
    scores = dict(present=[], absent=[])
    for image, present, absent in queries(generator, meta, args.num_scenes):
        results = app_module.inference_model(model, image, present + absent)
        for k, result in enumerate(results):
            kind = 'present' if k < len(present) else 'absent'
            scores[kind].append(result.fg_margin)
    present, absent = (np.array(scores[k]) for k in ('present', 'absent'))
    print(f'{len(present)} present and {len(absent)} absent queries on test scenes of {root}')
    print('fg_margin quantiles  min    10%    50%    90%    max')
    for name, values in (('present', present), ('absent', absent)):
        q = np.quantile(values, [0, 0.1, 0.5, 0.9, 1])
        print(f'  {name:8s}' + ''.join(f'{v:7.3f}' for v in q))
    print(f'absent queries with no target pixel (score 0): {100 * (absent == 0).mean():.1f}%')
    default = app_module.DEFAULT_THRESHOLD
    print(
        f'app default threshold {default}: present found {100 * (present >= default).mean():.1f}%'
        f', absent "not found" {100 * (absent < default).mean():.1f}%'
    )
    threshold, accuracy = best_threshold(present, absent)
    print(f'best threshold {threshold:.3f}: balanced accuracy {100 * accuracy:.1f}%')
    return 0


if __name__ == '__main__':
    sys.exit(main())
