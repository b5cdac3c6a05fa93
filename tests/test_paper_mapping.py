"""docs/paper_mapping.md matches the code it names.

* every `` `path:start-end` `Qualified.name` `` pair is the whole definition of that function or
  class (the ``def`` / ``class`` line to its last line); when code has moved, the failure lists
  the ranges to write instead;
* every config key in a table's Config column exists in both paper configs with the value shown,
  and every ``Class(arg=value)`` there is that constructor's default;
* every file the page names exists, and every ``file::test`` names a test defined there;
* the page has a row for each of Eq. 1-14, and the README links to it.
"""

import ast
import inspect
import re
from functools import cache
from pathlib import Path

import pytest
from mmengine.config import Config
from mmseg.registry import MODELS, TRANSFORMS

import btdnet  # noqa: F401  (registers the classes the page names)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / 'docs' / 'paper_mapping.md'
PAPER_CONFIGS = [
    ROOT / 'configs' / 'btdnet_swinb_rrsisd.py',
    ROOT / 'configs' / 'btdnet_swinb_refsegrs.py',
]

CODE_REF = re.compile(r'`([\w./-]+\.py):(\d+)-(\d+)`\s*`([\w.]+)`')
FILE_REF = re.compile(
    r'`((?:configs|docs|projects|tests|tools)/[\w./-]+\.(?:py|md|sh))(?:::(\w+))?'
)
CONSTRUCTOR_DEFAULT = re.compile(r'([A-Z]\w*)\((\w+)=(.+)\)')
CONFIG_VALUE = re.compile(r'([a-z_]\w*(?:\.\w+)+)=(.+)')


def _doc() -> str:
    return DOC.read_text(encoding='utf-8')


@cache
def _definitions(path: Path) -> dict[str, tuple[int, int]]:
    """Qualified name -> (first, last line) of every function and class in a Python file."""
    found = {}

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                found[name] = (child.lineno, child.end_lineno)
                walk(child, name + '.')

    walk(ast.parse(path.read_text(encoding='utf-8')), '')
    return found


def _table_column(text: str, column: str) -> list[str]:
    """The cells under the header ``column`` in every Markdown table of ``text``."""
    cells, index = [], None
    for line in text.splitlines():
        if not line.startswith('|'):
            index = None
            continue
        row = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if index is None:  # a header row
            index = row.index(column) if column in row else -1
        elif index >= 0 and not set(''.join(row)) <= set('-: '):
            cells.append(row[index])
    return cells


def _as_tuples(value):
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_tuples(v) for k, v in value.items()}
    return value


def _lookup(cfg, key: str):
    node = cfg
    for part in key.split('.'):
        if isinstance(node, list | tuple):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(part)
    return node


def test_readme_links_the_mapping():
    assert 'docs/paper_mapping.md' in (ROOT / 'README.md').read_text(encoding='utf-8')


def test_every_equation_has_a_row():
    rows = _table_column(_doc(), 'Paper')
    equations = {int(m) for cell in rows for m in re.findall(r'^Eq\. (\d+)\b', cell)}
    assert equations == set(range(1, 15))


def test_line_ranges_are_the_functions_named():
    refs = CODE_REF.findall(_doc())
    assert len(refs) >= 25
    stale = set()
    for path, start, end, name in refs:
        file = ROOT / path
        assert file.is_file(), f'docs/paper_mapping.md names {path}, which does not exist'
        definitions = _definitions(file)
        assert name in definitions, f'docs/paper_mapping.md: {path} defines no {name}'
        first, last = definitions[name]
        if (int(start), int(end)) != (first, last):
            stale.add(f'`{path}:{start}-{end}` `{name}`  ->  `{path}:{first}-{last}` `{name}`')
    assert not stale, 'docs/paper_mapping.md: line ranges out of date, replace\n' + '\n'.join(
        sorted(stale)
    )


def test_named_files_and_tests_exist():
    for path, test in FILE_REF.findall(_doc()):
        file = ROOT / path
        assert file.is_file(), f'docs/paper_mapping.md names {path}, which does not exist'
        if test:
            assert test in _definitions(file), f'docs/paper_mapping.md: no {test} in {path}'


def _config_spans() -> list[str]:
    spans = [s for cell in _table_column(_doc(), 'Config') for s in re.findall(r'`([^`]+)`', cell)]
    assert len(spans) >= 40
    return spans


def test_constructor_defaults_are_the_values_shown():
    checked = 0
    for span in _config_spans():
        match = CONSTRUCTOR_DEFAULT.fullmatch(span)
        if not match:
            continue
        name, arg, value = match.groups()
        cls = MODELS.get(name) or TRANSFORMS.get(name)
        assert cls is not None, f'docs/paper_mapping.md: {name} is not registered'
        default = inspect.signature(cls.__init__).parameters[arg].default
        assert _as_tuples(default) == ast.literal_eval(value), (
            f'docs/paper_mapping.md shows {span}, but the default of {name}.{arg} is {default!r}'
        )
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize('config', PAPER_CONFIGS, ids=lambda p: p.stem)
def test_config_keys_hold_the_values_shown(config):
    cfg = Config.fromfile(str(config)).to_dict()
    checked = 0
    for span in _config_spans():
        if CONSTRUCTOR_DEFAULT.fullmatch(span):
            continue
        match = CONFIG_VALUE.fullmatch(span)
        assert match, f'docs/paper_mapping.md: {span!r} in a Config column is not key=value'
        key, value = match.groups()
        try:
            actual = _lookup(cfg, key)
        except (KeyError, IndexError, ValueError):
            pytest.fail(f'docs/paper_mapping.md names {key}, which {config.name} does not have')
        assert _as_tuples(actual) == ast.literal_eval(value), (
            f'docs/paper_mapping.md shows {span}, but {config.name} has {key}={actual!r}'
        )
        checked += 1
    assert checked >= 30
