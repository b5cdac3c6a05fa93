"""Benchmark BSC as a text-generated convolution against the literal Unfold + matmul.

Both implementations share the parameters of one :class:`BidirectionalSpatialCorrelation`; the
literal one is the reference in ``tests/test_models/test_bsc.py`` (the test checks they agree
to 1e-5). Default sizes are stage 1 of a 512 x 512 input to Swin-B + BERT-base: C = 128 on a
128 x 128 map, N = 20 tokens (12 real), D = 768, batch 1.

Each variant and mode runs in a fresh subprocess, which reports:

- ``time_ms``: median wall time of ``--repeats`` runs after one warm-up run;
- ``peak_mib``: peak of the bytes held by PyTorch's CPU allocator during one run, above what
  was allocated before it (``torch.profiler`` with ``profile_memory=True``: the largest
  ``Total Allocated`` of its memory events; inputs and weights are excluded, autograd's saved
  tensors and every temporary included);
- ``rss_mib``: the rise of the process's peak resident set during its first run (Linux
  ``VmHWM`` reset through ``/proc/self/clear_refs``), a cross-check that also sees memory
  outside PyTorch's allocator (oneDNN scratch, the C library's heap).

Modes: ``forward`` (inference, ``no_grad``) and ``train`` (forward + backward of a scalar
loss, gradients w.r.t. the inputs and the parameters). ``--part v2l`` times only the
vision-to-language affinity W_v2l (Eq. 2-3): dynamic convolution vs Unfold + matmul.

Usage::

    python tools/analysis_tools/benchmark_bsc.py [--threads 1] [--repeats 5] [--part all|v2l]
"""

import argparse
import importlib.util
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='BSC: convolution vs literal unfold')
    parser.add_argument('--channels', type=int, default=128, help='visual channels C_i')
    parser.add_argument('--size', type=int, default=128, help='feature map height = width')
    parser.add_argument('--tokens', type=int, default=20, help='tokens N (max_length)')
    parser.add_argument('--real-tokens', type=int, default=12, help='non-padding tokens')
    parser.add_argument('--text-dim', type=int, default=768, help='text width D')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    parser.add_argument('--modes', nargs='+', default=['forward', 'train'])
    parser.add_argument('--part', choices=['all', 'v2l'], default='all')
    parser.add_argument('--child', nargs=2, metavar=('VARIANT', 'MODE'), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _proc_status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def _load_reference():
    path = osp.join(REPO, 'tests', 'test_models', 'test_bsc.py')
    spec = importlib.util.spec_from_file_location('bsc_reference', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(args) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from btdnet.models.layers import BidirectionalSpatialCorrelation

    variant, mode = args.child
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref = _load_reference()
    bsc = BidirectionalSpatialCorrelation(args.channels, args.text_dim)
    b, n = args.batch, args.tokens
    visual = torch.randn(b, args.channels, args.size, args.size)
    text = torch.randn(b, n, args.text_dim)
    mask = torch.zeros(b, n, dtype=torch.long)
    mask[:, : args.real_tokens] = 1
    train = mode == 'train'
    visual.requires_grad_(train)
    text.requires_grad_(train)

    if args.part == 'v2l':
        fn = (
            (lambda: bsc.v2l_affinity(visual, text))
            if variant == 'conv'
            else (lambda: ref.unfold_v2l_affinity(bsc, visual, text))
        )
    elif variant == 'conv':
        fn = lambda: bsc(visual, text, mask)  # noqa: E731
    else:
        fn = lambda: ref.bsc_unfold_reference(bsc, visual, text, mask)  # noqa: E731

    def step():
        if not train:
            with torch.no_grad():
                fn()
            return
        bsc.zero_grad(set_to_none=True)
        visual.grad = text.grad = None
        out = fn()
        out = out if isinstance(out, tuple) else (out,)
        sum(o.float().square().mean() for o in out).backward()

    # peak resident set of the first (cold) run
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    rss_before = _proc_status_kib('VmRSS')
    step()
    rss_mib = (_proc_status_kib('VmHWM') - rss_before) / 1024

    # allocator peak of one run
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        trace = osp.join(tmp, 'trace.json')
        prof.export_chrome_trace(trace)
        with open(trace) as f:
            events = [e['args'] for e in json.load(f)['traceEvents'] if e.get('name') == '[memory]']
    events = [e for e in events if e.get('Device Type', 0) == 0]
    if events:
        start = events[0]['Total Allocated'] - events[0]['Bytes']
        peak_mib = (max(e['Total Allocated'] for e in events) - start) / 2**20
    else:
        peak_mib = float('nan')

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return dict(
        time_ms=statistics.median(times),
        peak_mib=peak_mib,
        rss_mib=rss_mib,
        threads=torch.get_num_threads(),
    )


def _run_child(args, variant, mode) -> dict:
    cmd = [sys.executable, osp.abspath(__file__), '--child', variant, mode]
    for name in ('channels', 'size', 'tokens', 'real_tokens', 'text_dim', 'batch', 'repeats'):
        cmd += [f'--{name.replace("_", "-")}', str(getattr(args, name))]
    cmd += ['--threads', str(args.threads), '--part', args.part]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([osp.join(REPO, 'projects'), REPO]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(f'{variant}/{mode} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    args = parse_args()
    if args.child:
        print(json.dumps(_child(args)))
        return
    what = 'whole BSC (Eq. 2-4)' if args.part == 'all' else 'W_v2l affinity only (Eq. 2-3)'
    print(
        f'BSC benchmark, {what}: B={args.batch} C={args.channels} '
        f'{args.size}x{args.size} N={args.tokens} ({args.real_tokens} real) D={args.text_dim}'
    )
    print('| mode | variant | time (ms) | peak alloc (MiB) | peak RSS rise (MiB) | threads |')
    print('| --- | --- | ---: | ---: | ---: | ---: |')
    results = {}
    for mode in args.modes:
        for variant in ('conv', 'unfold'):
            r = results[mode, variant] = _run_child(args, variant, mode)
            print(
                f'| {mode} | {variant} | {r["time_ms"]:.1f} | {r["peak_mib"]:.1f} | '
                f'{r["rss_mib"]:.1f} | {r["threads"]} |'
            )
    for mode in args.modes:
        conv, unfold = results[mode, 'conv'], results[mode, 'unfold']
        print(
            f'ratio {mode}: conv is {unfold["time_ms"] / conv["time_ms"]:.2f}x faster; '
            f'peak alloc conv/unfold = {conv["peak_mib"] / unfold["peak_mib"]:.3f} '
            f'(RSS {conv["rss_mib"] / max(unfold["rss_mib"], 1e-9):.3f})'
        )


if __name__ == '__main__':
    main()
