"""Raw Firestore documents in the emulator, through its REST API: for tests that plant a document
another tool wrote (a book whose `authors` is a number, a name from another collection, ...) or
read what the store wrote, without going through books-server. No gRPC here: importable anywhere.

    fsdocs.put_document(em.host, "books-wire", "w1_3", "odd", {"display_name": "T",
                        "authors": 7, "publisher": "P"})
    fsdocs.get_document(em.host, "books-wire", "w1_3", "odd")["fields"]["authors"]
        -> {"integerValue": "7"}

Every call sends "Authorization: Bearer owner" (the emulator's admin credential: security rules
do not apply) and is bounded by `timeout` seconds. `collection` may be a path of several segments
("a/b/c"); `database` defaults to "(default)".

  value(v)            a Python value as a REST Value: str stringValue, bool booleanValue, int
                      integerValue (a decimal string), float doubleValue, None nullValue, bytes
                      bytesValue (base64), list/tuple arrayValue, dict mapValue, datetime
                      timestampValue (RFC 3339, UTC), Raw(x) x itself (an already encoded Value).
  put_document(host, project, collection, doc_id, fields, database=, timeout=)
                      writes the document whole (PATCH without a mask: creates it, or replaces
                      every field); `fields` maps names to Python values (value() above). Returns
                      the document as the emulator answered it (JSON: name, fields, createTime,
                      updateTime).
  get_document(...)   the document's JSON, or None when there is none.
  delete_document(...) deletes it (no error when there is none).
  document_name(project, collection, doc_id, database=) "projects/P/databases/D/documents/C/ID".
"""

import base64
import datetime
import json
import urllib.error
import urllib.parse
import urllib.request

HEADERS = {"Authorization": "Bearer owner", "Content-Type": "application/json"}


class Raw:
    """A REST Value given as is, e.g. Raw({"integerValue": "7"})."""

    def __init__(self, encoded):
        self.encoded = encoded


def value(v):
    if isinstance(v, Raw):
        return v.encoded
    if v is None:
        return {"nullValue": None}
    if isinstance(v, bool):
        return {"booleanValue": v}
    if isinstance(v, int):
        return {"integerValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return {"timestampValue": v.astimezone(datetime.timezone.utc).isoformat().replace(
            "+00:00", "Z")}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [value(x) for x in v]}}
    if isinstance(v, dict):
        return {"mapValue": {"fields": {k: value(x) for k, x in v.items()}}}
    raise TypeError("no Firestore Value for %r" % (v,))


def document_name(project, collection, doc_id, database="(default)"):
    return "projects/%s/databases/%s/documents/%s/%s" % (project, database, collection, doc_id)


def _url(host, project, collection, doc_id, database):
    path = urllib.parse.quote(document_name(project, collection, doc_id, database), safe="/()")
    return "http://%s/v1/%s" % (host, path)


def _call(method, url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=HEADERS)
    # No proxy: the emulator is on loopback, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as r:
        text = r.read()
    return json.loads(text) if text.strip() else {}


def put_document(host, project, collection, doc_id, fields, database="(default)", timeout=30):
    body = {"fields": {k: value(v) for k, v in fields.items()}}
    return _call("PATCH", _url(host, project, collection, doc_id, database), body, timeout)


def get_document(host, project, collection, doc_id, database="(default)", timeout=30):
    try:
        return _call("GET", _url(host, project, collection, doc_id, database), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def delete_document(host, project, collection, doc_id, database="(default)", timeout=30):
    _call("DELETE", _url(host, project, collection, doc_id, database), timeout=timeout)
