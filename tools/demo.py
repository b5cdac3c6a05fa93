"""`make demo`: the project's main job on its embedded default, CPU only.

The full demo (synthetic data -> train tiny BTDNet -> evaluate -> overlays) lands with the demo
issue. Until then this runs the smallest real end-to-end job that exists and says so.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    print('[demo] the training demo has not landed yet; running the smallest end-to-end job that '
          'exists: a Runner trains, checkpoints and resumes under torch.load(weights_only=True)')
    cmd = [sys.executable, '-m', 'pytest', '-q', str(ROOT / 'tests' / 'test_utils')]
    print('[demo] $', ' '.join(cmd))
    sys.exit(subprocess.call(cmd, cwd=ROOT))


if __name__ == '__main__':
    main()
