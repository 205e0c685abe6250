/* Finding and gathering records, compiled: core/records.py's hot loops with the GIL released, so
 * worker threads run them at once. Same results as the NumPy and Arrow code they stand in for
 * (np.flatnonzero(block == sep) and pyarrow.compute.take over a binary array), with no temporary
 * mask or hit list: memchr finds each separator, memcpy moves each record.
 *
 * Every offset and index is checked before it is used, so bad arguments raise instead of reading
 * or writing outside a buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A contiguous buffer of 32- or 64-bit signed integers. */
typedef struct {
    Py_buffer view;
    int wide;
    Py_ssize_t n;
} ints;

static int get_ints(PyObject *obj, ints *a, int flags) {
    if (PyObject_GetBuffer(obj, &a->view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *f = a->view.format ? a->view.format : "B";
    if (*f == '@' || *f == '=')
        f++;
    Py_ssize_t size = a->view.itemsize;
    if ((size != 4 && size != 8) || f[0] == '\0' || f[1] != '\0' || strchr("ilq", f[0]) == NULL) {
        PyBuffer_Release(&a->view);
        PyErr_SetString(PyExc_TypeError, "expected a contiguous buffer of 32- or 64-bit signed integers");
        return -1;
    }
    a->wide = size == 8;
    a->n = a->view.len / size;
    return 0;
}

static inline int64_t get_at(const ints *a, Py_ssize_t i) {
    return a->wide ? ((const int64_t *)a->view.buf)[i] : ((const int32_t *)a->view.buf)[i];
}

static inline void set_at(ints *a, Py_ssize_t i, int64_t v) {
    if (a->wide)
        ((int64_t *)a->view.buf)[i] = v;
    else
        ((int32_t *)a->view.buf)[i] = (int32_t)v;
}

/* find_ends(block, sep, add, out) -> n: the positions of the first n bytes sep of block, each plus
 * add, stored in out (int64), as many as out holds. */
static PyObject *py_find_ends(PyObject *self, PyObject *args) {
    PyObject *b, *o;
    int sep;
    long long add;
    Py_buffer block;
    ints out;
    if (!PyArg_ParseTuple(args, "OiLO", &b, &sep, &add, &o))
        return NULL;
    if (sep < 0 || sep > 255) {
        PyErr_SetString(PyExc_ValueError, "sep must be a byte");
        return NULL;
    }
    if (PyObject_GetBuffer(b, &block, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (get_ints(o, &out, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&block);
        return NULL;
    }
    if (!out.wide) {
        PyBuffer_Release(&block);
        PyBuffer_Release(&out.view);
        PyErr_SetString(PyExc_TypeError, "out must hold 64-bit integers");
        return NULL;
    }
    const unsigned char *data = block.buf, *end = data + block.len, *p = data;
    int64_t *hits = out.view.buf;
    Py_ssize_t n = 0;
    Py_BEGIN_ALLOW_THREADS
    while (n < out.n && p < end) {
        const unsigned char *hit = memchr(p, sep, (size_t)(end - p));
        if (hit == NULL)
            break;
        hits[n++] = (int64_t)(hit - data) + add;
        p = hit + 1;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&block);
    PyBuffer_Release(&out.view);
    return PyLong_FromSsize_t(n);
}

/* How far ahead the loops prefetch: records are read in random order, each a cache miss. */
#define AHEAD 16

/* Record i's bounds [*lo, *hi) in a block of size bytes, checked: -1 if i or its offsets are bad. */
static inline int bounds(const ints *off, int64_t i, Py_ssize_t size, int64_t *lo, int64_t *hi) {
    if (i < 0 || i >= off->n - 1)
        return -1;
    *lo = get_at(off, (Py_ssize_t)i);
    *hi = get_at(off, (Py_ssize_t)i + 1);
    return (*lo < 0 || *hi < *lo || *hi > size) ? -1 : 0;
}

/* plan_gather(block, offsets, index, out_offsets, starts) -> total: for the records index lists,
 * in that order, their Arrow offsets in a new block (out_offsets, len(index) + 1 entries) and
 * where each starts in block (starts, int64), so that copying them reads each offset only once. */
static PyObject *py_plan_gather(PyObject *self, PyObject *args) {
    PyObject *b, *o, *x, *oo, *st;
    Py_buffer block;
    ints off, index, to, starts;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOOO", &b, &o, &x, &oo, &st))
        return NULL;
    if (PyObject_GetBuffer(b, &block, PyBUF_SIMPLE) < 0)
        return NULL;
    if (get_ints(o, &off, 0) < 0)
        goto no_off;
    if (get_ints(x, &index, 0) < 0)
        goto no_index;
    if (get_ints(oo, &to, PyBUF_WRITABLE) < 0)
        goto no_to;
    if (get_ints(st, &starts, PyBUF_WRITABLE) < 0)
        goto no_starts;
    const char *error = NULL;
    PyObject *error_type = PyExc_ValueError;
    int64_t total = 0, most = to.wide ? INT64_MAX : INT32_MAX;
    if (to.n != index.n + 1 || starts.n != index.n || !starts.wide) {
        error = "out_offsets must hold one entry more than index, starts (int64) as many";
    } else {
        Py_BEGIN_ALLOW_THREADS
        set_at(&to, 0, 0);
        for (Py_ssize_t i = 0; i < index.n; i++) {
            int64_t lo, hi;
            if (i + AHEAD < index.n) {
                int64_t j = get_at(&index, i + AHEAD);
                if (j >= 0 && j < off.n)
                    __builtin_prefetch(off.wide ? (const void *)((const int64_t *)off.view.buf + j) : (const void *)((const int32_t *)off.view.buf + j));
            }
            if (bounds(&off, get_at(&index, i), block.len, &lo, &hi) < 0) {
                error = "index or offsets out of range";
                break;
            }
            if (hi - lo > most - total) {
                error = "records too large for out_offsets";
                error_type = PyExc_OverflowError;
                break;
            }
            total += hi - lo;
            set_at(&to, i + 1, total);
            set_at(&starts, i, lo);
        }
        Py_END_ALLOW_THREADS
    }
    if (error != NULL)
        PyErr_SetString(error_type, error);
    else
        result = PyLong_FromLongLong(total);
    PyBuffer_Release(&starts.view);
no_starts:
    PyBuffer_Release(&to.view);
no_to:
    PyBuffer_Release(&index.view);
no_index:
    PyBuffer_Release(&off.view);
no_off:
    PyBuffer_Release(&block);
    return result;
}

/* copy_gather(block, starts, out_offsets, out) -> total: record i, of out_offsets[i + 1] -
 * out_offsets[i] bytes from block[starts[i]:], copied to out[out_offsets[i]:]. */
static PyObject *py_copy_gather(PyObject *self, PyObject *args) {
    PyObject *b, *st, *oo, *d;
    Py_buffer block, out;
    ints starts, to;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOO", &b, &st, &oo, &d))
        return NULL;
    if (PyObject_GetBuffer(b, &block, PyBUF_SIMPLE) < 0)
        return NULL;
    if (get_ints(st, &starts, 0) < 0)
        goto no_starts;
    if (get_ints(oo, &to, 0) < 0)
        goto no_to;
    if (PyObject_GetBuffer(d, &out, PyBUF_WRITABLE) < 0)
        goto no_out;
    const char *error = NULL;
    int64_t total = 0;
    if (to.n != starts.n + 1) {
        error = "out_offsets must hold one entry more than starts";
    } else {
        const unsigned char *src = block.buf;
        unsigned char *dst = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < starts.n; i++) {
            int64_t lo = get_at(&starts, i), at = get_at(&to, i), end = get_at(&to, i + 1);
            if (i + AHEAD < starts.n) {
                int64_t ahead = get_at(&starts, i + AHEAD);
                if (ahead >= 0 && ahead < block.len)
                    __builtin_prefetch(src + ahead);
            }
            /* Checked before any subtraction, so no value given can overflow one. */
            if (lo < 0 || at < 0 || end < at || end > out.len || lo > block.len - (end - at)) {
                error = "starts or out_offsets out of range";
                break;
            }
            int64_t len = end - at;
            memcpy(dst + at, src + lo, (size_t)len);
            total += len;
        }
        Py_END_ALLOW_THREADS
    }
    if (error != NULL)
        PyErr_SetString(PyExc_ValueError, error);
    else
        result = PyLong_FromLongLong(total);
    PyBuffer_Release(&out);
no_out:
    PyBuffer_Release(&to.view);
no_to:
    PyBuffer_Release(&starts.view);
no_starts:
    PyBuffer_Release(&block);
    return result;
}

static PyMethodDef methods[] = {
    {"find_ends", py_find_ends, METH_VARARGS, "Positions (plus add) of the separators of block, as many as out holds."},
    {"plan_gather", py_plan_gather, METH_VARARGS, "The new Arrow offsets of the records index lists, and where each starts."},
    {"copy_gather", py_copy_gather, METH_VARARGS, "Records copied from their starts to their new offsets."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_records", NULL, -1, methods};

PyMODINIT_FUNC PyInit__records(void) {
    return PyModule_Create(&module);
}
