"""Audit folder names say which model they audit, in a few words, and never collide."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from imaudit.audits.assemble import audit_id
from imaudit.audits.spec import AuditSpec

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _slug(model: str) -> str:
    out = audit_id(AuditSpec(model=model, dataset="builtin:digits"), NOW)
    m = re.fullmatch(r"(.+)-20260102-030405-[0-9a-f]{6}", out)
    assert m, out
    return m.group(1)


def test_a_checkpoint_file_is_named_by_its_folder_and_stem_not_its_whole_path():
    assert _slug("file:/tmp/pytest-of-root/pytest-364/browser-audits0/a.pt") == "browser-audits0-a"
    assert _slug("file:s3://bucket/models/net.safetensors") == "models-net"
    assert _slug("file:model.pt") == "model"
    assert _slug("release:digits-net@3") == "digits-net-3"
    assert _slug("timm:test_resnet?pretrained=false") == "test_resnet"
    spec = AuditSpec(model="release:x@1", dataset="builtin:digits")
    assert audit_id(spec, NOW) != audit_id(spec, NOW)
