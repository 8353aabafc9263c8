"""Fuzz the model server's parameters over real HTTP: any query string gets a 2xx or a 4xx, never a 5xx.

The server (uvicorn in a thread, the fixture of tests/serving/test_server.py) has a model and a
LightGBM champion loaded, so every parameter combination is servable: a 5xx could only come from
a parameter the validation let through. Query strings are raw: percent-escapes of arbitrary bytes
(invalid UTF-8 and broken escapes included), repeated and unknown keys, numbers in every spelling.
A 200 must be a well-formed answer for the user and k asked for, and is only given when both are
ASCII digits (``int()`` also reads '٤٢', '４２', '4_2', '+42' and ' 42' as 42: issue 15); a 4xx
must say why. At the end,
the impressions the server logged for those answers are ingested: all of them are valid records.
"""

from __future__ import annotations

import http.client
import json
import re
from urllib.parse import quote, quote_plus

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from tests.fuzz.conftest import fuzz_settings
from tests.serving.test_server import _register_lgbm_champion, running  # noqa: F401  (running: fixture)
from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files

KEYS = ["user_id", "k", "rerank", "user_id", "k", "USER_ID", "", "x", "user_id[]", "k;"]
VALUES = ["1", "2", "999", "0", "-1", "-0", "+5", " 5", "5 ", "05", "1_0", "1e3", "0x10", "1.0", "٣", "१",
          "100", "101", str(2**63 - 1), str(2**63), str(-(2**63)), str(2**64), "9" * 5000, "nan", "inf", "",
          "true", "false", "True", "maybe", "1,2", "\x00", "\udc80", "💥",
          "٤٢", "４２", "4_2", "+42", "42\n", "\t42", "42\u3000", "٠", "𝟒𝟐", "42" + "0" * 20]

encoders = st.sampled_from([
    lambda s: quote(s.encode("utf-8", "surrogatepass"), safe=""),
    lambda s: quote_plus(s.encode("utf-8", "surrogatepass")),
    lambda s: quote(s.encode("latin-1", "replace"), safe=""),  # not UTF-8 once decoded
])
texts = st.sampled_from(KEYS + VALUES) | st.text(max_size=12) | st.integers().map(str)
pair = st.builds(lambda k, v, ek, ev, eq: ek(k) + ("=" + ev(v) if eq else ""),
                 st.sampled_from(KEYS) | texts, st.sampled_from(VALUES) | texts, encoders, encoders, st.booleans())
noise = st.sampled_from(["%", "%zz", "%f", "%ff%fe", "%c3%28", "%ed%a0%80", "%00", "==", "&&", ";", "+", "=%",
                         "user_id=%", "k=%2", "user_id=1&user_id=x", "user_id=%31", "k=1%00"])
chaotic = st.lists(pair | noise, max_size=6).map("&".join)
# Near-valid requests, so that many reach the ranking (and the re-ranker) with odd but legal values.
plausible = st.builds(
    lambda user, k, rerank, extra: "&".join(x for x in (f"user_id={quote(user)}", k, rerank, extra) if x),
    st.integers(-5, 2**63 + 5).map(str) | st.sampled_from(VALUES[:20]),
    st.sampled_from(["", "k=1", "k=100", "k=10"]) | st.integers(-2, 120).map(lambda k: f"k={k}"),
    st.sampled_from(["", "rerank=0", "rerank=1", "rerank=true", "rerank=false", "rerank=", "rerank=2"]),
    st.sampled_from(["", "x=1", "k=5", "user_id=3", "%ff=1"]),
)
query_strings = chaotic | plausible


def test_fuzz_recommend_parameters_never_5xx(running, tally) -> None:  # noqa: F811 (the imported fixture)
    client, server, _, _, tmp_path = running
    server.models_root = tmp_path / "models"
    _register_lgbm_champion(server.models_root)
    assert server.reload_reranker()
    host, port = client.base_url.host, client.base_url.port
    conn = http.client.HTTPConnection(host, port, timeout=30)
    seen: dict[int, int] = {}
    served_items = 0

    @fuzz_settings(300)
    @given(query_strings)
    def prop(qs: str) -> None:
        nonlocal served_items
        conn.request("GET", "/recommend?" + qs)
        resp = conn.getresponse()
        body = json.loads(resp.read())
        seen[resp.status] = seen.get(resp.status, 0) + 1
        assert 200 <= resp.status < 500, (qs, resp.status, body)
        if resp.status == 200:
            # what the server read (Starlette's parsing): a 200 only for ASCII digits
            params = QueryParams(qs.encode())  # qs is ASCII: every part is percent-escaped
            user, k = params["user_id"], params.get("k", "10")
            assert re.fullmatch(r"[0-9]+", user) and re.fullmatch(r"[0-9]+", k), (qs, user, k)
            assert body["user_id"] == int(user) and len(body["items"]) <= int(k)
            assert isinstance(body["user_id"], int) and 0 <= body["user_id"] < 2**63
            assert 1 <= len(body["items"]) <= 100 and body["model_seq"] == 1
            served_items += len(body["items"])
        else:
            assert resp.status == 400 and body["error"], (qs, body)
        tally.add("server_query_strings", inputs=1)

    prop()
    conn.close()
    tally.add("server_query_strings", **{f"http_{k}": v for k, v in seen.items()})
    assert seen.get(200) and seen.get(400)
    assert server.reload_errors == 0
    # What was served is logged as impressions; every one of them is a valid record.
    server.impressions.flush()
    landing = tmp_path / "landing"
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=tmp_path / "lake")
    totals = report.totals()
    assert totals["rows_read"] == served_items and totals["rows_quarantine"] == 0, dict(report.reasons)
