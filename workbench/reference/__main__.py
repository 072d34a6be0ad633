"""`python -m workbench.reference FOLDER`: write the reference pages and JSON Schemas into FOLDER (docs/reference)."""

import sys
from pathlib import Path

from workbench.reference import pages

if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/reference")
    folder.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[2]
    for name, text in pages(repo).items():
        (folder / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(pages(repo))} files to {folder}")
