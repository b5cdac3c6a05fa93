"""Does the model read the sentence? Score every target against the other targets' sentences.

    python tools/analysis_tools/sentence_swap_controls.py CONFIG CHECKPOINT [--split test]
        [--data-root DIR] [--attributes FILE.json] [--out FILE.json] [--device cpu]
        [--batch-size 8] [--cfg-options k=v ...]

For every target A of an image and every other target B of the same image, the model gets B's
sentence and its mask is scored against A's (``btdnet.apis.sentence_swap``). Printed and, with
``--out``, written as JSON: oIoU, mIoU and Pr@0.5 (percent) and the number of pairs for

* ``own``: each target with its own sentence (the test score);
* ``all``: all swaps; a model that reads the sentence drops to near 0;
* ``same_colour``: swaps between targets of one colour (category or position words decide);
* ``same_colour_category``: swaps between targets of one colour and category (position decides).

The attributes come from ``--attributes`` (default: the synthetic generator's
``DATA_ROOT/synthetic_objects.json``, records with ``sent_id``, ``colour``, ``category``); without
the file the ``same_colour*`` subsets are empty.
"""

import argparse
import json
import os.path as osp
import sys

from mmengine.config import DictAction

from btdnet.apis import init_model, sentence_swap_controls, swap_targets
from btdnet.datasets import build_split_dataset
from btdnet.engine import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Sentence-swap controls of a referring model')
    parser.add_argument('config', help='model config (with {train,val,test}_dataloader)')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('--split', default='test', choices=('train', 'val', 'test'))
    parser.add_argument('--data-root', help="override the split's dataset data_root")
    parser.add_argument(
        '--attributes', help='JSON records with sent_id, colour, category per sentence'
    )
    parser.add_argument('--out', help='write the scores to this .json file')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ...')
    parser.add_argument('--batch-size', type=int, default=8, help='sentences per forward pass')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings')
    return parser.parse_args(argv)


def read_attributes(path: str) -> dict:
    """``sent_id`` -> record, from a JSON list of records (``synthetic_objects.json``)."""
    try:
        with open(path, encoding='utf-8') as f:
            records = json.load(f)
    except json.JSONDecodeError as exc:
        raise SystemExit(
            f'{path}: expected a JSON list of records, could not parse it: {exc}'
        ) from None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and 'sent_id' in r for r in records
    ):
        raise SystemExit(f'{path}: expected a JSON list of records with a sent_id each')
    return {str(r['sent_id']): r for r in records}


def format_scores(scores: dict) -> str:
    lines = [f'{"sentences":<22}{"pairs":>7}{"oIoU":>8}{"mIoU":>8}{"Pr@0.5":>8}']
    for name, row in scores.items():
        if row.get('pairs'):
            lines.append(
                f'{name:<22}{row["pairs"]:>7}{row["oIoU"]:>8.2f}{row["mIoU"]:>8.2f}'
                f'{row["Pr@0.5"]:>8.2f}'
            )
        else:
            lines.append(f'{name:<22}{0:>7}{"-":>8}{"-":>8}{"-":>8}')
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f'--batch-size: expected a positive number, found {args.batch_size}')
    if args.out and not args.out.lower().endswith('.json'):
        raise SystemExit(f'--out: expected a .json file, found {args.out!r}')
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint {args.checkpoint!r} is not a file')
    cfg = load_config(args.config, args.cfg_options)
    dataset = build_split_dataset(cfg, args.split, args.data_root)
    attributes_file = args.attributes or osp.join(dataset.data_root, 'synthetic_objects.json')
    if args.attributes and not osp.isfile(args.attributes):
        raise SystemExit(f'--attributes {args.attributes!r} is not a file')
    attributes = read_attributes(attributes_file) if osp.isfile(attributes_file) else None
    if attributes is None:
        print(f'no attributes file {attributes_file}: the same_colour* subsets stay empty')
    model = init_model(cfg, args.checkpoint, device=args.device)
    scores = sentence_swap_controls(
        model, swap_targets(dataset, attributes), batch_size=args.batch_size
    )
    print(f'sentence swaps on the {args.split} split (percent):\n{format_scores(scores)}')
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(scores, f, indent=2)
        print(f'written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
