"""Build the one-folder app with PyInstaller, report time and size, and smoke-test the result.

    python packaging/build.py                      # -> dist/Cardinal/
    python packaging/build.py --weights-from-cache # ship the cached ImageNet weights too
    python packaging/build.py --weights FILE.pth   # ship this weights file
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def executable(app_dir: Path, name: str) -> Path:
    suffix = ".exe" if sys.platform == "win32" else ""
    return app_dir / f"{name}{suffix}"


def build(dist: Path, work: Path, weights: list[str]) -> tuple[Path, float]:
    env = {**os.environ, "CARDINAL_BUNDLE_WEIGHTS": os.pathsep.join(weights)}
    command = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
               "--distpath", str(dist), "--workpath", str(work), str(ROOT / "packaging" / "cardinal.spec")]
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT, env=env)
    return dist / "Cardinal", time.monotonic() - started


def smoke(app_dir: Path) -> str:
    """Run the built app's self-test; returns its one-line report or raises with its output."""
    result = subprocess.run([str(executable(app_dir, "cardinal-cli")), "--self-test"], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    if result.returncode != 0:
        raise RuntimeError(f"self-test failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def cached_weights() -> list[str]:
    from cardinal.engine.models.registry import MODELS, weights_on_disk

    return [str(path) for name in MODELS if (path := weights_on_disk(name)) is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--work", type=Path, default=ROOT / "build")
    parser.add_argument("--weights", action="append", default=[], metavar="FILE", help="weights file to bundle")
    parser.add_argument("--weights-from-cache", action="store_true", help="bundle every cached ImageNet weights file")
    parser.add_argument("--no-smoke", action="store_true", help="skip running the built app's self-test")
    args = parser.parse_args()
    weights = args.weights + (cached_weights() if args.weights_from_cache else [])
    app_dir, seconds = build(args.dist, args.work, weights)
    print(f"built {app_dir} in {seconds / 60:.1f} min; folder size {folder_size(app_dir) / 2**30:.2f} GiB"
          + (f"; bundled weights: {', '.join(Path(w).name for w in weights)}" if weights else ""))
    if not args.no_smoke:
        print(smoke(app_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
