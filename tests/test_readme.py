"""README.md: every ```python block runs as written, on its own, offline.

A reader copies one block into a fresh interpreter, so each block runs in a fresh namespace
(no names leak from the block above) inside an empty working directory (blocks write files
such as ``z_cache`` and ``resid_pre.html``), with any connection off this machine refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[str, str]]:
    """(id, code) for every ```python block; the id is the nearest heading above it, slugified."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.MULTILINE)
        slug = re.sub(r"[^a-z0-9]+", "-", headings[-1].lower()).strip("-") if headings else "top"
        blocks.append((f"{len(blocks)}-{slug}", match.group(1)))
    return blocks


BLOCKS = python_blocks()


def test_the_readme_has_its_code_blocks():
    assert len(BLOCKS) >= 4, f"found {len(BLOCKS)} ```python blocks in README.md; did the fence syntax change?"


def _refuse_remote(connect):
    def guarded(sock, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not _is_loopback(host):
            raise ConnectionRefusedError(f"a README block tried to reach {address}; README examples must run offline")
        return connect(sock, address, *args, **kwargs)

    return guarded


def _refuse_remote_lookup(getaddrinfo):
    def guarded(host, *args, **kwargs):
        if host is not None and not _is_loopback(str(host)):
            raise ConnectionRefusedError(f"a README block tried to look up {host!r}; README examples must run offline")
        return getaddrinfo(host, *args, **kwargs)

    return guarded


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[block_id for block_id, _ in BLOCKS])
def test_readme_block_runs_on_its_own_offline(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(socket.socket, "connect", _refuse_remote(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse_remote(socket.socket.connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", _refuse_remote_lookup(socket.getaddrinfo))
    exec(compile(code, f"README.md ({code.splitlines()[0][:60]})", "exec"), {"__name__": "__readme__"})
