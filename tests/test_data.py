"""The data layer: registry, offline mirror, sha256 checks, atomic downloads, tiktoken seeding.

Downloads are tested against a real HTTP server on 127.0.0.1, started by these tests.
"""

import hashlib
import http.server
import io
import os
import threading
import zipfile
from pathlib import Path

import pytest

from shared import data
from shared.data import DataError, DataFile, fetch

# The course's offline mirror: CI sets LLMFS_DATA_MIRROR; a checkout has it at ../shared/data.
MIRROR = Path(os.environ.get(data.MIRROR_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache directory, and no mirror unless a test sets one."""
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    return tmp_path / "cache"


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}  # path -> (declared Content-Length, bytes actually sent)

    def do_GET(self):
        if self.path not in self.routes:
            self.send_error(404)
            return
        declared, body = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True  # a short body then a closed socket: an interrupted download

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local HTTP server; tests register what each path serves in `routes`."""
    routes = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, routes
    httpd.shutdown()
    httpd.server_close()


def _entry(name, content, urls):
    return DataFile(
        name=name,
        urls=tuple(urls),
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        source="test",
    )


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_every_mirror_file_matches_the_registry():
    for name, entry in data.REGISTRY.items():
        path = MIRROR / name
        assert path.stat().st_size == entry.size, name
        assert data.sha256_of(path) == entry.sha256, name


def test_fetch_uses_the_mirror_without_network(cache, monkeypatch):
    monkeypatch.setenv(data.MIRROR_ENV, str(MIRROR))

    def no_network(*args, **kwargs):
        raise AssertionError("fetch went to the network although the mirror has the file")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    path = fetch("the-verdict.txt")
    assert path == MIRROR / "the-verdict.txt"
    assert len(path.read_text(encoding="utf-8")) == 20479


def test_a_corrupted_mirror_file_is_rejected(cache, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    damaged = (MIRROR / "the-verdict.txt").read_bytes()[:-1] + b"?"
    (mirror / "the-verdict.txt").write_bytes(damaged)
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    with pytest.raises(DataError, match="not the expected file.*sha256"):
        fetch("the-verdict.txt")
    assert _leftovers(cache) == []


def test_download_is_verified_and_cached(cache, server):
    base, routes = server
    content = b"hello course\n" * 1000
    routes["/f.txt"] = (len(content), content)
    entry = _entry("f.txt", content, [f"{base}/f.txt"])
    path = fetch(entry, progress=False)
    assert path == cache / "f.txt" and path.read_bytes() == content
    routes.clear()  # a second fetch is served from the cache, not the server
    assert fetch(entry, progress=False).read_bytes() == content


def test_download_with_wrong_sha256_is_rejected_and_never_used(cache, server):
    base, routes = server
    content = b"the real file"
    tampered = b"the fake file"  # same size, other bytes
    routes["/f.txt"] = (len(tampered), tampered)
    entry = _entry("f.txt", content, [f"{base}/f.txt"])
    with pytest.raises(DataError, match="sha256") as err:
        fetch(entry, progress=False)
    assert "discarded" in str(err.value)
    assert _leftovers(cache) == []  # nothing at the final path, no temporary file


def test_interrupted_download_leaves_nothing_at_the_final_path(cache, server):
    base, routes = server
    content = bytes(range(256)) * 4000  # 1 MB
    routes["/big.bin"] = (len(content), content[: len(content) // 2])  # the connection drops halfway
    entry = _entry("big.bin", content, [f"{base}/big.bin"])
    with pytest.raises(DataError, match="big.bin"):
        fetch(entry, progress=False)
    assert _leftovers(cache) == []


def test_a_failing_url_falls_back_to_the_next_one(cache, server):
    base, routes = server
    content = b"backup copy"
    routes["/backup"] = (len(content), content)
    entry = _entry("f.txt", content, [f"{base}/missing", f"{base}/backup"])
    assert fetch(entry, progress=False).read_bytes() == content


def test_zip_member_is_extracted_and_verified(cache, server):
    base, routes = server
    member = b"ham\tOk lar...\nspam\tWIN a prize\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("SMSSpamCollection", member)
        zf.writestr("readme", b"not this one")
    routes["/sms.zip"] = (len(archive.getvalue()), archive.getvalue())
    entry = DataFile(
        name="SMSSpamCollection",
        urls=(f"{base}/sms.zip",),
        sha256=hashlib.sha256(member).hexdigest(),
        size=len(member),
        source="test",
        member="SMSSpamCollection",
    )
    assert fetch(entry, progress=False).read_bytes() == member
    assert _leftovers(cache) == ["SMSSpamCollection"]


def test_offline_error_names_the_file_and_the_fix(cache, monkeypatch):
    entry = _entry("offline.txt", b"x", ["http://127.0.0.1:9/unreachable"])  # port 9: nothing listens
    with pytest.raises(DataError) as err:
        fetch(entry, progress=False)
    message = str(err.value)
    assert "offline.txt" in message and data.MIRROR_ENV in message and "is not set" in message
    assert entry.sha256 in message


def test_mirror_without_the_file_says_so(cache, tmp_path, monkeypatch):
    monkeypatch.setenv(data.MIRROR_ENV, str(tmp_path))
    entry = _entry("absent.txt", b"x", ["http://127.0.0.1:9/unreachable"])
    with pytest.raises(DataError, match="has no file named 'absent.txt'"):
        fetch(entry, progress=False)


def test_unknown_name_lists_the_known_files():
    with pytest.raises(DataError, match="the-verdict.txt"):
        fetch("no-such-file.txt")


def test_a_damaged_cache_entry_is_replaced(cache, server):
    base, routes = server
    content = b"good bytes"
    routes["/f.txt"] = (len(content), content)
    cache.mkdir(parents=True)
    (cache / "f.txt").write_bytes(b"bad bytes!")
    entry = _entry("f.txt", content, [f"{base}/f.txt"])
    assert fetch(entry, progress=False).read_bytes() == content


def test_tiktoken_gpt2_works_offline_from_the_mirror(cache, tmp_path, monkeypatch):
    import tiktoken

    monkeypatch.setenv(data.MIRROR_ENV, str(MIRROR))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))

    def no_network(*args, **kwargs):
        raise AssertionError("tiktoken tried to download although its cache was seeded")

    monkeypatch.setattr("tiktoken.load.read_file", no_network)
    data.seed_tiktoken_cache()
    # tiktoken keeps built encodings in a module-level dict; drop it so this really loads from the cache
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    enc = tiktoken.get_encoding("gpt2")
    assert enc.encode("Hello, I am") == [15496, 11, 314, 716]
    for name, key in data.TIKTOKEN_GPT2_CACHE_KEYS.items():
        assert (tmp_path / "tiktoken" / key).read_bytes() == (MIRROR / name).read_bytes()
