"""`make install` leaves NLTK's POS tagger in the venv however it found it
(tools/install_nltk_tagger.py, step 5 of tools/install_env.sh)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import load_tool

ROOT = Path(__file__).resolve().parents[2]
tagger_tool = load_tool('install_nltk_tagger.py')


@pytest.fixture(scope='module')
def tagger_source() -> Path:
    """The folder holding the tagger this test session uses (NLTK_DATA, or the venv's)."""
    found = tagger_tool.find_tagger()
    if found is None:
        pytest.fail('no NLTK POS tagger on the search path: run make install or set NLTK_DATA')
    return found


def files_of(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob('*') if p.is_file()}


def test_tagger_found_elsewhere_is_copied_into_the_venv_and_works_there(tmp_path, tagger_source):
    elsewhere = tmp_path / 'shared_nltk_data'
    shutil.copytree(tagger_source, elsewhere / 'taggers' / tagger_source.name)
    venv_data = tmp_path / 'venv' / 'nltk_data'
    env = dict(os.environ, NLTK_DATA=str(elsewhere))  # as .ci/run sets it
    script = str(ROOT / 'tools' / 'install_nltk_tagger.py')
    first = subprocess.run(
        [sys.executable, script, str(venv_data)], env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    assert f'copied from {elsewhere / "taggers" / tagger_source.name}' in first.stdout
    copied = venv_data / 'taggers' / tagger_source.name
    assert files_of(copied) == files_of(tagger_source)
    assert not [p for p in (venv_data / 'taggers').iterdir() if p.name.startswith('.copy_')]
    # A second run keeps it.
    again = subprocess.run(
        [sys.executable, script, str(venv_data)], env=env, capture_output=True, text=True
    )
    assert again.returncode == 0 and 'found in' in again.stdout
    # A later run that only knows the venv's copy (a plain `make demo`) tags sentences.
    tag = (
        'import sys, nltk\n'
        'nltk.data.path[:] = [sys.argv[1]]\n'  # nowhere else to look
        'from btdnet.datasets.transforms.text import ExtractKeyPhraseSpans\n'
        "print(ExtractKeyPhraseSpans()(dict(text='the red car on the left'))['key_spans'])"
    )
    result = subprocess.run(
        [sys.executable, '-c', tag, str(venv_data)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith('[')


def test_zipped_tagger_is_copied_as_a_zip(tmp_path, tagger_source):
    elsewhere = tmp_path / 'zipped' / 'taggers'
    elsewhere.mkdir(parents=True)
    archive = elsewhere / f'{tagger_source.name}.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
        for path in tagger_source.rglob('*'):
            zf.write(path, Path(tagger_source.name) / path.relative_to(tagger_source))
    message = tagger_tool.install_tagger(tmp_path / 'dest', [str(tmp_path / 'zipped')])
    assert 'copied from' in message
    assert (tmp_path / 'dest' / 'taggers' / archive.name).read_bytes() == archive.read_bytes()


def test_tagger_found_nowhere_is_downloaded_and_a_failed_download_says_what_to_do(
    tmp_path, monkeypatch
):
    import nltk

    calls = []

    def fake_download(name, download_dir, quiet):
        calls.append((name, download_dir))
        return False  # no network

    monkeypatch.setattr(nltk, 'download', fake_download)
    with pytest.raises(RuntimeError, match='could not download .*averaged_perceptron_tagger_eng'):
        tagger_tool.install_tagger(tmp_path / 'dest', [str(tmp_path / 'empty')])
    assert calls == [('averaged_perceptron_tagger_eng', str((tmp_path / 'dest').resolve()))]
