"""Schemathesis hooks for Inlet: sign generated webhook bodies, and leave out
what no schema can generate validly (an issued cursor).

Loaded with SCHEMATHESIS_HOOKS=hooks (this directory on PYTHONPATH); the
secret comes from WEBHOOK_SECRET, the same one the server under test has.
"""

import hashlib
import hmac
import json
import os
import re

import schemathesis
from schemathesis.generation import GenerationMode

SECRET = os.environ["WEBHOOK_SECRET"].encode()
SIGNATURE = "x-signature"
# What the document allows as a signature: a value it calls invalid is kept,
# so that a request meant to be rejected still is.
WELL_FORMED = re.compile(r"[0-9a-f]{64}")


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.operation.path == "/webhook":
        sign(case, kwargs)
    elif case.operation.path == "/messages" and is_positive(case) and case.query:
        # A cursor is valid only as the server issued it, for the same
        # filters; a generated string is rightly refused with 422.
        case.query.pop("cursor", None)


def sign(case, kwargs):
    """Sends the body as these exact bytes, signed, unless the generated
    signature is one the document calls malformed."""
    if not case.media_type or "json" not in case.media_type or case.body is None:
        return
    if case.headers is None or not WELL_FORMED.fullmatch(str(case.headers.get(SIGNATURE, ""))):
        return
    try:
        body = json.dumps(case.body).encode()
    except (TypeError, ValueError):
        return
    kwargs["data"] = body
    case.headers[SIGNATURE] = hmac.new(SECRET, body, hashlib.sha256).hexdigest()


def is_positive(case):
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE
