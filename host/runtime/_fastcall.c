/* The per-callback path between Python and wasmtime, without ctypes.
 *
 * ctypes spends most of a guest call or host call converting arguments and building
 * frames (~1 us each way). This module keeps wasmtime-py for everything else and only
 * replaces the two hot crossings:
 *
 *   GuestCall   a prepared guest export: writes i32 arguments into a raw value array,
 *               gives a top-level call fresh fuel and a fresh epoch deadline, calls
 *               wasmtime_func_call_unchecked with the GIL released (the epoch ticker
 *               thread must keep running while a guest spins), returns the u32 result;
 *               optionally records (elapsed ns, fuel used) for the hook statistics.
 *   HostThunk   the env of an unchecked host function: the trampoline converts raw
 *               values to ints and calls one Python callable with vectorcall (and,
 *               only when it raises, an error handler).
 *
 * The wasmtime entry points are passed in as addresses resolved by ctypes from
 * wasmtime-py's own library, so nothing here links against libwasmtime.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef union {
    int32_t i32;
    int64_t i64;
    uint8_t bytes[16];
} val_raw;

typedef void *(*call_unchecked_fn)(void *ctx, const void *func, val_raw *args, size_t n, void **trap);
typedef void *(*set_fuel_fn)(void *ctx, uint64_t fuel);
typedef void (*set_deadline_fn)(void *ctx, uint64_t ticks);
typedef void *(*get_fuel_fn)(void *ctx, uint64_t *fuel);
typedef void *(*trap_new_fn)(const char *msg, size_t len);

#define MAX_PARAMS 16

/* ------------------------------------------------------------------ Sandbox */

/* What every call into one store shares: the context, the limits a top-level call
 * starts with, the nesting depth, and what to do when a call fails. */
typedef struct {
    PyObject_HEAD
    void *ctx;
    call_unchecked_fn call;
    set_fuel_fn set_fuel;
    set_deadline_fn set_deadline;
    get_fuel_fn get_fuel;
    uint64_t fuel;
    uint64_t ticks;
    uint64_t armed_ns; /* CLOCK_MONOTONIC when the current top-level call got its deadline */
    int depth;
    int closed;
    PyObject *on_failure; /* (name, trap_ptr, error_ptr) -> exception instance */
} Sandbox;

static int
Sandbox_init(Sandbox *self, PyObject *args, PyObject *kwds)
{
    unsigned long long ctx, call, set_fuel, set_deadline, get_fuel, fuel, ticks;
    PyObject *on_failure;
    static char *kwlist[] = {"ctx", "call", "set_fuel", "set_deadline", "get_fuel", "fuel", "ticks", "on_failure", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KKKKKKKO", kwlist, &ctx, &call, &set_fuel, &set_deadline,
                                     &get_fuel, &fuel, &ticks, &on_failure))
        return -1;
    if (!ctx || !call || !set_fuel || !set_deadline || !get_fuel) {
        PyErr_SetString(PyExc_ValueError, "null wasmtime pointer");
        return -1;
    }
    self->ctx = (void *)(uintptr_t)ctx;
    self->call = (call_unchecked_fn)(uintptr_t)call;
    self->set_fuel = (set_fuel_fn)(uintptr_t)set_fuel;
    self->set_deadline = (set_deadline_fn)(uintptr_t)set_deadline;
    self->get_fuel = (get_fuel_fn)(uintptr_t)get_fuel;
    self->fuel = fuel;
    self->ticks = ticks;
    self->armed_ns = 0;
    self->depth = 0;
    self->closed = 0;
    Py_XINCREF(on_failure);
    Py_XSETREF(self->on_failure, on_failure);
    return 0;
}

static int
Sandbox_traverse(Sandbox *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_failure);
    return 0;
}

static int
Sandbox_clear(Sandbox *self)
{
    Py_CLEAR(self->on_failure);
    return 0;
}

static void
Sandbox_dealloc(Sandbox *self)
{
    PyObject_GC_UnTrack(self);
    Sandbox_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Sandbox_close(Sandbox *self, PyObject *unused)
{
    self->closed = 1;
    Py_RETURN_NONE;
}

/* Fuel left in the current (or last) callback; what the hook stats record per call. */
static PyObject *
Sandbox_fuel_remaining(Sandbox *self, PyObject *unused)
{
    uint64_t fuel = 0;
    if (self->closed)
        return PyLong_FromLong(0);
    void *err = self->get_fuel(self->ctx, &fuel);
    if (err) {
        PyErr_SetString(PyExc_RuntimeError, "fuel is not enabled on this store");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(fuel);
}

static PyObject *
Sandbox_get_depth(Sandbox *self, void *unused)
{
    return PyLong_FromLong(self->depth);
}

/* armed_ns is read and moved by the host when a host call waits on a dependency: the
 * wait is not charged to the callback (WasmVM.outside_deadline). Same clock as Python's
 * time.monotonic_ns(). */
static PyObject *
Sandbox_get_armed_ns(Sandbox *self, void *unused)
{
    return PyLong_FromUnsignedLongLong(self->armed_ns);
}

static int
Sandbox_set_armed_ns(Sandbox *self, PyObject *value, void *unused)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "armed_ns cannot be deleted");
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(value);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    self->armed_ns = v;
    return 0;
}

static PyObject *
Sandbox_get_closed(Sandbox *self, void *unused)
{
    return PyBool_FromLong(self->closed);
}

static PyMethodDef Sandbox_methods[] = {
    {"close", (PyCFunction)Sandbox_close, METH_NOARGS, "Refuse every later call (the store is about to be freed)."},
    {"fuel_remaining", (PyCFunction)Sandbox_fuel_remaining, METH_NOARGS, "Fuel left in the store."},
    {NULL},
};

static PyGetSetDef Sandbox_getset[] = {
    {"depth", (getter)Sandbox_get_depth, NULL, "guest calls currently on the stack", NULL},
    {"closed", (getter)Sandbox_get_closed, NULL, "whether close() was called", NULL},
    {"armed_ns", (getter)Sandbox_get_armed_ns, (setter)Sandbox_set_armed_ns,
     "monotonic ns when the current top-level call's deadline started (moved by waits)", NULL},
    {NULL},
};

static PyTypeObject SandboxType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "routeiq.runtime._fastcall.Sandbox",
    .tp_basicsize = sizeof(Sandbox),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Sandbox_init,
    .tp_traverse = (traverseproc)Sandbox_traverse,
    .tp_clear = (inquiry)Sandbox_clear,
    .tp_dealloc = (destructor)Sandbox_dealloc,
    .tp_methods = Sandbox_methods,
    .tp_getset = Sandbox_getset,
};

/* ---------------------------------------------------------------- GuestCall */

typedef struct {
    PyObject_HEAD
    Sandbox *sandbox;
    PyObject *name;
    uint8_t func[32]; /* a copy of the wasmtime_func_t (store id + index) */
    int nparams;
    int nresults;
    size_t slots;
    val_raw raw[MAX_PARAMS];
    vectorcallfunc vectorcall;
    /* Hook statistics, when set (record_into): each successful top-level call appends
     * (elapsed ns, fuel used) to `samples` and calls `on_full` once it holds `fold_at`,
     * so the dispatch layer pays nothing per callback for its timing. */
    PyObject *samples;
    PyObject *on_full;
    Py_ssize_t fold_at;
} GuestCall;

/* Append one (elapsed ns, fuel used) sample; a failure here is reported, never raised
 * into the caller (the guest call itself succeeded). */
static void
record_sample(GuestCall *self, uint64_t elapsed_ns)
{
    Sandbox *sb = self->sandbox;
    uint64_t left = 0;
    if (sb->closed) /* the store may be gone: nothing to read */
        return;
    if (sb->get_fuel(sb->ctx, &left))
        left = sb->fuel;
    PyObject *sample = Py_BuildValue("(KK)", (unsigned long long)elapsed_ns, (unsigned long long)(sb->fuel - left));
    if (sample == NULL || PyList_Append(self->samples, sample) < 0) {
        Py_XDECREF(sample);
        PyErr_WriteUnraisable(self->name);
        return;
    }
    Py_DECREF(sample);
    if (self->on_full != NULL && PyList_GET_SIZE(self->samples) >= self->fold_at) {
        PyObject *r = PyObject_CallNoArgs(self->on_full);
        if (r == NULL)
            PyErr_WriteUnraisable(self->on_full);
        Py_XDECREF(r);
    }
}

static inline uint64_t
monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static PyObject *
raise_failure(GuestCall *self, void *trap, void *err)
{
    PyObject *exc = PyObject_CallFunction(self->sandbox->on_failure, "OKK", self->name,
                                          (unsigned long long)(uintptr_t)trap, (unsigned long long)(uintptr_t)err);
    if (exc == NULL)
        return NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *
GuestCall_vectorcall(GuestCall *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Sandbox *sb = self->sandbox;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "guest calls take positional arguments only");
        return NULL;
    }
    if (nargs != self->nparams) {
        PyErr_Format(PyExc_TypeError, "%U takes %d arguments (%zd given)", self->name, self->nparams, nargs);
        return NULL;
    }
    if (sb->closed) {
        return raise_failure(self, NULL, NULL);
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        unsigned long v = PyLong_AsUnsignedLongMask(args[i]);
        if (v == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
        self->raw[i].i64 = 0;
        self->raw[i].i32 = (int32_t)(uint32_t)v;
    }
    int top = sb->depth == 0;
    uint64_t began = 0;
    if (top) {
        void *err = sb->set_fuel(sb->ctx, sb->fuel);
        if (err)
            return raise_failure(self, NULL, err);
        sb->set_deadline(sb->ctx, sb->ticks);
        began = sb->armed_ns = monotonic_ns();
    }
    void *trap = NULL;
    void *err;
    sb->depth++;
    Py_BEGIN_ALLOW_THREADS
    err = sb->call(sb->ctx, self->func, self->raw, self->slots, &trap);
    Py_END_ALLOW_THREADS
    sb->depth--;
    if (trap || err)
        return raise_failure(self, trap, err);
    if (top && self->samples != NULL)
        record_sample(self, monotonic_ns() - began);
    if (self->nresults)
        return PyLong_FromUnsignedLong((uint32_t)self->raw[0].i32);
    Py_RETURN_NONE;
}

static int
GuestCall_init(GuestCall *self, PyObject *args, PyObject *kwds)
{
    Sandbox *sandbox;
    PyObject *name;
    const char *func;
    Py_ssize_t func_len;
    int nparams, nresults;
    static char *kwlist[] = {"sandbox", "name", "func", "nparams", "nresults", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!Uy#ii", kwlist, &SandboxType, &sandbox, &name, &func, &func_len,
                                     &nparams, &nresults))
        return -1;
    if (func_len <= 0 || (size_t)func_len > sizeof(self->func)) {
        PyErr_SetString(PyExc_ValueError, "func: the bytes of a wasmtime_func_t");
        return -1;
    }
    if (nparams < 0 || nparams > MAX_PARAMS || nresults < 0 || nresults > MAX_PARAMS) {
        PyErr_SetString(PyExc_ValueError, "unsupported guest function signature");
        return -1;
    }
    Py_INCREF(sandbox);
    Py_XSETREF(self->sandbox, sandbox);
    Py_INCREF(name);
    Py_XSETREF(self->name, name);
    memset(self->func, 0, sizeof(self->func));
    memcpy(self->func, func, (size_t)func_len);
    self->nparams = nparams;
    self->nresults = nresults;
    self->slots = (size_t)(nparams > nresults ? nparams : nresults);
    if (self->slots == 0)
        self->slots = 1;
    memset(self->raw, 0, sizeof(self->raw));
    self->vectorcall = (vectorcallfunc)GuestCall_vectorcall;
    return 0;
}

static int
GuestCall_traverse(GuestCall *self, visitproc visit, void *arg)
{
    Py_VISIT(self->sandbox);
    Py_VISIT(self->samples);
    Py_VISIT(self->on_full);
    return 0;
}

static int
GuestCall_clear(GuestCall *self)
{
    Py_CLEAR(self->sandbox);
    Py_CLEAR(self->samples);
    Py_CLEAR(self->on_full);
    return 0;
}

static PyObject *
GuestCall_record_into(GuestCall *self, PyObject *args)
{
    PyObject *samples, *on_full;
    Py_ssize_t fold_at;
    if (!PyArg_ParseTuple(args, "O!On", &PyList_Type, &samples, &on_full, &fold_at))
        return NULL;
    if (fold_at < 1) {
        PyErr_SetString(PyExc_ValueError, "fold_at must be positive");
        return NULL;
    }
    Py_INCREF(samples);
    Py_XSETREF(self->samples, samples);
    if (on_full == Py_None) {
        Py_CLEAR(self->on_full);
    } else {
        Py_INCREF(on_full);
        Py_XSETREF(self->on_full, on_full);
    }
    self->fold_at = fold_at;
    Py_RETURN_NONE;
}

static PyMethodDef GuestCall_methods[] = {
    {"record_into", (PyCFunction)GuestCall_record_into, METH_VARARGS,
     "record_into(samples: list, on_full: callable | None, fold_at: int): append (elapsed ns, fuel used) "
     "to samples after each successful top-level call; call on_full() once it holds fold_at."},
    {NULL},
};

static void
GuestCall_dealloc(GuestCall *self)
{
    PyObject_GC_UnTrack(self);
    GuestCall_clear(self);
    Py_CLEAR(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
GuestCall_get_name(GuestCall *self, void *unused)
{
    return Py_NewRef(self->name);
}

static PyObject *
GuestCall_get_param_count(GuestCall *self, void *unused)
{
    return PyLong_FromLong(self->nparams);
}

static PyGetSetDef GuestCall_getset[] = {
    {"name", (getter)GuestCall_get_name, NULL, "export name", NULL},
    {"param_count", (getter)GuestCall_get_param_count, NULL, "number of i32 parameters", NULL},
    {NULL},
};

static PyTypeObject GuestCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "routeiq.runtime._fastcall.GuestCall",
    .tp_basicsize = sizeof(GuestCall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(GuestCall, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)GuestCall_init,
    .tp_traverse = (traverseproc)GuestCall_traverse,
    .tp_clear = (inquiry)GuestCall_clear,
    .tp_dealloc = (destructor)GuestCall_dealloc,
    .tp_getset = GuestCall_getset,
    .tp_methods = GuestCall_methods,
};

/* ---------------------------------------------------------------- HostThunk */

/* `fn` returns an int (the result), None (no result), or bytes: a trap message. It is
 * expected to catch its own exceptions; one that escapes is reported and traps. */
typedef struct {
    PyObject_HEAD
    PyObject *fn;
    PyObject *on_error; /* exception -> what fn would have returned (optional) */
    trap_new_fn trap_new;
    int nparams;
    int has_result;
    char wide[MAX_PARAMS]; /* 1 where the parameter is an i64 */
} HostThunk;

static void *
host_trampoline(void *env, void *caller, val_raw *args, size_t n)
{
    HostThunk *t = (HostThunk *)env;
    void *trap = NULL;
    PyObject *argv[MAX_PARAMS];
    PyGILState_STATE gil = PyGILState_Ensure();
    int i;
    for (i = 0; i < t->nparams; i++) {
        argv[i] = t->wide[i] ? PyLong_FromLongLong(args[i].i64) : PyLong_FromUnsignedLong((uint32_t)args[i].i32);
        if (argv[i] == NULL)
            break;
    }
    PyObject *result = NULL;
    if (i == t->nparams)
        result = PyObject_Vectorcall(t->fn, argv, (size_t)t->nparams, NULL);
    for (int j = 0; j < i; j++)
        Py_DECREF(argv[j]);
    if (result == NULL && t->on_error != NULL) {
        /* The exception handling of a host function, without a Python frame around
         * every successful call: on_error maps what it raised to a result or a trap. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL && value != NULL)
            PyException_SetTraceback(value, tb);
        if (value != NULL)
            result = PyObject_CallOneArg(t->on_error, value);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
    if (result == NULL) {
        PyErr_WriteUnraisable(t->fn);
        static const char msg[] = "host function raised";
        trap = t->trap_new(msg, sizeof(msg) - 1);
    } else if (PyBytes_Check(result)) {
        trap = t->trap_new(PyBytes_AS_STRING(result), (size_t)PyBytes_GET_SIZE(result));
    } else if (t->has_result && n > 0) {
        unsigned long v = PyLong_AsUnsignedLongMask(result);
        if (v == (unsigned long)-1 && PyErr_Occurred()) {
            PyErr_WriteUnraisable(t->fn);
            static const char msg[] = "host function returned a non-integer";
            trap = t->trap_new(msg, sizeof(msg) - 1);
        } else {
            args[0].i64 = 0;
            args[0].i32 = (int32_t)(uint32_t)v;
        }
    }
    Py_XDECREF(result);
    PyGILState_Release(gil);
    return trap;
}

static int
HostThunk_init(HostThunk *self, PyObject *args, PyObject *kwds)
{
    PyObject *fn;
    PyObject *on_error = Py_None;
    const char *kinds;
    int has_result;
    unsigned long long trap_new;
    static char *kwlist[] = {"fn", "params", "has_result", "trap_new", "on_error", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OspK|O", kwlist, &fn, &kinds, &has_result, &trap_new, &on_error))
        return -1;
    size_t count = strlen(kinds);
    if (count > MAX_PARAMS || !trap_new) {
        PyErr_SetString(PyExc_ValueError, "unsupported host function signature");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        if (kinds[i] != 'i' && kinds[i] != 'I') {
            PyErr_SetString(PyExc_ValueError, "params: one letter per parameter, 'i' (i32) or 'I' (i64)");
            return -1;
        }
        self->wide[i] = kinds[i] == 'I';
    }
    Py_INCREF(fn);
    Py_XSETREF(self->fn, fn);
    if (on_error == Py_None) {
        Py_CLEAR(self->on_error);
    } else {
        Py_INCREF(on_error);
        Py_XSETREF(self->on_error, on_error);
    }
    self->nparams = (int)count;
    self->has_result = has_result;
    self->trap_new = (trap_new_fn)(uintptr_t)trap_new;
    return 0;
}

static int
HostThunk_traverse(HostThunk *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fn);
    Py_VISIT(self->on_error);
    return 0;
}

static int
HostThunk_clear(HostThunk *self)
{
    Py_CLEAR(self->fn);
    Py_CLEAR(self->on_error);
    return 0;
}

static void
HostThunk_dealloc(HostThunk *self)
{
    PyObject_GC_UnTrack(self);
    HostThunk_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
HostThunk_get_env(HostThunk *self, void *unused)
{
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)self);
}

static PyGetSetDef HostThunk_getset[] = {
    {"env", (getter)HostThunk_get_env, NULL, "the env pointer to link with trampoline()", NULL},
    {NULL},
};

static PyTypeObject HostThunkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "routeiq.runtime._fastcall.HostThunk",
    .tp_basicsize = sizeof(HostThunk),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)HostThunk_init,
    .tp_traverse = (traverseproc)HostThunk_traverse,
    .tp_clear = (inquiry)HostThunk_clear,
    .tp_dealloc = (destructor)HostThunk_dealloc,
    .tp_getset = HostThunk_getset,
};

/* ------------------------------------------------------------------- module */

static PyObject *
trampoline_address(PyObject *module, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)&host_trampoline);
}

static PyObject *
val_raw_size(PyObject *module, PyObject *unused)
{
    return PyLong_FromSize_t(sizeof(val_raw));
}

static PyMethodDef module_methods[] = {
    {"trampoline_address", trampoline_address, METH_NOARGS,
     "Address of the unchecked host-function callback whose env is a HostThunk."},
    {"val_raw_size", val_raw_size, METH_NOARGS, "sizeof(wasmtime_val_raw_t) as compiled here."},
    {NULL},
};

static struct PyModuleDef fastcall_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "routeiq.runtime._fastcall",
    .m_doc = "Guest calls and host-function trampolines for wasmtime without ctypes.",
    .m_size = 0,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__fastcall(void)
{
    if (PyType_Ready(&SandboxType) < 0 || PyType_Ready(&GuestCallType) < 0 || PyType_Ready(&HostThunkType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastcall_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Sandbox", (PyObject *)&SandboxType) < 0 ||
        PyModule_AddObjectRef(m, "GuestCall", (PyObject *)&GuestCallType) < 0 ||
        PyModule_AddObjectRef(m, "HostThunk", (PyObject *)&HostThunkType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
