"""Validate a referring dataset before training: every image, mask and sentence of one split.

    python tools/analysis_tools/check_dataset.py CONFIG [--split val] [--data-root DIR]
        [--max-tokens 20] [--tokenizer PATH] [--workers 4] [--cfg-options k=v ...]

Errors (exit status 1): the dataset cannot be built (unknown split, malformed instances.json,
refused pickle, ...), missing or unreadable images or masks, duplicate sample ids.
Warnings (reported, exit status 0): image/mask size mismatches (the loader resizes the mask),
empty masks of samples that have a target, empty sentences, sentences over the token budget (the
text encoder truncates them). Generalized datasets (gRefCOCO layout): the samples without target
(their masks are empty by definition) and with several targets are counted, not warned about.
Tokens are counted with a HuggingFace tokenizer when ``--tokenizer`` names one (local files only,
[CLS] and [SEP] included), otherwise as words (a lower bound of WordPiece tokens).
"""

import argparse
import sys
from collections import Counter
from multiprocessing import Pool

import numpy as np
from mmengine.config import Config, DictAction

from btdnet.datasets import build_split_dataset  # imports btdnet: registers the plugin
from btdnet.datasets.transforms import LoadReferringMask, LoadRSImageFromFile
from btdnet.datasets.transforms.loading import rle_is_empty


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Check every sample of a referring dataset')
    parser.add_argument('config', help='config with {train,val,test}_dataloader')
    parser.add_argument(
        '--split',
        default='val',
        choices=('train', 'val', 'test'),
        help='which dataloader of the config to check',
    )
    parser.add_argument('--data-root', help='override the dataset data_root')
    parser.add_argument('--max-tokens', type=int, default=20, help='text encoder budget')
    parser.add_argument('--tokenizer', help='HuggingFace tokenizer folder or name (local files)')
    parser.add_argument('--workers', type=int, default=1, help='processes decoding files')
    parser.add_argument('--show', type=int, default=5, help='examples listed per problem')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings')
    return parser.parse_args(argv)


def check_sample(info: dict) -> dict:
    """Decode one sample's image and mask; return what was found (no exception escapes)."""
    out = dict(sample_id=info['sample_id'], img_path=info['img_path'], errors=[])
    try:
        out['img_shape'] = tuple(LoadRSImageFromFile()(dict(info))['img_shape'])
    except Exception as exc:  # report every broken file, not only the first
        out['errors'].append(f'image: {exc}')
    try:
        if 'mask_rle' in info:  # size and emptiness from the RLE, no full-size decode
            out['mask_shape'] = tuple(int(v) for v in info['mask_rle']['size'])
            out['mask_empty'] = rle_is_empty(info['mask_rle'])
        else:
            mask = LoadReferringMask()._decode_file(info['seg_map_path'], info['sample_id'])
            out['mask_shape'] = mask.shape
            out['mask_empty'] = not mask.any()
    except Exception as exc:
        out['errors'].append(f'mask: {exc}')
    return out


def count_tokens(texts, tokenizer: str | None):
    if tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
        return [len(ids) for ids in tok(list(texts))['input_ids']]
    from nltk.tokenize import TreebankWordTokenizer

    words = TreebankWordTokenizer()
    return [len(words.tokenize(t)) for t in texts]


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        ds = build_split_dataset(cfg, args.split, args.data_root, pipeline=[], check_files=False)
    except Exception as exc:
        print(
            f'[check_dataset] ERROR: cannot build the {args.split} dataset: '
            f'{type(exc).__name__}: {exc}'
        )
        return 1
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    print(
        f'[check_dataset] {type(ds).__name__} {args.split}: {len(infos)} samples from '
        f'{ds.data_root}'
    )
    if args.workers > 1:
        with Pool(args.workers) as pool:
            results = pool.map(check_sample, infos, chunksize=16)
    else:
        results = [check_sample(info) for info in infos]

    problems = {}

    def report(kind, items):
        if items:
            problems[kind] = items

    report(
        'ERROR unreadable or missing files',
        [f'sample_id {r["sample_id"]}: {e}' for r in results for e in r['errors']],
    )
    dup = [sid for sid, n in Counter(i['sample_id'] for i in infos).items() if n > 1]
    report('ERROR duplicate sample ids', [f'sample_id {sid}' for sid in dup])
    report(
        'warning image/mask size mismatch (mask resized to the image)',
        [
            f'sample_id {r["sample_id"]}: image {r["img_shape"]} vs mask {r["mask_shape"]} '
            f'({r["img_path"]})'
            for r in results
            if 'img_shape' in r and 'mask_shape' in r and r['img_shape'] != r['mask_shape']
        ],
    )
    report(
        'warning empty masks',
        [
            f'sample_id {r["sample_id"]}'
            for r, i in zip(results, infos)
            if r.get('mask_empty') and not i.get('no_target')
        ],
    )
    report(
        'warning empty sentences',
        [f'sample_id {i["sample_id"]}' for i in infos if not i['text'].strip()],
    )
    lengths = count_tokens([i['text'] for i in infos], args.tokenizer)
    unit = 'tokens' if args.tokenizer else 'words'
    report(
        f'warning sentences over {args.max_tokens} {unit} (truncated by the text encoder)',
        [
            f'sample_id {i["sample_id"]}: {n} {unit}'
            for i, n in zip(infos, lengths)
            if n > args.max_tokens
        ],
    )

    if lengths:
        print(
            f'[check_dataset] sentence length ({unit}): mean {np.mean(lengths):.1f}, '
            f'max {max(lengths)}; categories: {dict(Counter(i["category"] for i in infos))}'
        )
    if any('num_targets' in i for i in infos):
        targets = Counter(min(int(i.get('num_targets', 1)), 2) for i in infos)
        print(
            f'[check_dataset] targets per sample: {targets[0]} with none, {targets[1]} with one, '
            f'{targets[2]} with several'
        )
    for kind, items in problems.items():
        print(f'[check_dataset] {kind}: {len(items)}')
        for item in items[: args.show]:
            print(f'    {item}')
    errors = sum(len(v) for k, v in problems.items() if k.startswith('ERROR'))
    print(
        f'[check_dataset] {"FAILED" if errors else "OK"}: {errors} error(s), '
        f'{sum(len(v) for v in problems.values()) - errors} warning(s)'
    )
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
