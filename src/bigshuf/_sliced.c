/* Sliced writes, compiled: storage/sliced.py's loop of short write calls with the GIL released
 * once for the whole buffer. In Python each 32 KiB call took the interpreter lock back from the
 * threads gathering and scattering (32k times a GiB), and the one thread writing every bucket
 * and output waited for it; here it writes on while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
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

static PyMethodDef methods[] = {
    {"write_sliced", py_write_sliced, METH_VARARGS, "Write data to fd in calls ending at slice boundaries (the first within first bytes); return the bytes written."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sliced", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sliced(void) {
    return PyModule_Create(&module);
}
