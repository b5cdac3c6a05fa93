"""Samples/s of a config's training pipeline next to the bare OpenCV floor, in one process.

    python tools/analysis_tools/benchmark_pipeline.py CONFIG [--split train] [--data-root DIR]
        [--num 200] [--rounds 3]

Both run on the same samples, one thread (as one dataloader worker does, OpenCV threads off):

* floor: read the image file, ``cv2.imdecode`` it, ``cv2.resize`` it to the pipeline's size;
* pipeline: ``dataset[i]``, i.e. the whole configured pipeline (decode, mask, resize, key-phrase
  spans, pack) plus the dataset's own bookkeeping.

The first pass over the samples is reported separately ("cold": the key-phrase and mask-run caches
are empty, as in the first epoch). Then, for ``--rounds`` rounds, each sample goes through the floor
and then the pipeline (interleaved, so both see the same load from other processes), and each
sample's fastest round counts.
"""

import argparse
import time

import cv2
import numpy as np
import torch
from mmengine.config import Config, DictAction

from btdnet.datasets import build_split_dataset  # imports btdnet: registers the plugin
from btdnet.datasets.transforms import key_phrase_spans
from btdnet.datasets.transforms.loading import _rle_runs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark the data pipeline against OpenCV')
    parser.add_argument('config', help='config with {train,val,test}_dataloader')
    parser.add_argument('--split', default='train', choices=('train', 'val', 'test'))
    parser.add_argument('--data-root', help='override the dataset data_root')
    parser.add_argument('--num', type=int, default=200, help='samples per round')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--size', type=int, nargs=2, default=(512, 512), help='floor: W H')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings')
    return parser.parse_args(argv)


def floor_one(path: str, size) -> None:
    """Read, decode and resize one image with OpenCV alone."""
    with open(path, 'rb') as f:
        img = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv=None):
    args = parse_args(argv)
    cv2.setNumThreads(0)  # what mmengine sets in dataloader workers (opencv_num_threads=0)
    torch.set_num_threads(1)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    ds = build_split_dataset(cfg, args.split, args.data_root or None)
    pipeline = cfg[f'{args.split}_dataloader'].dataset.pipeline
    indices = list(range(min(args.num, len(ds))))
    paths = [ds.get_data_info(i)['img_path'] for i in indices]
    shape = cv2.imread(paths[0]).shape[:2]
    print(
        f'[benchmark] {type(ds).__name__} {args.split}: {len(indices)} samples, images '
        f'{shape[1]}x{shape[0]} ({paths[0]}), one thread'
    )
    print(f'[benchmark] pipeline: {" -> ".join(t["type"] for t in pipeline)}')

    key_phrase_spans.cache_clear()
    _rle_runs.cache_clear()
    size = tuple(args.size)
    for path in paths:  # page cache and code warm for both
        floor_one(path, size)
    cold = np.array([timed(ds.__getitem__, i) for i in indices])
    # Interleaved sample by sample, so both see the same machine load; per-sample best round.
    floors = np.full(len(indices), np.inf)
    pipes = np.full(len(indices), np.inf)
    for _ in range(args.rounds):
        for k, (i, path) in enumerate(zip(indices, paths)):
            floors[k] = min(floors[k], timed(floor_one, path, size))
            pipes[k] = min(pipes[k], timed(ds.__getitem__, i))
    best_floor, best_pipe, cold = floors.sum(), pipes.sum(), cold.sum()
    n = len(indices)

    def line(name, seconds):
        return f'{name:<34}{n / seconds:8.1f} samples/s {1e3 * seconds / n:8.2f} ms/sample'

    print(line('floor (OpenCV decode + resize)', best_floor))
    print(line('pipeline', best_pipe))
    print(line('pipeline, cold (first epoch)', cold))
    print(
        f'[benchmark] pipeline / floor time: {best_pipe / best_floor:.3f} (cold: '
        f'{cold / best_floor:.3f}); goal <= 1.15'
    )


if __name__ == '__main__':
    main()
