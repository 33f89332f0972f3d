"""The IBM stand-in's account side: API key, IAM tokens, and the instance lookup.

``QiskitRuntimeService.__init__`` exchanges the API key for a bearer token at
IAM (``POST <IAM_URL>/identity/token``), then checks that ``instance`` belongs to
the account through Global Search and Global Catalog before it talks to the
Runtime API. This module answers those three calls for one account with one
instance, and guards the Runtime routes: a valid bearer token for the current
key and the instance's ``Service-CRN`` header.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from .ibm_http import Handler, Reply, Request, Router

PLAN_ID = "standin-open-plan"
INSTANCE_NAME = "standin-instance"
APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"


def ibm_error(status: int, code: str, message: str) -> Reply:
    """An error reply in the Runtime API's ``{"errors": [...]}`` shape."""
    body = {
        "errors": [{"code": code, "message": message, "more_info": "standin"}],
        "trace": secrets.token_hex(16),
        "status_code": status,
    }
    return Reply.json(body, status)


def _iam_error(code: str, message: str) -> Reply:
    # IAM answers 400 with its own error shape, which ibm_cloud_sdk_core reads.
    return Reply.json(
        {
            "errorCode": code,
            "errorMessage": message,
            "context": {"requestId": secrets.token_hex(8)},
        },
        400,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class StandInAccount:
    """One IBM Cloud account with one Qiskit Runtime instance.

    :param token_ttl: lifetime of issued tokens in seconds.
    :param device_names: what the Global Search document lists for the instance.
    """

    def __init__(self, token_ttl: int, device_names: list[str]) -> None:
        self.token_ttl = token_ttl
        self.device_names = device_names
        self.account_id = secrets.token_hex(16)
        guid = "-".join(secrets.token_hex(n) for n in (4, 2, 2, 2, 6))
        self.instance = (
            f"crn:v1:bluemix:public:quantum-computing:us-east:a/{self.account_id}:{guid}::"
        )
        self.api_key = secrets.token_urlsafe(33)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def add_routes(self, router: Router) -> None:
        """Serve IAM, Global Search and Global Catalog."""
        router.add("POST", "/iam/identity/token", self._token)
        router.add("POST", "/global-search/v3/resources/search", self._guard(self._search))
        router.add("GET", "/global-catalog/api/v1/{id}", self._guard(self._catalog_entry))

    def revoke_key(self) -> None:
        """Revoke the API key and every token issued for it."""
        with self._lock:
            self.api_key = ""
            self._tokens.clear()

    def rotate_key(self) -> str:
        """Revoke the key and its tokens, issue a new key and return it."""
        with self._lock:
            self._tokens.clear()
            self.api_key = secrets.token_urlsafe(33)
            return self.api_key

    def expire_tokens(self) -> None:
        """Invalidate every bearer token; the key stays valid."""
        with self._lock:
            self._tokens.clear()

    def bearer_ok(self, request: Request) -> bool:
        """Whether the request carries a live token issued for the current key."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            issued = self._tokens.get(token) if scheme.lower() == "bearer" else None
            return issued is not None and issued[0] == self.api_key and issued[1] > time.time()

    def guard_api(self, handler: Handler) -> Handler:
        """Wrap a Runtime route: 401 without a valid token, 403 for another instance."""

        def guarded(request: Request) -> Reply:
            if not self.bearer_ok(request):
                return ibm_error(401, "unauthorized", "Invalid or missing IAM bearer token.")
            if request.headers.get("Service-CRN") != self.instance:
                return ibm_error(403, "forbidden", "You do not have access to this instance.")
            return handler(request)

        return guarded

    def _guard(self, handler: Handler) -> Handler:
        def guarded(request: Request) -> Reply:
            if not self.bearer_ok(request):
                return ibm_error(401, "unauthorized", "The bearer token is missing or invalid.")
            return handler(request)

        return guarded

    def _token(self, request: Request) -> Reply:
        form = parse_qs(request.body.decode("utf-8"))
        if form.get("grant_type") != [APIKEY_GRANT]:
            return _iam_error("BXNIM0308E", "Grant type is not supported.")
        key = (form.get("apikey") or [""])[0]
        with self._lock:
            known = bool(key) and secrets.compare_digest(key, self.api_key)
        if not known:
            return _iam_error("BXNIM0415E", "Provided API key could not be found.")
        now = int(time.time())
        # The SDK decodes the JWT (unverified) for iat/exp to schedule its refresh.
        claims: dict[str, Any] = {
            "iam_id": "IBMid-standin",
            "account": {"bss": self.account_id},
            "iat": now,
            "exp": now + self.token_ttl,
            "sub": "standin@example.invalid",
            "jti": secrets.token_hex(8),
        }
        header = {"alg": "RS256", "typ": "JWT", "kid": "standin"}
        parts = [json.dumps(header).encode(), json.dumps(claims).encode(), b"unsigned"]
        token = ".".join(_b64(part) for part in parts)
        with self._lock:
            self._tokens[token] = (key, now + self.token_ttl)
        return Reply.json(
            {
                "access_token": token,
                "refresh_token": "not_supported",
                "token_type": "Bearer",
                "expires_in": self.token_ttl,
                "expiration": now + self.token_ttl,
                "scope": "ibm openid",
            }
        )

    def _search(self, request: Request) -> Reply:
        item = {
            "crn": self.instance,
            "name": INSTANCE_NAME,
            "service_plan_unique_id": PLAN_ID,
            # The SDK skips instances whose document has no "extensions".
            "doc": {"extensions": {"quantum": {"backends": sorted(self.device_names)}}},
            "tags": [],
        }
        return Reply.json({"items": [item], "limit": 100})

    def _catalog_entry(self, request: Request) -> Reply:
        if request.params["id"] != PLAN_ID:
            return ibm_error(404, "not_found", f"No catalog entry {request.params['id']}")
        return Reply.json(
            {
                "id": PLAN_ID,
                "name": "open",
                "overview_ui": {"en": {"display_name": "Open"}},
                "metadata": {"pricing": {"type": "free"}},
            }
        )
