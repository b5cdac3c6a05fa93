"""BTDNet in the browser: upload an image, type sentences, get one mask per sentence.

    python tools/app.py CONFIG CHECKPOINT [--device cpu] [--host 127.0.0.1] [--port 7860]
                        [--max-pixels 50000000] [--examples-root data/synthetic_rrsis_demo]

``make app`` serves the ``make demo`` model. The model is loaded once, at start-up; requests
queue and run one at a time. The page works with no network at all: Gradio's analytics are off,
no share link is made, the server binds 127.0.0.1 unless ``--host`` says otherwise, and the
page's fonts and scripts are served by the app itself.

The page:

* an image upload (JPEG, PNG, TIF, GeoTIFF; 16-bit and 4-band too), read as
  :func:`btdnet.apis.inference_model` reads files; the pixel count is checked against
  ``--max-pixels`` from the file's header, before anything is decoded;
* clickable examples: test scenes of the synthetic demo dataset (``--examples-root``; rendered on
  the fly when that folder is missing), each with its sentences;
* a sentence box (one sentence per line) and a Run button;
* the result: the image with one coloured mask per sentence under a legend naming each sentence
  with its existence score: ``fg_margin`` of :func:`btdnet.evaluation.existence_score`, the mean
  target-minus-background logit (log-odds) over the pixels the target wins, 0 when it wins none;
  a threshold slider on that score, below which a sentence is shown as "not found" with no mask;
  a mask opacity slider. Both sliders redraw the stored result without running the model again;
* downloads: a mask PNG per sentence (target = 255), the overlay, and for a georeferenced input
  (GeoTIFF) a mask GeoTIFF per sentence with the input's CRS and transform.

Images larger than the network input take the sliding-window path with a progress bar (or, by
choice on the page, are resized to the network input as a whole).
"""

import os

# Before gradio is imported: no usage statistics, no model hub look-ups.
os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
os.environ.setdefault('HF_HUB_OFFLINE', '1')

import argparse  # noqa: E402
import html  # noqa: E402
import json  # noqa: E402
import os.path as osp  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from starlette.exceptions import StarletteDeprecationWarning  # noqa: E402

from btdnet.apis import (  # noqa: E402
    build_tile_predictor,
    inference_model,
    init_model,
    load_image,
    predict_tiled,
    read_image_header,
    truncated_sentences,
    write_mask_geotiff,
)
from btdnet.datasets.synthetic import split_scenes  # noqa: E402
from btdnet.evaluation import safe_file_stem, write_mask_png  # noqa: E402
from btdnet.utils import parse_bands, parse_stretch  # noqa: E402
from btdnet.utils.image_file import BANDS_HELP, STRETCH_HELP  # noqa: E402
from btdnet.visualization import draw_sentence_masks  # noqa: E402
from btdnet.visualization.referring_visualizer import SENTENCE_COLORS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Gradio's queue route names a status code Starlette has renamed: one warning per request in the
# server's log, about Gradio's code, not about anything a user did.
warnings.filterwarnings(
    'ignore',
    message="'HTTP_422_UNPROCESSABLE_ENTITY' is deprecated",
    category=StarletteDeprecationWarning,
)
DEFAULT_MAX_PIXELS = 50_000_000
# Longest image side accepted: a longer strip cannot be written as a PNG (libpng stops at
# 1,000,000 rows) and would be a line on the page.
MAX_SIDE = 100_000
# The server's working folders (downloads, rendered examples): <prefix><pid>_<random>.
WORK_DIR_PREFIX = 'btdnet_app_'
# Existence threshold on fg_margin, fit on the `make demo` model's test scenes with
# tools/analysis_tools/existence_threshold.py: the threshold with the best balanced accuracy
# between the test sentences (median 5.2) and the same sentences with their colour swapped for
# one the scene lacks (median 0.7) was 3.66; 3.5 is that, rounded.
DEFAULT_THRESHOLD = 3.5
MAX_THRESHOLD = 15.0
DEFAULT_OPACITY = 0.5
MAX_SENTENCES = len(SENTENCE_COLORS)
NUM_EXAMPLES = 4
# The page shows the result enlarged to at least SHOWN_MIN_WIDTH (nearest neighbour) and at most
# SHOWN_MAX_SIDE; the downloads are at the image's own size.
SHOWN_MIN_WIDTH = 512
SHOWN_MAX_SIDE = 2048
# The `make demo` dataset (tools/demo.py): its test scenes are the examples.
DEMO_DATA = dict(
    num_images=2000, eval_images=60, seed=0, size=128, object_scale=1.8, task='distractors'
)
DEMO_DATA_ROOT = str(ROOT / 'data' / 'synthetic_rrsis_demo')
# How an image meets the network (the page's "Inference" choice). auto: 'whole image' when the
# image fits the network input, else 'overview'.
MODES = ('auto', 'whole image', 'overview', 'tiles')
MODES_INFO = (
    'auto: the whole image when it fits the network input ({w} x {h}), else overview. '
    'overview: the whole image locates the target, tiles refine it. tiles: each tile on its own '
    '(for sentences like "the white storage tanks").'
)
CSS = """
#legend .entry {display: flex; align-items: baseline; gap: 0.5em; margin: 0.2em 0;}
#legend .swatch {display: inline-block; width: 1em; height: 1em; border-radius: 2px;
                 flex: none; align-self: center;}
#legend .missing {opacity: 0.6;}
#status .error {color: #c62828; font-weight: 600;}
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='BTDNet web app: segment what sentences name in your own images'
    )
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ... (default cpu)')
    parser.add_argument(
        '--host',
        default='127.0.0.1',
        help='address to bind (default 127.0.0.1: this machine only; 0.0.0.0 serves the network)',
    )
    parser.add_argument('--port', type=int, default=7860, help='port (default 7860)')
    parser.add_argument(
        '--max-pixels',
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f'largest image accepted, in pixels (default {DEFAULT_MAX_PIXELS:,}, i.e. 50 MP)',
    )
    parser.add_argument(
        '--examples-root',
        default=DEMO_DATA_ROOT,
        help='synthetic dataset whose test scenes are the examples (rendered on the fly when '
        'missing; default data/synthetic_rrsis_demo, the make demo data)',
    )
    parser.add_argument('--bands', help=BANDS_HELP)
    parser.add_argument('--stretch', default='shared', help=STRETCH_HELP)
    args = parser.parse_args(argv)
    # Cheap checks first: nothing is loaded before the arguments make sense.
    if not 1 <= args.port <= 65535:
        parser.error(f'--port: expected 1-65535, found {args.port}')
    try:
        args.bands = parse_bands(args.bands)
        parse_stretch(args.stretch)
    except ValueError as err:
        parser.error(str(err))
    busy = port_in_use(args.host, args.port)
    if busy:
        parser.error(
            f'--port {args.port}: {args.host}:{args.port} is taken ({busy}); '
            'choose another port with --port'
        )
    if args.max_pixels <= 0:
        parser.error(f'--max-pixels: expected a positive number of pixels, found {args.max_pixels}')
    for name in ('config', 'checkpoint'):
        path = getattr(args, name)
        if not osp.isfile(path):
            found = 'a directory' if osp.isdir(path) else 'nothing'
            parser.error(f'{name}: expected a file, found {found} at {path}')
    return args


def port_in_use(host: str, port: int) -> str | None:
    """Why the app could not serve on ``host:port`` (the OS's words), or None when it can."""
    with socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            return err.strerror or str(err)
    return None


def parse_sentences(text: str | None) -> list[str]:
    """One sentence per non-blank line of ``text``, stripped."""
    return [line.strip() for line in (text or '').splitlines() if line.strip()]


class InputError(ValueError):
    """A request the page refuses with a message (bad file, no sentence, too large)."""


@dataclass
class Prediction:
    """One run's result, kept per browser session so the sliders redraw without the model.

    Attributes:
        image (np.ndarray): The image as the model read it, RGB uint8 (H, W, 3).
        sentences (list[str]): The sentences, in order.
        masks (list[np.ndarray]): Per sentence, the predicted (H, W) bool mask.
        scores (list[dict]): Per sentence, ``fg_fraction`` and ``fg_margin`` (the existence
            score).
        truncated (dict): :func:`btdnet.apis.truncated_sentences` of the sentences.
        header (dict): :func:`btdnet.apis.read_image_header` of the upload.
        out_dir (str): Folder of this run's downloads.
        notes (list[str]): Lines for the status box (path taken, timing, truncation).
        mask_files (tuple): Which sentences the mask downloads show (found or not) and their
            files, as last written: a slider that moves no sentence across the threshold
            rewrites only the overlay.
        previous_dir (str, optional): The session's run before this one: its files stay until
            the next run, so that a redraw of it still in flight when this run ended finds them.
    """

    image: np.ndarray
    sentences: list[str]
    masks: list[np.ndarray]
    scores: list[dict]
    truncated: dict
    header: dict
    out_dir: str
    notes: list[str] = field(default_factory=list)
    mask_files: tuple = ((), [])
    previous_dir: str | None = None


def _delete_prediction(prediction: 'Prediction | None') -> None:
    """gr.State's delete callback: drop a session's downloads when the session expires."""
    if isinstance(prediction, Prediction):
        for folder in (prediction.out_dir, prediction.previous_dir):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)


class SegmentationApp:
    """The page's logic around one loaded model.

    Args:
        model: From :func:`btdnet.apis.init_model`.
        max_pixels (int): Largest image accepted.
        work_dir (str): Folder for the downloads (one sub-folder per run).
        bands (tuple[int, ...], optional): Bands read as R, G, B (or one as grey); default 1, 2,
            3, as every entry point reads files.
        stretch (str): How data deeper than 8 bits become 8 bits (``tools/infer.py
            --stretch``). Default ``'shared'``.
    """

    def __init__(self, model, max_pixels: int, work_dir: str, bands=None, stretch='shared'):
        self.model = model
        self.bands, self.stretch = parse_bands(bands), stretch
        self.max_pixels = int(max_pixels)
        self.work_dir = work_dir
        self.predictor = build_tile_predictor(model)  # the sliding-window path
        self.input_size = self.predictor.tile_size

    # -- reading the request -------------------------------------------------------------------

    def _check_image(self, path: str | None) -> tuple[str, dict]:
        if not path:
            raise InputError('Upload an image first (or click one of the examples).')
        name = osp.basename(path)
        try:
            header = read_image_header(path)
        except (OSError, ValueError) as err:
            raise InputError(_short(err, path)) from None
        pixels = header['height'] * header['width']
        if pixels > self.max_pixels:
            raise InputError(
                f'{name} is {header["width"]:,} x {header["height"]:,} pixels '
                f'({pixels / 1e6:.1f} MP), larger than this server accepts '
                f'({self.max_pixels / 1e6:g} MP, --max-pixels). Crop or downsample it first, or '
                'run tools/infer_scene.py on it for whole scenes.'
            )
        if max(header['height'], header['width']) > MAX_SIDE:
            raise InputError(
                f'{name} is {header["width"]:,} x {header["height"]:,} pixels: a side longer '
                f'than {MAX_SIDE:,} px can be neither shown nor downloaded as a PNG. Crop it, or '
                'run tools/infer_scene.py on it.'
            )
        return name, header

    def _check_sentences(self, text: str | None) -> list[str]:
        sentences = parse_sentences(text)
        if not sentences:
            raise InputError(
                'Type at least one sentence naming what to segment (one sentence per line).'
            )
        if len(sentences) > MAX_SENTENCES:
            raise InputError(
                f'{len(sentences)} sentences: this page draws at most {MAX_SENTENCES} at once, '
                'one colour each.'
            )
        return sentences

    def preview(self, path: str | None, max_side: int = 512) -> np.ndarray | None:
        """The upload as the model will read it, RGB, at most ``max_side`` pixels wide or high.

        Raises:
            InputError: Not an image, or too large.
        """
        if not path:
            return None
        self._check_image(path)
        return _shrink(self._read(path)['img'][..., ::-1], max_side)

    def _read(self, path: str) -> dict:
        """The image as the model reads it: ``img`` (BGR) and the ``stretch`` applied."""
        try:
            return load_image(self.model, path, self.bands, self.stretch)
        except (OSError, ValueError) as err:
            raise InputError(_short(err, path)) from None

    # -- running -------------------------------------------------------------------------------

    def predict(self, path, text, mode: str = 'auto', progress=None) -> Prediction:
        """Check the request, run the model once for all sentences, keep the masks and scores.

        Raises:
            InputError: The request is refused; the message says why.
        """
        if mode not in MODES:
            raise InputError(f'Inference: expected one of {", ".join(MODES)}, found {mode!r}.')
        sentences = self._check_sentences(text)
        name, header = self._check_image(path)
        start = time.perf_counter()
        loaded = self._read(path)
        image = loaded['img']
        height, width = image.shape[:2]
        if mode == 'auto':
            fits = height <= self.input_size[0] and width <= self.input_size[1]
            mode = 'whole image' if fits else 'overview'
        side = f'{self.input_size[1]} x {self.input_size[0]} px'
        if mode == 'whole image':
            results = inference_model(self.model, image, sentences)  # already 8-bit
            how = f'whole image resized to {side}'
        else:
            results = self._predict_tiled(image, sentences, mode, progress)
            run = sum(r.tiles['run'] for r in results)
            how = f'sliding window, {mode} mode: {run} tiles of {side} through the model'
        masks = [r.pred_sem_seg.data[0].cpu().numpy().astype(bool) for r in results]
        scores = [dict(fg_fraction=r.fg_fraction, fg_margin=r.fg_margin) for r in results]
        notes = [
            f'{len(sentences)} sentence{"s" if len(sentences) > 1 else ""} on {name} '
            f'({width} x {height} px, {how}) in {time.perf_counter() - start:.1f} s.'
        ]
        if loaded['stretch'].mode != 'none':
            notes.append(f'{header["dtype"]} image read with a {loaded["stretch"]}.')
        truncated = truncated_sentences(self.model, sentences)
        for k, (num_tokens, budget, kept) in truncated.items():
            notes.append(
                f'Sentence {k + 1} has {num_tokens} tokens but the model reads at most '
                f'{budget}: it was truncated to "{kept}".'
            )
        return Prediction(
            image=np.ascontiguousarray(image[..., ::-1]),
            sentences=sentences,
            masks=masks,
            scores=scores,
            truncated=truncated,
            header=header,
            out_dir=tempfile.mkdtemp(prefix='run_', dir=self.work_dir),
            notes=notes,
        )

    def _predict_tiled(self, image, sentences, mode, progress):
        results = []
        for k, sentence in enumerate(sentences):

            def report(done, total, k=k):
                if progress is not None:
                    progress(
                        (k * total + done, len(sentences) * total),
                        desc=f'sentence {k + 1} of {len(sentences)}: tiles',
                        unit='tiles',
                    )

            results.append(
                predict_tiled(
                    self.predictor,
                    image,
                    sentence,
                    mode=mode,
                    progress=report,
                )
            )
        return results

    # -- drawing -------------------------------------------------------------------------------

    def render(self, prediction: Prediction, threshold: float, opacity: float):
        """The overlay (as shown), the legend HTML and the download files for slider values."""
        found = [s['fg_margin'] >= threshold for s in prediction.scores]
        shown = [m if f else None for m, f in zip(prediction.masks, found)]
        notes = [
            _score_text(s) + ('' if f else ' - not found') for s, f in zip(prediction.scores, found)
        ]
        args = (prediction.image, shown, prediction.sentences, notes)
        overlay = draw_sentence_masks(*args, alpha=opacity)  # with its legend, for download
        files = self._write_downloads(prediction, found, shown, overlay)
        height, width = prediction.image.shape[:2]
        if width >= SHOWN_MIN_WIDTH:  # not enlarged: the download below its legend banner
            page_view = overlay[-height:]
        else:
            page_view = draw_sentence_masks(
                *args, alpha=opacity, min_width=SHOWN_MIN_WIDTH, legend=False
            )
        return _shrink(page_view, SHOWN_MAX_SIDE), self.legend(prediction, found), files

    def legend(self, prediction: Prediction, found: list[bool]) -> str:
        rows = []
        for k, (sentence, score, ok) in enumerate(
            zip(prediction.sentences, prediction.scores, found)
        ):
            color = 'rgb({}, {}, {})'.format(*SENTENCE_COLORS[k % len(SENTENCE_COLORS)])
            status = _score_text(score) + ('' if ok else ' &mdash; <b>not found</b>')
            if k in prediction.truncated:
                kept = html.escape(prediction.truncated[k][2])
                status += f' &mdash; truncated to &ldquo;{kept}&rdquo;'
            rows.append(
                f'<div class="entry{"" if ok else " missing"}" data-found="{str(ok).lower()}">'
                f'<span class="swatch" style="background: {color if ok else "transparent"}; '
                f'border: 2px solid {color}"></span>'
                f'<span><b>{k + 1}.</b> <span class="sentence">{html.escape(sentence)}</span>'
                f' <small>({status})</small></span></div>'
            )
        return '<div class="legend">' + ''.join(rows) + '</div>'

    def _write_downloads(self, prediction: Prediction, found, shown, overlay) -> list[str]:
        out = prediction.out_dir
        overlay_path = osp.join(out, 'overlay.png')
        _write_png(overlay_path, overlay[..., ::-1])
        if prediction.mask_files[0] != tuple(found):
            prediction.mask_files = (tuple(found), self._write_masks(prediction, shown))
        return [*prediction.mask_files[1], overlay_path]

    def _write_masks(self, prediction: Prediction, shown) -> list[str]:
        out = prediction.out_dir
        files = []
        for k, (sentence, mask) in enumerate(zip(prediction.sentences, shown)):
            stem = f'mask_{k + 1}_{safe_file_stem(sentence)[:40]}'
            if mask is None:  # not found: all background, as the page shows
                mask = np.zeros(prediction.image.shape[:2], bool)
            write_mask_png(osp.join(out, f'{stem}.png'), mask)
            files.append(osp.join(out, f'{stem}.png'))
            header = prediction.header
            if header.get('transform') is not None:  # georeferenced input: georeferenced mask
                files.append(
                    write_mask_geotiff(
                        osp.join(out, f'{stem}.tif'),
                        mask,
                        crs=header['crs'],
                        transform=header['transform'],
                    )
                )
        return files


def _write_png(path: str, image: np.ndarray) -> None:
    """Write a PNG the page links to, or say why not (cv2.imwrite only returns False)."""
    if not cv2.imwrite(path, image):
        raise InputError(
            f'could not write the {image.shape[1]} x {image.shape[0]} px overlay as a PNG'
        )


def _score_text(score: dict) -> str:
    return f'existence {score["fg_margin"]:.2f}, {100 * score["fg_fraction"]:.1f}% of the pixels'


def _short(err: Exception, path: str) -> str:
    """An error message with the server-side upload path replaced by the file's name."""
    return str(err).replace(path, osp.basename(path))


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def demo_meta(root: str) -> dict:
    """The generation settings of the synthetic dataset at ``root`` (its
    ``synthetic_meta.json``), or the `make demo` dataset's when ``root`` holds none."""
    meta = dict(DEMO_DATA)
    meta_file = osp.join(root, 'synthetic_meta.json')
    if osp.isfile(meta_file):
        with open(meta_file, encoding='utf-8') as f:
            meta.update(json.load(f))
    return meta


def example_scenes(root: str, cache_dir: str, num: int = NUM_EXAMPLES) -> list[list[str]]:
    """``[image path, sentences]`` for the first ``num`` test scenes of a synthetic dataset.

    The scenes are those of ``root`` (written by ``make_synthetic_rrsis.py``, e.g. by
    ``make demo``) when it holds them; otherwise the `make demo` dataset's test scenes are
    rendered into ``cache_dir`` (the same pictures, as JPEGs of the same quality).
    """
    image_dir = osp.join(root, 'images', 'rrsisd', 'JPEGImages')
    from_root = osp.isfile(osp.join(root, 'synthetic_meta.json'))
    examples = []
    for index, image, objects in split_scenes(demo_meta(root), 'test', num):
        path = osp.join(image_dir, f'{index:05d}.jpg')
        if not (from_root and osp.isfile(path)):
            path = osp.join(cache_dir, f'{index:05d}.jpg')
            os.makedirs(cache_dir, exist_ok=True)
            cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        examples.append([path, '\n'.join(obj['text'] for obj in objects)])
    return examples


def build_page(app: SegmentationApp, examples: list[list[str]]) -> gr.Blocks:
    """The Gradio page around ``app``; model runs queue one at a time."""
    with gr.Blocks(title='BTDNet', analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(
            '## BTDNet: segment what a sentence names\n'
            'Upload an aerial image (or pick an example below), write one sentence per line '
            'naming a target, and press **Run**. Each sentence gets its own colour. Its '
            '*existence* score says how sure the model is that the target is there: the mean '
            'log-odds of target over background on the pixels it marks (0 when it marks none; '
            '5 means 99.3 % sure on average).'
        )
        state = gr.State(None, time_to_live=3600, delete_callback=_delete_prediction)
        with gr.Row():
            with gr.Column(scale=2):
                image_in = gr.File(
                    label='Image: JPEG, PNG, TIF or GeoTIFF (16-bit and 4-band too)',
                    file_count='single',
                    type='filepath',
                    height=110,
                    elem_id='image-input',
                )
                preview = gr.Image(
                    label='Input',
                    interactive=False,
                    height=260,
                    buttons=['fullscreen'],
                    elem_id='preview',
                )
                text_in = gr.Textbox(
                    label='Sentences, one per line',
                    lines=3,
                    placeholder='the red vehicle on the left\nthe white storage tank at the top',
                    elem_id='sentences',
                )
                mode_in = gr.Radio(
                    list(MODES),
                    value='auto',
                    label='Inference',
                    info=MODES_INFO.format(w=app.input_size[1], h=app.input_size[0]),
                )
                run_button = gr.Button('Run', variant='primary', elem_id='run')
                status_out = gr.Markdown(elem_id='status')
            with gr.Column(scale=3):
                overlay_out = gr.Image(
                    label='Result',
                    type='numpy',
                    format='png',
                    interactive=False,
                    buttons=['fullscreen'],
                    elem_id='result',
                )
                legend_out = gr.HTML(label='Legend', elem_id='legend')
                threshold_in = gr.Slider(
                    0,
                    MAX_THRESHOLD,
                    value=DEFAULT_THRESHOLD,
                    step=0.1,
                    label='Existence threshold',
                    info='sentences scoring below it are shown as "not found", with no mask',
                    elem_id='threshold',
                )
                opacity_in = gr.Slider(
                    0, 1, value=DEFAULT_OPACITY, step=0.05, label='Mask opacity', elem_id='opacity'
                )
                files_out = gr.File(
                    label='Downloads: masks (PNG; GeoTIFF for georeferenced inputs), overlay',
                    file_count='multiple',
                    interactive=False,
                    elem_id='downloads',
                )
        if examples:
            gr.Examples(
                examples=[[path, path, text] for path, text in examples],
                inputs=[preview, image_in, text_in],
                label='Examples: test scenes of the synthetic demo dataset (click one, then Run)',
            )

        def show_preview(path):
            try:
                return app.preview(path), ''
            except InputError as err:
                return None, _error_html('Cannot read this image', err)

        def run(path, text, mode, threshold, opacity, old, progress=gr.Progress()):  # noqa: B008
            try:
                prediction = app.predict(path, text, mode, progress)
            except InputError as err:
                _delete_prediction(old)  # the page shows no result any more
                return None, None, '', None, _error_html('Not run', err)
            if isinstance(old, Prediction):
                # The run before last goes; the last stays one more run (Gradio may still be
                # serving a redraw of it).
                if old.previous_dir:
                    shutil.rmtree(old.previous_dir, ignore_errors=True)
                prediction.previous_dir = old.out_dir
            overlay, legend, files = app.render(prediction, threshold, opacity)
            return prediction, overlay, legend, files, '\n\n'.join(prediction.notes)

        def redraw(prediction, threshold, opacity):
            if prediction is None:
                return gr.skip(), gr.skip(), gr.skip()
            return app.render(prediction, threshold, opacity)

        image_in.upload(
            show_preview,
            image_in,
            [preview, status_out],
            api_visibility='private',
            concurrency_id='draw',
        )
        image_in.clear(lambda: (None, ''), None, [preview, status_out], api_visibility='private')
        run_button.click(
            run,
            [image_in, text_in, mode_in, threshold_in, opacity_in, state],
            [state, overlay_out, legend_out, files_out, status_out],
            api_name='run',
            concurrency_id='model',
            concurrency_limit=1,
        )
        gr.on(
            [threshold_in.input, opacity_in.input],  # dragging or typing a value
            redraw,
            [state, threshold_in, opacity_in],
            [overlay_out, legend_out, files_out],
            api_name='redraw',
            trigger_mode='always_last',  # while dragging: only the latest value waits
            concurrency_id='draw',
            concurrency_limit=1,
        )
    page.queue(default_concurrency_limit=1)
    return page


def _error_html(what: str, err: Exception) -> str:
    return f'<span class="error">{what}: {html.escape(str(err))}</span>'


def launch(
    page: gr.Blocks,
    host: str,
    port: int,
    allowed_paths: list[str],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    block: bool = True,
):
    """Serve ``page`` offline: no share link, analytics off, the page's assets from this server.

    Args:
        page (gr.Blocks): From :func:`build_page`.
        host (str): Address to bind (127.0.0.1: this machine only).
        port (int): Port.
        allowed_paths (list[str]): Folders the page may serve files from (downloads, examples).
        max_pixels (int): The app's pixel limit. Uploads larger than 8 bytes per pixel of it
            (4 bands of 16 bits, uncompressed) plus 16 MiB are refused by Gradio before they are
            stored. Default 50 MP.
        block (bool): Serve until interrupted (True) or return at once (tests). Default True.
    """
    page.launch(
        server_name=host,
        server_port=port,
        share=False,
        show_error=True,
        quiet=True,
        prevent_thread_lock=not block,
        allowed_paths=allowed_paths,
        max_file_size=8 * int(max_pixels) + 16 * 2**20,
        theme=gr.themes.Default(),
        css=CSS,
    )


def serve(
    model,
    work_dir: str,
    host: str,
    port: int,
    examples_root: str = DEMO_DATA_ROOT,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    block: bool = True,
    bands=None,
    stretch: str = 'shared',
) -> gr.Blocks:
    """Build the page around ``model`` and serve it (see :func:`launch`); returns the page.

    Downloads and rendered examples go under ``work_dir``; the examples are the test scenes of
    ``examples_root`` (see :func:`example_scenes`). ``bands`` and ``stretch`` say how uploads
    are read (``--bands``, ``--stretch``).
    """
    app = SegmentationApp(model, max_pixels, work_dir, bands, stretch)
    page = build_page(app, example_scenes(examples_root, osp.join(work_dir, 'examples')))
    launch(page, host, port, [work_dir, examples_root], max_pixels, block)
    return page


def remove_stale_work_dirs(root: str | None = None) -> list[str]:
    """Remove the working folders earlier app processes left behind (killed with SIGKILL, or
    a machine that went down): those whose process is gone. Returns the folders removed."""
    root = root or tempfile.gettempdir()
    removed = []
    for name in os.listdir(root):
        path = osp.join(root, name)
        if not (name.startswith(WORK_DIR_PREFIX) and osp.isdir(path)):
            continue
        pid = name[len(WORK_DIR_PREFIX) :].split('_')[0]
        if pid.isdigit() and int(pid) != os.getpid() and _process_alive(int(pid)):
            continue  # another app serving now
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, a service manager) stops the app as Ctrl+C does, so that its working
    folder is removed on the way out."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv=None) -> int:
    args = parse_args(argv)  # the port is checked here, before the model loads
    print(f'loading {args.checkpoint} ...', flush=True)
    try:
        model = init_model(args.config, args.checkpoint, device=args.device)
    except (OSError, ValueError, TypeError) as err:
        print(f'error: {type(err).__name__}: {err}', file=sys.stderr)
        return 1
    remove_stale_work_dirs()
    work_dir = tempfile.mkdtemp(prefix=f'{WORK_DIR_PREFIX}{os.getpid()}_')
    _stop_on_sigterm()
    try:
        print(f'BTDNet app on http://{args.host}:{args.port} (Ctrl+C to stop)', flush=True)
        serve(
            model,
            work_dir,
            args.host,
            args.port,
            args.examples_root,
            args.max_pixels,
            bands=args.bands,
            stretch=args.stretch,
        )
    except OSError as err:  # the port was taken after the check
        print(
            f'error: cannot serve on {args.host}:{args.port} ({err.strerror or err}); choose '
            'another port with --port',
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
