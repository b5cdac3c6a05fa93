"""Write overlays of a referring dataset: the image, its target mask and the sentence on it.

    python tools/analysis_tools/browse_dataset.py CONFIG [--split val] [--data-root DIR]
        [--output-dir work_dirs/browse] [--num 20] [--cfg-options k=v ...]

Each file ``<sample_id>.jpg`` shows the image at its original size with the target in red, the
sentence written on a band above it and the key-phrase words that the masked text E_m hides.
OpenCV's font has no glyphs beyond ASCII: other characters are drawn as '?'.
"""

import argparse
import os
import os.path as osp
import textwrap

import cv2
import numpy as np
from mmengine.config import Config, DictAction

from btdnet.datasets import build_split_dataset  # imports btdnet: registers the plugin
from btdnet.datasets.transforms import ExtractKeyPhraseSpans, LoadReferringMask, LoadRSImageFromFile


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Write dataset overlays with their sentences')
    parser.add_argument('config', help='config with {train,val,test}_dataloader')
    parser.add_argument('--split', default='val', choices=('train', 'val', 'test'))
    parser.add_argument('--data-root', help='override the dataset data_root')
    parser.add_argument('--output-dir', default='work_dirs/browse_dataset')
    parser.add_argument('--num', type=int, default=20, help='samples to draw (from the start)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings')
    return parser.parse_args(argv)


def overlay(img: np.ndarray, mask: np.ndarray, text: str, key_words: list[str]) -> np.ndarray:
    """The image with the mask blended in red and the sentence on a band above.

    Args:
        img (np.ndarray): (H, W, 3) uint8 BGR.
        mask (np.ndarray): (H, W) 0/1.
        text (str): The referring expression.
        key_words (list[str]): The key-phrase words.

    Returns:
        np.ndarray: (H + band, W, 3) uint8 BGR.
    """
    out = img.copy()
    region = mask.astype(bool)
    out[region] = (0.5 * out[region] + 0.5 * np.array([0, 0, 255])).astype(np.uint8)
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(out, contours, -1, (0, 0, 255), 1)
    width = out.shape[1]
    scale = max(0.4, width / 800)  # font scale
    line_h = int(26 * scale) + 6
    # every line is made ASCII below (OpenCV's font has no other glyphs); one '?' per character
    lines = textwrap.wrap(text or '<empty sentence>', max(10, int(width / (11 * scale))))
    lines.append('key: ' + (', '.join(key_words) or '-'))
    band = np.full((line_h * len(lines) + 6, width, 3), 255, np.uint8)
    for k, line in enumerate(lines):
        colour = (0, 0, 160) if k == len(lines) - 1 else (0, 0, 0)
        cv2.putText(
            band,
            line.encode('ascii', 'replace').decode(),
            (4, line_h * (k + 1)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            colour,
            1,
            cv2.LINE_AA,
        )
    return np.concatenate([band, out], axis=0)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    ds = build_split_dataset(cfg, args.split, args.data_root or None, pipeline=[])
    load_img, load_mask, spans = LoadRSImageFromFile(), LoadReferringMask(), ExtractKeyPhraseSpans()
    os.makedirs(args.output_dir, exist_ok=True)
    count = min(args.num, len(ds))
    for i in range(count):
        results = spans(load_mask(load_img(ds.get_data_info(i))))
        text = results['text']
        keys = [text[s:e] for s, e in results['key_spans']]
        path = osp.join(args.output_dir, f'{results["sample_id"]}.jpg')
        cv2.imwrite(path, overlay(results['img'], results['gt_seg_map'], text, keys))
    print(f'[browse_dataset] wrote {count} overlays to {args.output_dir}')


if __name__ == '__main__':
    main()
