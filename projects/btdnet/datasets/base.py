"""Shared behaviour of the referring segmentation datasets (one sample per sentence)."""

from mmengine.logging import print_log
from mmseg.datasets import BaseSegDataset

# RRSIS-D's 20 categories and RefSegRS's 14 (as the two papers list them).
RRSISD_CATEGORIES = (
    'airplane',
    'airport',
    'golf field',
    'expressway service area',
    'baseball field',
    'stadium',
    'ground track field',
    'storage tank',
    'basketball court',
    'chimney',
    'tennis court',
    'overpass',
    'train station',
    'ship',
    'expressway toll station',
    'dam',
    'harbor',
    'bridge',
    'vehicle',
    'windmill',
)
REFSEGRS_CATEGORIES = (
    'road',
    'vehicle',
    'car',
    'van',
    'building',
    'truck',
    'trailer',
    'bus',
    'road marking',
    'bikeway',
    'sidewalk',
    'tree',
    'low vegetation',
    'impervious surface',
)


class ReferringSegDataset(BaseSegDataset):
    """Base of the referring datasets: binary target masks, one sample per sentence.

    Subclasses override only ``load_data_list``, returning one plain dict per sentence with
    ``img_path``, ``text`` (the raw sentence), ``category``, ``sample_id`` (unique per sentence),
    the mask source (see :class:`~btdnet.datasets.transforms.LoadReferringMask`),
    ``seg_fields=[]`` and ``reduce_zero_label=False``; generalized datasets (gRefCOCO layout) add
    ``no_target`` (bool) and ``num_targets`` (int).

    Empty sentences are kept (the model sees no text and the sample still counts in the
    evaluation, as in LAVT/RMSIN) and reported in one warning; very long ones are kept and cut by
    the text encoder's tokenizer (``tools/analysis_tools/check_dataset.py`` counts them).

    Args:
        split (str): Which split to load. Default: 'train'.
        **kwargs: Passed to :class:`mmseg.datasets.BaseSegDataset`.
    """

    METAINFO = dict(classes=('background', 'target'), palette=[[0, 0, 0], [255, 255, 255]])

    def __init__(self, split: str = 'train', **kwargs):
        self.split = split
        super().__init__(**kwargs)

    def _report_empty_sentences(self, data_list: list):
        """Warn once about the samples whose sentence is empty (they are kept)."""
        empty = [info['sample_id'] for info in data_list if not info['text'].strip()]
        if empty:
            self._warn(
                f'{len(empty)} sample(s) have an empty sentence and are kept, '
                f'e.g. sample_id {empty[:5]}'
            )

    def _warn(self, msg: str):
        print_log(f'{type(self).__name__} ({self.split}): {msg}', logger='current', level=30)


def find_category(text: str, categories) -> str:
    """The category named earliest in ``text`` (longest name on ties), or ``'unknown'``.

    Args:
        text (str): A referring expression.
        categories (Sequence[str]): Candidate category names.
    """
    padded = f' {" ".join(text.lower().replace("-", " ").split())} '
    best = None
    for name in categories:
        pos = padded.find(f' {name} ')
        if pos < 0:  # plurals: "tanks", "buses"
            pos = min(
                (p for p in (padded.find(f' {name}s '), padded.find(f' {name}es ')) if p >= 0),
                default=-1,
            )
        if pos >= 0 and (best is None or (pos, -len(name)) < (best[0], -len(best[1]))):
            best = (pos, name)
    return best[1] if best else 'unknown'


def build_split_dataset(cfg, split: str, data_root: str | None = None, **overrides):
    """Build the dataset of a config's ``<split>_dataloader`` (for the dataset tools).

    Args:
        cfg (Config): A config with ``{train,val,test}_dataloader``.
        split (str): ``train``, ``val`` or ``test``.
        data_root (str, optional): Replaces the dataset's ``data_root``.
        **overrides: Further dataset settings (e.g. ``pipeline=[]``).
    """
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    init_default_scope('mmseg')
    ds_cfg = cfg[f'{split}_dataloader'].dataset.copy()
    if data_root is not None:
        ds_cfg.data_root = data_root
    ds_cfg.update(overrides)
    return DATASETS.build(ds_cfg)
