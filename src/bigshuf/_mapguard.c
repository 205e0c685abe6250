/* Mapped inputs without SIGBUS: a fault on a watched read-only mapping of an input file (the file
 * was shortened by another process, as logrotate's copytruncate does) gets zeros mapped
 * from that page to the watched range's end, and the watch counts it, instead of killing the
 * process. The reader then finds the count changed and refuses the input in one line.
 * Faults elsewhere go to the handler that was there before, as if this one were not.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
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
    int saved_errno = errno;
    uintptr_t at = (uintptr_t)info->si_addr, end = 0;
    int found = 0;
    if (info->si_code == BUS_ADRERR) {
        /* Every watch holding the address counts it (a slot reused meanwhile is skipped); the
         * zeros reach the nearest watched end, so the mapping is split once, not once per page. */
        for (int i = 0; i < SLOTS; i++) {
            uintptr_t lo = slots[i].lo, hi = slots[i].hi;
            if (lo != 0 && at >= lo && at < hi && slots[i].lo == lo) {
                end = found && end < hi ? end : hi;
                found = 1;
            }
        }
    }
    if (found) {
        uintptr_t start = at & ~(page - 1);
        end = (end + page - 1) & ~(page - 1);
        if (mmap((void *)start, end - start, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
            for (int i = 0; i < SLOTS; i++) {
                uintptr_t lo = slots[i].lo;
                if (lo != 0 && at >= lo && at < slots[i].hi)
                    slots[i].faults++;
            }
            errno = saved_errno;
            return; /* the read is made again, of zeros */
        }
    }
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, context);
    } else if (previous.sa_handler == SIG_IGN) {
        if (info->si_code <= 0 || info->si_code == BUS_MCEERR_AO)
            ; /* a signal sent, or a memory error reported ahead: ignored, as asked */
        else
            signal(SIGBUS, SIG_DFL); /* a fault cannot be ignored: made again on return, it ends the process */
    } else if (previous.sa_handler != SIG_DFL) {
        previous.sa_handler(sig);
    } else {
        /* The default action: a fault made again on return, or a signal sent or reported ahead,
         * ends the process as it would have. */
        signal(SIGBUS, SIG_DFL);
        if (info->si_code <= 0 || info->si_code == BUS_MCEERR_AO)
            raise(SIGBUS);
    }
    errno = saved_errno;
}

/* Make on_bus the SIGBUS handler the first time: 1 if it is the handler, 0 if another has
 * replaced it since (not taken back: that one may hand faults on to this one, and the two would
 * call each other), -1 on error. The one it replaces is called for the faults it does not take. */
static int install(void) {
    struct sigaction action, current;
    if (sigaction(SIGBUS, NULL, &current) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_bus)
        return 1;
    if (installed)
        return 0;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_bus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, &previous) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    installed = 1;
    return 1;
}

/* watch(buffer) -> slot: faults on buffer's pages become zeros, counted in the slot; -1 if the
 * buffer is empty, every slot is taken or another SIGBUS handler has replaced this one (then
 * nothing is watched). */
static PyObject *py_watch(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view))
        return NULL;
    uintptr_t lo = (uintptr_t)view.buf, hi = lo + (uintptr_t)view.len;
    PyBuffer_Release(&view);
    int ours = install();
    if (ours < 0)
        return NULL;
    if (!ours || lo == 0 || hi == lo)
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
