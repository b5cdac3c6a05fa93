"""RefSegRS (Yuan et al., TGRS 2024) in the layout it ships with."""

import os
import os.path as osp

from mmengine.fileio import get_text
from mmseg.registry import DATASETS

from .base import REFSEGRS_CATEGORIES, RRSISD_CATEGORIES, ReferringSegDataset, find_category


@DATASETS.register_module()
class RefSegRSDataset(ReferringSegDataset):
    """RefSegRS: referring expressions over 512x512 aerial TIFs.

    ::

        data_root/images/<id>.tif
        data_root/masks/<id>.tif                    foreground: value > 50
        data_root/output_phrase_<split>.txt         lines `<id> <expression>`

    Each line is one sample: ``sample_id = f'{split}_{line number}'`` (1-based, blank lines
    skipped but counted), ``text`` = everything after the first space (stripped of line ends and
    surrounding spaces; inner spaces kept), mask source ``seg_map_path``. RefSegRS names no
    category, so ``category`` is the first category name the sentence mentions (see
    :func:`~btdnet.datasets.base.find_category`), ``'unknown'`` if none.

    Args:
        split (str): 'train', 'val' or 'test'. Default: 'train'.
        ann_file (str): The phrase file relative to ``data_root``. Default:
            ``output_phrase_<split>.txt``.
        data_prefix (dict): ``img_path`` and ``seg_map_path`` folders relative to ``data_root``.
            Default: dict(img_path='images', seg_map_path='masks').
        img_suffix (str): Image file suffix. Default: '.tif'.
        seg_map_suffix (str): Mask file suffix. Default: '.tif'.
        categories (Sequence[str]): Names searched in the sentence for ``category``. Default:
            RefSegRS's 14 categories followed by RRSIS-D's 20.
        check_files (bool): Check that every image and mask exists at start-up. Default: True.
        **kwargs: Passed to :class:`~btdnet.datasets.base.ReferringSegDataset`.
    """

    def __init__(
        self,
        split: str = 'train',
        ann_file: str = '',
        data_prefix: dict | None = None,
        img_suffix: str = '.tif',
        seg_map_suffix: str = '.tif',
        categories=REFSEGRS_CATEGORIES + RRSISD_CATEGORIES,
        check_files: bool = True,
        **kwargs,
    ):
        if data_prefix is None:
            data_prefix = dict(img_path='images', seg_map_path='masks')
        self.categories = tuple(categories)
        self.check_files = check_files
        super().__init__(
            split=split,
            ann_file=ann_file or f'output_phrase_{split}.txt',
            data_prefix=data_prefix,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        path = self.ann_file
        try:
            lines = get_text(path, backend_args=self.backend_args).splitlines()
        except FileNotFoundError:
            folder = osp.dirname(path) or '.'
            found = []
            if osp.isdir(folder):
                found = sorted(
                    f[len('output_phrase_') : -len('.txt')]
                    for f in os.listdir(folder)
                    if f.startswith('output_phrase_') and f.endswith('.txt')
                )
            raise FileNotFoundError(
                f'Expected the phrases of split {self.split!r} at {path}, found no such file; '
                f'splits found in {folder}: {found}'
            ) from None
        img_root = self.data_prefix.get('img_path', '')
        mask_root = self.data_prefix.get('seg_map_path', '')
        data_list = []
        missing = []
        check_local_files = self.check_files and '://' not in path
        for lineno, line in enumerate(lines, 1):
            line = line.strip()  # line ends (\r\n too) and stray spaces around the line
            if not line:
                continue
            sample_key, _, text = line.partition(' ')
            info = dict(
                img_path=osp.join(img_root, sample_key + self.img_suffix),
                seg_map_path=osp.join(mask_root, sample_key + self.seg_map_suffix),
                text=text.strip(),
                category=find_category(text, self.categories),
                sample_id=f'{self.split}_{lineno}',
                image_key=sample_key,
                seg_fields=[],
                reduce_zero_label=False,
            )
            if check_local_files:
                missing += [
                    (info['sample_id'], p)
                    for p in (info['img_path'], info['seg_map_path'])
                    if not osp.isfile(p)
                ]
            data_list.append(info)
        if missing:
            sample_id, file = missing[0]
            raise FileNotFoundError(
                f'{path}: {len(missing)} image/mask file(s) are missing, e.g. {file} of '
                f'sample_id {sample_id} (line {sample_id.rsplit("_", 1)[1]})'
            )
        self._report_empty_sentences(data_list)
        return data_list
