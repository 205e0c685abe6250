/* The record hash of core/fingerprint.py, compiled: the same values as its NumPy code, at several
 * GB/s a core instead of a few hundred MB/s, with the GIL released so worker threads hash at once.
 *
 * A record's hash: the wrapping sum over its 8-byte little-endian words (the last zero-filled) of
 * mix(word ^ key[k]), k the word's index and key[k] = mix((k + 1) * GOLD); that sum XOR
 * mix(length * GOLD + SALT), mixed once more. mix is splitmix64's finaliser.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define M1 0xBF58476D1CE4E5B9ULL
#define M2 0x94D049BB133111EBULL
#define GOLD 0x9E3779B97F4A7C15ULL
#define SALT 0x243F6A8885A308D3ULL
/* Keys kept in a table (32 KiB); longer records compute the rest as they go. */
#define TABLE_KEYS 4096

static uint64_t keys[TABLE_KEYS];

static inline uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= M1;
    x ^= x >> 27;
    x *= M2;
    return x ^ (x >> 31);
}

static inline uint64_t load_le(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static inline uint64_t key_of(size_t k) {
    return k < TABLE_KEYS ? keys[k] : mix((uint64_t)(k + 1) * GOLD);
}

static uint64_t record_hash(const unsigned char *p, size_t len) {
    uint64_t sum = 0;
    size_t whole = len / 8, k = 0;
    size_t fast = whole < TABLE_KEYS ? whole : TABLE_KEYS;
    for (; k < fast; k++)
        sum += mix(load_le(p + 8 * k) ^ keys[k]);
    for (; k < whole; k++)
        sum += mix(load_le(p + 8 * k) ^ key_of(k));
    size_t rest = len - 8 * whole;
    if (rest) {
        unsigned char tail[8] = {0};
        memcpy(tail, p + 8 * whole, rest);
        sum += mix(load_le(tail) ^ key_of(whole));
    }
    return mix(sum ^ mix((uint64_t)len * GOLD + SALT));
}

/* The offsets as int64, checked: nondecreasing and within the block (never read past it). */
static int check_offsets(const int64_t *off, Py_ssize_t n, Py_ssize_t size) {
    if (n == 0)
        return 0;
    if (off[0] < 0 || off[n - 1] > size)
        goto bad;
    for (Py_ssize_t i = 1; i < n; i++)
        if (off[i] < off[i - 1])
            goto bad;
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "offsets must be nondecreasing and within the block");
    return -1;
}

static int get_int64s(PyObject *obj, Py_buffer *view, int flags) {
    if (PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *f = view->format ? view->format : "q";
    if (*f == '@' || *f == '=')
        f++;
    if (view->itemsize != 8 || f[0] == '\0' || f[1] != '\0' || strchr("qlQL", f[0]) == NULL) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "expected a contiguous buffer of 64-bit integers");
        return -1;
    }
    return 0;
}

/* hash_records(block, offsets, out) -> the wrapping sum of the hashes of the records
 * block[offsets[i]:offsets[i+1]]; each hash is also stored in out[i] unless out is None. */
static PyObject *py_hash_records(PyObject *self, PyObject *args) {
    PyObject *b, *o, *r;
    Py_buffer block, off, out = {0};
    if (!PyArg_ParseTuple(args, "OOO", &b, &o, &r))
        return NULL;
    if (PyObject_GetBuffer(b, &block, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (get_int64s(o, &off, 0) < 0) {
        PyBuffer_Release(&block);
        return NULL;
    }
    if (r != Py_None && get_int64s(r, &out, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&block);
        PyBuffer_Release(&off);
        return NULL;
    }
    Py_ssize_t n = off.len / 8;
    const int64_t *offsets = off.buf;
    uint64_t *hashes = out.buf;
    PyObject *result = NULL;
    if (hashes != NULL && out.len / 8 != (n > 0 ? n - 1 : 0)) {
        PyErr_SetString(PyExc_ValueError, "out must hold one hash per record");
    } else if (check_offsets(offsets, n, block.len) == 0) {
        const unsigned char *data = block.buf;
        uint64_t sum = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i + 1 < n; i++) {
            uint64_t h = record_hash(data + offsets[i], (size_t)(offsets[i + 1] - offsets[i]));
            sum += h;
            if (hashes != NULL)
                hashes[i] = h;
        }
        Py_END_ALLOW_THREADS
        result = PyLong_FromUnsignedLongLong(sum);
    }
    PyBuffer_Release(&block);
    PyBuffer_Release(&off);
    if (r != Py_None)
        PyBuffer_Release(&out);
    return result;
}

/* separated_sum(block, sep, group) -> (records, bytes, digest): the records of block that end at
 * every group-th byte sep, found and hashed in one pass; bytes after the last record are left. */
static PyObject *py_separated_sum(PyObject *self, PyObject *args) {
    PyObject *b;
    int sep;
    Py_ssize_t group;
    Py_buffer block;
    if (!PyArg_ParseTuple(args, "Oin", &b, &sep, &group))
        return NULL;
    if (group < 1 || sep < 0 || sep > 255) {
        PyErr_SetString(PyExc_ValueError, "group must be at least 1 and sep a byte");
        return NULL;
    }
    if (PyObject_GetBuffer(b, &block, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    const unsigned char *data = block.buf, *end = data + block.len;
    uint64_t sum = 0;
    unsigned long long records = 0, bytes = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *start = data, *p = data;
    Py_ssize_t seen = 0;
    while (p < end) {
        const unsigned char *hit = memchr(p, sep, (size_t)(end - p));
        if (hit == NULL)
            break;
        p = hit + 1;
        if (++seen == group) {
            sum += record_hash(start, (size_t)(p - start));
            records++;
            bytes += (unsigned long long)(p - start);
            start = p;
            seen = 0;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&block);
    return Py_BuildValue("KKK", records, bytes, (unsigned long long)sum);
}

static PyMethodDef methods[] = {
    {"hash_records", py_hash_records, METH_VARARGS, "The records' hash sum; each hash into out unless None."},
    {"separated_sum", py_separated_sum, METH_VARARGS, "Records, bytes and hash sum of separated records."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hashing", NULL, -1, methods};

PyMODINIT_FUNC PyInit__hashing(void) {
    for (size_t k = 0; k < TABLE_KEYS; k++)
        keys[k] = mix((uint64_t)(k + 1) * GOLD);
    return PyModule_Create(&module);
}
