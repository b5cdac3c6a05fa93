"""README.md and docs/ stay true to the repository.

* every relative link and image resolves to a file inside the repository, and every anchor
  (``page.md#heading`` or ``#heading``) to a heading of that page, slugged as GitHub does;
* every ``tools/...``, ``configs/...``, ``projects/...`` and ``tests/...`` path the pages name
  (in prose or in a command) exists; ``{a,b}`` alternatives and ``*`` patterns are expanded;
* every ``tools/*.py`` the pages name answers ``--help`` with its usage, and does so without
  loading a checkpoint or building a model: all of them run in one child interpreter (torch and
  mmseg are imported once), each through ``runpy`` with ``sys.argv = [tool, '--help']``;
* the README names the two set-up commands, ``make demo`` and ``make test``, near its top.
"""

import json
import re
import subprocess
import sys
import textwrap
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').rglob('*.md'))]
PAGE_IDS = [str(page.relative_to(ROOT)) for page in PAGES]

FENCE = re.compile(r'^\s*(```|~~~)')
# [text](target) and ![alt](target); the target ends at the first space or closing parenthesis.
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
HTML_ID = re.compile(r'<a\s+(?:name|id)="([^"]+)"')
# A repository path: starts with one of these folders, not in the middle of another path.
REPO_PATH = re.compile(r'(?<![\w./~$-])((?:tools|configs|projects|tests)/[\w./{},*-]*[\w/*}])')


def _text(page: Path) -> str:
    return page.read_text(encoding='utf-8')


def _prose_lines(text: str, blank_code: bool = True):
    """(line number, line) outside fenced code blocks, inline code spans blanked unless asked."""
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if blank_code:
            line = re.sub(r'`[^`]*`', lambda m: ' ' * len(m.group(0)), line)
        yield number, line


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading's text (before duplicate suffixes)."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links keep their text
    text = re.sub(r'<[^>]+>', '', text)  # inline HTML
    text = text.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)  # punctuation (backticks, dots, colons, ...) dropped
    return text.replace(' ', '-')


@cache
def anchors(page: Path) -> frozenset:
    """Every anchor of a page: its headings' slugs with -1, -2 ... for repeats, and HTML ids."""
    seen = Counter()
    found = set()
    for _, line in _prose_lines(_text(page), blank_code=False):
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            found.add(slug if not seen[slug] else f'{slug}-{seen[slug]}')
            seen[slug] += 1
    found.update(HTML_ID.findall(_text(page)))
    return frozenset(found)


def relative_links(page: Path):
    """(line number, target) of every link that is not a URL; link texts may span lines."""
    lines = ['' for _ in _text(page).splitlines()]
    for number, line in _prose_lines(_text(page)):
        lines[number - 1] = line
    prose = '\n'.join(lines)
    for match in LINK.finditer(prose):
        target = match.group(1)
        if not re.match(r'^[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto: ...
            yield prose.count('\n', 0, match.start()) + 1, target


def _expand(path: str):
    """'a/{b,c}.py' -> ['a/b.py', 'a/c.py'] (nested and several groups too)."""
    match = re.search(r'\{([^{}]*)\}', path)
    if not match:
        return [path]
    return [
        expanded
        for option in match.group(1).split(',')
        for expanded in _expand(path[: match.start()] + option + path[match.end() :])
    ]


def named_paths(page: Path):
    """(line number, path) for every repository path a page names, code blocks included."""
    for number, line in enumerate(_text(page).splitlines(), 1):
        for raw in REPO_PATH.findall(line):
            raw = raw.split('::')[0].rstrip('.')
            for path in _expand(raw):
                yield number, path


def _exists(path: str) -> bool:
    if '*' in path:
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


@pytest.mark.parametrize('page', PAGES, ids=PAGE_IDS)
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for number, target in relative_links(page):
        path, _, anchor = target.partition('#')
        file = (page.parent / path).resolve() if path else page
        where = f'{page.relative_to(ROOT)}:{number}: ({target})'
        if not file.is_relative_to(ROOT):
            broken.append(f'{where} points outside the repository')
        elif not file.exists():
            broken.append(f'{where} {file.relative_to(ROOT)} does not exist')
        elif anchor and file.suffix == '.md' and anchor not in anchors(file):
            near = sorted(a for a in anchors(file) if a[:4] == anchor[:4])
            broken.append(f'{where} no heading #{anchor} in {file.relative_to(ROOT)} {near}')
    assert not broken, 'broken links:\n' + '\n'.join(broken)


@pytest.mark.parametrize('page', PAGES, ids=PAGE_IDS)
def test_named_paths_exist(page):
    missing = [
        f'{page.relative_to(ROOT)}:{number}: {path}'
        for number, path in named_paths(page)
        if not _exists(path)
    ]
    assert not missing, 'paths that do not exist:\n' + '\n'.join(missing)


def test_readme_starts_with_the_two_setup_commands():
    head = '\n'.join(_text(ROOT / 'README.md').splitlines()[:40])
    for command in ('make demo', 'make test'):
        assert re.search(rf'^{command}\b', head, re.M), f'README: no `{command}` line near the top'


def documented_tools():
    named = {path for page in PAGES for _, path in named_paths(page)}
    return sorted(path for path in named if re.fullmatch(r'tools/[\w/]+\.py', path))


# Runs in a child interpreter: every tool's --help, in turn, with model loading made to fail.
HELP_RUNNER = textwrap.dedent(
    """
    import contextlib, io, json, runpy, sys, traceback
    import torch, mmengine.runner, mmengine.runner.checkpoint

    class LoadedAModel(Exception):
        pass

    def refuse(*args, **kwargs):
        raise LoadedAModel('--help loaded a checkpoint or built a model')

    torch.load = refuse
    mmengine.runner.checkpoint.load_checkpoint = refuse
    mmengine.runner.load_checkpoint = refuse
    import btdnet.apis, mmseg.registry
    btdnet.apis.init_model = refuse
    mmseg.registry.MODELS.build = refuse

    report = {}
    for tool in json.loads(sys.argv[1]):
        out = io.StringIO()
        sys.argv = [tool, '--help']
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                runpy.run_path(tool, run_name='__main__')
            status = 'returned without exiting'
        except SystemExit as exit:
            status = 'ok' if exit.code in (0, None) else f'exit status {exit.code}'
        except BaseException:
            status = traceback.format_exc(limit=-3)
        if status == 'ok' and not out.getvalue().lstrip().startswith('usage:'):
            status = 'printed no usage'
        report[tool] = {'status': status, 'output': out.getvalue()[-2000:]}
    print(json.dumps(report))
    """
)


@pytest.fixture(scope='module')
def help_report():
    tools = documented_tools()
    assert len(tools) >= 10, f'the pages name only {tools}'
    proc = subprocess.run(
        [sys.executable, '-c', HELP_RUNNER, json.dumps(tools)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_documented_tools_answer_help_without_loading_a_model(help_report):
    failed = [
        f'{tool}: {result["status"]}\n{result["output"]}'
        for tool, result in help_report.items()
        if result['status'] != 'ok'
    ]
    assert not failed, 'tools whose --help does not run:\n' + '\n'.join(failed)


def test_github_slug_rules():
    assert github_slug('Checkpoints and `torch.load(weights_only=True)`') == (
        'checkpoints-and-torchloadweights_onlytrue'
    )
    assert github_slug('Model: decoder, heads and configs') == 'model-decoder-heads-and-configs'
    assert github_slug('Whole-scene inference (GeoTIFF)') == 'whole-scene-inference-geotiff'
    assert github_slug('What `make demo` does') == 'what-make-demo-does'
    assert _expand('configs/{a,b}/x_{1,2}.py') == [
        'configs/a/x_1.py',
        'configs/a/x_2.py',
        'configs/b/x_1.py',
        'configs/b/x_2.py',
    ]
