"""The plain landing lines typed and judged in one compiled pass; every other line goes to the SQL.

Why: DuckDB's ``json_transform`` plus the strict typing rules and checks of validate.py cost
~2.5 µs of CPU per impression line, more than half of the ingest, although nearly every line a
producer writes has the same plain shape: a flat object of the schema's keys, strings without
escapes, integers as digits, a small nested object. This numba kernel types such a line in one
pass over the mapped landing bytes (~1.1 µs per impression line, ~0.6 per view) and applies the
schema's rules to it; the lines it types are valid ones, and DuckDB only hashes them and writes
them. It *defers* every line it is not certain about — escapes, non-ASCII text, a key not in the
schema or given twice, a value of the wrong JSON type, NaN, a number it cannot convert exactly,
whitespace inside a nested object, anything malformed, and every line that breaks a rule — to the
SQL path, which types it and names its reason as before. So every reason is named in one place,
and the kernel only has to be right about what it accepts:

- a string value is its characters (no escapes, ASCII only, no control characters);
- an integer field takes ``-?(0|[1-9][0-9]{0,17})`` not followed by ``.``, ``e`` or ``E`` (``-0``
  deferred); a real field any JSON number with at most 15 significant digits and a decimal
  exponent within ±22, converted with one exact multiplication or division (Clinger's fast
  path: both operands exact, so the result is correctly rounded, as DuckDB's parse is);
- a boolean ``true``/``false``; ``null`` or an absent key: not present (as in the SQL);
- a nested object is kept as its raw text only where that text is already exactly what the SQL
  path's parser would write back (no whitespace, integers and reals in the writer's shortest
  plain form: see ``_canonical_number``), so both paths store and hash the same bytes;
- the rules of validate.py ``_checks``: required fields present, enums, minimums (compared as
  doubles, as the SQL compares an integer column with the literal), lengths (ASCII, so bytes),
  and the file's time bounds (``ts_bounds``).

tests/ingest/test_fast_validation.py holds the typed lines (values, date, payload hash, no
reason) and the SQL's rows for the rest to the three-parse reference, row for row, on every
awkward value of every field, the fuzz corpus, and hypothesis' records and numbers;
tests/ingest/test_compiled_typing.py ingests a dirty world with and without this path.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from tiktok_pipelines.embedding._jit import load_u64, njit
from tiktok_pipelines.ingest.seen import SeenIds, hash_ids, id_arrays
from tiktok_pipelines.schemas import BOOL, FLOAT64, INT64, JSON_OBJECT, STREAMS, STRING, StreamSchema

_T_STRING, _T_INT, _T_FLOAT, _T_BOOL, _T_OBJECT = 0, 1, 2, 3, 4
_TYPE_CODES = {STRING: _T_STRING, INT64: _T_INT, FLOAT64: _T_FLOAT, BOOL: _T_BOOL, JSON_OBJECT: _T_OBJECT}

_QUOTE, _BACKSLASH, _COMMA, _COLON = 34, 92, 44, 58
_LBRACE, _RBRACE, _LBRACKET, _RBRACKET = 123, 125, 91, 93
_MINUS, _PLUS, _DOT, _ZERO, _NINE = 45, 43, 46, 48, 57
_MAX_DEPTH = 32  # nested containers deeper than this are deferred

_MAX_VIEW_BYTES = 1 << 30
_MAX_TS_MS = 253402300799999  # 9999-12-31T23:59:59.999Z: the last instant the lake can date
_POW10 = np.array([10.0**i for i in range(23)], dtype=np.float64)  # all exact in binary64


@njit(inline="always")
def _is_ws(c):
    return c == 32 or c == 9 or c == 10 or c == 13


@njit(inline="always")
def _skip_ws(data, p, end):
    while p < end and _is_ws(data[p]):
        p += 1
    return p


@njit(inline="always")
def _is_digit(c):
    return _ZERO <= c <= _NINE


@njit(inline="always")
def _literal(data, p, end, c0, c1, c2, c3, c4, n):
    """p + n if data[p:] starts with the n (4 or 5) bytes c0.., else -1."""
    if p + n > end or data[p] != c0 or data[p + 1] != c1 or data[p + 2] != c2 or data[p + 3] != c3:
        return -1
    if n == 5 and data[p + 4] != c4:
        return -1
    return p + n


# Bytes a string this path takes may hold as they are: printable ASCII and DEL, but the quote and
# the backslash (escapes are deferred, like control characters, which JSON forbids raw, and
# non-ASCII text, whose UTF-8 the SQL path's parser checks).
_PLAIN = np.zeros(256, dtype=np.uint8)
_PLAIN[32:128] = 1
_PLAIN[_QUOTE] = 0
_PLAIN[_BACKSLASH] = 0


_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)
_SPACES = np.uint64(0x2020202020202020)


@njit(inline="always")
def _has_special(w):
    """Nonzero when one of the 8 bytes in w is a quote, a backslash, a control character or
    not ASCII (SWAR: a byte test for each kind at once; a false alarm can only follow a true
    one, and the caller then looks byte by byte)."""
    q = w ^ _QUOTES
    b = w ^ _BACKSLASHES
    return (((q - _ONES) & ~q) | ((b - _ONES) & ~b) | ((w - _SPACES) & ~w) | w) & _HIGHS


@njit(inline="always")
def _string_end(data, p, end):
    """Position of the closing quote of the string whose opening quote is at p, or -1 for one
    this path does not take (escapes, control characters, non-ASCII, unterminated)."""
    q = p + 1
    while q + 8 <= end and _has_special(load_u64(data, q)) == 0:
        q += 8
    while q < end and _PLAIN[data[q]]:
        q += 1
    if q < end and data[q] == _QUOTE:
        return q
    return -1


@njit
def _number_token(data, p, end):
    """The JSON number at p: (end, mantissa digits, significant digit count, decimal exponent,
    negative, has fraction or exponent) or end -1 when it is not one this path takes."""
    q = p
    neg = False
    if q < end and data[q] == _MINUS:
        neg = True
        q += 1
    if q >= end or not _is_digit(data[q]):
        return -1, 0, 0, 0, neg, False
    if neg and data[q] == _ZERO:
        return -1, 0, 0, 0, neg, False  # "-0...": negative zero is written differently; rare, deferred
    m = 0
    sig = 0
    exp10 = 0
    real = False
    if data[q] == _ZERO:
        q += 1
        if q < end and _is_digit(data[q]):
            return -1, 0, 0, 0, neg, False  # a leading zero: not JSON
    else:
        while q < end and _is_digit(data[q]):
            if sig < 18:
                m = m * 10 + (data[q] - _ZERO)
            sig += 1
            q += 1
    if q < end and data[q] == _DOT:
        real = True
        q += 1
        if q >= end or not _is_digit(data[q]):
            return -1, 0, 0, 0, neg, False
        while q < end and _is_digit(data[q]):
            d = data[q] - _ZERO
            if sig == 0 and d == 0:
                exp10 -= 1  # a leading zero of the fraction: not significant
            else:
                if sig < 18:
                    m = m * 10 + d
                sig += 1
                exp10 -= 1
            q += 1
    if q < end and (data[q] == 101 or data[q] == 69):  # e, E
        real = True
        q += 1
        eneg = False
        if q < end and (data[q] == _MINUS or data[q] == _PLUS):
            eneg = data[q] == _MINUS
            q += 1
        if q >= end or not _is_digit(data[q]):
            return -1, 0, 0, 0, neg, False
        e = 0
        nd = 0
        while q < end and _is_digit(data[q]):
            e = e * 10 + (data[q] - _ZERO)
            nd += 1
            q += 1
        if nd > 4:
            return -1, 0, 0, 0, neg, False
        exp10 += -e if eneg else e
    return q, m, sig, exp10, neg, real


@njit
def _canonical_number(data, p, end):
    """End of the number at p if its text is exactly what the SQL path's JSON writer (yyjson)
    writes back for it, else -1: an integer of at most 18 digits, or a plain real with at most
    15 significant digits, no exponent, no trailing zero in the fraction (but ``x.0``), at least
    1e-6 in magnitude (smaller ones are written with an exponent) — then its shortest round-trip
    form is its own digits."""
    q, m, sig, exp10, neg, real = _number_token(data, p, end)
    if q < 0:
        return -1
    if not real:
        return q if sig <= 18 else -1
    if sig > 15:
        return -1
    dot = -1
    for i in range(p, q):
        c = data[i]
        if c == 101 or c == 69:
            return -1  # an exponent: the writer uses plain form down to 1e-6 (and its own exponent form below)
        if c == _DOT:
            dot = i
    if q - dot == 2 and data[dot + 1] == _ZERO:
        return q  # "x.0": how the writer shows an integral real (0.0 included)
    if data[q - 1] == _ZERO:
        return -1  # a trailing zero the shortest form drops
    if data[dot - 1] == _ZERO and dot - 1 == p + (1 if neg else 0):
        # "0.000ddd": written plain only from 1e-6 up, i.e. at most 5 zeros after the point.
        z = 0
        i = dot + 1
        while data[i] == _ZERO:
            z += 1
            i += 1
        if z > 5:
            return -1
    return q


@njit(inline="always")
def _member_key(data, p, end):
    """The position after the ``"key":`` at p (a key this path takes, no blanks), or -1."""
    if p >= end or data[p] != _QUOTE:
        return -1
    q = _string_end(data, p, end)
    if q < 0 or q + 1 >= end or data[q + 1] != _COLON:
        return -1
    return q + 2


@njit
def _canonical_value(data, p, end, stack):
    """End of the JSON value at p if all of it is in the writer's form (no whitespace anywhere,
    strings this path takes, canonical numbers), else -1."""
    sp = 0
    while True:
        # A value at p.
        if p >= end:
            return -1
        c = data[p]
        if c == _LBRACE or c == _LBRACKET:
            # A container: empty, or its first member (an object's after its key) comes next.
            p += 1
            if p < end and data[p] == (_RBRACE if c == _LBRACE else _RBRACKET):
                p += 1
            else:
                if sp >= _MAX_DEPTH:
                    return -1
                stack[sp] = 0 if c == _LBRACE else 1
                sp += 1
                if c == _LBRACE:
                    p = _member_key(data, p, end)
                    if p < 0:
                        return -1
                continue
        elif c == _QUOTE:
            q = _string_end(data, p, end)
            if q < 0:
                return -1
            p = q + 1
        elif c == _MINUS or _is_digit(c):
            p = _canonical_number(data, p, end)
            if p < 0:
                return -1
        elif c == 116:  # true
            p = _literal(data, p, end, 116, 114, 117, 101, 0, 4)
        elif c == 102:
            p = _literal(data, p, end, 102, 97, 108, 115, 101, 5)
        elif c == 110:
            p = _literal(data, p, end, 110, 117, 108, 108, 0, 4)
        else:
            return -1
        if p < 0:
            return -1
        # The value ended: close what it ends, or go on to the next member.
        while True:
            if sp == 0:
                return p
            if p >= end:
                return -1
            c = data[p]
            top = stack[sp - 1]
            if c == _COMMA:
                p += 1
                if top == 0:
                    p = _member_key(data, p, end)
                    if p < 0:
                        return -1
                break
            if (c == _RBRACE and top == 0) or (c == _RBRACKET and top == 1):
                p += 1
                sp -= 1
                continue
            return -1


@njit(inline="always")
def _put_view(views, k, slot, data, a, n):
    """Arrow's string view of data[a:a+n] (zero copy): length; then the bytes themselves when
    they fit in 12, else the first 4 bytes, buffer 0 and the offset. ASCII only, so no byte sets
    an int32's sign bit."""
    views[k, slot, 0] = n
    if n <= 12:
        w1 = 0
        w2 = 0
        w3 = 0
        for b in range(n):
            x = np.int32(data[a + b]) << (8 * (b & 3))
            if b < 4:
                w1 |= x
            elif b < 8:
                w2 |= x
            else:
                w3 |= x
        views[k, slot, 1] = w1
        views[k, slot, 2] = w2
        views[k, slot, 3] = w3
    else:
        views[k, slot, 1] = (np.int32(data[a]) | (np.int32(data[a + 1]) << 8) | (np.int32(data[a + 2]) << 16)
                             | (np.int32(data[a + 3]) << 24))
        views[k, slot, 2] = 0
        views[k, slot, 3] = a


@njit(inline="always")
def _find(data, a, n, table, offsets, lo, hi):
    """The e in lo..hi whose bytes table[offsets[e]:offsets[e + 1]] are data[a:a+n], or -1 (the
    schema's keys, a field's enum values)."""
    for e in range(lo, hi):
        b = offsets[e]
        if offsets[e + 1] - b != n:
            continue
        same = True
        for i in range(n):
            if table[b + i] != data[a + i]:
                same = False
                break
        if same:
            return e
    return -1


@njit(inline="always")
def _key_is(data, p, end, kwords, kmasks, j):
    """Whether data[p:] starts with field j's key in quotes (its words in kwords[j], the last
    one masked; a key too long for them or too near the line's end: False, and the caller
    matches it byte by byte)."""
    nw = kwords.shape[1]
    if kmasks[j, 0] == 0 or p + 8 * nw > end:
        return False
    for w in range(nw):
        m = kmasks[j, w]
        if m == 0:
            break
        if (load_u64(data, p + 8 * w) & m) != kwords[j, w]:
            return False
    return True


@njit(nogil=True)
def _type_lines(data, offsets, names, name_offsets, kwords, kmasks, ftypes, fslots, pow10,
                required, min_values, max_chars, enum_lo, enum_hi, enum_bytes, enum_offsets, ts_field, ts_lo, ts_hi,
                rows, deferred, present, ivals, fvals, views, dates):
    """Type every line data[offsets[i]:offsets[i+1]] it can and that passes every rule; returns
    (typed, deferred) counts.

    A typed line's values go to row k of the outputs (``rows[k]`` = its line index): ``present``
    [k, field], and by the field's type its slot in ``ivals`` (integers, booleans), ``fvals``
    (reals) or ``views`` (strings and objects, as Arrow string views into ``data``), and its
    event's date (days since 1970) in ``dates``. A deferred line's index goes to ``deferred``.

    The rules (validate.py ``_checks``), so that a typed line is a valid one: every required
    field present; a number not below its field's ``min_values`` (NaN: none; compared as a
    double, as the SQL compares an integer column with the literal); a string or object of at
    most ``max_chars`` characters (ASCII here, so bytes); a string in its field's enum
    (``enum_bytes[enum_offsets[e]:enum_offsets[e + 1]]`` for e in ``enum_lo..enum_hi``, none when
    equal); the timestamp field ``ts_field`` within ``ts_lo..ts_hi`` (the file's staleness and
    future bounds, inside 0..253402300799999). A line that breaks one is deferred: the SQL names
    its reason."""
    n = len(offsets) - 1
    nf = len(ftypes)
    stack = np.zeros(_MAX_DEPTH, dtype=np.uint8)
    seen = np.zeros(nf, dtype=np.uint8)
    k = 0
    nd = 0
    for i in range(n):
        p = offsets[i]
        end = offsets[i + 1]
        ok = True
        for j in range(nf):
            seen[j] = 0
            present[k, j] = 0
        p = _skip_ws(data, p, end)
        if p >= end or data[p] != _LBRACE:
            ok = False
        else:
            p = _skip_ws(data, p + 1, end)
            if p < end and data[p] == _RBRACE:
                p += 1
            else:
                guess = 0
                while True:
                    # A key.
                    if p >= end or data[p] != _QUOTE:
                        ok = False
                        break
                    # The key the last one's successor in the schema, compared 8 bytes at a
                    # time (lines of one producer keep one order), else scanned and looked up.
                    g = guess if guess < nf else 0
                    if _key_is(data, p, end, kwords, kmasks, g) and not seen[g]:
                        seen[g] = 1
                        guess = g + 1
                        q = p + 1 + name_offsets[g + 1] - name_offsets[g]
                        f = g
                    else:
                        q = _string_end(data, p, end)
                        if q < 0:
                            ok = False
                            break
                        f = _find(data, p + 1, q - p - 1, names, name_offsets, 0, nf)
                        if f < 0 or seen[f]:
                            ok = False  # a key not in the schema, or one given twice
                            break
                        seen[f] = 1
                        guess = f + 1
                    p = _skip_ws(data, q + 1, end)
                    if p >= end or data[p] != _COLON:
                        ok = False
                        break
                    p = _skip_ws(data, p + 1, end)
                    if p >= end:
                        ok = False
                        break
                    # Its value.
                    c = data[p]
                    ft = ftypes[f]
                    slot = fslots[f]
                    if c == 110:  # null: not present
                        p = _literal(data, p, end, 110, 117, 108, 108, 0, 4)
                    elif ft == _T_STRING:
                        if c != _QUOTE:
                            ok = False
                            break
                        q = _string_end(data, p, end)
                        if q < 0 or q - p - 1 > max_chars[f] or (enum_lo[f] < enum_hi[f] and _find(
                                data, p + 1, q - p - 1, enum_bytes, enum_offsets, enum_lo[f], enum_hi[f]) < 0):
                            ok = False
                            break
                        _put_view(views, k, slot, data, p + 1, q - p - 1)
                        present[k, f] = 1
                        p = q + 1
                    elif ft == _T_INT:
                        q, m, sig, exp10, neg, real = _number_token(data, p, end)
                        if q < 0 or real or sig > 18:
                            ok = False
                            break
                        v = -m if neg else m
                        if float(v) < min_values[f]:
                            ok = False
                            break
                        ivals[k, slot] = v
                        present[k, f] = 1
                        p = q
                    elif ft == _T_FLOAT:
                        q, m, sig, exp10, neg, real = _number_token(data, p, end)
                        if q < 0 or sig > 15 or exp10 > 22 or exp10 < -22:
                            ok = False
                            break
                        v = float(m)
                        if exp10 > 0:
                            v = v * pow10[exp10]
                        elif exp10 < 0:
                            v = v / pow10[-exp10]
                        v = -v if neg else v
                        if v < min_values[f]:
                            ok = False
                            break
                        fvals[k, slot] = v
                        present[k, f] = 1
                        p = q
                    elif ft == _T_BOOL:
                        if c == 116:
                            p = _literal(data, p, end, 116, 114, 117, 101, 0, 4)
                            ivals[k, slot] = 1
                        elif c == 102:
                            p = _literal(data, p, end, 102, 97, 108, 115, 101, 5)
                            ivals[k, slot] = 0
                        else:
                            ok = False
                            break
                        present[k, f] = 1
                    else:  # an object
                        if c != _LBRACE:
                            ok = False
                            break
                        q = _canonical_value(data, p, end, stack)
                        if q < 0 or q - p > max_chars[f]:
                            ok = False
                            break
                        _put_view(views, k, slot, data, p, q - p)
                        present[k, f] = 1
                        p = q
                    if p < 0:
                        ok = False
                        break
                    p = _skip_ws(data, p, end)
                    if p < end and data[p] == _COMMA:
                        p = _skip_ws(data, p + 1, end)
                        continue
                    if p < end and data[p] == _RBRACE:
                        p += 1
                        break
                    ok = False
                    break
            if ok:
                p = _skip_ws(data, p, end)
                ok = p == end  # nothing but whitespace after the object
        if ok:
            for j in range(nf):
                if required[j] and not present[k, j]:
                    ok = False
        if ok:
            ts = ivals[k, fslots[ts_field]]
            if not present[k, ts_field] or ts < ts_lo or ts > ts_hi:
                ok = False
            else:
                dates[k] = ts // 86_400_000
        if ok:
            rows[k] = i
            k += 1
        else:
            deferred[nd] = i
            nd += 1
    return k, nd


class FastTyper:
    """One stream's kernel inputs (key names, types, output slots), built once per schema."""

    def __init__(self, schema: StreamSchema):
        self.schema = schema
        names = [f.name.encode() for f in schema.fields]
        self.names = np.frombuffer(b"".join(names), dtype=np.uint8).copy()
        self.name_offsets = np.cumsum([0] + [len(n) for n in names]).astype(np.int64)
        # Each key in quotes as little-endian words for _key_is, the last one masked to its bytes
        # (a word's mask is 0 past the key); a key over 30 bytes is matched byte by byte.
        self.kwords = np.zeros((len(names), 4), np.uint64)
        self.kmasks = np.zeros((len(names), 4), np.uint64)
        for j, n in enumerate(names):
            lit = b'"' + n + b'"'
            if len(lit) > 32:
                continue
            for w in range(0, len(lit), 8):
                part = lit[w : w + 8]
                self.kwords[j, w // 8] = int.from_bytes(part, "little")
                self.kmasks[j, w // 8] = (1 << (8 * len(part))) - 1
        self.ftypes = np.array([_TYPE_CODES[f.type] for f in schema.fields], dtype=np.int64)
        counters = {"i": 0, "f": 0, "s": 0}
        slots = []
        for f in schema.fields:
            kind = {INT64: "i", BOOL: "i", FLOAT64: "f", STRING: "s", JSON_OBJECT: "s"}[f.type]
            slots.append(counters[kind])
            counters[kind] += 1
        self.fslots = np.array(slots, dtype=np.int64)
        self.counts = counters
        # The rules (validate.py _checks) as arrays for the kernel.
        self.required = np.array([f.required for f in schema.fields], dtype=np.uint8)
        self.min_values = np.array([np.nan if f.min_value is None else float(f.min_value) for f in schema.fields])
        self.max_chars = np.array([f.max_chars if f.type in (STRING, JSON_OBJECT) else 0 for f in schema.fields],
                                  dtype=np.int64)
        enums = [[v.encode() for v in (f.enum or ())] for f in schema.fields]
        flat = [v for e in enums for v in e]
        self.enum_hi = np.cumsum([len(e) for e in enums]).astype(np.int64)
        self.enum_lo = self.enum_hi - np.array([len(e) for e in enums], dtype=np.int64)
        self.enum_bytes = np.frombuffer(b"".join(flat) or b"\0", dtype=np.uint8).copy()
        self.enum_offsets = np.cumsum([0] + [len(v) for v in flat]).astype(np.int64)
        self.ts_field = schema.field_names.index(schema.partition_field)
        assert schema.fields[self.ts_field].type == INT64

    def type_array(self, lines: pa.Array, ts_lo: int, ts_hi: int) -> tuple[np.ndarray, dict[str, pa.Array], np.ndarray]:
        """(indices of the valid lines it typed, their columns by field name (NULL: not present)
        and ``event_date``, indices of the deferred lines) for one Arrow string array of lines
        whose events must be timed within ``ts_lo..ts_hi`` (epoch ms). Strings and objects are
        string views into the lines' own buffer (no copy), so the lines must outlive them."""
        n = len(lines)
        _, off_buf, data_buf = lines.buffers()
        width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
        offsets = np.frombuffer(off_buf, dtype=width)[lines.offset : lines.offset + n + 1].astype(np.int64)
        data = np.frombuffer(data_buf if data_buf is not None else b"", dtype=np.uint8)
        data.flags.writeable = False  # one kernel signature, whatever owns the buffer (a compile is seconds)
        base = int(offsets[0]) if n else 0
        if n and int(offsets[-1]) - base >= _MAX_VIEW_BYTES:
            # A view's offset is an int32: type the lines in pieces of under 1 GiB each.
            if n == 1:
                # One line that long (a file with no newline): the SQL judges it.
                return np.zeros(0, np.int64), self.type_array(lines.slice(0, 0), ts_lo, ts_hi)[1], np.zeros(1, np.int64)
            half = n // 2
            r1, c1, d1 = self.type_array(lines.slice(0, half), ts_lo, ts_hi)
            r2, c2, d2 = self.type_array(lines.slice(half), ts_lo, ts_hi)
            cols = {k: pa.concat_arrays([c1[k], c2[k]]) for k in c1}
            return np.concatenate([r1, r2 + half]), cols, np.concatenate([d1, d2 + half])
        # Offsets from the piece's first byte: the views' buffer starts there.
        data = data[base:]
        offsets -= base
        nf = len(self.schema.fields)
        rows = np.empty(n, np.int64)
        deferred = np.empty(n, np.int64)
        present = np.empty((n, nf), np.uint8)
        ivals = np.zeros((n, max(self.counts["i"], 1)), np.int64)
        fvals = np.zeros((n, max(self.counts["f"], 1)), np.float64)
        views = np.zeros((n, max(self.counts["s"], 1), 4), np.int32)
        dates = np.empty(n, np.int32)
        k, nd = _type_lines(data, offsets, self.names, self.name_offsets, self.kwords, self.kmasks, self.ftypes,
                            self.fslots, _POW10, self.required, self.min_values, self.max_chars, self.enum_lo,
                            self.enum_hi, self.enum_bytes, self.enum_offsets, self.ts_field, max(int(ts_lo), 0),
                            min(int(ts_hi), _MAX_TS_MS), rows, deferred, present, ivals, fvals, views, dates)
        text = pa.py_buffer(data)
        cols: dict[str, pa.Array] = {}
        for j, f in enumerate(self.schema.fields):
            have = present[:k, j].view(bool)
            validity = None if have.all() else pa.py_buffer(np.packbits(have, bitorder="little"))
            slot = self.fslots[j]
            if f.type in (STRING, JSON_OBJECT):
                arr = pa.Array.from_buffers(pa.string_view(), k, [validity, pa.py_buffer(np.ascontiguousarray(views[:k, slot])), text])
                if f.type == JSON_OBJECT:
                    # Arrow's JSON type: DuckDB takes it as its JSON type as it is (a cast from
                    # VARCHAR would parse every object again).
                    arr = pa.ExtensionArray.from_storage(pa.json_(pa.string_view()), arr)
            elif f.type == INT64:
                arr = pa.Array.from_buffers(pa.int64(), k, [validity, pa.py_buffer(np.ascontiguousarray(ivals[:k, slot]))])
            elif f.type == FLOAT64:
                arr = pa.Array.from_buffers(pa.float64(), k, [validity, pa.py_buffer(np.ascontiguousarray(fvals[:k, slot]))])
            else:
                arr = pa.array(ivals[:k, slot] != 0, mask=~have)
            cols[f.name] = arr
        cols["event_date"] = pa.Array.from_buffers(pa.date32(), k, [None, pa.py_buffer(dates[:k].copy())])
        return rows[:k].copy(), cols, deferred[:nd].copy()


def ts_bounds(flushed_at_ms: int, *, future_skew_ms: int, max_lateness_ms: int, max_ts_ms: int | None) -> tuple[int, int]:
    """The event times (epoch ms) a line of a file flushed at ``flushed_at_ms`` may carry and be
    valid: not stale, not in the future of the flush time (nor past ``max_ts_ms``, the ingest's
    clock + skew), as validate.py ``_checks`` has it."""
    hi = flushed_at_ms + future_skew_ms
    if max_ts_ms is not None:
        hi = min(hi, max_ts_ms)
    return flushed_at_ms - max_lateness_ms, hi


def split_typed(typer: FastTyper, lines: pa.Table, ts_bounds: list[tuple[int, int] | None],
                threads: int = 1) -> tuple[pa.Table, pa.Table]:
    """``lines`` (src_file_idx, src_line, line) as (the valid lines the compiled path typed:
    src_file_idx, src_line, one column per field, NULL where not present, and event_date; the
    other lines, shaped as ``lines``). ``ts_bounds[file index]``: the event times its lines may
    carry (``None``: that file's lines all go to the SQL). Each Arrow chunk of ``lines`` holds
    lines of one file, as ``engine._read_chunk`` makes them."""
    text = lines.column("line")
    file_idx = lines.column("src_file_idx").to_numpy()
    line_no = lines.column("src_line").to_numpy()
    typed_parts: list[pa.Table] = []
    deferred_parts: list[pa.Table] = []
    starts = np.cumsum([0] + [len(c) for c in text.chunks])

    def type_chunk(c: int):
        chunk, start = text.chunks[c], starts[c]
        n = len(chunk)
        bounds = ts_bounds[file_idx[start]] if n else None
        assert n == 0 or file_idx[start] == file_idx[start + n - 1], "an Arrow chunk of lines spans two files"
        if bounds is None:
            return np.zeros(0, np.int64), typer.type_array(chunk.slice(0, 0), 0, 0)[1], np.arange(n, dtype=np.int64)
        return typer.type_array(chunk, *bounds)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(type_chunk, range(len(text.chunks))))
    for c, (rows, cols, deferred) in enumerate(results):
        chunk, start = text.chunks[c], starts[c]
        n = len(chunk)
        at = rows + start
        typed_parts.append(pa.table({"src_file_idx": pa.array(file_idx[at]), "src_line": pa.array(line_no[at]), **cols}))
        if len(deferred):
            # Taken from this chunk alone: a take on the whole chunked column would first
            # concatenate every line of the chunk.
            at = deferred + start
            deferred_parts.append(pa.table({"src_file_idx": pa.array(file_idx[at]), "src_line": pa.array(line_no[at]),
                                            "line": chunk.take(pa.array(deferred))}))
    if not typed_parts:
        cols = typer.type_array(pa.array([], pa.large_string()), 0, 0)[1]
        typed_parts.append(pa.table({"src_file_idx": pa.array(file_idx[:0]), "src_line": pa.array(line_no[:0]), **cols}))
    deferred_tbl = (pa.concat_tables(deferred_parts).cast(lines.schema) if deferred_parts else lines.slice(0, 0))
    return pa.concat_tables(typed_parts), deferred_tbl


def warm_up() -> float:
    """Compile the kernels (their first use after an install) or load them from numba's cache, so
    a measurement that follows times the ingest, not the compiler; returns the seconds it took."""
    import time

    started = time.perf_counter()
    lines = pa.array(['{"event_id":"x"}'], pa.large_string())
    FastTyper(next(iter(STREAMS.values()))).type_array(lines, 0, 0)
    # The judging kernels too, the table grown once (its rehash).
    _, offsets, data = id_arrays([pa.array([str(i) for i in range(1000)])])
    hashes = hash_ids(offsets, data)
    SeenIds().meet(offsets, data, hashes, np.zeros(len(hashes), np.int64))
    return time.perf_counter() - started
