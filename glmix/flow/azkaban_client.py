"""A client for Azkaban's AJAX API: log in, create a project, upload its zip, run a flow, follow it.

Azkaban answers HTTP 200 with ``{"error": ...}`` (or ``"status": "error"``) when a call fails; the
client turns those into one-line errors naming the call.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import requests

from glmix.errors import GlmixError

FINISHED = {"SUCCEEDED", "FAILED", "KILLED", "CANCELLED", "FAILED_SUCCEEDED"}


class AzkabanError(GlmixError):
    pass


class AzkabanClient:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session_id: str | None = None
        self._http = requests.Session()

    def _call(self, what: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise AzkabanError(f"azkaban {what} at {self.url}: {exc}") from None
        if "error" in body or body.get("status") == "error":
            raise AzkabanError(f"azkaban {what}: {body.get('error') or body.get('message') or body}")
        return cast(dict[str, Any], body)

    def _session(self) -> dict[str, str]:
        if not self.session_id:
            raise AzkabanError("not logged in to azkaban")
        return {"session.id": self.session_id}

    def login(self, user: str, password: str) -> str:
        body = self._call("login", "POST", "/", data={"action": "login", "username": user, "password": password})
        self.session_id = body["session.id"]
        return self.session_id

    def create_project(self, name: str, description: str) -> None:
        self._call("create project", "POST", "/manager",
                   data={"action": "create", "name": name, "description": description, **self._session()})

    def upload(self, project: str, archive: Path) -> dict[str, Any]:
        with open(archive, "rb") as stream:
            return self._call("upload", "POST", "/manager",
                              data={"ajax": "upload", "project": project, **self._session()},
                              files={"file": (archive.name, stream, "application/zip")})

    def execute_flow(self, project: str, flow: str, properties: dict[str, str] | None = None) -> int:
        params = {"ajax": "executeFlow", "project": project, "flow": flow, **self._session()}
        params.update({f"flowOverride[{k}]": v for k, v in (properties or {}).items()})
        return int(self._call("executeFlow", "GET", "/executor", params=params)["execid"])

    def fetch_execution(self, execution: int) -> dict[str, Any]:
        return self._call("fetchexecflow", "GET", "/executor",
                          params={"ajax": "fetchexecflow", "execid": execution, **self._session()})

    def job_log(self, execution: int, job: str, offset: int = 0, length: int = 1 << 20) -> str:
        body = self._call("fetchExecJobLogs", "GET", "/executor",
                          params={"ajax": "fetchExecJobLogs", "execid": execution, "jobId": job, "offset": offset,
                                  "length": length, **self._session()})
        return str(body.get("data", ""))

    def wait(self, execution: int, poll_seconds: float = 10.0, timeout: float = 24 * 3600) -> dict[str, Any]:
        """Poll until the execution finishes; returns its final fetchexecflow answer."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.fetch_execution(execution)
            if state.get("status") in FINISHED:
                return state
            if time.monotonic() > deadline:
                raise AzkabanError(f"execution {execution} still {state.get('status')} after {timeout:.0f}s")
            time.sleep(poll_seconds)
