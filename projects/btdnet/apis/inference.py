"""Segment the target a sentence names in a user's own image, as ``mmseg.apis`` does for classes.

.. code:: python

    from btdnet.apis import init_model, inference_model
    model = init_model('configs/btdnet/btdnet_tiny_synthetic.py', 'iter_40.pth', device='cpu')
    result = inference_model(model, 'scene.tif', 'the white storage tank at the bottom left')
    result.pred_sem_seg.data   # (1, H0, W0) 0/1 at the image's original size
    result.seg_logits.data     # (2, H0, W0): background logit, target logit
    result.fg_fraction, result.fg_margin   # the target-existence score
    str(result.stretch)   # 'shared 2-98 % stretch: 532-2100' for a 16-bit file

The image goes through the config's test pipeline without the mask loading. Its loader reads
every file the same way (:func:`btdnet.utils.read_image_file`: GDAL for TIF / GeoTIFF / PNG,
bands 1, 2, 3 whatever the photometric tag, one 2-98 % stretch shared by the bands for data
deeper than 8 bits, GDAL's mask for nodata) and gives 3-channel uint8 BGR, resized to
the network input; whole-image or sliding-window inference follows the config's ``model.test_cfg``
(``mode='slide'`` for large scenes).

For callers that check before they run (the web app, ``tools/app.py``): :func:`read_image_header`
gives an image file's size, bands and georeferencing without decoding it, :func:`read_image` the
array ``inference_model`` would read from the file, and :func:`truncated_sentences` what the text
encoder keeps of sentences over its token budget.
"""

import copy
import csv
import logging
import os.path as osp
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.runner import CheckpointLoader
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import nn

from ..evaluation.rrsis_metric import existence_score
from ..utils.image_file import Stretch, array_to_bgr, parse_bands, parse_stretch
from ..utils.safe_checkpoint import load_local_checkpoint

DEFAULT_DATASET_META = dict(classes=('background', 'target'), palette=[[0, 0, 0], [255, 64, 32]])
# Transforms that read ground truth: dropped at inference.
_MASK_LOADERS = ('LoadReferringMask', 'LoadAnnotations')
# Transforms that read the image file: replaced by the array itself for ndarray input.
_IMAGE_LOADERS = ('LoadRSImageFromFile', 'LoadImageFromFile')
_MAX_LISTED_KEYS = 20


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model its config builds."""


def _listed(keys: list, limit: int = _MAX_LISTED_KEYS) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... and {len(keys) - limit} more' if len(keys) > limit else '')


def load_checkpoint_strict(model: nn.Module, filename: str, map_location='cpu') -> dict:
    """Load a checkpoint into ``model``, refusing any mismatch.

    mmengine's ``load_checkpoint`` (and ``Runner`` with ``load_from``) only warns about missing
    or unexpected keys, so a checkpoint of another model silently evaluates a half-random
    network. This loads through mmengine's ``CheckpointLoader`` (local files go through btdnet's
    ``weights_only=True`` loader) and compares every key and shape first.

    Args:
        model (nn.Module): The model (a DDP wrapper is unwrapped).
        filename (str): Checkpoint path or URL.
        map_location: As in :func:`torch.load`. Default ``'cpu'``.

    Returns:
        dict: The whole checkpoint (``meta``, ``state_dict``, ...).

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a PyTorch checkpoint, or holds no state dict.
        UnsafeCheckpointError: The file asks the unpickler for globals outside btdnet's
            allow-list (nothing in it ran).
        CheckpointMismatchError: Keys missing from the checkpoint, keys the model does not have,
            or tensors of other shapes; all three lists are in the message.
    """
    # Local files go straight to btdnet.utils.safe_checkpoint (mmengine's loader would route
    # them there too, after an INFO line on every run), which turns unreadable files into a
    # ValueError and foreign globals into an UnsafeCheckpointError, both naming the file.
    if '://' in str(filename):
        checkpoint = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    else:
        checkpoint = load_local_checkpoint(str(filename), map_location=map_location)
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f'{filename!r}: expected a checkpoint dict (with a state_dict), found a '
            f'{type(checkpoint).__name__}'
        )
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, dict) or not any(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise ValueError(
            f'{filename!r}: expected a checkpoint with a state_dict of tensors, found keys '
            f'{_listed(sorted(map(str, checkpoint)), 10)}'
        )
    state_dict = {
        (k[len('module.') :] if k.startswith('module.') else k): v for k, v in state_dict.items()
    }
    module = model.module if hasattr(model, 'module') else model
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f'{k} (checkpoint {tuple(state_dict[k].shape)}, model {tuple(expected[k].shape)})'
        for k in sorted(set(expected) & set(state_dict))
        if isinstance(state_dict[k], torch.Tensor) and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(
                f'{len(missing)} missing keys (in the model, not in the checkpoint): '
                f'{_listed(missing)}'
            )
        if unexpected:
            parts.append(
                f'{len(unexpected)} unexpected keys (in the checkpoint, not in the '
                f'model): {_listed(unexpected)}'
            )
        if shapes:
            parts.append(f'{len(shapes)} shape mismatches: {_listed(shapes)}')
        raise CheckpointMismatchError(
            f'checkpoint {filename!r} does not match the {type(module).__name__} built from the '
            'config (was it trained with another config?):\n  ' + '\n  '.join(parts)
        )
    module.load_state_dict(state_dict, strict=True)
    return checkpoint


def _strip_init_cfg(cfg) -> None:
    """Drop ``init_cfg`` (pretrained encoder files) everywhere: the checkpoint brings weights."""
    if isinstance(cfg, dict):
        if 'init_cfg' in cfg:
            cfg['init_cfg'] = None
        for value in cfg.values():
            _strip_init_cfg(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _strip_init_cfg(value)


BACKENDS = ('pytorch', 'onnxruntime', 'onnxruntime-int8')


def flush_denormals_on_cpu(device: str | torch.device) -> bool:
    """Treat denormal floats as zero in this process's CPU arithmetic (``torch`` only).

    Swin's shifted-window mask (-100 on the attention logits) leaves softmax weights of about
    e^-100, below float32's normal range, and x86 CPUs compute on such numbers many times
    slower; flushing them to zero leaves BTDNet's outputs unchanged to float32 precision.

    The setting is **process-global** (``torch.set_flush_denormal``): every later CPU
    computation of this process flushes, other models and training included. It holds for the
    calling thread and the threads it starts afterwards, so call it before other CPU work when
    torch runs on several threads. Undo it with ``torch.set_flush_denormal(False)``.

    Args:
        device (str | torch.device): Does nothing unless it is the CPU.

    Returns:
        bool: Whether flushing is now on (False on CPUs without the SSE3 control bits).
    """
    if torch.device(device).type != 'cpu':
        return False
    return bool(torch.set_flush_denormal(True))


def init_model(
    config: str | Path | Config,
    checkpoint: str | None = None,
    device: str = 'cpu',
    cfg_options: dict | None = None,
    backend: str = 'pytorch',
    flush_denormal: bool = True,
) -> nn.Module:
    """Build a BTDNet from a config and load its weights, ready for :func:`inference_model`.

    Args:
        config (str | Path | Config): Config file or object.
        checkpoint (str, optional): Checkpoint to load. None keeps random weights (a warning is
            logged): useful for smoke tests only. With an ONNX Runtime backend, the folder
            ``tools/deployment/pytorch2onnx.py`` wrote (``model.onnx``, tokenizer).
        device (str): ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ... Default ``'cpu'``.
        cfg_options (dict, optional): Overrides merged into the config (e.g.
            ``{'model.test_cfg.mode': 'slide'}``).
        backend (str): ``'pytorch'``; ``'onnxruntime'`` (the exported ``model.onnx``) or
            ``'onnxruntime-int8'`` (its dynamically quantised ``model_int8.onnx``), which give
            a :class:`btdnet.deployment.ONNXRuntimeSegmentor` that :func:`inference_model` takes
            alike. Default ``'pytorch'``.
        flush_denormal (bool): On the CPU, flush denormal floats to zero for speed (see
            :func:`flush_denormals_on_cpu`: PyTorch's switch is **process-global**; ONNX
            Runtime's is per session). False leaves the process as it is. Default True.

    Returns:
        nn.Module: The model in eval mode, with ``model.cfg`` (the config) and
        ``model.dataset_meta`` (from the checkpoint, else background/target).

    Raises:
        FileNotFoundError: The config or the checkpoint file does not exist.
        ValueError: The checkpoint file is not a checkpoint, or ``backend`` is unknown.
        CheckpointMismatchError: The checkpoint does not fit the config's model.
    """
    if backend not in BACKENDS:
        raise ValueError(f'init_model: backend must be one of {BACKENDS}, found {backend!r}')
    if isinstance(config, (str, Path)):
        if not osp.isfile(config):
            raise FileNotFoundError(f'init_model: expected a config file, found no file {config}')
        config = Config.fromfile(str(config))
    elif not isinstance(config, Config):
        raise TypeError(
            f'init_model: expected a config path or mmengine Config, found {type(config).__name__}'
        )
    config = copy.deepcopy(config)
    if cfg_options:
        config.merge_from_dict(cfg_options)
    _strip_init_cfg(config.model)
    config.model.train_cfg = None
    init_default_scope(config.get('default_scope', 'mmseg'))
    if backend != 'pytorch':
        from ..deployment import ONNXRuntimeSegmentor

        if checkpoint is None:
            raise ValueError(
                f'init_model: backend {backend!r} needs the exported folder as checkpoint'
            )
        return ONNXRuntimeSegmentor(
            checkpoint,
            config,
            device=device,
            precision='int8' if backend.endswith('int8') else 'fp32',
            flush_denormal=flush_denormal,
        )
    if flush_denormal:
        flush_denormals_on_cpu(device)

    model = MODELS.build(config.model)
    model.dataset_meta = dict(DEFAULT_DATASET_META)
    if checkpoint is None:
        print_log(
            'init_model: no checkpoint given, the model keeps random weights',
            logger='current',
            level=logging.WARNING,
        )
    else:
        loaded = load_checkpoint_strict(model, checkpoint, map_location='cpu')
        meta = loaded.get('meta') or {}
        if isinstance(meta, dict) and meta.get('dataset_meta'):
            model.dataset_meta = meta['dataset_meta']
    model.cfg = config
    model.to(device)
    model.eval()
    return model


def to_bgr_uint8(image: np.ndarray, stretch: str | Stretch | None = 'shared') -> np.ndarray:
    """Convert an image array to 3-channel uint8 BGR as the image loader does for files.

    Grey (H, W) or (H, W, 1) is replicated to 3 channels; a 4th band (alpha or NIR) is dropped;
    uint8 passes as it is, deeper integers and floats through ``stretch`` (default one 2-98 %
    range shared by the bands, as for files; see :func:`btdnet.utils.parse_stretch`), bool is
    0 / 255. The channel order of a 3-channel array is taken as BGR (what ``cv2.imread`` /
    ``mmcv.imread`` return).

    Args:
        image (np.ndarray): (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
        stretch (str | Stretch): ``'shared'``, ``'per-band'``, ``'none'`` or ``'MIN,MAX'``.

    Returns:
        np.ndarray: (H, W, 3) uint8.
    """
    return array_to_bgr(image, stretch)[0]


def _check_image_path(path: str | Path, caller: str) -> str:
    path = str(path)
    if osp.isdir(path):
        raise IsADirectoryError(f'{caller}: expected an image file, found a directory {path}')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{caller}: expected an image file, found no file {path}')
    return path


def read_image_header(path: str | Path) -> dict:
    """Read an image file's size, bands and georeferencing from its header, decoding no pixels.

    Lets a caller refuse an image too large to decode before decoding it. The header is read by
    GDAL (through rasterio), which knows JPEG, PNG, TIFF / GeoTIFF, BMP, WebP, JPEG 2000 and more;
    Pillow is asked when GDAL does not know the format.

    Args:
        path (str | Path): Image file.

    Returns:
        dict: ``height``, ``width``, ``bands`` (int), ``dtype`` (str, e.g. ``'uint16'``),
        ``driver`` (GDAL's format name, or ``'PIL:<format>'``), ``crs`` (rasterio ``CRS`` or
        None) and ``transform`` (affine pixel-to-CRS transform, None without georeferencing).

    Raises:
        FileNotFoundError: No such file.
        IsADirectoryError: ``path`` is a directory.
        ValueError: Neither GDAL nor Pillow recognises the file as an image.
    """
    import rasterio
    from PIL import Image, UnidentifiedImageError
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    path = _check_image_path(path, 'read_image_header')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                georeferenced = src.crs is not None or not src.transform.is_identity
                return dict(
                    height=src.height,
                    width=src.width,
                    bands=src.count,
                    dtype=src.dtypes[0],
                    driver=src.driver,
                    crs=src.crs,
                    transform=src.transform if georeferenced else None,
                )
    except RasterioIOError as gdal_error:
        try:
            with Image.open(path) as image:  # lazy: reads the header only
                width, height = image.size
                bands = len(image.getbands())
                mode, fmt = image.mode, image.format
        except (UnidentifiedImageError, OSError) as pil_error:
            raise ValueError(
                f'{path}: expected an image file, found {osp.getsize(path)} bytes that neither '
                f'GDAL nor Pillow reads as an image (GDAL: {gdal_error}; Pillow: {pil_error})'
            ) from None
        dtype = 'uint16' if mode.startswith('I;16') else 'float32' if mode == 'F' else 'uint8'
        return dict(
            height=height,
            width=width,
            bands=bands,
            dtype=dtype,
            driver=f'PIL:{fmt}',
            crs=None,
            transform=None,
        )


def read_image(
    model: nn.Module, path: str | Path, bands=None, stretch: str | None = None
) -> np.ndarray:
    """Read an image file as :func:`inference_model` does, for drawing or tiling.

    The file goes through the image loader at the head of the model's test pipeline
    (``LoadRSImageFromFile``, i.e. :func:`btdnet.utils.read_image_file`): bands 1, 2, 3 (or one
    as grey), data deeper than 8 bits through one 2-98 % stretch shared by the bands.
    ``inference_model(model, read_image(model, path), text)`` predicts what
    ``inference_model(model, path, text)`` does.

    Args:
        model (nn.Module): From :func:`init_model` (its ``cfg`` names the loader).
        path (str | Path): Image file.
        bands (str | Sequence[int], optional): Bands read as R, G, B (or one as grey); default
            the loader's.
        stretch (str, optional): ``'shared'``, ``'per-band'``, ``'none'`` or ``'MIN,MAX'``;
            default the loader's.

    Returns:
        np.ndarray: (H, W, 3) uint8, BGR.

    Raises:
        FileNotFoundError: No such file.
        IsADirectoryError: ``path`` is a directory.
        ValueError: The file is not an image the loader decodes, or is truncated or corrupt.
    """
    return load_image(model, path, bands, stretch, 'read_image')['img']


def load_image(
    model: nn.Module, path: str | Path, bands=None, stretch=None, caller: str = 'load_image'
) -> dict:
    """:func:`read_image` with the loader's other results: ``img`` (H, W, 3) uint8 BGR,
    ``img_shape``, ``ori_shape`` and ``stretch`` (the :class:`btdnet.utils.Stretch` applied)."""
    path = _check_image_path(path, caller)
    init_default_scope(model.cfg.get('default_scope', 'mmseg'))
    loader, _ = _pipelines(model.cfg, from_array=False, bands=bands, stretch=stretch)
    stem = osp.splitext(osp.basename(path))[0]
    return loader(dict(img_path=path, sample_id=stem))


def read_pairs_csv(csv_path: str) -> list[tuple[str, str, str]]:
    """Rows of an ``image,sentence`` CSV (``tools/infer.py --csv``, ``tools/infer_scene.py --csv``).

    Args:
        csv_path (str): A CSV with a header holding the columns ``image`` and ``sentence``
            (others are ignored); relative image paths are taken from the CSV's folder.

    Returns:
        list[tuple[str, str, str]]: Per row ``(image as written, image path, sentence)``; an
        empty sentence cell gives ``''`` (the caller decides what to do with it).

    Raises:
        FileNotFoundError: No such file.
        ValueError: The header lacks ``image`` or ``sentence``.
    """
    if not osp.isfile(csv_path):
        raise FileNotFoundError(f'--csv {csv_path!r} is not a file')
    with open(csv_path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {'image', 'sentence'} <= set(reader.fieldnames):
            raise ValueError(
                f'{csv_path}: expected a header with the columns image,sentence; '
                f'found {reader.fieldnames}'
            )
        rows = list(reader)
    root = osp.dirname(osp.abspath(csv_path))
    return [
        (row['image'] or '', osp.join(root, row['image'] or ''), row['sentence'] or '')
        for row in rows
    ]


def _check_sentences(text) -> tuple[list[str], bool]:
    single = isinstance(text, str)
    texts = [text] if single else text
    if not isinstance(texts, (list, tuple)) or not texts:
        raise TypeError(
            'inference_model: expected a sentence (str) or a non-empty list of sentences, found '
            f'{text!r}'
        )
    for k, sentence in enumerate(texts):
        if not isinstance(sentence, str):
            raise TypeError(
                f'inference_model: sentence {k}: expected a str, found {type(sentence).__name__}'
            )
        if not sentence.strip():
            raise ValueError(
                f'inference_model: sentence {k} is empty ({sentence!r}); a referring model needs '
                'a sentence naming the target to segment'
            )
    return list(texts), single


def _text_encoder(model: nn.Module):
    for module in model.modules():
        if hasattr(module, 'tokenizer') and hasattr(module, 'max_length'):
            return module
    return None


def truncated_sentences(model: nn.Module, texts: Sequence[str]) -> dict[int, tuple[int, int, str]]:
    """The sentences longer than the text encoder's token budget, and what the model reads of them.

    Args:
        model (nn.Module): From :func:`init_model`.
        texts (Sequence[str]): Sentences.

    Returns:
        dict[int, tuple[int, int, str]]: For each sentence over the budget (``max_length``
        tokens, ``[CLS]`` and ``[SEP]`` included; 20 in the paper), its index -> (its token count
        with ``[CLS]`` and ``[SEP]``, ``max_length``, the words kept as the tokenizer decodes
        them). Empty when every sentence fits, or when the model has no text encoder with a
        tokenizer.
    """
    encoder = _text_encoder(model)
    if encoder is None:
        return {}
    tokenizer, budget = encoder.tokenizer, int(encoder.max_length)
    truncated = {}
    for k, sentence in enumerate(texts):
        ids = tokenizer(sentence, add_special_tokens=False)['input_ids']
        if len(ids) + 2 > budget:
            truncated[k] = (len(ids) + 2, budget, tokenizer.decode(ids[: budget - 2]))
    return truncated


def _warn_if_truncated(model: nn.Module, texts: list[str], caller: str = 'inference_model') -> None:
    """Say which sentences exceed the text encoder's token budget, and what it keeps (once:
    the encoder's own, vaguer notice is marked as given)."""
    truncated = truncated_sentences(model, texts)
    if truncated:
        getattr(_text_encoder(model), 'notices_logged', set()).add('truncated')
    for k, (num_tokens, budget, kept) in truncated.items():
        print_log(
            f'{caller}: sentence {k} has {num_tokens} tokens ([CLS] and [SEP] '
            f'included) but the text encoder reads max_length={budget}; it is truncated to '
            f'"{kept}"',
            logger='current',
            level=logging.WARNING,
        )


def _pipelines(cfg: Config, from_array: bool, bands=None, stretch=None) -> tuple:
    """The config's test pipeline without mask loading, split into (image loader, rest);
    ``bands`` and ``stretch`` (when given) override the loader's."""
    if 'test_pipeline' in cfg:
        steps = cfg.test_pipeline
    else:
        steps = cfg.test_dataloader.dataset.pipeline
    steps = [copy.deepcopy(s) for s in steps if s.get('type') not in _MASK_LOADERS]
    if not steps or steps[0].get('type') not in _IMAGE_LOADERS:
        raise ValueError(
            f'inference_model: expected the test pipeline to start with one of {_IMAGE_LOADERS}, '
            f'found {[s.get("type") for s in steps]}'
        )
    overrides = {k: v for k, v in dict(bands=bands, stretch=stretch).items() if v is not None}
    if overrides and steps[0]['type'] != 'LoadRSImageFromFile':
        raise ValueError(
            f'inference_model: {" and ".join(overrides)} need LoadRSImageFromFile at the head of '
            f'the test pipeline, found {steps[0]["type"]}'
        )
    steps[0].update(overrides)
    loader = None if from_array else Compose(steps[:1])
    return loader, Compose(steps[1:])


def inference_model(
    model: nn.Module,
    image: str | Path | np.ndarray,
    text: str | Sequence[str],
    batch_size: int = 8,
    bands=None,
    stretch: str | None = None,
) -> SegDataSample | list[SegDataSample]:
    """Segment what each sentence names in one image.

    Args:
        model (nn.Module): From :func:`init_model`.
        image (str | Path | np.ndarray): Image file, or an array in BGR order (see
            :func:`to_bgr_uint8` for the dtypes and band counts accepted).
        text (str | Sequence[str]): One sentence, or several for the same image (the image is
            read and pre-processed once).
        batch_size (int): Sentences per forward pass, at least 1. Default 8.
        bands (str | Sequence[int], optional): Files: the bands read as R, G, B (or one as
            grey); default the loader's (1, 2, 3).
        stretch (str, optional): How data deeper than 8 bits become 8 bits: ``'shared'`` (the
            default: one 2-98 % range for all bands), ``'per-band'``, ``'none'`` or
            ``'MIN,MAX'`` (see :func:`btdnet.utils.parse_stretch`).

    Returns:
        SegDataSample | list[SegDataSample]: One per sentence (a list when ``text`` is a list):
        ``pred_sem_seg`` (1, H0, W0) 0/1 at the original size, ``seg_logits`` (2, H0, W0)
        background and target logits, and in the metainfo ``text``, ``img_shape``, ``ori_shape``,
        the existence score ``fg_fraction`` (share of pixels the target wins) and ``fg_margin``
        (mean target-minus-background logit over those pixels), and ``stretch`` (the
        :class:`btdnet.utils.Stretch` applied; ``str()`` describes it).

    Raises:
        FileNotFoundError: ``image`` is a path to nothing.
        IsADirectoryError: ``image`` is a directory.
        ValueError: The file is not a decodable image (or a truncated or corrupt one), a
            sentence is empty (a referring model needs a sentence to know what to segment), or
            ``batch_size``, ``bands`` or ``stretch`` make no sense.

    A sentence longer than the text encoder's token budget (``max_length``, 20 for the paper) is
    truncated, with a warning naming what is kept.
    """
    texts, single = _check_sentences(text)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'inference_model: batch_size must be an int >= 1, found {batch_size!r}')
    bands, stretch_spec = parse_bands(bands), parse_stretch(stretch)
    if isinstance(image, np.ndarray):
        init_default_scope(model.cfg.get('default_scope', 'mmseg'))
        _, rest = _pipelines(model.cfg, from_array=True)
        if bands is not None:
            raise ValueError('inference_model: bands applies to files; index the array instead')
        img, fitted = array_to_bgr(image, stretch_spec)
        base = dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], stretch=fitted)
        stem = 'array'
    else:
        base = load_image(model, image, bands, stretch, 'inference_model')
        _, rest = _pipelines(model.cfg, from_array=True)
        stem = osp.splitext(osp.basename(str(image)))[0]
    _warn_if_truncated(model, texts)

    inputs, samples = [], []
    for k, sentence in enumerate(texts):
        packed = rest(dict(base, text=sentence, sample_id=f'{stem}_{k}'))
        inputs.append(packed['inputs'])
        samples.append(packed['data_samples'])
    outputs = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = dict(
                inputs=inputs[start : start + batch_size],
                data_samples=samples[start : start + batch_size],
            )
            outputs.extend(model.test_step(batch))
    for output in outputs:
        output.set_metainfo(existence_score(output.seg_logits.data))
        output.set_metainfo(dict(stretch=base['stretch']))
    return outputs[0] if single else outputs
