"""The Azkaban AJAX client's requests and error handling, against a local HTTP stand-in.

No Azkaban server can be installed here (it is not published to PyPI or Maven Central), so this
checks the wire protocol as Azkaban documents it: form fields, query parameters, the multipart
upload and the HTTP-200-with-error answers.
"""

from __future__ import annotations

import json
import threading
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from glmix.flow.azkaban_client import AzkabanClient, AzkabanError


class StandIn(BaseHTTPRequestHandler):
    calls: list[tuple[str, str, dict]] = []

    def log_message(self, *args) -> None:
        pass

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        kind = self.headers.get("Content-Type", "")
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if kind.startswith("multipart/form-data"):
            message = BytesParser(policy=email_policy).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + body)
            fields = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                fields[name] = part.get_filename() or payload.decode()
                if part.get_filename():
                    fields["_zip_bytes"] = len(payload)
        else:
            fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.calls.append(("POST", urlparse(self.path).path, fields))
        if fields.get("action") == "login":
            ok = fields.get("password") == "secret"
            self._answer({"session.id": "s-1", "status": "success"} if ok else {"error": "Incorrect Login."})
        elif fields.get("action") == "create":
            self._answer({"status": "success"})
        elif fields.get("ajax") == "upload":
            self._answer({"projectId": "7", "version": "1"})

    def do_GET(self) -> None:
        url = urlparse(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.calls.append(("GET", url.path, params))
        if params["ajax"] == "executeFlow":
            self._answer({"project": params["project"], "flow": params["flow"], "execid": 42})
        elif params["ajax"] == "fetchexecflow":
            self._answer({"execid": 42, "status": "SUCCEEDED", "nodes": [{"id": "report", "status": "SUCCEEDED"}]})
        elif params["ajax"] == "fetchExecJobLogs":
            self._answer({"data": "log text", "offset": 0, "length": 8})


@pytest.fixture()
def server():
    StandIn.calls = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_login_upload_execute_and_follow(server: str, tmp_path: Path) -> None:
    archive = tmp_path / "p.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    client = AzkabanClient(server)
    assert client.login("glmix", "secret") == "s-1"
    client.create_project("movielens", "GLMix on MovieLens")
    assert client.upload("movielens", archive) == {"projectId": "7", "version": "1"}
    assert client.execute_flow("movielens", "movielens-glmix", {"spark.master": "yarn"}) == 42
    assert client.wait(42, poll_seconds=0.01)["status"] == "SUCCEEDED"
    assert client.job_log(42, "report") == "log text"
    methods = [(m, p, f.get("action") or f.get("ajax")) for m, p, f in StandIn.calls]
    assert methods == [("POST", "/", "login"), ("POST", "/manager", "create"), ("POST", "/manager", "upload"),
                       ("GET", "/executor", "executeFlow"), ("GET", "/executor", "fetchexecflow"),
                       ("GET", "/executor", "fetchExecJobLogs")]
    upload = StandIn.calls[2][2]
    assert upload["session.id"] == "s-1" and upload["project"] == "movielens"
    assert upload["file"] == "p.zip" and upload["_zip_bytes"] == archive.stat().st_size
    assert StandIn.calls[3][2]["flowOverride[spark.master]"] == "yarn"


def test_an_error_answer_becomes_a_one_line_error(server: str) -> None:
    client = AzkabanClient(server)
    with pytest.raises(AzkabanError, match="azkaban login: Incorrect Login."):
        client.login("glmix", "wrong")
    with pytest.raises(AzkabanError, match="not logged in"):
        client.execute_flow("p", "f")


def test_an_unreachable_server_is_named() -> None:
    with pytest.raises(AzkabanError, match="azkaban login at http://127.0.0.1:9"):
        AzkabanClient("http://127.0.0.1:9", timeout=2).login("a", "b")
