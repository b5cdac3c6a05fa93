"""Training throughput (samples/s) and peak memory of a config, for a few iterations.

    python tools/analysis_tools/benchmark_train.py CONFIG [--random-init] [--batch-size 2]
        [--iters 10] [--warmup 3] [--amp] [--shape H W] [--device cuda]

Each iteration is a full ``model.train_step`` (data preprocessor, forward, the losses, backward,
optimizer step with the config's optimizer wrapper and parameter groups) on a synthetic batch of
the config's input size, so no dataset is needed. Reported: median seconds per iteration after
``--warmup`` iterations, samples/s = batch size / that median, and peak memory (CUDA: peak
allocated tensor memory; CPU: peak resident set size of the process).

``--amp`` trains in bf16 where the GPU supports it, else fp16 with loss scaling (as
``tools/train.py --amp``); it needs a GPU.
"""

import argparse
import resource
import statistics

import torch
from mmengine.config import DictAction
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from btdnet.engine import enable_amp, load_config
from btdnet.utils.benchmark import synthetic_batch, timed, without_pretrained_weights


def parse_args():
    parser = argparse.ArgumentParser(description='Benchmark training throughput of a config')
    parser.add_argument('config')
    parser.add_argument(
        '--random-init',
        action='store_true',
        help='build the encoders without their pretrained files',
    )
    parser.add_argument(
        '--batch-size',
        type=int,
        default=None,
        help='samples per iteration (default: the config train batch size)',
    )
    parser.add_argument('--iters', type=int, default=10, help='timed iterations')
    parser.add_argument('--warmup', type=int, default=3, help='untimed iterations first')
    parser.add_argument('--amp', action='store_true', help='mixed precision (GPU only)')
    parser.add_argument('--shape', type=int, nargs=2, help='H W (default: the config crop)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings')
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from mmseg.registry import MODELS

    model_cfg = without_pretrained_weights(cfg.model) if args.random_init else cfg.model
    device = torch.device(args.device)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    if args.amp:
        enable_amp(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    height, width = args.shape or cfg.model.data_preprocessor.get('size') or (512, 512)
    batch_size = args.batch_size or cfg.train_dataloader.batch_size
    batch = synthetic_batch(batch_size, height, width)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f'config: {args.config}\ndevice: {device} '
        f'({torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"}), '
        f'batch {batch_size} x {height}x{width}, amp: {args.amp}, '
        f'{params / 1e6:.1f}M trainable parameters'
    )

    times = []
    for i in range(args.warmup + args.iters):
        elapsed, losses = timed(lambda: model.train_step(batch, optim_wrapper), device)
        if i >= args.warmup:
            times.append(elapsed)
        loss = losses['loss'].item()  # parse_losses' total (the parts are logged beside it)
        print(
            f'iter {i + 1}/{args.warmup + args.iters}: {elapsed:.3f} s, loss {loss:.4f}'
            + (' (warm-up)' if i < args.warmup else ''),
            flush=True,
        )

    median = statistics.median(times)
    if device.type == 'cuda':
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        peak_line = f'peak memory: {peak:.2f} GiB (CUDA allocated)'
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        peak_line = f'peak memory: {peak:.2f} GiB (process RSS)'
    print(f'seconds/iter: {median:.3f} (median of {len(times)})')
    print(f'throughput: {batch_size / median:.2f} samples/s')
    print(peak_line)


if __name__ == '__main__':
    main()
