"""The hand-written OpenAPI 3.1 document of protocol v1, served at ``/openapi.json``.

It mirrors ``docs/protocol.md``: every path, its parameters, request bodies,
responses and the shared schemas (job info, payload info, error). It is written by
hand rather than generated so that it states the contract, not the implementation.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        401: "missing or unknown bearer token",
        404: "unknown job (or another user's job)",
        409: "the job is not in the required state",
        410: "the job's files were deleted",
        413: "the request body is larger than the service's limit",
        422: "malformed JSON, unknown backend, bad params or bad query",
    }
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^J[0-9A-HJKMNP-TV-Z]{18}$"},
}
_DATE = {"type": ["string", "null"], "format": "date-time"}
_BASE64 = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_EVENT_ID = {"type": "integer", "minimum": 0, "maximum": 2**53}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "PayloadInfo": {
        "type": ["object", "null"],
        "properties": {
            "media_type": {"type": "string"},
            "sha256": {"type": "string"},
            "size": {"type": "integer"},
        },
    },
    "Status": {
        "type": "string",
        "enum": ["QUEUED", "RUNNING", "DONE", "ERROR", "CANCELLED", "DELETED"],
    },
    "JobInfo": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "backend": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
            },
            "status": _ref("Status"),
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": _DATE,
            "ended_at": _DATE,
            "queue_position": {"type": ["integer", "null"]},
            "message": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "session_id": {"type": ["string", "null"]},
            "params": {"type": "object"},
            "usage": {"type": "object", "properties": {"seconds": {"type": ["number", "null"]}}},
            "batch": _ref("PayloadInfo"),
            "result": _ref("PayloadInfo"),
        },
    },
    "SubmitRequest": {
        "type": "object",
        "required": ["backend", "batch"],
        "properties": {
            "backend": {"type": "string"},
            "batch": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "media_type": {
                        "type": "string",
                        "enum": [
                            "application/json",
                            "application/octet-stream",
                            "application/x-npy",
                        ],
                    },
                    "data": {
                        "type": "string",
                        "contentEncoding": "base64",
                        "pattern": _BASE64,
                    },
                    "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                },
            },
            "params": {"type": "object"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "session_id": {"type": ["string", "null"]},
        },
    },
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _paths() -> dict[str, Any]:
    payload = {
        "200": {
            "description": "the bytes, with Content-Type, Content-Length and X-Content-SHA256 "
            "(a result also with X-Job-Status: the job's status entry as ASCII JSON)",
            "content": {
                # A JSON payload is any JSON value; the others are opaque bytes.
                "application/json": {},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }
    job_get = {"parameters": [_JOB_ID]}
    return {
        "/v1/health": {
            "get": {
                "summary": "Service health and identity",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "healthy")},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI")},
            }
        },
        "/v1/backends": {
            "get": {
                "summary": "List backends",
                "responses": {
                    "200": _json({"type": "object"}, "{backends: [{name, version, description}]}"),
                    **_errors(401),
                },
            }
        },
        "/v1/jobs": {
            "post": {
                "summary": "Submit a job",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "pattern": "^[\\x20-\\x7e]{1,200}$"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SubmitRequest")}},
                },
                "responses": {
                    "201": _json(_ref("JobInfo"), "created"),
                    "200": _json(
                        _ref("JobInfo"),
                        "the job of an earlier submit with the same Idempotency-Key",
                    ),
                    **_errors(401, 409, 413, 422),
                },
            },
            "get": {
                "summary": "List jobs, filtered and paginated",
                "parameters": [
                    _query("status", {"type": "array", "items": _ref("Status")}, "any of"),
                    _query("backend", {"type": "string"}, "backend name"),
                    _query("tag", {"type": "array", "items": {"type": "string"}}, "all of"),
                    _query("created_after", {"type": "string", "format": "date-time"}, ""),
                    _query("created_before", {"type": "string", "format": "date-time"}, ""),
                    _query("session_id", {"type": "string"}, ""),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, ""),
                    _query("order", {"type": "string", "enum": ["desc", "asc"]}, ""),
                    _query(
                        "cursor",
                        {"type": "string", "pattern": "^[0-9]{0,18}$"},
                        "next_cursor of the previous page (empty: the first page)",
                    ),
                    _query(
                        "updated_after",
                        {"type": "string", "pattern": "^([0-9]{1,18}\\.[0-9a-f]{8})?$"},
                        "only jobs changed after this token (the updated_through of an "
                        "earlier listing; empty: every job), oldest change first (order "
                        "does not apply)",
                    ),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "jobs": {"type": "array", "items": _ref("JobInfo")},
                                "next_cursor": {"type": ["string", "null"]},
                                "updated_through": {
                                    "type": "string",
                                    "description": "with updated_after: the token to list "
                                    "the changes after this page",
                                },
                            },
                        },
                        "a page",
                    ),
                    "409": _json(
                        _ref("Error"),
                        "stale_cursor: the updated_after token is another user's, another "
                        "service's, or from a newer state of the data; list from the start",
                    ),
                    **_errors(401, 422),
                },
            },
        },
        "/v1/jobs/status": {
            "post": {
                "summary": "Statuses of up to 1000 jobs",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["ids"],
                                "properties": {
                                    "ids": {
                                        "type": "array",
                                        "maxItems": 1000,
                                        "items": {"type": "string"},
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json({"type": "object"}, "{jobs: [...], not_found: [...]}"),
                    **_errors(401, 413, 422),
                },
            }
        },
        "/v1/jobs/{job_id}": {
            **job_get,
            "get": {
                "summary": "Job info",
                "responses": {"200": _json(_ref("JobInfo"), "the job"), **_errors(401, 404)},
            },
        },
        "/v1/jobs/{job_id}/batch": {
            **job_get,
            "get": {
                "summary": "The batch bytes",
                "responses": {**payload, **_errors(401, 404, 410)},
            },
        },
        "/v1/jobs/{job_id}/result": {
            **job_get,
            "get": {
                "summary": "The result bytes",
                "responses": {**payload, **_errors(401, 404, 409, 410)},
            },
        },
        "/v1/jobs/{job_id}/events": {
            **job_get,
            "get": {
                "summary": "Server-sent events: status, interim, log, metric",
                "parameters": [
                    {"name": "Last-Event-ID", "in": "header", "schema": _EVENT_ID},
                    _query("last_event_id", _EVENT_ID, "resume after"),
                ],
                "responses": {
                    "200": {
                        "description": "an event stream",
                        "content": {"text/event-stream": {}},
                    },
                    **_errors(401, 404, 422),
                },
            },
        },
        "/v1/jobs/{job_id}/logs": {
            **job_get,
            "get": {
                "summary": "Log lines",
                "responses": {
                    "200": {"description": "text", "content": {"text/plain": {}}},
                    **_errors(401, 404),
                },
            },
        },
        "/v1/jobs/{job_id}/metrics": {
            **job_get,
            "get": {
                "summary": "Metrics and usage",
                "responses": {
                    "200": _json({"type": "object"}, "{metrics, usage, timestamps}"),
                    **_errors(401, 404),
                },
            },
        },
        "/v1/jobs/{job_id}/interim": {
            **job_get,
            "get": {
                "summary": "Interim results",
                "responses": {
                    "200": _json({"type": "object"}, "{interim: [...]}"),
                    **_errors(401, 404),
                },
            },
        },
        "/v1/jobs/{job_id}/cancel": {
            **job_get,
            "post": {
                "summary": "Cancel the job",
                "responses": {
                    "200": _json({"type": "object"}, "{cancelled, status}"),
                    **_errors(401, 404),
                },
            },
        },
        "/v1/jobs/{job_id}/files": {
            **job_get,
            "delete": {
                "summary": "Delete the job's batch and result; status becomes DELETED",
                "responses": {
                    "200": _json({"type": "object"}, "{deleted, status}"),
                    **_errors(401, 404, 409),
                },
            },
        },
    }


def openapi_document(version: str, backends: list[str] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a server of *version* serving *backends*.

    With *backends* given, a submit's ``backend`` is an enum of those names: what
    this server accepts, rather than any string.
    """
    schemas = dict(_SCHEMAS)
    if backends is not None:
        submit = dict(schemas["SubmitRequest"])
        properties = dict(submit["properties"])
        properties["backend"] = {"type": "string", "enum": list(backends)}
        submit["properties"] = properties
        schemas["SubmitRequest"] = submit
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobledger job service",
            "version": version,
            "description": "Protocol v1; see docs/protocol.md.",
        },
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
