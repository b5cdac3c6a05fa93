"""Benchmark whole-scene inference: tiles/s, time per stage, peak memory, overhead over the model.

Makes synthetic georeferenced scenes (uint16, a nodata frame of 1/16 of the side, mosaics of the
synthetic RRSIS scenes; cached in ``--work-dir``), then, for each size and repeat, runs two child
processes one after the other:

* ``run``: ``btdnet.apis.infer_scene`` end to end (stretch, tiles, blending, strips, mask
  GeoTIFF, polygons, summary), as ``tools/infer_scene.py`` runs it;
* ``model``: the same tiles, read and batched the same way, but only the predictor calls are
  timed: the model's own batched forward time on those tiles.

Both the wall time and the process's CPU time (all threads) are compared: on a machine shared
with other work the wall time of two runs can differ by tens of percent, the CPU time much less.

It prints per run the tiles/s, the time of each stage (read = the stretch's sample, then reading,
stretching and cutting tiles in a background thread while the model runs; model; blend; write =
intermediate strips and output GeoTIFFs; vectorise: polygons, in the output thread), the
end-to-end time over the model-only time, the end-to-end time beyond the model's own time in the
same run (what the pipeline adds to the critical path), and the peak resident memory
(``ru_maxrss``) of the ``run`` child next to its memory once the model was loaded.

    python tools/analysis_tools/benchmark_scene.py          # tiny config, 4096^2 and 16384^2
    python tools/analysis_tools/benchmark_scene.py --sizes 2048 --repeats 3 --tile 256
    python tools/analysis_tools/benchmark_scene.py --config CONFIG --checkpoint CKPT --device cuda

Without ``--checkpoint`` the model keeps random weights (seeded): speed and memory are those of
the trained model. ``--stand-in`` replaces the network with a 3 x 3 mean filter to time the
pipeline alone.
"""

import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SENTENCE = 'the white storage tanks'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--config', default=osp.join(ROOT, 'configs', 'btdnet', 'btdnet_tiny_synthetic.py')
    )
    parser.add_argument('--checkpoint', help='trained weights (default: random, seeded)')
    parser.add_argument('--sizes', type=int, nargs='+', default=[4096, 16384])
    parser.add_argument('--tile', type=int, help='network input side (default: the config)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--overlap', type=float, default=0.25)
    parser.add_argument('--repeats', type=int, default=1, help='run / model pairs per size')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, help='torch intra-op threads')
    parser.add_argument('--flush-denormal', action='store_true', help='see benchmark_model.py')
    parser.add_argument('--stand-in', action='store_true', help='a 3x3 mean filter, no network')
    parser.add_argument(
        '--no-background',
        action='store_true',
        help='read and write in the main thread, between forwards',
    )
    parser.add_argument(
        '--model-alone-sizes',
        type=int,
        nargs='*',
        help='sizes that also get the model-alone child (default: all)',
    )
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'benchmark_scene'))
    parser.add_argument('--child', choices=('run', 'model'), help=argparse.SUPPRESS)
    parser.add_argument('--scene', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def rss_mb() -> float:
    """Current resident set of this process (MiB)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


class MeanFilter:
    """Stand-in network: target logit = 3x3 mean brightness - 0.5."""

    def __init__(self, tile: int):
        self.tile_size = (tile, tile)

    def __call__(self, tiles, text):
        import cv2
        import numpy as np

        gray = tiles.astype(np.float32).mean(-1) / 255
        fg = np.stack([cv2.blur(g, (3, 3)) for g in gray]) - 0.5
        return np.stack([np.zeros_like(fg), fg], axis=1)


def build_predictor(args):
    if args.stand_in:
        return MeanFilter(args.tile or 256)
    import torch

    from btdnet.apis import build_tile_predictor, init_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = init_model(args.config, args.checkpoint, device=args.device)
    tile = (args.tile, args.tile) if args.tile else None
    return build_tile_predictor(model, tile_size=tile)


def child(args) -> dict:
    """One measurement in this process; prints one JSON line."""
    from btdnet.apis import SceneOptions, infer_scene
    from btdnet.apis.raster import RasterScene
    from btdnet.apis.tiled import TileCounts, TileGrid, blend_rows

    predictor = build_predictor(args)
    loaded = rss_mb()
    cpu_start = time.process_time()
    if args.child == 'run':
        out_dir = osp.join(args.work_dir, 'out_' + osp.splitext(osp.basename(args.scene))[0])
        options = SceneOptions(batch_size=args.batch_size, overlap=args.overlap)
        summary = infer_scene(
            predictor,
            args.scene,
            SENTENCE,
            out_dir,
            options,
            overwrite=True,
            background=not args.no_background,
        )
        result = dict(
            tiles=summary['tiles'],
            timings=summary['timings_s'],
            tiles_per_s=summary['tiles']['run'] / summary['timings_s']['total'],
            cpu_s=time.process_time() - cpu_start,
        )
    else:
        counts, timings = TileCounts(), {}
        model_cpu = [0.0]
        network = predictor

        def predictor(tiles, text):  # noqa: F811  (the same predictor, its CPU time counted)
            start = time.process_time()
            out = network(tiles, text)
            model_cpu[0] += time.process_time() - start
            return out

        predictor.tile_size = network.tile_size
        with RasterScene(args.scene) as scene:
            scene.fit_stretch(*scene.sample())
            grid = TileGrid(scene.work_height, scene.work_width, predictor.tile_size, args.overlap)
            start = time.perf_counter()
            for _ in blend_rows(
                predictor,
                SENTENCE,
                grid,
                scene.read_rows,
                channels='margin',
                batch_size=args.batch_size,
                counts=counts,
                timings=timings,
            ):
                pass
        result = dict(tiles=counts.__dict__, model_s=timings['model'], model_cpu_s=model_cpu[0])
        result['loop_s'] = time.perf_counter() - start
    result.update(
        kind=args.child,
        rss_loaded_mb=loaded,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print('RESULT ' + json.dumps(result), flush=True)
    return result


def run_child(args, kind: str, scene: str) -> dict:
    argv = [sys.executable, osp.abspath(__file__), '--child', kind, '--scene', scene]
    for name in ('config', 'checkpoint', 'tile', 'threads', 'device', 'work_dir'):
        value = getattr(args, name)
        if value is not None:
            argv += [f'--{name.replace("_", "-")}', str(value)]
    argv += ['--batch-size', str(args.batch_size), '--overlap', str(args.overlap)]
    argv += ['--flush-denormal'] * args.flush_denormal + ['--stand-in'] * args.stand_in
    argv += ['--no-background'] * args.no_background
    env = dict(os.environ, PYTHONPATH=osp.join(ROOT, 'projects'))
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith('RESULT ')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f'{kind} child failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}')
    return json.loads(lines[-1][len('RESULT ') :])


def make_scenes(args) -> dict:
    from btdnet.datasets.synthetic import write_scene

    os.makedirs(args.work_dir, exist_ok=True)
    scenes = {}
    for size in args.sizes:
        path = osp.join(args.work_dir, f'scene_{size}.tif')
        if not osp.isfile(path):
            start = time.perf_counter()
            write_scene(path, size, patch=512, seed=0, dtype='uint16', nodata_border=1 / 16)
            print(f'wrote {path} in {time.perf_counter() - start:.1f} s', flush=True)
        scenes[size] = path
    return scenes


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    scenes = make_scenes(args)
    results = {size: [] for size in args.sizes}
    for repeat in range(args.repeats):
        for size in args.sizes:
            run = run_child(args, 'run', scenes[size])
            alone = args.model_alone_sizes is None or size in args.model_alone_sizes
            model = run_child(args, 'model', scenes[size]) if alone else None
            results[size].append((run, model))
            ratio = (
                f'{run["timings"]["total"] / model["model_s"]:.3f}x (CPU time '
                f'{run["cpu_s"] / model["model_cpu_s"]:.3f}x)'
                if model
                else 'not run'
            )
            print(
                f'[{repeat + 1}/{args.repeats}] {size}^2: end to end '
                f'{run["timings"]["total"]:.1f} s, model alone: {ratio}, peak RSS '
                f'{run["peak_rss_mb"]:.0f} MiB',
                flush=True,
            )

    print(
        '\n| scene | tiles run / skipped | tiles/s | end to end (s) | model alone (s) | ratio | '
        'CPU-time ratio | model in run (s) | beyond it | read | blend | write | vectorise | '
        'RSS after load | peak RSS |'
    )
    print('| --- ' + '| ---: ' * 14 + '|')
    peaks = {}
    for size, pairs in results.items():
        for run, model in pairs:
            t = run['timings']
            write = t['write'] + t['outputs_write']
            alone = f'{model["model_s"]:.1f}' if model else '-'
            ratio = f'{t["total"] / model["model_s"]:.3f}x' if model else '-'
            cpu = f'{run["cpu_s"] / model["model_cpu_s"]:.3f}x' if model else '-'
            print(
                f'| {size}^2 | {run["tiles"]["run"]} / {run["tiles"]["nodata"]} | '
                f'{run["tiles_per_s"]:.2f} | {t["total"]:.1f} | {alone} | {ratio} | {cpu} | '
                f'{t["model"]:.1f} | {t["total"] - t["model"]:.1f} s '
                f'({100 * (t["total"] - t["model"]) / t["model"]:.1f} %) | '
                f'{t["read"]:.1f} | {t["blend"]:.1f} | {write:.1f} | '
                f'{t["vectorise"]:.1f} | {run["rss_loaded_mb"]:.0f} MiB | '
                f'{run["peak_rss_mb"]:.0f} MiB |'
            )
        peaks[size] = statistics.median(run['peak_rss_mb'] for run, _ in pairs)
        ratios = [run['timings']['total'] / m['model_s'] for run, m in pairs if m]
        cpu = [run['cpu_s'] / m['model_cpu_s'] for run, m in pairs if m]
        if ratios:
            print(
                f'{size}^2: end to end / model alone, median {statistics.median(ratios):.3f}x '
                f'wall time, {statistics.median(cpu):.3f}x CPU time'
            )
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        print(f'peak RSS {large}^2 / {small}^2: {peaks[large] / peaks[small]:.3f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
