/* Mapped inputs without SIGBUS: a fault on a watched read-only mapping of an input file (the file
 * was shortened by another process, as logrotate's copytruncate does) gets a page of zeros mapped
 * where the file's page was, and the watch counts it, instead of killing the process. The
 * reader then finds the count changed, or the file's size, and refuses the input in one line.
 * Faults elsewhere go to the handler that was there before, as if this one were not.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLOTS 256

/* Watched ranges [lo, hi); lo == 0 marks a free slot. Written with the GIL held, read by the handler. */
static struct {
    volatile uintptr_t lo, hi;
    volatile sig_atomic_t faults;
} slots[SLOTS];

static struct sigaction previous;
static int installed;
static uintptr_t page;

static void on_bus(int sig, siginfo_t *info, void *context) {
    uintptr_t at = (uintptr_t)info->si_addr;
    if (info->si_code == BUS_ADRERR) {
        for (int i = 0; i < SLOTS; i++) {
            uintptr_t lo = slots[i].lo;
            if (lo != 0 && at >= lo && at < slots[i].hi) {
                void *start = (void *)(at & ~(page - 1));
                if (mmap(start, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
                    slots[i].faults++;
                    return; /* the read is made again, of zeros */
                }
                break;
            }
        }
    }
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, context);
        return;
    }
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    /* The default action: a fault made again on return, or a signal sent, ends the process as before. */
    signal(SIGBUS, SIG_DFL);
    if (info->si_code <= 0)
        raise(SIGBUS);
}

static int install(void) {
    if (installed)
        return 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_bus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, &previous) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    installed = 1;
    return 0;
}

/* watch(buffer) -> slot: faults on buffer's pages become zeros, counted in the slot; -1 if the
 * buffer is empty or every slot is taken (then nothing is watched). */
static PyObject *py_watch(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view))
        return NULL;
    uintptr_t lo = (uintptr_t)view.buf, hi = lo + (uintptr_t)view.len;
    PyBuffer_Release(&view);
    if (install() < 0)
        return NULL;
    if (lo == 0 || hi == lo)
        return PyLong_FromLong(-1);
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].lo == 0) {
            slots[i].faults = 0;
            slots[i].hi = hi;
            __atomic_store_n(&slots[i].lo, lo, __ATOMIC_SEQ_CST);
            return PyLong_FromLong(i);
        }
    }
    return PyLong_FromLong(-1); /* all slots taken: not watched */
}

static int get_slot(PyObject *args, int *slot) {
    if (!PyArg_ParseTuple(args, "i", slot))
        return -1;
    if (*slot < -1 || *slot >= SLOTS) {
        PyErr_SetString(PyExc_ValueError, "no such slot");
        return -1;
    }
    return 0;
}

/* faults(slot) -> n: pages of the watched range that faulted and were replaced by zeros. */
static PyObject *py_faults(PyObject *self, PyObject *args) {
    int slot;
    if (get_slot(args, &slot) < 0)
        return NULL;
    return PyLong_FromLong(slot < 0 ? 0 : (long)slots[slot].faults);
}

/* unwatch(slot): stop watching (before the range is unmapped). */
static PyObject *py_unwatch(PyObject *self, PyObject *args) {
    int slot;
    if (get_slot(args, &slot) < 0)
        return NULL;
    if (slot >= 0)
        __atomic_store_n(&slots[slot].lo, 0, __ATOMIC_SEQ_CST);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"watch", py_watch, METH_VARARGS, "Have faults on buffer's pages read zeros and be counted; return the watch's slot."},
    {"faults", py_faults, METH_VARARGS, "Pages of a watched range that faulted."},
    {"unwatch", py_unwatch, METH_VARARGS, "Stop watching a slot's range."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mapguard", NULL, -1, methods};

PyMODINIT_FUNC PyInit__mapguard(void) {
    page = (uintptr_t)sysconf(_SC_PAGESIZE);
    return PyModule_Create(&module);
}
