# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled helpers of mtlfast.data (optional; mtlfast.data.encode falls back to NumPy without them).

encode_tokens: strings -> int32 ids through a dict, lower-casing each distinct string once per call.
make_batch:    right-padded [B, T] token/tag batches for sampled sentence indices, one pass, no temporaries.
parse_tsv:     the TSV reader's inner loop on raw bytes (the hot part of loading a suite); equal fields of a
               file share one str object.
factorize:     codes of the strings of a list of sentences, repeats found by object identity first.
parse_floats:  the numbers of a GloVe text file (the hot part of loading vectors).
frame_sentences: [GO] ids [EOS] around every sentence of a flat split (the original protocol's encoding).
sparse_adadelta_occurrences: TensorFlow's SparseApplyAdadelta on an embedding table, one index entry at a
               time in order (the original protocol's embedding update; duplicates are applied one by one).
Each gives exactly the results of its pure-Python twin (encode_tokens_py / make_batch_np in encode.py,
parse_tsv in io.py); the tests compare them.
"""

import numpy as np

cimport numpy as cnp
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_CheckExact, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_CheckExact, PyUnicode_DecodeUTF8
from libc.stdint cimport uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc, realloc, strtod
from libc.string cimport memchr, memcmp, memcpy

cnp.import_array()

cdef extern from *:
    void __builtin_prefetch(const void* address) nogil

cdef extern from "Python.h":
    ctypedef struct PyListObject:
        PyObject** ob_item

cdef enum:
    PAD_TAG = -100

cdef extern from *:
    """
    #include <math.h>
    /* One Adadelta update of one embedding row (TensorFlow's SparseApplyAdadelta arithmetic). Built without
       errno-setting sqrt so that the loop over the row vectorises. */
    static __attribute__((noinline, optimize("O3", "no-math-errno", "tree-vectorize"))) void mtl_tf_adadelta_row(
            float* __restrict v, float* __restrict a, float* __restrict u, const float* __restrict g, long E,
            float lr, float rho, float eps) {
        const float om = 1.0f - rho;
        for (long e = 0; e < E; ++e) {
            const float gg = g[e];
            const float aa = a[e] * rho + gg * gg * om;
            a[e] = aa;
            const float up = sqrtf(u[e] + eps) / sqrtf(aa + eps) * gg;
            u[e] = u[e] * rho + up * up * om;
            v[e] -= up * lr;
        }
    }
    """
    void mtl_tf_adadelta_row(float* v, float* a, float* u, const float* g, long E, float lr, float rho,
                             float eps) nogil


def encode_tokens(list flat, dict stoi, bint lower=True, int default=1):
    """int32 ids of the strings in ``flat``: ``stoi[s.lower()]`` (or ``stoi[s]``), ``default`` when absent."""
    cdef Py_ssize_t n = PyList_GET_SIZE(flat)
    cdef cnp.ndarray[cnp.int32_t, ndim=1] out = np.empty(n, dtype=np.int32)
    cdef cnp.int32_t[::1] o = out
    cdef dict cache = {}
    cdef Py_ssize_t i
    cdef object w, key
    cdef PyObject* hit
    cdef int value
    for i in range(n):
        w = <object>PyList_GET_ITEM(flat, i)
        hit = PyDict_GetItem(cache, w)
        if hit != NULL:
            o[i] = <int><object>hit
            continue
        key = w.lower() if lower else w
        hit = PyDict_GetItem(stoi, key)
        value = default if hit == NULL else <int><object>hit
        PyDict_SetItem(cache, w, value)
        o[i] = value
    return out


def make_batch(const cnp.int32_t[::1] tokens, const cnp.int32_t[::1] tags, const cnp.int64_t[::1] offsets,
               const cnp.int64_t[::1] idx, long max_len):
    """(tokens int64 [B, T], tags int64 [B, T], lengths int64 [B]); pad token 0, pad tag -100.

    ``max_len <= 0`` means no cut. Indices outside [0, n_sentences) raise IndexError (the message of
    mtlfast.data.encode._check_idx).
    """
    cdef Py_ssize_t B = idx.shape[0]
    cdef Py_ssize_t n = offsets.shape[0] - 1
    cdef Py_ssize_t b, t, T = 0, start, length
    cdef cnp.ndarray[cnp.int64_t, ndim=1] lengths_arr = np.empty(B, dtype=np.int64)
    cdef cnp.int64_t[::1] lengths = lengths_arr
    for b in range(B):
        if idx[b] < 0 or idx[b] >= n:
            arr = np.asarray(idx)
            raise IndexError(f"make_batch: sentence indices must be in [0, {n}); got min {arr.min()}, max {arr.max()}")
    for b in range(B):
        length = offsets[idx[b] + 1] - offsets[idx[b]]
        if max_len > 0 and length > max_len:
            length = max_len
        lengths[b] = length
        if length > T:
            T = length
    cdef cnp.ndarray[cnp.int64_t, ndim=2] tok_arr = np.empty((B, T), dtype=np.int64)
    cdef cnp.ndarray[cnp.int64_t, ndim=2] tag_arr = np.empty((B, T), dtype=np.int64)
    cdef cnp.int64_t[:, ::1] out_tok = tok_arr
    cdef cnp.int64_t[:, ::1] out_tag = tag_arr
    with nogil:
        for b in range(B):
            start = offsets[idx[b]]
            length = lengths[b]
            for t in range(length):
                out_tok[b, t] = tokens[start + t]
                out_tag[b, t] = tags[start + t]
            for t in range(length, T):
                out_tok[b, t] = 0
                out_tag[b, t] = PAD_TAG
    return tok_arr, tag_arr, lengths_arr


cdef inline bint _is_space(unsigned char c) nogil:
    # the ASCII characters str.strip() removes
    return c == 32 or (9 <= c <= 13) or (28 <= c <= 31)


# --- per-file string pool: byte span -> str, so that equal tokens (and labels) share one object ---------

cdef struct _SpanTable:
    uint64_t* hashes  # 0 = empty slot
    Py_ssize_t* starts
    Py_ssize_t* lens
    PyObject** objs  # borrowed: the pool list holds the references
    int* index  # position of the object in the pool
    Py_ssize_t mask
    Py_ssize_t used


cdef int _span_init(_SpanTable* t, Py_ssize_t capacity) except -1:
    t.hashes = <uint64_t*>calloc(capacity, sizeof(uint64_t))
    t.starts = <Py_ssize_t*>malloc(capacity * sizeof(Py_ssize_t))
    t.lens = <Py_ssize_t*>malloc(capacity * sizeof(Py_ssize_t))
    t.objs = <PyObject**>malloc(capacity * sizeof(PyObject*))
    t.index = <int*>malloc(capacity * sizeof(int))
    t.mask = capacity - 1
    t.used = 0
    if t.hashes == NULL or t.starts == NULL or t.lens == NULL or t.objs == NULL or t.index == NULL:
        _span_free(t)
        raise MemoryError()
    return 0


cdef void _span_free(_SpanTable* t) noexcept:
    free(t.hashes)
    free(t.starts)
    free(t.lens)
    free(t.objs)
    free(t.index)
    t.hashes = NULL
    t.starts = NULL
    t.lens = NULL
    t.objs = NULL
    t.index = NULL


cdef int _span_grow(_SpanTable* t) except -1:
    cdef _SpanTable bigger
    cdef Py_ssize_t i, s
    _span_init(&bigger, 2 * (t.mask + 1))
    for i in range(t.mask + 1):
        if t.hashes[i] != 0:
            s = <Py_ssize_t>(t.hashes[i] & <uint64_t>bigger.mask)
            while bigger.hashes[s] != 0:
                s = (s + 1) & bigger.mask
            bigger.hashes[s] = t.hashes[i]
            bigger.starts[s] = t.starts[i]
            bigger.lens[s] = t.lens[i]
            bigger.objs[s] = t.objs[i]
            bigger.index[s] = t.index[i]
    bigger.used = t.used
    _span_free(t)
    t[0] = bigger
    return 0


cdef inline uint64_t _span_hash(const char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <unsigned char>p[i]) * 1099511628211ULL
    h ^= h >> 29
    return h | 1


cdef object _span_str(_SpanTable* t, list pool, const char* p, Py_ssize_t a, Py_ssize_t b, int* index_out,
                      _Text* text):
    """The field ``p[a:b]`` as a str (decoded, and stripped when an edge byte is a space or non-ASCII, as
    the reference parser does), the same object for equal bytes, and its position in ``pool`` (the distinct
    fields in order of first occurrence) in ``index_out``; UnicodeDecodeError for invalid UTF-8. A new
    field's UTF-8 text and a newline are appended to ``text`` unless it is NULL."""
    cdef Py_ssize_t n = b - a
    cdef uint64_t h = _span_hash(p + a, n)
    cdef Py_ssize_t s = <Py_ssize_t>(h & <uint64_t>t.mask)
    while t.hashes[s] != 0:
        if t.hashes[s] == h and t.lens[s] == n and memcmp(p + t.starts[s], p + a, n) == 0:
            index_out[0] = t.index[s]
            return <object>t.objs[s]
        s = (s + 1) & t.mask
    cdef object v = PyUnicode_DecodeUTF8(p + a, n, "strict")
    cdef const char* utf8
    cdef Py_ssize_t utf8_len
    if n > 0 and (_is_space(<unsigned char>p[a]) or _is_space(<unsigned char>p[b - 1])
                  or <unsigned char>p[a] >= 128 or <unsigned char>p[b - 1] >= 128):
        v = v.strip()
        if text != NULL:
            utf8 = PyUnicode_AsUTF8AndSize(v, &utf8_len)
            _text_add_lower(text, utf8, utf8_len, v)
    elif text != NULL:
        _text_add_lower(text, p + a, n, v)
    if PyList_GET_SIZE(pool) >= 2147483647:
        raise OverflowError("parse_tsv: more than 2**31 - 1 distinct fields in one file")
    index_out[0] = <int>PyList_GET_SIZE(pool)
    pool.append(v)
    t.hashes[s] = h
    t.starts[s] = a
    t.lens[s] = n
    t.objs[s] = <PyObject*>v
    t.index[s] = index_out[0]
    t.used += 1
    if 2 * t.used > t.mask + 1:
        _span_grow(t)
    return v


cdef struct _Text:  # a growing byte buffer
    char* data
    Py_ssize_t n
    Py_ssize_t cap


cdef int _text_reserve(_Text* t, Py_ssize_t extra) except -1:
    cdef char* grown
    cdef Py_ssize_t cap
    if t.n + extra > t.cap:
        cap = 2 * t.cap + extra + 4096
        grown = <char*>realloc(t.data, cap)
        if grown == NULL:
            raise MemoryError()
        t.data = grown
        t.cap = cap
    return 0


cdef int _text_add_lower(_Text* t, const char* p, Py_ssize_t n, object v) except -1:
    """Append the UTF-8 text of ``v.lower()`` and a newline; ``p[:n]`` are ``v``'s UTF-8 bytes (ASCII text is
    lower-cased while copied, anything else goes through ``str.lower``)."""
    cdef Py_ssize_t i
    cdef unsigned char c
    cdef const char* utf8
    cdef Py_ssize_t utf8_len
    cdef object low
    for i in range(n):
        if <unsigned char>p[i] >= 128:
            low = v.lower()
            utf8 = PyUnicode_AsUTF8AndSize(low, &utf8_len)
            _text_reserve(t, utf8_len + 1)
            memcpy(t.data + t.n, utf8, utf8_len)
            t.data[t.n + utf8_len] = 10
            t.n += utf8_len + 1
            return 0
    _text_reserve(t, n + 1)
    for i in range(n):
        c = <unsigned char>p[i]
        t.data[t.n + i] = <char>(c + 32 if 65 <= c <= 90 else c)
    t.data[t.n + n] = 10
    t.n += n + 1
    return 0


cdef struct _Codes:  # a growing int32 buffer
    int* data
    Py_ssize_t n
    Py_ssize_t cap


cdef int _codes_push(_Codes* c, int value) except -1:
    cdef int* grown
    if c.n == c.cap:
        grown = <int*>realloc(c.data, (2 * c.cap + 1024) * sizeof(int))
        if grown == NULL:
            raise MemoryError()
        c.data = grown
        c.cap = 2 * c.cap + 1024
    c.data[c.n] = value
    c.n += 1
    return 0


cdef object _codes_array(_Codes* c):
    cdef cnp.ndarray[cnp.int32_t, ndim=1] out = np.empty(c.n, dtype=np.int32)
    if c.n:
        memcpy(<void*>out.data, c.data, c.n * sizeof(int))
    return out


def parse_tsv(bytes data):
    """Fast path of mtlfast.data.io.parse_tsv on raw UTF-8 bytes.

    Returns ``(tokens, tags, 0)`` for a well-formed file, or ``(None, None, line)`` at the first line it does
    not accept (a malformed line, bytes that are not UTF-8, a blank line holding non-ASCII spaces): the caller
    then runs the pure-Python parser, which raises the documented error (or accepts the odd-but-valid line),
    so both paths give identical results. Equal fields share one ``str`` object (a per-file pool keyed by
    their bytes): less memory, and ``factorize`` then finds repeats by identity.
    """
    return parse_tsv_coded(data)[:3]


def parse_tsv_coded(bytes data):
    """:func:`parse_tsv` plus, for a well-formed file, the pools it made as a 4th element
    ``(token_pool, token_codes, tag_pool, tag_codes, token_text)``: the distinct token (tag) objects in order of
    first occurrence; for every token (tag) of the file, in order, its position in that pool (int32); and the
    lower-cased UTF-8 text of the token pool, each entry followed by a newline (``"".join(s.lower() + "\\n"
    for s in token_pool).encode()``). Fields whose bytes differ but whose stripped text is equal (``" a"`` and ``"a"``)
    are distinct pool entries. ``None`` in 4th place when the file is handed over."""
    cdef _SpanTable tok_table, tag_table
    cdef _Codes tok_codes, tag_codes
    cdef _Text tok_text
    cdef list tok_pool = [], tag_pool = []
    tok_text.data = NULL
    tok_text.n = tok_text.cap = 0
    tok_codes.data = NULL
    tok_codes.n = tok_codes.cap = 0
    tag_codes.data = NULL
    tag_codes.n = tag_codes.cap = 0
    _span_init(&tok_table, 4096)
    try:
        _span_init(&tag_table, 256)
    except MemoryError:
        _span_free(&tok_table)
        raise
    try:
        tokens, tags, bad = _parse_tsv(data, &tok_table, tok_pool, &tok_codes, &tok_text, &tag_table, tag_pool,
                                       &tag_codes)
        if tokens is None:
            return None, None, bad, None
        return tokens, tags, 0, (tok_pool, _codes_array(&tok_codes), tag_pool, _codes_array(&tag_codes),
                                 PyBytes_FromStringAndSize(tok_text.data, tok_text.n))
    finally:
        _span_free(&tok_table)
        _span_free(&tag_table)
        free(tok_codes.data)
        free(tag_codes.data)
        free(tok_text.data)


cdef tuple _parse_tsv(bytes data, _SpanTable* tok_table, list tok_pool, _Codes* tok_codes, _Text* tok_text,
                       _SpanTable* tag_table, list tag_pool, _Codes* tag_codes):
    cdef const char* p = data
    cdef Py_ssize_t n = len(data)
    cdef Py_ssize_t pos = 0, eol, line_end, tab, k
    cdef Py_ssize_t lineno = 0
    cdef const char* hit
    cdef bint blank
    cdef list tokens = [], tags = [], cur_tok = [], cur_tag = []
    cdef object tok, tag
    cdef int code = 0
    if n >= 3 and <unsigned char>p[0] == 0xEF and <unsigned char>p[1] == 0xBB and <unsigned char>p[2] == 0xBF:
        pos = 3
    while pos < n:
        lineno += 1
        hit = <const char*>memchr(p + pos, 10, n - pos)
        eol = (hit - p) if hit != NULL else n
        line_end = eol
        if line_end > pos and p[line_end - 1] == 13:
            line_end -= 1
        hit = <const char*>memchr(p + pos, 9, line_end - pos)
        if hit == NULL:
            blank = True
            for k in range(pos, line_end):
                if not _is_space(<unsigned char>p[k]):
                    blank = False
                    break
            if not blank:
                return None, None, lineno
            if cur_tok:
                tokens.append(cur_tok)
                tags.append(cur_tag)
                cur_tok = []
                cur_tag = []
        else:
            tab = hit - p
            if memchr(p + tab + 1, 9, line_end - tab - 1) != NULL:
                return None, None, lineno
            try:
                tok = _span_str(tok_table, tok_pool, p, pos, tab, &code, tok_text)
                _codes_push(tok_codes, code)
                tag = _span_str(tag_table, tag_pool, p, tab + 1, line_end, &code, NULL)
                _codes_push(tag_codes, code)
            except UnicodeDecodeError:
                return None, None, lineno
            if not tok or not tag:
                return None, None, lineno
            cur_tok.append(tok)
            cur_tag.append(tag)
        pos = eol + 1
    if cur_tok:
        tokens.append(cur_tok)
        tags.append(cur_tag)
    return tokens, tags, 0


def check_pool_codes(list sentences, list pool, const cnp.int32_t[::1] codes):
    """Sentence offsets (int64 [n + 1]) of ``sentences`` (a list of lists) when its items, in order, are
    exactly the objects ``pool[codes[0]], pool[codes[1]], ...`` (identity, every code used); None otherwise.

    This is how a user of ``parse_tsv_coded``'s pools checks that a split still holds what was parsed: the pool
    keeps its objects alive, so an item that *is* ``pool[c]`` is that very string. One pass of pointer
    comparisons; the lists are not changed.
    """
    cdef Py_ssize_t n_sent = PyList_GET_SIZE(sentences)
    cdef Py_ssize_t n = codes.shape[0]
    cdef Py_ssize_t n_pool = PyList_GET_SIZE(pool)
    cdef cnp.ndarray[cnp.int64_t, ndim=1] offsets_arr = np.empty(n_sent + 1, dtype=np.int64)
    cdef cnp.int64_t[::1] offsets = offsets_arr
    cdef Py_ssize_t i, j, m, k = 0
    cdef int c
    cdef PyObject* item
    offsets[0] = 0
    for i in range(n_sent):
        # Every sentence is its own list object with its own item array: fetch them ahead (the header 8
        # sentences ahead, the item array 4 ahead), so that the walk is not one cache miss after another.
        if i + 8 < n_sent:
            __builtin_prefetch(PyList_GET_ITEM(sentences, i + 8))
        if i + 4 < n_sent and PyList_CheckExact(<object>PyList_GET_ITEM(sentences, i + 4)):
            __builtin_prefetch((<PyListObject*>PyList_GET_ITEM(sentences, i + 4)).ob_item)
        item = PyList_GET_ITEM(sentences, i)
        if not PyList_CheckExact(<object>item):
            return None
        m = PyList_GET_SIZE(<object>item)
        if k + m > n:
            return None
        for j in range(m):
            c = codes[k]
            if c < 0 or c >= n_pool or PyList_GET_ITEM(<object>item, j) != PyList_GET_ITEM(pool, c):
                return None
            k += 1
        offsets[i + 1] = k
    if k != n:
        return None
    return offsets_arr


# --- identity cache: PyObject* -> code, an open-addressing table local to one call -----------------------

cdef struct _PtrEntry:
    uintptr_t key  # 0 = empty slot
    int val


cdef struct _PtrTable:
    _PtrEntry* slots
    Py_ssize_t mask
    Py_ssize_t used
    int shift  # 64 - log2(capacity)


cdef inline Py_ssize_t _ptr_slot(uintptr_t key, int shift) noexcept nogil:
    # Fibonacci hashing of the address (whose low 4 bits are always 0): the top bits of the product
    return <Py_ssize_t>(((<uint64_t>key >> 4) * <uint64_t>0x9E3779B97F4A7C15ULL) >> shift)


cdef int _ptr_init(_PtrTable* t, Py_ssize_t capacity) except -1:
    t.slots = <_PtrEntry*>calloc(capacity, sizeof(_PtrEntry))
    if t.slots == NULL:
        raise MemoryError()
    t.mask = capacity - 1
    t.used = 0
    t.shift = 64
    while capacity > 1:
        capacity >>= 1
        t.shift -= 1
    return 0


cdef void _ptr_free(_PtrTable* t) noexcept:
    free(t.slots)
    t.slots = NULL


cdef int _ptr_grow(_PtrTable* t) except -1:
    cdef _PtrTable bigger
    cdef Py_ssize_t i, s
    _ptr_init(&bigger, 2 * (t.mask + 1))
    for i in range(t.mask + 1):
        if t.slots[i].key != 0:
            s = _ptr_slot(t.slots[i].key, bigger.shift)
            while bigger.slots[s].key != 0:
                s = (s + 1) & bigger.mask
            bigger.slots[s] = t.slots[i]
    bigger.used = t.used
    _ptr_free(t)
    t[0] = bigger
    return 0


def factorize(list sentences, dict index):
    """Codes of the strings of ``sentences`` (a list of lists) in ``index`` (string -> code), adding unseen
    strings with the next code (``len(index)``), in order of first occurrence.

    Returns ``(codes int32 [N], offsets int64 [n + 1])``; ``index`` is updated in place.

    Each distinct *object* is looked up in ``index`` once; its repeats are found by identity in a pointer
    table local to the call (the lists keep every object alive, so an address cannot be reused meanwhile,
    and equal objects get equal codes through ``index``). Loaded tasks share one ``str`` per distinct token
    (see ``parse_tsv``), so most tokens never reach the dict. Only exact ``str`` items are taken (anything
    else raises TypeError, possibly after ``index`` received some strings, in first-occurrence order: the
    caller's pure-Python rerun over the same index then gives the same codes).
    """
    cdef Py_ssize_t n_sent = PyList_GET_SIZE(sentences)
    cdef cnp.ndarray[cnp.int64_t, ndim=1] offsets_arr = np.empty(n_sent + 1, dtype=np.int64)
    cdef cnp.int64_t[::1] offsets = offsets_arr
    cdef Py_ssize_t i, j, total = 0, m, s
    cdef list sent
    offsets[0] = 0
    cdef object item
    for i in range(n_sent):
        item = <object>PyList_GET_ITEM(sentences, i)
        if type(item) is not list:
            raise TypeError(f"factorize: sentence {i} is a {type(item).__name__}, expected a list")
        sent = <list>item
        total += PyList_GET_SIZE(sent)
        offsets[i + 1] = total
    cdef cnp.ndarray[cnp.int32_t, ndim=1] codes_arr = np.empty(total, dtype=np.int32)
    cdef cnp.int32_t[::1] codes = codes_arr
    cdef Py_ssize_t k = 0
    cdef object w
    cdef PyObject* wp
    cdef PyObject* hit
    cdef uintptr_t key
    cdef int code
    cdef int next_code = len(index)
    cdef _PtrTable table
    _ptr_init(&table, 1024)
    try:
        for i in range(n_sent):
            sent = <list>PyList_GET_ITEM(sentences, i)
            m = PyList_GET_SIZE(sent)
            for j in range(m):
                wp = PyList_GET_ITEM(sent, j)
                key = <uintptr_t>wp
                s = _ptr_slot(key, table.shift)
                while table.slots[s].key != 0 and table.slots[s].key != key:
                    s = (s + 1) & table.mask
                if table.slots[s].key == key:
                    codes[k] = table.slots[s].val
                    k += 1
                    continue
                w = <object>wp
                if not PyUnicode_CheckExact(w):
                    raise TypeError(f"factorize: sentence {i} item {j} is a {type(w).__name__}, expected a str")
                hit = PyDict_GetItem(index, w)
                if hit != NULL:
                    code = <int><object>hit
                else:
                    code = next_code
                    PyDict_SetItem(index, w, code)
                    next_code += 1
                table.slots[s].key = key
                table.slots[s].val = code
                table.used += 1
                if 2 * table.used > table.mask + 1:
                    _ptr_grow(&table)
                codes[k] = code
                k += 1
    finally:
        _ptr_free(&table)
    return codes_arr, offsets_arr


cdef inline bint _is_plain_number_char(unsigned char c) nogil:
    return (48 <= c <= 57) or c == 43 or c == 45 or c == 46 or c == 69 or c == 101  # 0-9 + - . E e


def parse_floats(bytes buf, Py_ssize_t count):
    """float32 array of ``count`` space-separated decimal numbers in ``buf`` (parsed as double, then rounded
    to float32, as NumPy's conversion of Python floats does), or ``None`` when ``buf`` holds anything else
    (another count, a non-decimal spelling such as ``nan``/``0x1p3``/``1_0``): the caller then parses it in
    Python, so both paths give identical numbers and the same errors."""
    cdef const char* p = buf
    cdef Py_ssize_t n = len(buf)
    cdef Py_ssize_t i = 0, k = 0, start
    cdef char* end
    cdef double value
    cdef cnp.ndarray[cnp.float32_t, ndim=1] out_arr = np.empty(count, dtype=np.float32)
    cdef cnp.float32_t[::1] out = out_arr
    cdef bint ok = True
    with nogil:
        while True:
            while i < n and (p[i] == 32 or p[i] == 10 or p[i] == 9 or p[i] == 13):
                i += 1
            if i >= n:
                break
            start = i
            while i < n and _is_plain_number_char(<unsigned char>p[i]):
                i += 1
            if i == start or (i < n and not (p[i] == 32 or p[i] == 10 or p[i] == 9 or p[i] == 13)) or k >= count:
                ok = False
                break
            value = strtod(p + start, &end)
            if end != p + i:
                ok = False
                break
            out[k] = <cnp.float32_t>value
            k += 1
    if not ok or k != count:
        return None
    return out_arr


def frame_sentences(const cnp.int32_t[::1] ids, const cnp.int64_t[::1] offsets, int go, int eos):
    """(ids int32 [N + 2n], offsets int64 [n + 1]): every sentence of the flat split as ``go ids eos``."""
    cdef Py_ssize_t n = offsets.shape[0] - 1
    cdef Py_ssize_t N = ids.shape[0]
    cdef cnp.ndarray[cnp.int32_t, ndim=1] out_arr = np.empty(N + 2 * n, dtype=np.int32)
    cdef cnp.ndarray[cnp.int64_t, ndim=1] off_arr = np.empty(n + 1, dtype=np.int64)
    cdef cnp.int32_t[::1] out = out_arr
    cdef cnp.int64_t[::1] off = off_arr
    cdef Py_ssize_t i, j, w
    if n < 0 or (n >= 0 and offsets[n] != N):
        raise ValueError(f"frame_sentences: offsets end at {offsets[n] if n >= 0 else None}, ids hold {N}")
    with nogil:
        w = 0
        for i in range(n):
            off[i] = w
            out[w] = go
            w += 1
            for j in range(offsets[i], offsets[i + 1]):
                out[w] = ids[j]
                w += 1
            out[w] = eos
            w += 1
        off[n] = w
    return out_arr, off_arr


def sparse_adadelta_occurrences(cnp.float32_t[:, ::1] var, cnp.float32_t[:, ::1] accum,
                                cnp.float32_t[:, ::1] accum_update, const cnp.int64_t[::1] rows,
                                const cnp.float32_t[:, ::1] grad, float lr, float rho, float eps):
    """TensorFlow's SparseApplyAdadelta, in place: for i = 0..N-1 in order (rows[i] < 0 skipped),
    with r = rows[i], g = grad[i]: accum[r] = rho accum[r] + (1 - rho) g^2;
    u = sqrt(accum_update[r] + eps) / sqrt(accum[r] + eps) g; accum_update[r] = rho accum_update[r] +
    (1 - rho) u^2; var[r] -= lr u. A row that occurs several times is updated once per occurrence."""
    cdef Py_ssize_t N = rows.shape[0]
    cdef Py_ssize_t E = var.shape[1]
    cdef Py_ssize_t V = var.shape[0]
    cdef Py_ssize_t i, e, r
    if grad.shape[0] != N or grad.shape[1] != E or accum.shape[0] != V or accum_update.shape[0] != V \
            or accum.shape[1] != E or accum_update.shape[1] != E:
        raise ValueError("sparse_adadelta_occurrences: shapes of var/accum/accum_update/rows/grad disagree")
    for i in range(N):
        if rows[i] >= V:
            raise IndexError(f"sparse_adadelta_occurrences: row {rows[i]} out of range [0, {V})")
    if N == 0 or E == 0:
        return
    with nogil:
        for i in range(N):
            r = rows[i]
            if r < 0:
                continue
            mtl_tf_adadelta_row(&var[r, 0], &accum[r, 0], &accum_update[r, 0], &grad[i, 0], E, lr, rho, eps)
