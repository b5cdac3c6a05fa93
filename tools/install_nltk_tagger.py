"""Put NLTK's POS tagger (``averaged_perceptron_tagger_eng``) into a folder, e.g. the venv's.

    python tools/install_nltk_tagger.py DEST        (tools/install_env.sh: DEST = VENV/nltk_data)

* already in DEST: nothing to do;
* found on NLTK's search path elsewhere (``$NLTK_DATA``, ``~/nltk_data``, ...): copied into DEST,
  so that the venv works later without that variable;
* found nowhere: downloaded into DEST (the only step that needs the network).

The key-phrase transform (``ExtractKeyPhraseSpans``) needs the tagger; the Makefile points
``NLTK_DATA`` at ``VENV/nltk_data`` unless it is set.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

TAGGER = 'averaged_perceptron_tagger_eng'
RESOURCE = f'taggers/{TAGGER}'


def find_tagger(paths: list[str] | None = None) -> Path | None:
    """The tagger's folder (or zip) on ``paths`` (default: NLTK's search path), or None."""
    import nltk

    for root in nltk.data.path if paths is None else paths:
        for candidate in (Path(root) / RESOURCE, Path(root) / f'{RESOURCE}.zip'):
            if (candidate.is_dir() and any(candidate.iterdir())) or candidate.is_file():
                return candidate
    return None


def install_tagger(dest: str | Path, search_paths: list[str] | None = None) -> str:
    """Make sure ``dest`` holds the tagger; say what was done.

    Args:
        dest (str | Path): The folder to hold it (``dest/taggers/averaged_perceptron_tagger_eng``).
        search_paths (list[str], optional): Where to look for an existing copy. Default: NLTK's
            search path (which reads ``$NLTK_DATA``).

    Returns:
        str: What happened, for the installer's log.

    Raises:
        RuntimeError: The tagger was found nowhere and could not be downloaded.
    """
    dest = Path(dest).resolve()
    if find_tagger([str(dest)]) is not None:
        return f'NLTK POS tagger found in {dest}'
    source = find_tagger(search_paths)
    (dest / 'taggers').mkdir(parents=True, exist_ok=True)
    if source is not None:
        target = dest / 'taggers' / source.name
        # Copy beside the target, then rename: an interrupted copy never looks installed.
        tmp = Path(tempfile.mkdtemp(prefix='.copy_', dir=dest / 'taggers')) / source.name
        if source.is_dir():
            shutil.copytree(source, tmp)
        else:
            shutil.copy2(source, tmp)
        tmp.rename(target)
        tmp.parent.rmdir()
        return f'NLTK POS tagger copied from {source} into {dest}'
    import nltk

    if not nltk.download(TAGGER, download_dir=str(dest), quiet=True) or not find_tagger(
        [str(dest)]
    ):
        raise RuntimeError(
            f"could not download NLTK's {TAGGER} into {dest}; download it elsewhere "
            f'(python -m nltk.downloader {TAGGER}) and rerun with NLTK_DATA pointing there'
        )
    return f'NLTK POS tagger downloaded into {dest}'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Put NLTK's POS tagger into a folder")
    parser.add_argument('dest', help='folder to hold it, e.g. .venv/nltk_data')
    args = parser.parse_args(argv)
    try:
        print(install_tagger(args.dest))
    except RuntimeError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
