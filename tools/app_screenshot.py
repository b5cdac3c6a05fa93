"""Drive the web app (tools/app.py) in a real browser and save a screenshot of the result.

    python tools/app_screenshot.py CONFIG CHECKPOINT --out docs/app_screenshot.png [--overwrite]
        [--example 0 | --image IMAGE --sentences "first sentence" "second sentence"]
        [--threshold 0.5] [--device cpu]

Starts the app on a free local port, opens it in Debian's chromium through Playwright (headless,
no network, a fresh profile; ``playwright install`` is not needed), clicks an example (or uploads
``--image`` and types ``--sentences``), presses Run, waits for the legend and saves a
screenshot of the whole page. The browser test (tests/test_tools/test_app.py) drives the page
with the same functions.
"""

import argparse
import importlib.util
import os.path as osp
import socket
import sys
import tempfile
from pathlib import Path

CHROMIUM = '/usr/bin/chromium'
# Headless, and none of Chromium's own background connections (this app works offline).
CHROMIUM_ARGS = (
    '--no-sandbox',
    '--headless',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
)
VIEWPORT = dict(width=1280, height=1000)


def load_app_module():
    """tools/app.py as a module (tools/ is not a package)."""
    path = Path(__file__).resolve().parent / 'app.py'
    spec = importlib.util.spec_from_file_location('btdnet_app', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port(host: str = '127.0.0.1') -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def launch_browser(playwright):
    """Debian's chromium, headless, with a fresh temporary profile (Playwright's default)."""
    if not osp.isfile(CHROMIUM):
        raise FileNotFoundError(
            f'expected Chromium at {CHROMIUM}; install it with `apt-get install chromium`'
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))


def segment_in_page(
    page,
    url: str,
    image: str | None = None,
    sentences: list[str] | None = None,
    example: int | None = None,
    threshold: float | None = None,
    timeout_s: float = 180,
) -> list[str]:
    """Open the app, give it an image and sentences, press Run and wait for the legend.

    Args:
        page: A Playwright page.
        url (str): The app's address.
        image (str, optional): Image file to upload (with ``sentences``).
        sentences (list[str], optional): Sentences to type, one per line.
        example (int, optional): Click this example row instead of uploading.
        threshold (float, optional): Set the existence threshold first.
        timeout_s (float): How long to wait for each step. Default 180 s.

    Returns:
        list[str]: The sentences the legend shows, in order.
    """
    timeout = timeout_s * 1000
    page.goto(url)
    page.wait_for_selector('#run', timeout=timeout)
    if threshold is not None:
        box = page.locator('#threshold input[type=number]')
        box.fill(str(threshold))
        box.press('Enter')
    if example is not None:
        rows = page.locator('table tbody tr')
        rows.nth(example).click()
        expected = page.locator('#sentences textarea')
        page.wait_for_function(
            'e => e.value.trim().length > 0', arg=expected.element_handle(), timeout=timeout
        )
        sentences = expected.input_value().splitlines()
    else:
        page.set_input_files('#image-input input[type=file]', image)
        page.locator('#sentences textarea').fill('\n'.join(sentences))
    # The upload is done when the preview shows the image.
    page.wait_for_selector('#preview img', timeout=timeout)
    page.click('#run')
    count = len([s for s in sentences if s.strip()])
    page.wait_for_selector(f'#legend .entry >> nth={count - 1}', timeout=timeout)
    return page.locator('#legend .sentence').all_inner_texts()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Screenshot of the BTDNet web app in Chromium')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('--out', required=True, help='PNG to write')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out')
    parser.add_argument('--example', type=int, default=0, help='example row to run (default 0)')
    parser.add_argument('--image', help='upload this image instead of an example')
    parser.add_argument('--sentences', nargs='+', help='sentences for --image')
    parser.add_argument('--threshold', type=float, help='existence threshold to set first')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, ... (default cpu)')
    parser.add_argument('--examples-root', help="the app's --examples-root")
    args = parser.parse_args(argv)
    if osp.exists(args.out) and not args.overwrite:
        parser.error(f'--out {args.out} exists; add --overwrite to replace it')
    if bool(args.image) != bool(args.sentences):
        parser.error('--image and --sentences go together')
    if args.image and not osp.isfile(args.image):
        parser.error(f'--image: expected a file, found nothing at {args.image}')
    for name in ('config', 'checkpoint'):
        if not osp.isfile(getattr(args, name)):
            parser.error(f'{name}: expected a file, found nothing at {getattr(args, name)}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from playwright.sync_api import sync_playwright

    app_module = load_app_module()
    model = app_module.init_model(args.config, args.checkpoint, device=args.device)
    examples_root = args.examples_root or app_module.DEMO_DATA_ROOT
    with tempfile.TemporaryDirectory(prefix='btdnet_app_') as work_dir:
        port = free_port()
        page = app_module.serve(model, work_dir, '127.0.0.1', port, examples_root, block=False)
        try:
            with sync_playwright() as playwright:
                browser = launch_browser(playwright)
                tab = browser.new_page(viewport=VIEWPORT)
                shown = segment_in_page(
                    tab,
                    f'http://127.0.0.1:{port}',
                    image=args.image,
                    sentences=args.sentences,
                    example=None if args.image else args.example,
                    threshold=args.threshold,
                )
                tab.wait_for_timeout(500)  # let the result image finish drawing
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                tab.screenshot(path=args.out, full_page=True)
                browser.close()
        finally:
            page.close()
    print(f'legend: {shown}')
    print(f'screenshot written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
