"""The web app (tools/app.py) served on a free local port with the tiny config: answers through
gradio_client equal btdnet.apis', bad input gets messages, two clients are served, one real
browser run in Debian's chromium, no outside connection, and `make app` without a model."""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import torch
from conftest import load_tool
from geotiff import write_tif

from btdnet.apis import inference_model, init_model, predict_tiled, read_image

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py')
MAX_PIXELS = 200 * 200  # the fixture server's --max-pixels
TWO = ['the red car on the left', 'a large grey roof at the top']
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'

app_tool = load_tool('app.py')
browser_tool = load_tool('app_screenshot.py')


@pytest.fixture(scope='module')
def model(tiny_checkpoint):
    return init_model(TINY, str(tiny_checkpoint), device=DEVICE)


@pytest.fixture(scope='module')
def server(model, tmp_path_factory):
    """The app on a free port of 127.0.0.1: (url, SegmentationApp)."""
    work_dir = tmp_path_factory.mktemp('app_work')
    app = app_tool.SegmentationApp(model, MAX_PIXELS, str(work_dir))
    examples = app_tool.example_scenes(str(work_dir / 'no_dataset'), str(work_dir / 'examples'))
    page = app_tool.build_page(app, examples)
    port = browser_tool.free_port()
    app_tool.launch(page, '127.0.0.1', port, [str(work_dir)], MAX_PIXELS, block=False)
    yield f'http://127.0.0.1:{port}', app
    page.close()


@pytest.fixture
def client(server, tmp_path):
    from gradio_client import Client

    return Client(server[0], verbose=False, download_files=str(tmp_path))


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Test images: a small PNG (fits the 64 x 64 input), a larger one (sliding window), one
    above the server's pixel limit, a 4-band 16-bit GeoTIFF and a file that is no image."""
    root = tmp_path_factory.mktemp('app_images')
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    cv2.imwrite(str(root / 'small.png'), small)
    large = rng.integers(0, 256, (150, 130, 3), dtype=np.uint8)
    cv2.imwrite(str(root / 'large.png'), large)
    cv2.imwrite(str(root / 'huge.png'), np.zeros((250, 250, 3), np.uint8))  # 62,500 px
    geo = rng.integers(0, 65536, (4, 40, 56), dtype=np.uint16)
    write_tif(root / 'scene.tif', geo)
    (root / 'notes.png').write_bytes(b'these are my notes, not a picture\n')
    return root


def run(client, image, text, mode='auto', threshold=0.0, opacity=0.5):
    from gradio_client import handle_file

    return client.predict(
        handle_file(str(image)) if image else None,
        text,
        mode,
        threshold,
        opacity,
        api_name='/run',
    )


def read_mask(path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    return mask > 0


def masks_by_sentence(files) -> list[np.ndarray]:
    pngs = sorted(f for f in files if Path(f).name.startswith('mask_') and f.endswith('.png'))
    return [read_mask(f) for f in pngs]


def api_masks(model, image, sentences) -> list[np.ndarray]:
    results = inference_model(model, image, sentences)
    return [r.pred_sem_seg.data[0].cpu().numpy() > 0 for r in results]


def test_two_sentences_give_masks_of_the_image_size_equal_to_inference_model(client, model, images):
    overlay, legend, files, status = run(client, images / 'small.png', '\n'.join(TWO))
    masks = masks_by_sentence(files)
    expected = api_masks(model, str(images / 'small.png'), TWO)
    assert len(masks) == len(expected) == 2
    for got, want in zip(masks, expected, strict=True):
        assert got.shape == (40, 56)
        assert np.array_equal(got, want)
    assert any(0 < m.sum() < m.size for m in expected)  # the comparison is not vacuous
    for sentence in TWO:
        assert sentence in legend
    assert 'whole image resized to 64 x 64' in status
    shown = cv2.imread(overlay)
    assert shown.shape[1] == 56 * 10  # enlarged (nearest) to at least 512 px for the page
    assert Path(next(f for f in files if f.endswith('overlay.png'))).is_file()


def test_threshold_and_opacity_redraw_without_the_model(client, model, images):
    run(client, images / 'small.png', '\n'.join(TWO), threshold=0.0)
    overlay, legend, files = client.predict(app_tool.MAX_THRESHOLD, 0.5, api_name='/redraw')
    assert legend.count('not found') == 2
    for mask in masks_by_sentence(files):
        assert not mask.any()  # not found: an all-background mask, as the page shows
    # Nothing drawn: the page's picture is the image itself, enlarged 10 times.
    rgb = cv2.cvtColor(cv2.imread(str(images / 'small.png')), cv2.COLOR_BGR2RGB)
    shown = cv2.cvtColor(cv2.imread(overlay), cv2.COLOR_BGR2RGB)
    assert np.array_equal(shown[::10, ::10], rgb)

    # Opacity 1 and every sentence found: pixels inside sentence 2's mask (drawn last, so on top),
    # away from its outline, take sentence 2's colour exactly.
    overlay, legend, files = client.predict(0.0, 1.0, api_name='/redraw')
    assert 'not found' not in legend
    _, second = api_masks(model, str(images / 'small.png'), TWO)
    inner = cv2.erode(second.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert inner.any()
    shown = cv2.cvtColor(cv2.imread(overlay), cv2.COLOR_BGR2RGB)[5::10, 5::10]
    colour = app_tool.SENTENCE_COLORS[1]
    assert (shown[inner] == colour).all()


@pytest.mark.parametrize(
    'image, text, message',
    [
        ('notes.png', 'the red car', 'notes.png: expected an image file, found 34 bytes'),
        ('small.png', '  \n\t\n', 'Type at least one sentence'),
        ('huge.png', 'the red car', 'huge.png is 250 x 250 pixels (0.1 MP), larger than'),
        (None, 'the red car', 'Upload an image first'),
        ('small.png', '\n'.join(f'car {k}' for k in range(11)), '11 sentences'),
    ],
    ids=['not-an-image', 'empty-sentence', 'too-large', 'no-image', 'too-many-sentences'],
)
def test_bad_input_gets_a_message_and_the_server_keeps_serving(
    client, images, image, text, message
):
    overlay, legend, files, status = run(client, images / image if image else None, text)
    assert message in status and 'Not run' in status
    assert overlay is None and files is None
    # Still serving: a good request right after is answered.
    _, legend, files, _ = run(client, images / 'small.png', 'the red car')
    assert 'the red car' in legend and len(masks_by_sentence(files)) == 1


def test_long_sentence_is_truncated_and_the_page_says_so(client, model, images):
    long = ' '.join(['the small white car next to the road'] * 4)  # 32 words
    _, legend, files, status = run(client, images / 'small.png', long)
    assert 'Sentence 1 has 34 tokens but the model reads at most 20' in status
    assert 'truncated to "the small white car next to the road the small white car next' in status
    assert 'truncated to' in legend
    expected = api_masks(model, str(images / 'small.png'), [long])[0]
    assert np.array_equal(masks_by_sentence(files)[0], expected)


def test_two_clients_at_once_both_get_their_answers(server, model, images, tmp_path):
    from gradio_client import Client

    texts = ['the red car on the left', 'the white storage tank\nthe grey roof']
    clients = [
        Client(server[0], verbose=False, download_files=str(tmp_path / str(k))) for k in range(2)
    ]
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(run, c, images / 'small.png', t) for c, t in zip(clients, texts)]
        answers = [job.result() for job in jobs]
    assert len(answers) == len(texts)
    for text, (_, legend, files, _) in zip(texts, answers, strict=True):
        sentences = text.splitlines()
        assert all(s in legend for s in sentences)
        expected = api_masks(model, str(images / 'small.png'), sentences)
        masks = masks_by_sentence(files)
        assert len(masks) == len(expected) == len(sentences)  # masks came back, one per sentence
        assert all(np.array_equal(a, b) for a, b in zip(masks, expected, strict=True))


def test_geotiff_16bit_4band_upload_gives_a_georeferenced_mask(client, model, images):
    _, legend, files, _ = run(client, images / 'scene.tif', 'the red car')
    png = masks_by_sentence(files)[0]
    # Read as inference_model reads it (bands 1-3, one 2-98 % stretch shared by them).
    assert np.array_equal(png, api_masks(model, str(images / 'scene.tif'), ['the red car'])[0])
    tif = next(f for f in files if f.endswith('.tif'))
    with rasterio.open(images / 'scene.tif') as src, rasterio.open(tif) as out:
        assert out.crs == src.crs and out.transform == src.transform
        assert (out.width, out.height) == (56, 40)
        assert np.array_equal(out.read(1) == 1, png)


def test_large_image_takes_the_sliding_window_with_progress(server, model, images):
    _, app = server
    updates = []
    prediction = app.predict(
        str(images / 'large.png'), '\n'.join(TWO), 'auto', lambda *a, **k: updates.append(a[0])
    )
    assert 'sliding window, overview mode' in prediction.notes[0]
    image = read_image(model, str(images / 'large.png'))
    assert len(prediction.masks) == len(TWO)
    for sentence, mask in zip(TWO, prediction.masks, strict=True):
        expected = predict_tiled(model, image, sentence, mode='overview')
        assert mask.shape == (150, 130)
        assert np.array_equal(mask, expected.pred_sem_seg.data[0].numpy() > 0)
    # Progress over both sentences' tiles, ending at the total.
    done, total = zip(*updates)
    assert list(done) == sorted(done) and done[-1] == total[-1] and len(set(total)) == 1
    tiles = app.predict(str(images / 'large.png'), TWO[0], 'tiles')
    expected = predict_tiled(model, image, TWO[0], mode='tiles').pred_sem_seg.data[0].numpy()
    assert np.array_equal(tiles.masks[0], expected > 0)


def test_examples_are_the_demo_test_scenes_rendered_when_missing(tmp_path, synthetic_rrsis_root):
    from btdnet.datasets.synthetic import make_scene

    rendered = app_tool.example_scenes(str(tmp_path / 'missing'), str(tmp_path / 'cache'))
    assert len(rendered) == app_tool.NUM_EXAMPLES
    first_test = 1940  # make demo: 2,000 scenes, the last 60 are the test split
    for k, (path, sentences) in enumerate(rendered):
        image, objects = make_scene(0, first_test + k, 128, 1.8, 'distractors')
        assert Path(path).name == f'{first_test + k:05d}.jpg' and Path(path).is_file()
        assert sentences.splitlines() == [obj['text'] for obj in objects]
        encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]  # the scene
        np.testing.assert_array_equal(cv2.imread(path), cv2.imdecode(encoded, cv2.IMREAD_COLOR))
    # A dataset on disk gives its own test scenes (the fixture's 6 scenes: scene 5 is test).
    found = app_tool.example_scenes(str(synthetic_rrsis_root), str(tmp_path / 'unused'))
    assert [Path(p).name for p, _ in found] == ['00005.jpg']
    assert Path(found[0][0]).is_relative_to(synthetic_rrsis_root)
    assert not (tmp_path / 'unused').exists()


def test_command_line_is_checked_before_the_model_loads(tmp_path, tiny_checkpoint, capsys):
    cases = [
        ([TINY, str(tmp_path / 'none.pth')], 'checkpoint: expected a file, found nothing'),
        ([TINY, str(tiny_checkpoint), '--port', '70000'], '--port: expected 1-65535'),
        ([TINY, str(tiny_checkpoint), '--max-pixels', '0'], '--max-pixels: expected a positive'),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            app_tool.parse_args(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'app.py'), TINY, str(tmp_path / 'none.pth')],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and 'checkpoint: expected a file, found nothing' in result.stderr
    assert 'loading' not in result.stdout


def test_a_busy_port_is_named_before_the_model_loads(tiny_checkpoint, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit):
            app_tool.parse_args([TINY, str(tiny_checkpoint), '--port', str(port)])
    err = capsys.readouterr().err
    assert f'--port {port}: 127.0.0.1:{port} is taken' in err
    assert 'choose another port with --port' in err and 'GRADIO_SERVER_PORT' not in err


def test_a_1_x_20000_strip_is_drawn_within_the_budget_and_every_file_is_written(
    server, images, tmp_path
):
    _, app = server
    strip = np.random.default_rng(3).integers(0, 256, (20000, 1, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'strip.png'), strip)
    prediction = app.predict(str(tmp_path / 'strip.png'), 'the long road', 'tiles')
    shown, _, files = app.render(prediction, 0.0, 0.5)
    assert shown.shape[0] <= app_tool.SHOWN_MAX_SIDE and shown.size <= 4_000_000 * 3
    assert len(files) == 2 and all(Path(f).is_file() for f in files)  # mask, overlay
    overlay = cv2.imread(next(f for f in files if f.endswith('overlay.png')))
    assert overlay.shape[1] == 14 and overlay.shape[0] > 14 * 20000  # within 4 MP, legend above
    cv2.imwrite(str(tmp_path / 'line.png'), np.zeros((1, app_tool.MAX_SIDE + 1, 3), np.uint8))
    roomy = app_tool.SegmentationApp(app.model, 10**6, str(tmp_path))  # the pixels are allowed
    with pytest.raises(app_tool.InputError, match='a side longer than 100,000 px'):
        roomy.predict(str(tmp_path / 'line.png'), 'the long road')


def test_stale_work_folders_are_removed_and_live_ones_kept(tmp_path):
    (tmp_path / 'btdnet_app_999999_x').mkdir()
    (tmp_path / f'btdnet_app_{os.getppid()}_y').mkdir()
    (tmp_path / 'someone_elses').mkdir()
    removed = app_tool.remove_stale_work_dirs(str(tmp_path))
    assert [Path(p).name for p in removed] == ['btdnet_app_999999_x']
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f'btdnet_app_{os.getppid()}_y',
        'someone_elses',
    ]


def test_make_app_without_a_demo_model_says_to_run_make_demo(tmp_path):
    result = subprocess.run(
        ['make', '-s', 'app', f'DEMO_DIR={tmp_path}'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f'no trained demo model in {tmp_path}' in result.stderr
    assert "run 'make demo' first" in result.stderr
    assert '== make install' not in result.stdout  # nothing installed before the check


# -- no network --------------------------------------------------------------------------------

# Imported first by the app's interpreter (sitecustomize): any connection or name lookup that
# leaves this machine is recorded and refused.
GUARD = """
import os, socket

LOG = os.environ['NET_GUARD_LOG']
LOCAL = ('127.', '::1', 'localhost', '0.0.0.0', '::')


def _local(host):
    return str(host) == '' or str(host).startswith(LOCAL)


def _record(kind, target):
    with open(LOG, 'a') as f:
        f.write(f'{kind} {target}\\n')


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _record('connect', address)
        raise OSError(101, 'network is unreachable (blocked by the test)')
    _record('local', address)
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _record('connect', address)
        return 101
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _local(host if isinstance(host, str) else host.decode()):
        _record('lookup', host)
        raise socket.gaierror(socket.EAI_NONAME, 'name lookups are blocked by the test')
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.getaddrinfo = getaddrinfo
"""


def test_the_app_makes_no_outside_connection(tmp_path, tiny_checkpoint, images):
    from gradio_client import Client

    (tmp_path / 'guard').mkdir()
    (tmp_path / 'guard' / 'sitecustomize.py').write_text(GUARD)
    log = tmp_path / 'network.log'
    port = browser_tool.free_port()
    # The app's temporary folder: one left by a process that is gone, one of a live app.
    tmp = tmp_path / 'tmp'
    (tmp / 'btdnet_app_999999_stale' / 'run_x').mkdir(parents=True)
    (tmp / f'btdnet_app_{os.getpid()}_live').mkdir()
    env = dict(
        os.environ,
        TMPDIR=str(tmp),
        GRADIO_TEMP_DIR=str(tmp_path / 'gradio'),  # Gradio's own upload cache, not the app's
        NET_GUARD_LOG=str(log),
        PYTHONPATH=os.pathsep.join([str(tmp_path / 'guard'), os.environ.get('PYTHONPATH', '')]),
    )
    cmd = [sys.executable, str(ROOT / 'tools' / 'app.py'), TINY, str(tiny_checkpoint)]
    cmd += ['--port', str(port), '--examples-root', str(tmp_path / 'no_dataset')]
    url = f'http://127.0.0.1:{port}'
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        client = None
        while client is None:
            assert process.poll() is None, process.stdout.read().decode()
            assert time.time() < deadline, 'the app did not start in 240 s'
            try:
                client = Client(url, verbose=False, download_files=str(tmp_path))
            except Exception:  # not listening yet
                time.sleep(2)
        _, legend, files, _ = run(client, images / 'small.png', '\n'.join(TWO))
        assert all(s in legend for s in TWO) and len(masks_by_sentence(files)) == 2
        ours = [p.name for p in tmp.iterdir() if p.name.startswith(f'btdnet_app_{process.pid}_')]
        assert len(ours) == 1 and not (tmp / 'btdnet_app_999999_stale').exists()
    finally:
        process.terminate()  # SIGTERM
        process.wait(timeout=60)
    # Its folder went with it; the live app's folder stays.
    assert sorted(p.name for p in tmp.iterdir()) == [f'btdnet_app_{os.getpid()}_live']
    # A quiet log: no third-party warning on start or per request.
    assert 'Warning' not in process.stdout.read().decode()
    records = log.read_text().splitlines()
    assert any(r.startswith('local') for r in records)  # the guard was active in the app
    outside = [r for r in records if not r.startswith('local')]
    assert outside == []


# -- the real browser ---------------------------------------------------------------------------


def test_page_in_chromium_runs_two_sentences_and_downloads_the_mask(
    server, model, images, tmp_path
):
    from playwright.sync_api import sync_playwright

    if not Path(browser_tool.CHROMIUM).is_file():
        pytest.fail(f'{browser_tool.CHROMIUM} is missing: apt-get install chromium (.ci/run does)')
    url = server[0]
    requests = []
    with sync_playwright() as playwright:
        browser = browser_tool.launch_browser(playwright)
        page = browser.new_page(viewport=browser_tool.VIEWPORT, accept_downloads=True)
        page.on('request', lambda request: requests.append(request.url))
        shown = browser_tool.segment_in_page(
            page, url, image=str(images / 'small.png'), sentences=TWO, threshold=0.0
        )
        assert shown == TWO  # the legend names both sentences, in order
        link = page.locator('#downloads a[download^="mask_1_"]')
        with page.expect_download() as download_info:
            link.first.click()
        saved = tmp_path / 'mask_1.png'
        download_info.value.save_as(saved)
        # Typing the highest threshold redraws: both sentences become "not found".
        box = page.locator('#threshold input[type=number]')
        box.fill(str(app_tool.MAX_THRESHOLD))
        box.press('Enter')
        page.wait_for_selector('#legend .entry[data-found="false"] >> nth=1', timeout=60000)
        page.screenshot(path=str(tmp_path / 'page.png'), full_page=True)
        browser.close()
    assert np.array_equal(read_mask(saved), api_masks(model, str(images / 'small.png'), TWO)[0])
    assert cv2.imread(str(tmp_path / 'page.png')).shape[1] == browser_tool.VIEWPORT['width']
    # Every request the page made went to the app itself: no fonts or scripts from elsewhere.
    assert requests and all(r.startswith((url, 'data:', 'blob:')) for r in requests)


def test_browser_script_refuses_to_overwrite_without_being_asked(tmp_path, tiny_checkpoint):
    out = tmp_path / 'shot.png'
    out.write_bytes(b'old')
    with pytest.raises(SystemExit):
        browser_tool.parse_args([TINY, str(tiny_checkpoint), '--out', str(out)])
    assert browser_tool.parse_args([TINY, str(tiny_checkpoint), '--out', str(out), '--overwrite'])


def test_help_lists_the_options():
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'app.py'), '--help'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    for option in ('--device', '--host', '--port', '--max-pixels', '--examples-root'):
        assert option in result.stdout
    assert 'default 127.0.0.1' in result.stdout
