"""What the web app (tools/app.py) adds to a request, and what loading the model once saves.

    python tools/analysis_tools/benchmark_app.py CONFIG CHECKPOINT [--repeats 10] [--example 0]
        [--size 0] [--device cpu] [--threads N]

Serves the app on a free local port and times, interleaved (A B A B ...) on the same image and
sentences (an example scene of the page, or ``--size N``: a random N x N image):

* **api**: ``btdnet.apis.inference_model`` on the file, plus the overlay drawing
  (``draw_sentence_masks``);
* **app**: one Run through ``gradio_client`` (upload, queue, the same model call, overlay,
  legend, mask PNGs, download of the results);
* **load**: ``init_model`` (config, weights), once, which a page that rebuilt the model on every
  click (as mmdetection's Gradio demo does) would pay per request.

Prints the median time of each and the ratio app / api.
"""

import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/: the app's modules
from app_screenshot import free_port, load_app_module  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Time a request through the web app')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('--repeats', type=int, default=10, help='timed rounds (default 10)')
    parser.add_argument('--example', type=int, default=0, help='example scene (default 0)')
    parser.add_argument('--size', type=int, default=0, help='random N x N image instead')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, ... (default cpu)')
    parser.add_argument('--threads', type=int, help="torch's CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f'--repeats: expected at least 1, found {args.repeats}')
    for name in ('config', 'checkpoint'):
        if not osp.isfile(getattr(args, name)):
            parser.error(f'{name}: expected a file, found nothing at {getattr(args, name)}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from gradio_client import Client, handle_file

    app_module = load_app_module()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = app_module.init_model(args.config, args.checkpoint, device=args.device)
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix='btdnet_bench_') as work_dir:
        examples = app_module.example_scenes(
            app_module.DEMO_DATA_ROOT, osp.join(work_dir, 'examples')
        )
        image, text = examples[args.example]
        if args.size:
            image = osp.join(work_dir, 'random.png')
            rng = np.random.default_rng(0)
            cv2.imwrite(image, rng.integers(0, 256, (args.size, args.size, 3), np.uint8))
        sentences = app_module.parse_sentences(text)
        port = free_port()
        page = app_module.serve(model, work_dir, '127.0.0.1', port, block=False)
        client = Client(f'http://127.0.0.1:{port}', verbose=False, download_files=work_dir)

        def through_api():  # one read of the file, as the app
            bgr = app_module.load_image(model, image)['img']
            results = app_module.inference_model(model, bgr, sentences)
            rgb = bgr[..., ::-1]
            masks = [r.pred_sem_seg.data[0].cpu().numpy() > 0 for r in results]
            app_module.draw_sentence_masks(rgb, masks, sentences)

        def through_app():
            client.predict(handle_file(image), text, 'whole image', 0.0, 0.5, api_name='/run')

        times = dict(api=[], app=[])
        try:
            through_api(), through_app()  # warm-up
            for _ in range(args.repeats):
                for name, call in (('api', through_api), ('app', through_app)):
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
        finally:
            page.close()
        header = app_module.read_image_header(image)
    api, app_time = (statistics.median(times[k]) for k in ('api', 'app'))
    width, height = header['width'], header['height']
    print(f'{len(sentences)} sentences on a {width} x {height} image, {args.repeats} rounds')
    print(f'init_model (once, at start-up): {load_s * 1000:8.1f} ms')
    print(f'api (inference_model + overlay): {api * 1000:7.1f} ms (median)')
    print(f'app (Run through gradio_client): {app_time * 1000:7.1f} ms (median)')
    print(f'app / api: {app_time / api:.2f}x; app overhead {1000 * (app_time - api):.1f} ms')
    return 0


if __name__ == '__main__':
    sys.exit(main())
