"""Numba kernels for :mod:`mtlfast.stats` (private; the public wrappers in ``__init__`` validate and convert).

All kernels are compiled through :func:`njit` below, the one place that holds the Numba settings:

- ``cache=True``: the compiled machine code is written next to this file (``__pycache__``), so only the very
  first process on a machine pays the JIT; later processes load it in milliseconds.
- ``error_model="numpy"``: division by zero gives inf/nan instead of raising, so no zero checks are
  compiled into the inner loops (the wrappers handle the undefined cases explicitly).
- ``fastmath`` off: the sums of logarithms must match SciPy to 1e-9 relative; reassociation is not wanted.
- no ``parallel=True``: the hot part, interning the strings, is a sequential hash-table build; the kernels
  after it are single O(tokens) integer passes that take a few ns per token (bench: "numba kernels on id
  arrays"), so a ``prange`` version could save at most that share on the 2-core development machine while
  adding per-thread histograms and thread start-up. Not tried; revisit only if that share grows.
- explicit signatures: the kernels are compiled (or loaded from the cache) when the module is imported,
  never in the middle of a first call, and a wrong dtype fails loudly instead of compiling a new version.

Strings reach Numba as one UTF-8 byte buffer per corpus: the tokens joined with ``"\\n"`` (tokens of the
TSV format never contain a newline; the wrapper checks it). :func:`intern_tokens` maps every token to a
dense id with an open-addressing hash table (FNV-1a 64-bit hash, linear probing, load factor <= 1/2), in
order of first occurrence, so ids of a prefix of the corpus (the training split) are ``0 .. n_prefix_types-1``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

NJIT_OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)


def njit(*args, **kwargs):
    """``numba.njit`` with the package settings (:data:`NJIT_OPTIONS`); keyword arguments override them."""
    return nb.njit(*args, **{**NJIT_OPTIONS, **kwargs})


# Byte buffers come from ``np.frombuffer(bytes)`` and are read-only; a read-only signature also accepts
# writable arrays.
_BYTES = nb.types.Array(nb.uint8, 1, "C", readonly=True)

_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
_EMPTY = -1
_NEWLINE = 10


@njit(inline="always")
def _hash_span(buf, start, end):
    """FNV-1a over ``buf[start:end]``, with a final xor-shift so the low bits (the slot index) mix well."""
    h = _FNV_OFFSET
    for i in range(start, end):
        h ^= np.uint64(buf[i])
        h *= _FNV_PRIME
    return h ^ (h >> np.uint64(29))


@njit(inline="always")
def _span_equal(a, a_start, b, b_start, length):
    for i in range(length):
        if a[a_start + i] != b[b_start + i]:
            return False
    return True


_LOW32 = np.uint64(0xFFFFFFFF)


@njit(inline="always")
def _slot(h, t):
    """A table slot: the hash's high 32 bits (forced non-zero: 0 marks an empty slot) over the type id."""
    return (((h >> np.uint64(32)) | np.uint64(1)) << np.uint64(32)) | np.uint64(t)


@njit
def _rehash(type_hash, n_types, capacity):
    """A new table of ``capacity`` slots holding types ``0 .. n_types-1``; see :func:`intern_tokens`."""
    table = np.zeros(capacity, np.uint64)
    mask = np.uint64(capacity - 1)
    for t in range(n_types):
        h = type_hash[t]
        j = h & mask
        while table[j] != 0:
            j = (j + np.uint64(1)) & mask
        table[j] = _slot(h, t)
    return table


@njit(inline="always")
def _find(table, mask, h, type_span, key_buf, buf, pos, length):
    """Probe for the key ``buf[pos:pos+length]`` (hash ``h``): returns ``(slot, type id)``, the id -1 with the
    empty slot where it would go when the table does not hold it. Keys of the table live in ``key_buf``."""
    j = h & mask
    tag = _slot(h, 0)
    while True:
        entry = table[j]
        if entry == 0:
            return j, -1
        if (entry & ~_LOW32) == tag:
            t = np.int64(entry & _LOW32)
            if type_span[t, 1] == length and _span_equal(key_buf, type_span[t, 0], buf, pos, length):
                return j, t
        j = (j + np.uint64(1)) & mask


@njit(inline="always")
def _new_type(table, j, h, pos, length, type_hash, type_span, n_types):
    """Insert a new type (id ``n_types``) at the empty slot ``j``; grows the arrays as needed."""
    if n_types == type_hash.size:
        grown = np.empty(2 * n_types, np.uint64)
        grown[:n_types] = type_hash
        type_hash = grown
        grown_span = np.empty((2 * n_types, 2), np.int64)
        grown_span[:n_types] = type_span
        type_span = grown_span
    type_hash[n_types] = h
    type_span[n_types, 0] = pos
    type_span[n_types, 1] = length
    table[j] = _slot(h, n_types)
    n_types += 1
    capacity = table.size
    if 2 * n_types > capacity:
        table = _rehash(type_hash, n_types, 2 * capacity)
    return table, type_hash, type_span, n_types


_INTERN_RESULT = nb.types.Tuple((nb.int32[::1], nb.uint64[::1], nb.uint64[::1], nb.int64[:, ::1], nb.int64))


@njit(inline="always")
def _table_capacity(expected_types):
    """Slots for ``expected_types`` types at a load of at most 1/2 (1024 at least)."""
    capacity = 1024
    while capacity < 2 * expected_types:
        capacity *= 2
    return capacity


@njit(_INTERN_RESULT(_BYTES, nb.int64, nb.int64))
def intern_tokens(buf, n_tokens, expected_types):
    """Dense ids for the ``n_tokens`` newline-separated byte strings in ``buf``.

    ``expected_types``: how many distinct strings to size the table for at the start (``n_tokens`` when the
    strings are known to be (nearly) distinct, which saves the growth; 0 when unknown: it grows as needed).

    Returns
    -------
    ids : int32 [n_tokens]
        id of every token; ids are given in order of first occurrence (0, 1, 2, ...).
    table : uint64 [capacity]
        the hash table, capacity a power of two; a slot holds the high 32 bits of the hash (forced non-zero;
        0 marks an empty slot) over the type id, so a probe reads 8 bytes and rarely touches the key bytes.
    type_hash : uint64 [n_types]
    type_span : int64 [n_types, 2]
        byte span (start, length) in ``buf`` of the first occurrence of every type.
    n_separators_left : int64
        0 when ``buf`` holds exactly ``n_tokens`` strings; otherwise a string contained a newline (or the
        count was wrong) and the ids are meaningless: the caller must check.
    """
    ids = np.empty(n_tokens, np.int32)
    table = np.zeros(_table_capacity(expected_types), np.uint64)
    type_hash = np.empty(max(256, expected_types), np.uint64)
    type_span = np.empty((max(256, expected_types), 2), np.int64)
    n_types = 0
    size = buf.size
    pos = 0
    for k in range(n_tokens):
        # Hash while scanning for the separator: one pass over the bytes.
        h = _FNV_OFFSET
        end = pos
        while end < size and buf[end] != _NEWLINE:
            h ^= np.uint64(buf[end])
            h *= _FNV_PRIME
            end += 1
        h ^= h >> np.uint64(29)
        j, t = _find(table, np.uint64(table.size - 1), h, type_span, buf, buf, pos, end - pos)
        if t < 0:
            t = n_types
            table, type_hash, type_span, n_types = _new_type(table, j, h, pos, end - pos, type_hash, type_span, n_types)
        ids[k] = t
        pos = end + 1
    left = 0 if n_tokens == 0 else size + 1 - pos
    return ids, table, type_hash[:n_types].copy(), type_span[:n_types].copy(), left


@njit(_INTERN_RESULT(_BYTES, nb.int64[:, ::1]))
def intern_spans(buf, spans):
    """:func:`intern_tokens` for strings given as byte spans ``(start, length)`` of ``buf`` (the last
    result is always 0)."""
    n_tokens = spans.shape[0]
    ids = np.empty(n_tokens, np.int32)
    table = np.zeros(1024, np.uint64)
    type_hash = np.empty(256, np.uint64)
    type_span = np.empty((256, 2), np.int64)
    n_types = 0
    for k in range(n_tokens):
        pos = spans[k, 0]
        length = spans[k, 1]
        h = _hash_span(buf, pos, pos + length)
        j, t = _find(table, np.uint64(table.size - 1), h, type_span, buf, buf, pos, length)
        if t < 0:
            t = n_types
            table, type_hash, type_span, n_types = _new_type(table, j, h, pos, length, type_hash, type_span, n_types)
        ids[k] = t
    return ids, table, type_hash[:n_types].copy(), type_span[:n_types].copy(), 0


@njit(nb.int32[::1](nb.uint64[::1], nb.int64[:, ::1], _BYTES, _BYTES, nb.int64[:, ::1]))
def lookup_types(table, table_span, table_buf, buf, spans):
    """For every span ``(start, length)`` of ``buf`` in ``spans``: its id in a table built by
    :func:`intern_tokens` over ``table_buf``, or -1 when the table does not hold it.

    In passes rather than one probe at a time: hash everything; then find each span's candidate (the first
    slot whose 32-bit tag matches, or none at the empty slot); then check the candidates' bytes. Within a
    pass the iterations do not depend on each other, so the CPU overlaps their cache misses (a large table
    misses the cache on nearly every probe); the rare candidate whose bytes differ (a tag collision) gets
    the full probe."""
    n = spans.shape[0]
    mask = np.uint64(table.size - 1)
    hashes = np.empty(n, np.uint64)
    for i in range(n):
        s = spans[i, 0]
        hashes[i] = _hash_span(buf, s, s + spans[i, 1])
    found = np.empty(n, np.int32)
    for i in range(n):
        h = hashes[i]
        j = h & mask
        tag = _slot(h, 0)
        t = _EMPTY
        while True:
            entry = table[j]
            if entry == 0:
                break
            if (entry & ~_LOW32) == tag:
                t = np.int64(entry & _LOW32)
                break
            j = (j + np.uint64(1)) & mask
        found[i] = t
    for i in range(n):
        t = found[i]
        if t < 0:
            continue
        s = spans[i, 0]
        m = spans[i, 1]
        if not (table_span[t, 1] == m and _span_equal(table_buf, table_span[t, 0], buf, s, m)):
            found[i] = _find(table, mask, hashes[i], table_span, table_buf, buf, s, m)[1]
    return found


@njit(inline="always")
def _is_space_byte(c):
    # The ASCII characters str.strip() removes.
    return c == 32 or (9 <= c <= 13) or (28 <= c <= 31)


@njit(inline="always")
def _unicode_space_len(buf, start, end, at_end):
    """Length in bytes of a non-ASCII Unicode whitespace character (what ``str.strip`` would also remove)
    that starts at ``start`` (``at_end`` False) or ends at ``end`` (``at_end`` True) within
    ``buf[start:end]``; 0 if there is none. U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
    U+202F, U+205F, U+3000."""
    for n in (2, 3):
        if end - start < n:
            return 0
        i = end - n if at_end else start
        b0 = buf[i]
        b1 = buf[i + 1]
        if n == 2:
            if b0 == 0xC2 and (b1 == 0x85 or b1 == 0xA0):
                return 2
        else:
            b2 = buf[i + 2]
            if b0 == 0xE1 and b1 == 0x9A and b2 == 0x80:
                return 3
            if b0 == 0xE2 and b1 == 0x80 and (b2 <= 0x8A or b2 == 0xA8 or b2 == 0xA9 or b2 == 0xAF):
                return 3
            if b0 == 0xE2 and b1 == 0x81 and b2 == 0x9F:
                return 3
            if b0 == 0xE3 and b1 == 0x80 and b2 == 0x80:
                return 3
    return 0


@njit(inline="always")
def _clean_field(buf, start, end):
    """A field the data layer's parser would keep as it is: non-empty, no whitespace at either end."""
    if end <= start:
        return False
    if _is_space_byte(buf[start]) or _is_space_byte(buf[end - 1]):
        return False
    if buf[start] >= 128 and _unicode_space_len(buf, start, end, False) > 0:
        return False
    if buf[end - 1] >= 128 and _unicode_space_len(buf, start, end, True) > 0:
        return False
    return True


@njit(nb.types.Tuple((nb.int64[:, ::1], nb.int64[:, ::1], nb.int64[::1], nb.int64))(_BYTES))
def tsv_spans(buf):
    """Parse ``token<TAB>label`` lines (blank line between sentences) of UTF-8 bytes without making strings.

    Returns the byte spans ``(start, length)`` of the token and of the label of every token line, the
    sentence offsets into them (``[0, n_1, n_1 + n_2, ...]``) and 0; or, at the first line this strict
    parser does not accept, empty arrays and that 1-based line number. It accepts only what
    ``mtlfast.data`` reads unchanged: exactly one tab, both fields non-empty with no whitespace at their ends,
    blank lines truly empty, no carriage return (a UTF-8 byte-order mark is skipped). Anything else is left to
    the data layer, which either reads it (e.g. CRLF files) or raises its documented error.
    """
    n = buf.size
    fail = (np.empty((0, 2), np.int64), np.empty((0, 2), np.int64), np.empty(0, np.int64))
    pos = 3 if n >= 3 and buf[0] == 0xEF and buf[1] == 0xBB and buf[2] == 0xBF else 0
    # Pass 1, branch-free (no misprediction per line): positions of every newline and tab, any CR.
    newlines = np.empty(n + 1, np.int64)
    tabs = np.empty(n + 1, np.int64)
    n_nl = 0
    n_tab = 0
    n_cr = 0
    for i in range(pos, n):
        c = buf[i]
        newlines[n_nl] = i
        n_nl += c == _NEWLINE
        tabs[n_tab] = i
        n_tab += c == 9
        n_cr += c == 13
    if n_cr:
        first_cr = pos
        while buf[first_cr] != 13:
            first_cr += 1
        line = 1
        for i in range(pos, first_cr):
            line += buf[i] == _NEWLINE
        return fail[0], fail[1], fail[2], line
    if n_nl == 0 or newlines[n_nl - 1] != n - 1:
        newlines[n_nl] = n  # last line without a final newline
        n_nl += 1
    tabs[n_tab] = n  # sentinel
    # Pass 2, per line: exactly one tab inside a token line, none in a blank line.
    spans = np.empty((n_tab, 2), np.int64)
    label_spans = np.empty((n_tab, 2), np.int64)
    offsets = np.empty(n_tab + 2, np.int64)
    offsets[0] = 0
    n_spans = 0
    n_sent = 0
    in_sentence = False
    k = 0
    start = pos
    for line in range(n_nl):
        eol = newlines[line]
        if eol == start:
            if in_sentence:
                n_sent += 1
                offsets[n_sent] = n_spans
                in_sentence = False
        else:
            tab = tabs[k]
            if tab >= eol or tabs[k + 1] < eol:
                return fail[0], fail[1], fail[2], line + 1
            if not _clean_field(buf, start, tab) or not _clean_field(buf, tab + 1, eol):
                return fail[0], fail[1], fail[2], line + 1
            k += 1
            spans[n_spans, 0] = start
            spans[n_spans, 1] = tab - start
            label_spans[n_spans, 0] = tab + 1
            label_spans[n_spans, 1] = eol - tab - 1
            n_spans += 1
            in_sentence = True
        start = eol + 1
    if in_sentence:
        n_sent += 1
        offsets[n_sent] = n_spans
    return spans[:n_spans].copy(), label_spans[:n_spans].copy(), offsets[: n_sent + 1].copy(), 0


@njit(nb.boolean(_BYTES, _BYTES))
def same_layout(a, b):
    """Whether ``a`` and ``b`` have the same length and their tabs and newlines at the same positions (then
    spans parsed from one hold for the other). Branch-free, so it vectorises."""
    if a.size != b.size:
        return False
    diff = 0
    for i in range(a.size):
        diff |= ((a[i] == 9) | (a[i] == _NEWLINE)) ^ ((b[i] == 9) | (b[i] == _NEWLINE))
    return diff == 0


@njit(nb.int64[::1](nb.int32[::1], nb.int64))
def count_ids(ids, n_ids):
    """Histogram: ``counts[t] = #{k : ids[k] == t}`` for ``t < n_ids``."""
    counts = np.zeros(n_ids, np.int64)
    for k in range(ids.size):
        counts[ids[k]] += 1
    return counts


@njit(nb.int64(nb.int32[::1], nb.int64[::1], nb.int64))
def frobenius_sq(ids, offsets, n_ids):
    """Squared Frobenius norm of the sentence x term count matrix, without building it.

    ``||X||_F^2 = sum_s sum_t X[s, t]^2`` where ``X[s, t]`` counts term ``t`` in sentence ``s``
    (tokens ``ids[offsets[s]:offsets[s+1]]``). Per sentence, a count going from c to c+1 adds
    ``(c+1)^2 - c^2 = 2c+1``; the touched counters are reset afterwards, so the pass is O(tokens)
    and exact in integers.
    """
    counts = np.zeros(n_ids, np.int64)
    total = 0
    for s in range(offsets.size - 1):
        lo = offsets[s]
        hi = offsets[s + 1]
        for k in range(lo, hi):
            t = ids[k]
            total += 2 * counts[t] + 1
            counts[t] += 1
        for k in range(lo, hi):
            counts[ids[k]] = 0
    return total


@njit(nb.float64(nb.int64[::1]))
def entropy_nat(counts):
    """Shannon entropy in nats of the distribution ``p = counts / sum(counts)``: ``H = -sum_i p_i ln p_i``
    (terms with ``p_i = 0`` are 0). NaN for an all-zero vector."""
    n = 0
    for c in counts:
        n += c
    total = 0.0
    for c in counts:
        if c > 0:
            p = c / n
            total -= p * np.log(p)
    return total if n > 0 else np.nan


@njit(nb.float64(nb.int64[::1], nb.int64[::1]))
def jensen_shannon_nat(counts_p, counts_q):
    """Jensen-Shannon divergence in nats of ``P = counts_p / sum`` and ``Q = counts_q / sum`` (aligned).

    ``JSD(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M)``, ``M = (P + Q) / 2``, ``KL(P || M) = sum_i p_i ln(p_i / m_i)``
    (terms with ``p_i = 0`` are 0). NaN when either vector is all zero.
    """
    n_p = 0
    n_q = 0
    for i in range(counts_p.size):
        n_p += counts_p[i]
        n_q += counts_q[i]
    if n_p == 0 or n_q == 0:
        return np.nan
    left = 0.0
    right = 0.0
    for i in range(counts_p.size):
        p = counts_p[i] / n_p
        q = counts_q[i] / n_q
        m = (p + q) / 2.0
        if p > 0.0:
            left += p * np.log(p / m)
        if q > 0.0:
            right += q * np.log(q / m)
    return (left + right) / 2.0
