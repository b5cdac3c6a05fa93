"""Benchmark a BTDNet config against its bare encoders, on one machine, in one run.

Prints parameters, GFLOPs, peak memory and the forward time (batch 1, 512 x 512 by default) of
BTDNet next to its bare backbones (the forward of BTDNet's own Swin + the forward of its own BERT,
same weights), and ends with ``overhead: <ratio>x`` = BTDNet forward / (Swin + BERT forward).

    python tools/analysis_tools/benchmark_model.py configs/btdnet_swinb_rrsisd.py --random-init

Measurement:

* time: median wall time of ``--repeats`` runs after ``--warmup`` runs, under ``torch.no_grad``,
  the three models measured in turn within each repeat (so load changes on a shared machine hit
  them alike). BTDNet's forward is the tensor mode (``model._forward``: tokenisation, the
  bidirectional extractor with the masked-sentence BERT pass, the TwinStream head; no rephrase
  head, which only runs in training, and no resize to the input size).
* GFLOPs: mmengine's ``FlopAnalyzer`` (fvcore's JIT-trace counter: one multiply-add = one FLOP),
  with a handle added for ``aten::scaled_dot_product_attention`` (q k^T and attn v, which the
  stock counter skips); ops it cannot count are listed.
* peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during the forward; on CPU the peak of
  live tensor memory during the forward from ``torch.profiler``'s memory events (op granularity).
  Weights are not included in either.
* ``--breakdown`` adds the time spent in each part of BTDNet (forward hooks).
* ``--flush-denormal``: Swin's shifted-window mask (-100 on the logits) leaves softmax weights
  of about e^-100, below float32's normal range, and x86 CPUs compute on such denormal numbers
  many times slower; how many appear depends on the weights and inputs (with random weights
  one last-stage matrix product of Swin-B took 15 ms or 270 ms by the init alone). With the
  flag they are flushed to zero, which leaves the outputs unchanged to float32 precision and
  times the arithmetic alone.
"""

import argparse
import copy
import statistics
import time
from collections import defaultdict

import torch
from mmengine.config import DictAction
from mmengine.registry import init_default_scope

from btdnet.engine import load_config  # imports btdnet: registers the plugin
from btdnet.utils.benchmark import KEY_SPANS, SENTENCE, sync, timed, without_pretrained_weights


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='BTDNet config file')
    parser.add_argument(
        '--random-init',
        action='store_true',
        help='skip the pretrained files: Swin without init_cfg, BERT from a default BertConfig '
        '(the bert-base-uncased architecture)',
    )
    parser.add_argument('--shape', type=int, nargs=2, default=None, help='H W (default: config)')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    parser.add_argument('--no-flops', action='store_true', help='skip the FLOP count (JIT trace)')
    parser.add_argument(
        '--flush-denormal',
        action='store_true',
        help='CPU: treat denormal floats as zero (torch.set_flush_denormal), see the docstring',
    )
    parser.add_argument('--breakdown', action='store_true', help='time the parts of BTDNet')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings')
    return parser.parse_args()


# ---------------------------------------------------------------- measurement helpers


def peak_memory(fn, device):
    """Peak bytes of tensor memory allocated during ``fn`` (beyond what was live before)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def sdpa_flop_jit(inputs, outputs):
    """MACs of scaled_dot_product_attention: q k^T and attn v."""
    from mmengine.analysis.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for size in q[:-2]:
        batch *= size
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def count_flops(module, inputs):
    """(GFLOPs, unsupported op names) of ``module(*inputs)`` by mmengine's FlopAnalyzer."""
    from mmengine.analysis import FlopAnalyzer

    analyzer = FlopAnalyzer(module, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    total = analyzer.total() / 1e9
    return total, sorted(analyzer.unsupported_ops())


class TensorForward(torch.nn.Module):
    """Wraps a model so that a JIT trace sees one tensor in and one tensor (tuple) out."""

    def __init__(self, module, fn):
        super().__init__()
        self.module = module  # registered, so that its weights are traced as parameters
        self.fn = fn

    def forward(self, x):
        return self.fn(self.module, x)


def count_params(module):
    return sum(p.numel() for p in module.parameters())


def fmt_params(n):
    return f'{n / 1e6:.2f} M'


def fmt_mem(n):
    return f'{n / 2**20:.0f} MiB'


# ---------------------------------------------------------------- main
def main():
    args = parse_args()
    if args.flush_denormal:  # before the first parallel op: the worker threads inherit it
        torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    model_cfg = (
        without_pretrained_weights(cfg.model) if args.random_init else copy.deepcopy(cfg.model)
    )
    device = torch.device(args.device)
    shape = tuple(args.shape or model_cfg.data_preprocessor.get('size') or (512, 512))

    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    # The bare backbones are BTDNet's own Swin and BERT, run by their own forwards: the same
    # weights as inside BTDNet (on this CPU a Swin with PyTorch's default init runs ~8% faster
    # than the same Swin after init_weights, so separately built copies would not compare).
    swin, bert = model.backbone.vision, model.backbone.text_encoder
    model.to(device)
    model.eval()

    image = torch.randn(1, 3, *shape, device=device)
    meta = dict(text=SENTENCE, key_spans=KEY_SPANS, ori_shape=shape, img_shape=shape)
    samples = [SegDataSample(metainfo=meta)]

    breakdown_on = [False]  # the breakdown hooks count only BTDNet's own forward

    def run_btdnet():
        breakdown_on[0] = True
        try:
            return model._forward(image, samples)
        finally:
            breakdown_on[0] = False

    def run_swin():
        return swin(image)

    def run_bert():
        tokens = bert.tokenize([SENTENCE], [KEY_SPANS], device=device)
        return bert(tokens['input_ids'], tokens['attention_mask'])

    runs = dict(btdnet=run_btdnet, swin=run_swin, bert=run_bert)
    times = defaultdict(list)
    parts = defaultdict(float)
    hooks = register_breakdown(model, parts, breakdown_on) if args.breakdown else []
    with torch.no_grad():
        for fn in runs.values():
            for _ in range(args.warmup):
                fn()
        parts.clear()
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name].append(timed(fn, device)[0])
        for hook in hooks:
            hook.remove()
        memory = {name: peak_memory(fn, device) for name, fn in runs.items()}
    median = {name: statistics.median(values) for name, values in times.items()}

    flops, unsupported = {}, {}
    if not args.no_flops:
        with torch.no_grad():
            flops['btdnet'], unsupported['btdnet'] = count_flops(
                TensorForward(model, lambda m, x: m._forward(x, samples)), (image,)
            )
            flops['swin'], unsupported['swin'] = count_flops(
                TensorForward(swin, lambda m, x: tuple(m(x))), (image,)
            )
            tokens = bert.tokenize([SENTENCE], [KEY_SPANS], device=device)
            flops['bert'], unsupported['bert'] = count_flops(
                TensorForward(bert, lambda m, ids: m(ids, tokens['attention_mask'])),
                (tokens['input_ids'],),
            )

    params = dict(btdnet=count_params(model), swin=count_params(swin), bert=count_params(bert))
    device_name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    print(
        f'config: {args.config}  ({"random init" if args.random_init else "weights as configured"})'
    )
    print(
        f'device: {device_name}, torch {torch.__version__}, {torch.get_num_threads()} threads; '
        f'input 1 x 3 x {shape[0]} x {shape[1]}, {bert.max_length} tokens; '
        f'median of {args.repeats} runs after {args.warmup} warm-up'
    )
    header = f'{"model":<26}{"params":>12}{"GFLOPs":>10}{"peak mem":>12}{"forward":>12}'
    print(header)
    print('-' * len(header))
    labels = dict(swin='Swin (bare)', bert='BERT (bare)', btdnet='BTDNet')
    for name in ('swin', 'bert', 'btdnet'):
        gflops = f'{flops[name]:.2f}' if name in flops else '-'
        print(
            f'{labels[name]:<26}{fmt_params(params[name]):>12}{gflops:>10}'
            f'{fmt_mem(memory[name]):>12}{median[name] * 1e3:>10.0f} ms'
        )
    bare = median['swin'] + median['bert']
    bare_flops = flops.get('swin', 0) + flops.get('bert', 0)
    bare_line = f'{"Swin + BERT (bare)":<26}{fmt_params(params["swin"] + params["bert"]):>12}'
    bare_line += f'{bare_flops:>10.2f}' if flops else f'{"-":>10}'
    print(bare_line + f'{"":>12}{bare * 1e3:>10.0f} ms')
    for name, ops in unsupported.items():
        if ops:
            print(f'not counted in {labels[name]} GFLOPs: {", ".join(ops)}')
    print(
        'parameters by part: '
        + ', '.join(
            f'{name} {fmt_params(count_params(module))}'
            for name, module in model.named_children()
            if name != 'data_preprocessor'
        )
    )
    if args.breakdown:
        print('time by part (mean per forward):')
        for name, seconds in parts.items():
            print(f'  {name:<40}{seconds / args.repeats * 1e3:>10.1f} ms')
    print(f'overhead: {median["btdnet"] / bare:.2f}x')


def register_breakdown(model, parts, active):
    """Forward hooks that add each part's wall time into ``parts`` while ``active[0]``."""
    backbone, head = model.backbone, model.decode_head
    groups = {
        'backbone: Swin blocks + merging': [backbone.vision.patch_embed]
        + [b for s in backbone.vision.stages for b in s.blocks]
        + [s.downsample for s in backbone.vision.stages if s.downsample is not None],
        'backbone: BERT (E and E_m stages, batched)': [backbone.text_encoder.bert.embeddings]
        + list(backbone.text_encoder.bert.encoder.layer),
        'backbone: BSC': [m for m in backbone.bsc if not isinstance(m, torch.nn.Identity)],
        'head: MCI (all rounds)': [head.mci],
        'head: MCI MSAttn': [layer.ms_attn for layer in head.mci.layers],
        'head: total': [head],
    }
    hooks = []
    for name, modules in groups.items():
        for module in modules:
            starts = {}

            def pre(mod, inputs, starts=starts):
                if active[0]:
                    sync(next(model.parameters()).device)
                    starts[id(mod)] = time.perf_counter()

            def post(mod, inputs, output, starts=starts, name=name):
                if active[0]:
                    sync(next(model.parameters()).device)
                    parts[name] += time.perf_counter() - starts.pop(id(mod))

            hooks.append(module.register_forward_pre_hook(pre))
            hooks.append(module.register_forward_hook(post))
    return hooks


if __name__ == '__main__':
    main()
