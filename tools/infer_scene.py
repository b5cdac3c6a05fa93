"""Whole-scene inference on georeferenced rasters: GeoTIFF in, georeferenced mask and polygons out.

One scene:

    python tools/infer_scene.py SCENE.tif "the white storage tanks" CONFIG CHECKPOINT --out-dir DIR

Many (a CSV with the columns ``image`` and ``sentence``; relative paths from the CSV's folder;
outputs named ``<row>_<image stem>``, and ``DIR/results.csv`` with one line per row):

    python tools/infer_scene.py --csv scenes.csv CONFIG CHECKPOINT --out-dir DIR

Several processes (GPUs, or CPU processes over gloo), each taking its share of the CSV's rows:

    tools/dist_infer_scene.sh scenes.csv CONFIG CHECKPOINT 2 --out-dir DIR

Writes per scene ``<stem>_mask.tif`` (1 target, 0 background, 255 nodata; the input's grid and
CRS; tiled 512 x 512, deflate; ``--cog`` for a Cloud-Optimized GeoTIFF), ``<stem>_score.tif``
(``--save-score``), ``<stem>.gpkg`` (scene CRS), ``<stem>.geojson`` (WGS84), ``<stem>.json`` (run
summary) and ``<stem>_quicklook.png`` (``--quicklook``). See ``btdnet.apis.infer_scene``.

ONNX Runtime runs an exported model (``tools/deployment/pytorch2onnx.py``) with
``--backend onnxruntime`` (or ``onnxruntime-int8``) and the exported folder as CHECKPOINT; the
tiles are the graph's export shape.

Data deeper than 8 bits get one 2-98 % stretch shared by the bands, from a decimated sample of
the scene, as every other entry point reads files (``--stretch per-band``, ``none`` or
``MIN,MAX`` to change it; the run summary records it).

Arguments, rasters, bands, sentences and the output folder are checked before the model loads.
Exit status 1 if a scene failed (the others go on in CSV mode).
"""

import argparse
import csv
import os
import os.path as osp
import sys

import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from btdnet.apis import (
    BACKENDS,
    RasterScene,
    SceneOptions,
    build_tile_predictor,
    check_out_dir,
    infer_scene,
    init_model,
    read_pairs_csv,
)
from btdnet.apis.tiled import check_text
from btdnet.engine import close_distributed
from btdnet.evaluation import safe_file_stem
from btdnet.utils.image_file import BANDS_HELP, STRETCH_HELP

RESULT_FIELDS = (
    'row',
    'image',
    'sentence',
    'stem',
    'status',
    'polygons',
    'fg_fraction',
    'fg_margin',
    'tiles_run',
    'seconds',
    'error',
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='BTDNet whole-scene inference: GeoTIFF in, mask and polygons out',
        usage='%(prog)s [SCENE SENTENCE | --csv CSV] CONFIG CHECKPOINT --out-dir DIR [options]',
    )
    parser.add_argument('positional', nargs='+', metavar='ARG', help=argparse.SUPPRESS)
    parser.add_argument('--csv', help='batch mode: CSV with the columns image,sentence')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument(
        '--mode',
        choices=('tiles', 'overview'),
        default='tiles',
        help='tiles: the sentence applies to every tile (category-like prompts); overview: the '
        'whole scene at one network input locates the target first (spatial words)',
    )
    parser.add_argument('--bands', help=BANDS_HELP)
    parser.add_argument('--nodata', type=float, help="nodata value (default: the file's)")
    parser.add_argument('--stretch', default='shared', help=STRETCH_HELP)
    parser.add_argument('--scale', type=float, default=1.0, help='resample the scene first')
    parser.add_argument('--overlap', type=float, default=0.25, help='tile overlap, 0-0.5')
    parser.add_argument('--batch-size', type=int, default=8, help='tiles per forward')
    parser.add_argument(
        '--region-margin', type=int, help='overview mode: widen the region by this many pixels'
    )
    parser.add_argument('--cog', action='store_true', help='Cloud-Optimized GeoTIFF outputs')
    parser.add_argument('--save-score', action='store_true', help='write <stem>_score.tif')
    parser.add_argument('--min-area', type=float, default=0.0, help='m^2 (pixels without CRS)')
    parser.add_argument('--simplify', type=float, default=0.0, help='tolerance in pixels')
    parser.add_argument('--quicklook', action='store_true', help='write <stem>_quicklook.png')
    parser.add_argument('--resume', action='store_true', help='continue a killed run')
    parser.add_argument('--overwrite', action='store_true', help='replace earlier outputs')
    parser.add_argument('--device', default=None, help='cpu, cuda, cuda:1 (default: cuda if any)')
    parser.add_argument(
        '--backend',
        choices=BACKENDS,
        default='pytorch',
        help='pytorch (CHECKPOINT a .pth file) or onnxruntime[-int8] (CHECKPOINT the folder '
        'tools/deployment/pytorch2onnx.py wrote)',
    )
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config settings'
    )
    parser.add_argument('--launcher', choices=('none', 'pytorch'), default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.csv:
        if len(args.positional) != 2:
            parser.error('--csv takes CONFIG CHECKPOINT (no SCENE or SENTENCE)')
        args.image = args.sentence = None
        args.config, args.checkpoint = args.positional
    else:
        if len(args.positional) != 4:
            parser.error('give SCENE "SENTENCE" CONFIG CHECKPOINT, or --csv CSV CONFIG CHECKPOINT')
        args.image, args.sentence, args.config, args.checkpoint = args.positional
    if args.resume and args.overwrite:
        parser.error('--resume and --overwrite exclude each other')
    try:
        args.options = SceneOptions(
            mode=args.mode,
            bands=args.bands,
            nodata=args.nodata,
            stretch=args.stretch,
            scale=args.scale,
            overlap=args.overlap,
            batch_size=args.batch_size,
            region_margin=args.region_margin,
            cog=args.cog,
            save_score=args.save_score,
            min_area=args.min_area,
            simplify=args.simplify,
            quicklook=args.quicklook,
        )
    except ValueError as err:
        parser.error(str(err))
    return args


def init_distributed(args) -> tuple[int, int, str]:
    """(rank, world size, device); torchrun launches get a process group: one GPU per process
    (nccl) on CUDA devices, gloo on CPU."""
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if args.launcher == 'none':
        return 0, 1, device
    import torch.distributed as dist

    local_rank = int(os.environ.get('LOCAL_RANK', args.local_rank))
    on_gpu = device.startswith('cuda')
    if on_gpu:
        torch.cuda.set_device(local_rank)
        device = f'cuda:{local_rank}'
    dist.init_process_group(backend='nccl' if on_gpu else 'gloo')
    return dist.get_rank(), dist.get_world_size(), device


def make_jobs(args) -> list[dict]:
    if not args.csv:
        stem = safe_file_stem(osp.splitext(osp.basename(args.image))[0])
        return [
            dict(row=None, image=args.image, path=args.image, sentence=args.sentence, stem=stem)
        ]
    return [
        dict(
            row=row,
            image=name,
            path=path,
            sentence=sentence,
            stem=f'{row}_{safe_file_stem(osp.splitext(osp.basename(name))[0])}',
        )
        for row, (name, path, sentence) in enumerate(read_pairs_csv(args.csv))
    ]


def precheck(job: dict, args) -> None:
    """What can fail before the model loads: sentence, output folder, raster and bands."""
    check_text(job['sentence'])
    check_out_dir(args.out_dir, job['stem'], args.resume, args.overwrite)
    options = args.options
    RasterScene(job['path'], options.bands, options.nodata, options.scale, options.stretch).close()


def model_info(args) -> dict:
    info = dict(
        config=osp.abspath(args.config),
        checkpoint=osp.abspath(args.checkpoint),
        backend=args.backend,
        cfg_options=dict(args.cfg_options or {}),
    )
    if osp.isfile(args.checkpoint):
        info['checkpoint_bytes'] = os.path.getsize(args.checkpoint)
    elif osp.isdir(args.checkpoint):  # an exported ONNX folder: its graphs stand for the weights
        info['checkpoint_bytes'] = sum(
            os.path.getsize(osp.join(args.checkpoint, name))
            for name in sorted(os.listdir(args.checkpoint))
            if name.endswith('.onnx')
        )
    return info


def run_job(predictor, job: dict, args, info: dict, show_progress: bool) -> dict:
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit='tile', desc=osp.basename(job['path']), leave=True)
        bar.update(done - bar.n)

    try:
        return infer_scene(
            predictor,
            job['path'],
            job['sentence'],
            args.out_dir,
            args.options,
            stem=job['stem'],
            resume=args.resume,
            overwrite=args.overwrite,
            model_info=info,
            progress=progress if show_progress else None,
        )
    finally:
        if bar is not None:
            bar.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    rank, world, device = init_distributed(args)
    try:
        return run_jobs(args, rank, world, device)
    finally:
        close_distributed()


def run_jobs(args, rank: int, world: int, device: str) -> int:
    """This rank's share of the jobs; the exit status (rank 0 reports the failures)."""
    try:
        jobs = make_jobs(args)
    except (OSError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    jobs = jobs[rank::world]
    records, ready = [], []
    for job in jobs:
        record = dict(
            row=job['row'], image=job['image'], sentence=job['sentence'], stem=job['stem']
        )
        try:
            precheck(job, args)
            ready.append((job, record))
        except (OSError, ValueError, TypeError) as err:
            record.update(status='failed', error=f'{type(err).__name__}: {err}')
            print(f'error: {job["image"]}: {type(err).__name__}: {err}', file=sys.stderr)
        records.append(record)

    predictor, info = None, model_info(args)
    if ready:
        try:
            model = init_model(
                args.config, args.checkpoint, device, args.cfg_options, backend=args.backend
            )
            predictor = build_tile_predictor(model, args.backend)
        except (OSError, ValueError, TypeError) as err:
            print(f'error: {type(err).__name__}: {err}', file=sys.stderr)
            for _, record in ready:
                record.update(status='failed', error=f'model: {type(err).__name__}: {err}')
    for job, record in ready if predictor is not None else []:
        try:
            with logging_redirect_tqdm([MMLogger.get_current_instance()]):
                summary = run_job(predictor, job, args, info, not args.no_progress and rank == 0)
            record.update(
                status='done',
                polygons=summary['polygons'],
                fg_fraction=summary['existence']['fg_fraction'],
                fg_margin=summary['existence']['fg_margin'],
                tiles_run=summary['tiles']['run'],
                seconds=summary['timings_s']['total'],
            )
            print(
                f'[rank {rank}] {job["image"]}: {summary["polygons"]} polygon(s), outputs in '
                f'{args.out_dir}'
            )
        except (OSError, ValueError, TypeError) as err:
            record.update(status='failed', error=f'{type(err).__name__}: {err}')
            print(f'error: {job["image"]}: {type(err).__name__}: {err}', file=sys.stderr)

    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world
        dist.all_gather_object(gathered, records)
        records = sorted((r for part in gathered for r in part), key=lambda r: r['row'])
    failed = sum(r.get('status') != 'done' for r in records)
    if args.csv and rank == 0:
        path = osp.join(args.out_dir, 'results.csv')
        os.makedirs(args.out_dir, exist_ok=True)
        with open(path, 'w', newline='', encoding='utf-8') as f:
            writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
            writer.writeheader()
            writer.writerows(records)
        print(f'{len(records) - failed} of {len(records)} scenes done; results in {path}')
    # Every rank knows the outcome after the gather; rank 0 alone reports it.
    return 1 if failed and rank == 0 else 0


if __name__ == '__main__':
    sys.exit(main())
