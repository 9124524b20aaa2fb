"""The README's one-file dataset source works when dropped into audits/sources/."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from imaudit.audits.data import load_dataset
from imaudit.audits.sources import SOURCES

sys.path.append(str(Path(__file__).resolve().parents[1]))
from readme_examples import dropped_in, readme_example  # noqa: E402
from test_dataset_sources_contract import LAYOUT, write_tree  # noqa: E402


def test_the_readme_zip_source_is_picked_up_by_registration(tmp_path):
    archive = shutil.make_archive(str(tmp_path / "pets"), "zip", write_tree(tmp_path / "src"))
    source = readme_example("audits/sources/zip.py")
    with dropped_in(SOURCES, "imaudit.audits.sources", "zip.py", source, tmp_path):
        assert "zip" in SOURCES.names()
        bundle = load_dataset(f"zip:{archive}", progress=False)
        assert bundle.counts() == LAYOUT
        assert bundle.digest == load_dataset(f"folder:{tmp_path / 'src'}", progress=False).digest
    assert "zip" not in SOURCES.names()
