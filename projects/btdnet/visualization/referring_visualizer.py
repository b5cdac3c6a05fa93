"""Overlays of referring-segmentation results with the sentence and the IoU written on them.

:func:`draw_referring_overlay` does the drawing (OpenCV only, no display needed) for one sentence,
:func:`draw_sentence_masks` for several sentences on one image (one colour each, with a legend);
:class:`ReferringSegVisualizer` is mmseg's ``SegLocalVisualizer`` drawing through it, and
:class:`ReferringVisualizationHook` is mmseg's ``SegVisualizationHook`` for referring samples:
one picture per *sentence* (mmseg's hook names pictures after the image file, so the sentences
of one image would overwrite each other), written to ``out_dir`` when given
(``tools/test.py --show-dir``).
"""

import os.path as osp
from collections.abc import Sequence

import cv2
import mmcv
import mmengine.fileio as fileio
import numpy as np
import torch
from mmengine.runner import Runner
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS, VISUALIZERS
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from ..evaluation.rrsis_metric import existence_score, safe_file_stem

PRED_COLOR = (255, 64, 32)  # RGB
GT_COLOR = (32, 220, 64)
_BANNER_BG = (24, 24, 24)
_TEXT_COLOR = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Enlarging a narrow image for legibility stops at this many pixels in the drawing (a 1 x 5000
# strip enlarged to 384 px wide would be 2 G pixels); an image larger than this is drawn at its
# own size, never enlarged.
DRAW_PIXEL_BUDGET = 4_000_000
# One colour per sentence when several share an image (RGB): far apart in hue, and none of them
# the greens, browns and greys of aerial ground.
SENTENCE_COLORS = (
    PRED_COLOR,
    (32, 144, 255),
    (255, 214, 0),
    (176, 64, 255),
    (0, 230, 200),
    (255, 80, 190),
    (255, 150, 40),
    (150, 255, 60),
    (255, 255, 255),
    (0, 80, 200),
)


def _as_mask(mask) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[0]
    return mask != 0


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f'expected an RGB uint8 image, found dtype {image.dtype}')
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f'expected an image of shape (H, W, 3), found {image.shape}')
    return np.ascontiguousarray(image[..., :3])


def _panel(image: np.ndarray, masks: Sequence, colors: Sequence, alpha: float, scale: int):
    """The image with each mask blended in its colour and outlined, enlarged ``scale`` times.

    Masks are drawn in order (a later one covers an earlier one where they overlap); ``None``
    stands for a mask not to draw.
    """
    panel = image.copy()
    for mask, color in zip(masks, colors, strict=True):
        if mask is None:
            continue
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f'expected a mask of the image size {image.shape[:2]}, found {mask.shape}'
            )
        tint = np.array(color, dtype=np.float32)
        panel[mask] = (panel[mask] * (1 - alpha) + tint * alpha).astype(np.uint8)
    if scale > 1:
        panel = cv2.resize(panel, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for mask, color in zip(masks, colors, strict=True):
        if mask is None or not mask.any():
            continue
        big = mask.astype(np.uint8)
        if scale > 1:
            big = cv2.resize(big, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(panel, contours, -1, color, max(1, panel.shape[1] // 300))
    return panel


def enlargement(shape: tuple, min_width: int, max_pixels: int = DRAW_PIXEL_BUDGET) -> int:
    """The integer factor that brings an image to ``min_width`` pixels wide, as far as the
    enlarged image stays within ``max_pixels`` (1 when it already is that wide, or too large).

    Args:
        shape (tuple): (H, W, ...) of the image.
        min_width (int): Width wanted, for legible text.
        max_pixels (int): Most pixels the enlarged image may have.
    """
    height, width = shape[:2]
    wanted = int(np.ceil(min_width / width))
    allowed = int(np.sqrt(max_pixels / (height * width)))
    return max(1, min(wanted, allowed))


def _wrap(text: str, width: int, font_scale: float, thickness: int) -> list[str]:
    """Split ``text`` into lines no wider than ``width`` pixels (a long word gets its own)."""
    lines, line = [], ''
    for word in text.split():
        candidate = f'{line} {word}'.strip()
        if line and cv2.getTextSize(candidate, _FONT, font_scale, thickness)[0][0] > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines or ['']


def draw_referring_overlay(
    image: np.ndarray,
    pred_mask=None,
    text: str | None = None,
    gt_mask=None,
    iou: float | None = None,
    existence: dict | None = None,
    alpha: float = 0.5,
    min_width: int = 384,
    max_pixels: int = DRAW_PIXEL_BUDGET,
) -> np.ndarray:
    """Draw a referring prediction (and its ground truth) with the sentence above it.

    The picture is one panel (prediction) or two side by side (ground truth in green, prediction
    in red), under a banner holding the sentence, wrapped to the picture's width, and a line with
    the IoU and the existence score when given. Images narrower than ``min_width`` are enlarged by
    an integer factor (nearest neighbour) so the text stays legible, as far as the enlarged
    panels stay within ``max_pixels`` (:func:`enlargement`).

    Args:
        image (np.ndarray): RGB uint8 image, (H, W, 3) (grey (H, W) is accepted).
        pred_mask (array-like, optional): Predicted mask, (H, W) or (1, H, W); target = nonzero.
        text (str, optional): The referring sentence.
        gt_mask (array-like, optional): Ground-truth mask, same size.
        iou (float, optional): IoU in [0, 1], written as ``IoU 0.734``.
        existence (dict, optional): :func:`~btdnet.evaluation.existence_score`'s output.
        alpha (float): Opacity of the mask colour. Default 0.5.
        min_width (int): Smallest width of the whole picture before enlarging. Default 384.
        max_pixels (int): Most pixels the enlarged panels may have together. Default
            :data:`DRAW_PIXEL_BUDGET`.

    Returns:
        np.ndarray: The drawn RGB uint8 picture.
    """
    image = _as_rgb_uint8(image)
    pred, gt = _as_mask(pred_mask), _as_mask(gt_mask)
    num_panels = 2 if gt is not None else 1
    height, width = image.shape[:2]
    scale = enlargement((height, width * num_panels), min_width, max_pixels)
    panels = []
    if gt is not None:
        panels.append(_panel(image, [gt], [GT_COLOR], alpha, scale))
    panels.append(_panel(image, [pred], [PRED_COLOR], alpha, scale))
    if len(panels) > 1:
        gap = np.full((panels[0].shape[0], 4, 3), _BANNER_BG, np.uint8)
        body = np.concatenate([panels[0], gap, panels[1]], axis=1)
    else:
        body = panels[0]

    width = body.shape[1]
    font_scale, thickness, margin = _text_style(width)
    text = _ascii(text or '')
    lines = _wrap(f'"{text}"', width - 2 * margin, font_scale, thickness) if text else []
    facts = []
    if iou is not None:
        facts.append(f'IoU {iou:.3f}')
    if existence is not None:
        facts.append(
            f'target {100 * existence["fg_fraction"]:.1f}% of pixels, '
            f'margin {existence["fg_margin"]:.2f}'
        )
    if gt is not None:
        facts.append('left: ground truth, right: prediction')
    if facts:
        lines += _wrap(' | '.join(facts), width - 2 * margin, font_scale, thickness)
    if not lines:
        return body
    return np.concatenate([_banner([(line, None) for line in lines], width), body], axis=0)


def draw_sentence_masks(
    image: np.ndarray,
    masks: Sequence,
    sentences: Sequence[str],
    notes: Sequence[str] | None = None,
    colors: Sequence[tuple] = SENTENCE_COLORS,
    alpha: float = 0.5,
    min_width: int = 384,
    legend: bool = True,
    max_pixels: int = DRAW_PIXEL_BUDGET,
) -> np.ndarray:
    """Draw the targets of several sentences on one image, one colour each, under a legend.

    Each mask is blended in its sentence's colour and outlined; the legend above the image gives,
    per sentence, a swatch of its colour, its number, the sentence and its note (e.g. its
    existence score, or "not found"). Images narrower than ``min_width`` are enlarged by an
    integer factor (nearest neighbour) so that the legend stays legible, as far as the enlarged
    image stays within ``max_pixels`` (:func:`enlargement`).

    Args:
        image (np.ndarray): RGB uint8 image, (H, W, 3) (grey (H, W) is accepted).
        masks (Sequence): One per sentence: (H, W) or (1, H, W) array or tensor, target =
            nonzero; ``None`` for a sentence whose mask is not drawn (it keeps its legend entry).
        sentences (Sequence[str]): The sentences, in the order of ``masks``.
        notes (Sequence[str], optional): A note per sentence, written after it.
        colors (Sequence[tuple]): RGB colours, used in turn (cycled when there are more
            sentences). Default :data:`SENTENCE_COLORS`.
        alpha (float): Opacity of the mask colours, in [0, 1]. Default 0.5.
        min_width (int): Smallest width of the picture before enlarging. Default 384.
        legend (bool): Draw the legend banner (False: the image and its masks only, for a page
            that shows its own legend). Default True.
        max_pixels (int): Most pixels of the enlarged image. Default :data:`DRAW_PIXEL_BUDGET`.

    Returns:
        np.ndarray: The drawn RGB uint8 picture, (banner + s*H, s*W, 3) for the enlargement s.
    """
    image = _as_rgb_uint8(image)
    if len(masks) != len(sentences) or (notes is not None and len(notes) != len(sentences)):
        raise ValueError(
            f'expected one mask (and note) per sentence, found {len(masks)} masks, '
            f'{len(sentences)} sentences and {"no" if notes is None else len(notes)} notes'
        )
    if not 0 <= alpha <= 1:
        raise ValueError(f'expected an opacity alpha in [0, 1], found {alpha}')
    palette = [tuple(colors[k % len(colors)]) for k in range(len(sentences))]
    scale = enlargement(image.shape, min_width, max_pixels)
    body = _panel(image, [_as_mask(m) for m in masks], palette, alpha, scale)
    if not legend:
        return body
    width = body.shape[1]
    font_scale, thickness, margin = _text_style(width)
    swatch = cv2.getTextSize('Ag', _FONT, font_scale, thickness)[0][1]
    indent = swatch + margin  # the entry's text starts right of its swatch
    entries = []
    for k, sentence in enumerate(sentences):
        entry = f'{k + 1}. "{_ascii(sentence)}"'
        if notes is not None and notes[k]:
            entry += f' - {_ascii(notes[k])}'
        wrapped = _wrap(entry, width - 2 * margin - indent, font_scale, thickness)
        entries += [(line, palette[k] if i == 0 else ()) for i, line in enumerate(wrapped)]
    return np.concatenate([_banner(entries, width), body], axis=0)


def _ascii(text: str) -> str:
    """``text`` with what OpenCV's Hershey fonts cannot draw (non-ASCII) replaced by '?'."""
    return text.encode('ascii', 'replace').decode('ascii')


def _text_style(width: int) -> tuple[float, int, int]:
    """Font scale, stroke thickness and margin (pixels) for a banner ``width`` pixels wide."""
    font_scale = float(np.clip(width / 900.0, 0.4, 1.2))
    return font_scale, 1 if font_scale < 0.8 else 2, max(4, int(8 * font_scale))


def _banner(lines: Sequence[tuple], width: int) -> np.ndarray:
    """White text lines on a dark banner ``width`` pixels wide.

    Args:
        lines (Sequence[tuple]): ``(text, swatch)`` per line: ``swatch`` None writes the text at
            the margin; an RGB colour draws a square of it first and indents the text; ``()``
            indents the text without a square (the continuation of a legend entry).
        width (int): Banner width in pixels.

    Returns:
        np.ndarray: RGB uint8 banner, (rows, width, 3).
    """
    font_scale, thickness, margin = _text_style(width)
    text_height = cv2.getTextSize('Ag', _FONT, font_scale, thickness)[0][1]
    line_height = text_height + margin
    banner = np.full((line_height * len(lines) + margin, width, 3), _BANNER_BG, np.uint8)
    for k, (line, swatch) in enumerate(lines):
        y = (k + 1) * line_height
        x = margin
        if swatch is not None:
            if swatch:
                cv2.rectangle(banner, (x, y - text_height), (x + text_height, y), tuple(swatch), -1)
            x += text_height + margin
        cv2.putText(banner, line, (x, y), _FONT, font_scale, _TEXT_COLOR, thickness, cv2.LINE_AA)
    return banner


def overlay_from_sample(
    image: np.ndarray, data_sample: SegDataSample, draw_gt: bool = True, alpha: float = 0.5
) -> np.ndarray:
    """:func:`draw_referring_overlay` for a predicted ``SegDataSample``.

    The sentence is the sample's ``text``; the IoU is computed when the sample holds both
    ``pred_sem_seg`` and ``gt_sem_seg``; the existence score is the metainfo ``fg_fraction`` /
    ``fg_margin`` that :func:`btdnet.apis.inference_model` sets, else computed from ``seg_logits``.
    """
    pred = data_sample.pred_sem_seg.data if 'pred_sem_seg' in data_sample else None
    gt = data_sample.gt_sem_seg.data if draw_gt and 'gt_sem_seg' in data_sample else None
    iou = None
    if pred is not None and gt is not None:
        p, g = _as_mask(pred), _as_mask(gt)
        union = int((p | g).sum())
        iou = int((p & g).sum()) / union if union else 0.0
    existence = None
    if 'fg_fraction' in data_sample.metainfo:  # already computed by inference_model
        existence = dict(fg_fraction=data_sample.fg_fraction, fg_margin=data_sample.fg_margin)
    elif 'seg_logits' in data_sample:
        existence = existence_score(data_sample.seg_logits.data)
    return draw_referring_overlay(
        image, pred, data_sample.metainfo.get('text'), gt, iou, existence, alpha
    )


@VISUALIZERS.register_module()
class ReferringSegVisualizer(SegLocalVisualizer):
    """``SegLocalVisualizer`` that draws one referred target with its sentence and IoU.

    ``add_datasample`` draws :func:`draw_referring_overlay` (ground truth and prediction side by
    side when both are drawn) instead of mmseg's class-coloured maps, and saves or shows it as
    mmseg's visualizer does.

    Args:
        name (str): Instance name. Default ``'visualizer'``.
        alpha (float): Opacity of the mask colour. Default 0.5.
        **kwargs: ``SegLocalVisualizer``'s other arguments (``vis_backends``, ``save_dir``).
    """

    def __init__(self, name: str = 'visualizer', alpha: float = 0.5, **kwargs):
        kwargs.setdefault('classes', ('background', 'target'))
        kwargs.setdefault('palette', [[0, 0, 0], list(PRED_COLOR)])
        super().__init__(name=name, alpha=alpha, **kwargs)

    def add_datasample(
        self,
        name: str,
        image: np.ndarray,
        data_sample: SegDataSample | None = None,
        draw_gt: bool = True,
        draw_pred: bool = True,
        show: bool = False,
        wait_time: float = 0,
        out_file: str | None = None,
        step: int = 0,
        with_labels: bool | None = True,
    ) -> None:
        """Draw a referring sample and save it to ``out_file`` or the visual backends.

        Args:
            name (str): Picture name for the backends.
            image (np.ndarray): RGB uint8 image.
            data_sample (SegDataSample, optional): Prediction (and ground truth).
            draw_gt (bool): Draw the ground truth next to the prediction. Default True.
            draw_pred (bool): Draw the prediction. Default True.
            show (bool): Show in a window. Default False.
            wait_time (float): Seconds to show. Default 0.
            out_file (str, optional): Write the picture here instead of the backends.
            step (int): Global step for the backends. Default 0.
            with_labels (bool): Unused (kept for mmseg's signature).
        """
        if data_sample is None:
            drawn = _as_rgb_uint8(image)
        else:
            if not draw_pred and 'pred_sem_seg' in data_sample:
                data_sample = data_sample.clone()
                del data_sample.pred_sem_seg
            drawn = overlay_from_sample(image, data_sample, draw_gt, self.alpha)
        self.set_image(drawn)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(drawn), out_file)
        else:
            self.add_image(name, drawn, step)


@HOOKS.register_module()
class ReferringVisualizationHook(SegVisualizationHook):
    """Draw every ``interval``-th val/test batch: one overlay per sentence.

    Each picture shows the image with the ground truth and the prediction, the sentence, the
    sample's IoU (at the original size) and its existence score. With ``out_dir`` the pictures are
    written as ``out_dir/<sample_id>.png`` by whichever rank predicted them; otherwise they go to
    the runner's visualizer backends under the name ``<mode>_<sample_id>``.

    Args:
        draw (bool): Draw at all. Default False (as mmseg's hook).
        interval (int): Draw every ``interval`` batches. Default 50.
        show (bool): Show in a window. Default False.
        wait_time (float): Seconds to show. Default 0.
        out_dir (str, optional): Folder for the pictures (``tools/test.py --show-dir``).
        draw_gt (bool): Draw the ground truth next to the prediction. Default True.
        alpha (float): Opacity of the mask colour. Default 0.5.
        backend_args (dict, optional): mmengine file backend arguments for reading images.
    """

    def __init__(
        self,
        draw: bool = False,
        interval: int = 50,
        show: bool = False,
        wait_time: float = 0.0,
        out_dir: str | None = None,
        draw_gt: bool = True,
        alpha: float = 0.5,
        backend_args: dict | None = None,
    ):
        super().__init__(
            draw=draw, interval=interval, show=show, wait_time=wait_time, backend_args=backend_args
        )
        self.out_dir = out_dir
        self.draw_gt = draw_gt
        self.alpha = alpha

    def _after_iter(
        self,
        runner: Runner,
        batch_idx: int,
        data_batch: dict,
        outputs: Sequence[SegDataSample],
        mode: str = 'val',
    ) -> None:
        if self.draw is False or mode == 'train':
            return
        if not self.every_n_inner_iters(batch_idx, self.interval):
            return
        for output in outputs:
            img_bytes = fileio.get(output.img_path, backend_args=self.backend_args)
            image = mmcv.imfrombytes(img_bytes, flag='color', channel_order='rgb')
            drawn = overlay_from_sample(image, output, self.draw_gt, self.alpha)
            sample_id = output.metainfo.get('sample_id')
            if sample_id is None:
                sample_id = f'{osp.splitext(osp.basename(output.img_path))[0]}_{batch_idx}'
            name = safe_file_stem(sample_id)
            if self.show:
                self._visualizer.show(drawn, win_name=name, wait_time=self.wait_time)
            if self.out_dir is not None:
                mmcv.imwrite(mmcv.rgb2bgr(drawn), osp.join(self.out_dir, f'{name}.png'))
            else:
                self._visualizer.add_image(f'{mode}_{name}', drawn, step=runner.iter)
