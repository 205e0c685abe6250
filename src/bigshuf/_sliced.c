/* Loops of short system calls, compiled, with the GIL released once for the whole loop: the sliced
 * writes of storage/sliced.py, and the reads of a bucket's parts in its group file
 * (core/bucket_groups.py). In Python each call took the interpreter lock back from the threads
 * gathering and scattering (32k times a GiB of writes, 64k reads of 16 KiB parts), and the thread
 * making the calls waited for it; here it goes on while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* write_sliced(fd, data, slice, first) -> n: write data to fd in calls of at most slice bytes, the
 * first of at most first bytes and each later one ending at a multiple of slice past it (so the
 * calls end at the file's slice boundaries when first reaches the next one); return the bytes
 * written (fewer than given only if a call failed after some were written, or a signal came; the
 * next call reports the failure). */
static PyObject *py_write_sliced(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer data;
    Py_ssize_t slice, first;
    if (!PyArg_ParseTuple(args, "iy*nn", &fd, &data, &slice, &first))
        return NULL;
    if (slice <= 0 || first <= 0 || first > slice) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "slice must be positive and first within 1..slice");
        return NULL;
    }
    Py_ssize_t shift = slice - first; /* where data starts, within a slice */
    const char *p = data.buf;
    Py_ssize_t done = 0;
    int err = 0;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        while (done < data.len) {
            Py_ssize_t left = data.len - done, room = slice - (shift + done) % slice;
            ssize_t n = write(fd, p + done, (size_t)(left < room ? left : room));
            if (n < 0) {
                err = errno;
                break;
            }
            if (n == 0)
                break;
            done += n;
        }
        Py_END_ALLOW_THREADS
        if (err != EINTR || done > 0)
            break;
        /* Interrupted before writing anything: run the signal handlers (Ctrl-C raises), then retry. */
        if (PyErr_CheckSignals() < 0) {
            PyBuffer_Release(&data);
            return NULL;
        }
        err = 0;
    }
    PyBuffer_Release(&data);
    if (err != 0 && done == 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromSsize_t(done);
}

/* read_parts(fd, out, offsets, lengths) -> n: read lengths[i] bytes of fd at offsets[i] (int64
 * arrays of one length) into out, one part after the other from its start; return the bytes read
 * (fewer than the lengths' sum only at the file's end). Interrupted calls are retried. */
static PyObject *py_read_parts(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer out, offsets, lengths;
    if (!PyArg_ParseTuple(args, "iw*y*y*", &fd, &out, &offsets, &lengths))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t parts = offsets.len / (Py_ssize_t)sizeof(int64_t);
    if (offsets.len != lengths.len || offsets.len % (Py_ssize_t)sizeof(int64_t) != 0) {
        PyErr_SetString(PyExc_ValueError, "offsets and lengths must be int64 arrays of one length");
        goto done;
    }
    /* The caller's int64 arrays; read with memcpy, as a buffer need not be aligned. */
    const char *at = offsets.buf, *len = lengths.buf;
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < parts; i++) {
        int64_t offset, left;
        memcpy(&offset, at + i * sizeof(int64_t), sizeof(int64_t));
        memcpy(&left, len + i * sizeof(int64_t), sizeof(int64_t));
        if (offset < 0 || left < 0 || left > out.len - total) {
            PyErr_SetString(PyExc_ValueError, "a part is out of range or the parts do not fit in out");
            goto done;
        }
        total += (Py_ssize_t)left;
    }
    char *p = out.buf;
    Py_ssize_t got = 0;
    int err = 0, eof = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < parts && !err && !eof; i++) {
        int64_t offset, left;
        memcpy(&offset, at + i * sizeof(int64_t), sizeof(int64_t));
        memcpy(&left, len + i * sizeof(int64_t), sizeof(int64_t));
        while (left > 0) {
            ssize_t n = pread(fd, p + got, (size_t)left, (off_t)offset);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                err = errno;
                break;
            }
            if (n == 0) {
                eof = 1;
                break;
            }
            got += n, offset += n, left -= n;
        }
    }
    Py_END_ALLOW_THREADS
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = PyLong_FromSsize_t(got);
done:
    PyBuffer_Release(&out);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&lengths);
    return result;
}

static PyMethodDef methods[] = {
    {"write_sliced", py_write_sliced, METH_VARARGS, "Write data to fd in calls ending at slice boundaries (the first within first bytes); return the bytes written."},
    {"read_parts", py_read_parts, METH_VARARGS, "Read parts of fd at the offsets given into out, one after the other; return the bytes read."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sliced", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sliced(void) {
    return PyModule_Create(&module);
}
