"""Fetching an official MedMNIST file: MD5-checked, atomic, and a clear message when offline."""

import functools
import http.server
import threading

import pytest

from crossmed.sources.medmnist_files import SUBSETS, file_md5
from crossmed.sources.medmnist_files import fetch_medmnist
from crossmed.errors import InputError
from test_medmnist import write_npz


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over tmp_path/www; yields its base URL."""
    (tmp_path / "www").mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_checks_the_published_md5(tmp_path, served, monkeypatch):
    source = write_npz(tmp_path / "www" / "breastmnist.npz", "breastmnist")
    target = tmp_path / "data" / "breastmnist_28.npz"
    with pytest.raises(InputError, match="differs from the published 750601b1f35ba3300ea97c75c52ff8f6"):
        fetch_medmnist("breastmnist", 28, target, url=f"{served}/breastmnist.npz")
    assert not target.exists() and not list(target.parent.glob(".*.tmp")), "nothing half-written"
    monkeypatch.setitem(SUBSETS["breastmnist"].md5, 28, file_md5(source))
    fetch_medmnist("breastmnist", 28, target, url=f"{served}/breastmnist.npz")
    assert target.read_bytes() == source.read_bytes()


def test_offline_fetch_says_where_to_put_the_file(tmp_path, served):
    target = tmp_path / "breastmnist_28.npz"
    with pytest.raises(InputError) as err:
        fetch_medmnist("breastmnist", 28, target, url=f"{served}/absent.npz", timeout=5)
    assert "https://zenodo.org/records/10519652/files/breastmnist.npz" in str(err.value)
    assert f"save it as {target}" in str(err.value)
