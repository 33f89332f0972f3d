"""What the protocol-v1 client takes from the environment, against the real service:
proxies (``HTTP_PROXY``, ``NO_PROXY``) through a forward proxy on loopback, a CA
bundle and ``verify`` through a TLS relay on loopback, and ``~/.netrc``, which must
never replace the bearer token. Everything is read when the connection is made."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import http.server
import ipaddress
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger import OfflineError

pytestmark = pytest.mark.usefixtures("jobledger_home")

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding"}


class _ForwardProxy(http.server.ThreadingHTTPServer):
    """A forward HTTP proxy on loopback that remembers the requests it relayed."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ForwardProxy

    def _relay(self) -> None:
        # A client talking to a proxy names the whole target URL in the request line.
        target = urllib.parse.urlsplit(self.path)
        self.server.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_HEADERS and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _relay

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[_ForwardProxy]:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    server = _ForwardProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_submit_goes_through_the_proxy_of_the_environment(
    service: Any, proxy: _ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with jobledger.connect(url=service.url, token=service.token) as conn:
        job = conn.submit({"through": "proxy"}, "echo")
        assert job.result(timeout=60) == {"through": "proxy"}
    assert f"POST {service.url}/v1/jobs" in proxy.seen
    assert f"GET {service.url}/v1/health" in proxy.seen


def test_no_proxy_naming_the_host_bypasses_the_proxy(
    service: Any, proxy: _ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "example.org,127.0.0.1")
    with jobledger.connect(url=service.url, token=service.token) as conn:
        assert conn.submit([1, 2], "echo").result(timeout=60) == [1, 2]
    assert proxy.seen == []


def test_proxies_are_read_when_the_connection_is_made(
    service: Any, proxy: _ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with jobledger.connect(url=service.url, token=service.token) as conn:
        conn.backends()
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        conn.submit({"later": True}, "echo")
        assert proxy.seen == []
    with jobledger.connect(url=service.url, token=service.token) as conn:
        conn.submit({"new": "connection"}, "echo")
    assert f"POST {service.url}/v1/jobs" in proxy.seen


def test_netrc_never_replaces_the_token(
    service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with jobledger.connect(url=service.url, token=service.token) as conn:
        job = conn.submit({"auth": "bearer"}, "echo")
        assert job.result(timeout=60) == {"auth": "bearer"}


# -- TLS --------------------------------------------------------------------------


class _TLSRelay:
    """TLS on loopback in front of the real service, with a self-signed certificate
    for 127.0.0.1 (written to ``cert_path``)."""

    def __init__(self, target_url: str, folder: Path) -> None:
        self.cert_path, key_path = _self_signed(folder)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(self.cert_path, key_path)
        target = urllib.parse.urlsplit(target_url)
        self.target = (target.hostname or "", target.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            secure = self.context.wrap_socket(client, server_side=True)
        except OSError:  # (ssl.SSLError too) a client that refused the certificate
            client.close()
            return
        with secure, socket.create_connection(self.target) as upstream:
            pump = threading.Thread(target=_pump, args=(upstream, secure), daemon=True)
            pump.start()
            _pump(secure, upstream)
            pump.join()

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    crypto = pytest.importorskip("cryptography")
    assert crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "relay-cert.pem", folder / "relay-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def relay(service: Any, tmp_path: Path, proxy: _ForwardProxy) -> Iterator[_TLSRelay]:
    # (proxy: only to clear the proxy variables of the environment)
    running = _TLSRelay(service.url, tmp_path)
    yield running
    running.close()


def test_the_ca_bundle_of_the_environment_is_trusted(
    service: Any, relay: _TLSRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(relay.cert_path))
    with jobledger.connect(url=relay.url, token=service.token) as conn:
        assert conn.submit({"over": "tls"}, "echo").result(timeout=60) == {"over": "tls"}


def test_without_the_bundle_the_certificate_is_refused(
    service: Any, relay: _TLSRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with (
        jobledger.connect(url=relay.url, token=service.token) as conn,
        pytest.raises(OfflineError, match="TLS verification failed"),
    ):
        conn.backends()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_holds_even_with_a_ca_bundle_in_the_environment(
    service: Any, relay: _TLSRelay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bundle that does not hold the relay's certificate: checking would fail.
    (tmp_path / "other").mkdir()
    other = _self_signed(tmp_path / "other")[0]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other))
    with jobledger.connect(url=relay.url, token=service.token, verify=False) as conn:
        assert conn.submit({"unchecked": 1}, "echo").result(timeout=60) == {"unchecked": 1}
