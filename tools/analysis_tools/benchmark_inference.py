"""Time BTDNet's CPU inference backends against each other, interleaved, in one run.

    python tools/analysis_tools/benchmark_inference.py configs/btdnet_swinb_rrsisd.py \\
        --random-init --work-dir work_dirs/bench_inference [--before-src DIR] [--threads 1]

Backends (``--backends``, default all that apply):

* ``before``: the PyTorch predict of another checkout of this repository (``--before-src DIR``,
  its folder holding ``projects/``), e.g. the code before the lean predict path:
  ``git archive 298bd28 projects | tar -x -C /tmp/btdnet-before``; denormals as computed;
* ``eager``: today's PyTorch predict (lean path), denormals as computed;
* ``eager-flush``: the same with denormals flushed, as ``init_model`` does on the CPU;
* ``ort``: ONNX Runtime, the fp32 export (denormals as zero);
* ``ort-int8``: ONNX Runtime, the dynamically quantised int8 export.

What is timed: ``model.test_step(batch)`` on one pre-loaded batch (uint8 image, sentence and
key spans, batch 1 by default): data preprocessor, tokenisation, network, resize of the logits
to the original size and argmax; the same for every backend. Each backend runs in its own
process (so the ``before`` code can be imported, and each has its own threads and denormal
mode); the parent starts them, warms each up, then asks them in turn, ``--repeats`` rounds of
one forward each (A B C A B C ...), so that the load of a shared machine hits all alike. Printed:
median and range per backend, the median of the per-round ratios to ``before`` (or the first
backend) with their range, and how far each backend's logits and masks are from the first's.

With ``--random-init`` the model is built without pretrained files (Swin without checkpoint,
BERT from ``BertConfig()``, ``init_weights`` run, seed 0) and saved to the work dir, where every
backend loads the same weights; the ONNX export (minutes for Swin-B) is written there too and
reused by later runs unless ``--export-again``.
"""

import argparse
import copy
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BACKENDS = ('before', 'eager', 'eager-flush', 'ort', 'ort-int8')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Interleaved CPU inference benchmark')
    parser.add_argument('config', nargs='?', help='BTDNet config file')
    parser.add_argument('--checkpoint', help='trained checkpoint (else --random-init)')
    parser.add_argument('--random-init', action='store_true', help='no pretrained files needed')
    parser.add_argument('--work-dir', default='work_dirs/benchmark_inference')
    parser.add_argument('--before-src', help='checkout whose projects/ is the "before" code')
    parser.add_argument('--backends', default=','.join(BACKENDS), help='comma-separated')
    parser.add_argument('--shape', type=int, nargs=2, default=None, help='H W (default config)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=1, help='>= 1 (outputs are compared)')
    parser.add_argument('--threads', type=int, default=1, help='threads of every backend')
    parser.add_argument('--export-again', action='store_true', help='redo the ONNX export')
    parser.add_argument('--worker', choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is None and (args.config is None or not (args.checkpoint or args.random_init)):
        parser.error('give CONFIG and --checkpoint CKPT or --random-init')
    if args.warmup < 1 or args.repeats < 1 or args.batch < 1 or args.threads < 1:
        parser.error('--warmup, --repeats, --batch and --threads must be >= 1')
    return args


# ---------------------------------------------------------------- parent
def prepare(args) -> dict:
    """Config, weights and ONNX export in the work dir; returns the paths the workers read."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from btdnet.deployment import export_onnx
    from btdnet.engine import load_config
    from btdnet.utils.benchmark import without_pretrained_weights

    os.makedirs(args.work_dir, exist_ok=True)
    cfg = load_config(args.config)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if args.random_init:
        cfg.model = without_pretrained_weights(cfg.model)
    shape = tuple(args.shape or cfg.model.data_preprocessor.get('size') or (512, 512))
    cfg.model.test_cfg = dict(mode='whole')
    for step in cfg.test_pipeline:
        if step['type'] == 'Resize':
            step.update(scale=(shape[1], shape[0]), keep_ratio=False)
    config_path = osp.join(args.work_dir, 'config.py')
    cfg.dump(config_path)
    checkpoint = args.checkpoint
    if args.random_init:
        checkpoint = osp.join(args.work_dir, 'random_init.pth')
        if not osp.isfile(checkpoint) or args.export_again:
            torch.manual_seed(0)
            model = MODELS.build(copy.deepcopy(cfg.model))
            model.init_weights()
            torch.save(dict(meta=dict(seed=0), state_dict=model.state_dict()), checkpoint)
            del model
    onnx_dir = osp.join(args.work_dir, 'onnx')
    wanted = set(args.backends.split(','))
    if wanted & {'ort', 'ort-int8'} and (
        args.export_again or not osp.isfile(osp.join(onnx_dir, 'deploy.json'))
    ):
        start = time.perf_counter()
        export_onnx(config_path, checkpoint, onnx_dir, int8='ort-int8' in wanted, overwrite=True)
        print(f'export took {time.perf_counter() - start:.0f} s')
    return dict(
        config=osp.abspath(config_path),
        checkpoint=osp.abspath(checkpoint),
        onnx=osp.abspath(onnx_dir),
        shape=list(shape),
    )


class Worker:
    """A backend in its own process, answering 'run' with the seconds of one test_step."""

    def __init__(self, backend: str, args, paths: dict):
        env = dict(os.environ)
        src = args.before_src if backend == 'before' else ROOT
        env['PYTHONPATH'] = osp.join(osp.abspath(src), 'projects')
        env['OMP_NUM_THREADS'] = str(args.threads)
        argv = [sys.executable, osp.abspath(__file__), '--worker', backend]
        argv += ['--work-dir', args.work_dir, '--threads', str(args.threads)]
        argv += ['--batch', str(args.batch), '--warmup', str(args.warmup)]
        with open(osp.join(args.work_dir, 'paths.json'), 'w') as f:
            json.dump(paths, f)
        self.name = backend
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, cwd=ROOT
        )
        self._expect('ready')

    def _expect(self, word: str) -> str:
        """The next protocol line starting with ``word`` (log lines in between are skipped)."""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait(timeout=60)
                raise RuntimeError(f'benchmark worker {self.name} exited ({code}) before {word!r}')
            if line.startswith(word):
                return line[len(word) :].strip()

    def run(self) -> float:
        self.proc.stdin.write('run\n')
        self.proc.stdin.flush()
        return float(self._expect('time'))

    def close(self) -> None:
        self.proc.stdin.write('quit\n')
        self.proc.stdin.flush()
        self.proc.wait(timeout=120)


def compare_outputs(work_dir: str, names: list) -> dict:
    """Max |logit difference| and mask IoU of each backend's output against the first's."""
    outs = {n: torch.load(osp.join(work_dir, f'out_{n}.pt'), weights_only=True) for n in names}
    ref = outs[names[0]]
    report = {}
    for n in names:
        diff = (outs[n] - ref).abs().max().item()
        a, b = outs[n][:, 1] > outs[n][:, 0], ref[:, 1] > ref[:, 0]
        union = (a | b).sum().item()
        report[n] = (diff, (a & b).sum().item() / union if union else 1.0)
    return report


def main_parent(args) -> int:
    names = [n for n in args.backends.split(',') if n]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise SystemExit(f'--backends: unknown {unknown}; choose from {BACKENDS}')
    if 'before' in names:
        if not args.before_src or not osp.isdir(osp.join(args.before_src, 'projects', 'btdnet')):
            raise SystemExit(
                '--backends before needs --before-src DIR with DIR/projects/btdnet (e.g. '
                '`git archive 298bd28 projects | tar -x -C DIR`)'
            )
        names = ['before'] + [n for n in names if n != 'before']
    paths = prepare(args)
    workers = []
    try:
        for name in names:
            print(f'starting {name} ...', flush=True)
            workers.append(Worker(name, args, paths))
        times = {w.name: [] for w in workers}
        for r in range(args.repeats):
            for w in workers:
                times[w.name].append(w.run())
            print(
                f'round {r + 1}/{args.repeats}: '
                + ', '.join(f'{n} {t[-1] * 1e3:.0f} ms' for n, t in times.items()),
                flush=True,
            )
    finally:
        for w in workers:
            w.close()
    ref = names[0]
    agree = compare_outputs(args.work_dir, names)
    print(
        f'\n{args.config}: batch {args.batch}, {paths["shape"][0]} x {paths["shape"][1]}, '
        f'{args.threads} thread(s), torch {torch.__version__}, median of {args.repeats} '
        f'interleaved rounds after {args.warmup} warm-up'
    )
    header = (
        f'{"backend":<14}{"median":>10}{"range":>18}{"speed-up vs " + ref:>22}'
        f'{"per-round range":>18}{"max |dlogit|":>14}{"mask IoU":>10}'
    )
    print(header)
    print('-' * len(header))
    for name in names:
        values = times[name]
        ratios = [a / b for a, b in zip(times[ref], values)]
        print(
            f'{name:<14}{statistics.median(values) * 1e3:>8.0f} ms'
            f'{min(values) * 1e3:>9.0f}-{max(values) * 1e3:.0f} ms'
            f'{statistics.median(ratios):>21.2f}x'
            f'{min(ratios):>11.2f}-{max(ratios):.2f}x'
            f'{agree[name][0]:>14.2e}{agree[name][1]:>10.4f}'
        )
    return 0


# ---------------------------------------------------------------- worker
def main_worker(args) -> int:
    torch.set_num_threads(args.threads)
    from btdnet.apis import init_model
    from btdnet.utils.benchmark import synthetic_batch

    with open(osp.join(args.work_dir, 'paths.json')) as f:
        paths = json.load(f)
    backend = args.worker
    if backend in ('ort', 'ort-int8'):
        from mmengine.config import Config

        from btdnet.deployment import ONNXRuntimeSegmentor

        model = ONNXRuntimeSegmentor(
            paths['onnx'],
            Config.fromfile(paths['config']),
            precision='int8' if backend == 'ort-int8' else 'fp32',
            threads=args.threads,
        )
    elif backend == 'eager-flush':
        model = init_model(paths['config'], paths['checkpoint'], flush_denormal=True)
    elif backend == 'eager':
        model = init_model(paths['config'], paths['checkpoint'], flush_denormal=False)
    else:  # the other checkout's init_model, whatever its options
        model = init_model(paths['config'], paths['checkpoint'])
    batch = synthetic_batch(args.batch, *paths['shape'])
    with torch.no_grad():
        for _ in range(args.warmup):
            outputs = model.test_step(batch)
    logits = torch.stack([o.seg_logits.data.float().cpu() for o in outputs])
    torch.save(logits, osp.join(args.work_dir, f'out_{backend}.pt'))
    print('ready', flush=True)
    for line in sys.stdin:
        if line.strip() != 'run':
            break
        with torch.no_grad():
            start = time.perf_counter()
            model.test_step(batch)
            elapsed = time.perf_counter() - start
        print(f'time {elapsed}', flush=True)
    return 0


if __name__ == '__main__':
    arguments = parse_args()
    sys.exit(main_worker(arguments) if arguments.worker else main_parent(arguments))
