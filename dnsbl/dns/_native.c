/* The native UDP engine: one batch of datagrams received with recvmmsg, the common query
 * answered from the zone index's own arrays, the answers sent with sendmmsg.
 *
 * It answers the A, TXT and AAAA queries dnsbl.dns.wire.answer_fast answers, byte for byte
 * as it does, and hands everything else back to Python unchanged (ANY too: what ANY gets
 * over UDP is policy) (the caller runs the Python path on it): the
 * Python engine is its oracle (tests/dns/test_native.py). What it reads, it reads through
 * the buffer protocol from the arrays the index already holds (IPv4 starts, value ids) or
 * from the index's own Python objects (IPv6 starts, the change-log overlay): there is no
 * second copy of the listings. Python builds each zone's description (dnsbl.dns.native) and
 * hands it over with Engine.set_zones; a batch takes the set current when it starts.
 *
 * Every read of a packet is bounds-checked against its received length; every answer is
 * written with a check against the transport's size limit (a longer one goes to Python,
 * which sets TC). Nothing here blocks: the socket is read with MSG_DONTWAIT, once per call.
 */
#include "_native.h"

/* -- the engine ---------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *zoneset;    /* a capsule holding the current ZoneSet */
    PyObject *limiter;    /* a RateLimiter (_native_rrl.c), or NULL: no rate limiting */
    Py_ssize_t max_payload;
    Py_ssize_t out_size;  /* room for one answer: the largest limit any query can have */
    unsigned char *in;    /* BATCH * MAX_QUERY */
    unsigned char *out;   /* BATCH * out_size */
} Engine;

static void engine_dealloc(Engine *self) {
    Py_XDECREF(self->zoneset);
    Py_XDECREF(self->limiter);
    PyMem_Free(self->in);
    PyMem_Free(self->out);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int engine_init(Engine *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"max_payload", NULL};
    Py_ssize_t max_payload;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n", names, &max_payload)) return -1;
    if (max_payload < 512 || max_payload > 65535) {
        PyErr_SetString(PyExc_ValueError, "max_payload must lie in 512..65535");
        return -1;
    }
    self->max_payload = max_payload;
    self->out_size = max_payload;
    PyMem_Free(self->in);
    PyMem_Free(self->out);
    self->in = PyMem_Malloc((size_t)BATCH * MAX_QUERY);
    self->out = PyMem_Malloc((size_t)BATCH * (size_t)self->out_size);
    if (self->in == NULL || self->out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *engine_set_zones(Engine *self, PyObject *descriptions) {
    if (!PyList_Check(descriptions)) {
        PyErr_SetString(PyExc_TypeError, "set_zones takes a list of zone descriptions");
        return NULL;
    }
    /* A copy: the zones borrow from it, and the caller's list may change. */
    PyObject *held = PyList_GetSlice(descriptions, 0, PyList_GET_SIZE(descriptions));
    if (held == NULL) return NULL;
    ZoneSet *set = PyMem_Calloc(1, sizeof(ZoneSet));
    if (set == NULL) {
        Py_DECREF(held);
        return PyErr_NoMemory();
    }
    set->descriptions = held;
    Py_ssize_t n = PyList_GET_SIZE(held);
    set->zones = PyMem_Calloc(n ? n : 1, sizeof(Zone));
    if (set->zones == NULL) {
        zoneset_free(set);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t z = 0; z < n; z++) {
        set->nzones = z + 1;
        if (zone_parse(PyList_GET_ITEM(held, z), &set->zones[z]) < 0) {
            zoneset_free(set);
            return NULL;
        }
    }
    PyObject *capsule = PyCapsule_New(set, "dnsbl.zoneset", zoneset_capsule_free);
    if (capsule == NULL) {
        zoneset_free(set);
        return NULL;
    }
    /* One assignment: a batch running now holds its own reference to the old set. */
    PyObject *old = self->zoneset;
    self->zoneset = capsule;
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyObject *engine_set_limiter(Engine *self, PyObject *limiter) {
    if (limiter != Py_None && !PyObject_TypeCheck(limiter, &LimiterType)) {
        PyErr_SetString(PyExc_TypeError, "set_limiter takes a RateLimiter or None");
        return NULL;
    }
    if (limiter != Py_None && !limiter_ready((Limiter *)limiter)) {
        PyErr_SetString(PyExc_ValueError, "RateLimiter not initialised");
        return NULL;
    }
    PyObject *old = self->limiter;
    self->limiter = limiter == Py_None ? NULL : Py_NewRef(limiter);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* -- one batch ----------------------------------------------------------------------------- */

static PyObject *peer_object(const struct sockaddr_storage *addr) {
    char host[INET6_ADDRSTRLEN];
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host) == NULL) return NULL;
        return Py_BuildValue("(si)", host, ntohs(in->sin_port));
    }
    if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host) == NULL) return NULL;
        return Py_BuildValue("(siII)", host, ntohs(in6->sin6_port),
                             (unsigned)ntohl(in6->sin6_flowinfo), (unsigned)in6->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

/* counts[key] += *n, and *n = 0; -1 on a Python error. */
static int add_count(PyObject *counts, PyObject *key, unsigned long *n) {
    unsigned long taken = *n;
    if (taken == 0) return 0;
    *n = 0;
    PyObject *have = PyDict_GetItemWithError(counts, key);
    if (have == NULL && PyErr_Occurred()) return -1;
    PyObject *add = PyLong_FromUnsignedLong(taken);
    PyObject *sum = add && have ? PyNumber_Add(have, add) : add;
    int status = sum == NULL || PyDict_SetItem(counts, key, sum) < 0 ? -1 : 0;
    if (sum != add) Py_XDECREF(sum);
    Py_XDECREF(add);
    return status;
}

static int flush_counts(ZoneSet *set, PyObject *counts, PyObject *verdicts) {
    int status = 0;
    for (Py_ssize_t z = 0; z < set->nzones; z++) {
        Zone *zone = &set->zones[z];
        for (int q = 0; q < NQTYPES; q++) {
            for (int r = 0; r < 2; r++) {
                if (add_count(counts, zone->keys[q][r], &zone->counts[q][r]) < 0) status = -1;
            }
        }
        for (int v = 0; v < NVERDICTS; v++) {
            if (add_count(verdicts, zone->verdict_keys[v], &zone->verdicts[v]) < 0) status = -1;
        }
    }
    return status;
}

/* What rate limiting does with an answer in `w` to `source`: 0 to drop it, else send `w`
 * (slipped: truncated in place). `*episode`: this answer starts its network's limiting. */
static int rate_limited(Engine *self, Zone *zone, const Source *source, Writer *w, double now,
                        int *episode) {
    Limiter *limiter = (Limiter *)self->limiter;
    int action = limiter_check(limiter, source, w->buf, w->len, zone->name_hash, now, episode);
    if (action == RRL_SEND) return 1;
    zone->verdicts[action == RRL_SLIP ? V_SLIPPED : V_RATE_LIMITED]++;
    if (limiter_log_only(limiter)) return 1;
    if (action == RRL_DROP) return 0;
    w->len = truncate_answer(w->buf, w->len);
    return 1;
}

/* serve(fd, counts, verdicts) -> (answered, [(datagram, peer), ...], [peer, ...]): the
 * datagrams for the Python path, and the sources whose network rate limiting starts on. */
static PyObject *engine_serve(Engine *self, PyObject *args) {
    int fd;
    PyObject *counts, *verdicts;
    if (!PyArg_ParseTuple(args, "iO!O!", &fd, &PyDict_Type, &counts, &PyDict_Type, &verdicts))
        return NULL;
    struct mmsghdr in[BATCH];
    struct iovec in_iov[BATCH];
    struct sockaddr_storage peers[BATCH];
    memset(in, 0, sizeof in);
    for (int i = 0; i < BATCH; i++) {
        in_iov[i].iov_base = self->in + (size_t)i * MAX_QUERY;
        in_iov[i].iov_len = MAX_QUERY;
        in[i].msg_hdr.msg_iov = &in_iov[i];
        in[i].msg_hdr.msg_iovlen = 1;
        in[i].msg_hdr.msg_name = &peers[i];
        in[i].msg_hdr.msg_namelen = sizeof peers[i];
    }
    int received = recvmmsg(fd, in, BATCH, MSG_DONTWAIT, NULL);
    if (received < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNREFUSED)
            return Py_BuildValue("(i[][])", 0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *handed = PyList_New(0);
    PyObject *episodes = PyList_New(0);
    if (handed == NULL || episodes == NULL) {
        Py_XDECREF(handed);
        Py_XDECREF(episodes);
        return NULL;
    }
    double now = self->limiter != NULL ? monotonic_now() : 0; /* one reading per batch */
    /* This batch's zones: a publish during it (another thread, while Python code below
     * runs) swaps the engine's set, not this one. */
    PyObject *capsule = self->zoneset;
    Py_XINCREF(capsule);
    ZoneSet *set = capsule ? PyCapsule_GetPointer(capsule, "dnsbl.zoneset") : NULL;
    struct mmsghdr out[BATCH];
    struct iovec out_iov[BATCH];
    int answered = 0;
    memset(out, 0, sizeof out);
    for (int i = 0; i < received; i++) {
        const unsigned char *packet = self->in + (size_t)i * MAX_QUERY;
        Py_ssize_t size = in[i].msg_len > MAX_QUERY ? MAX_QUERY : (Py_ssize_t)in[i].msg_len;
        Writer w = {self->out + (size_t)answered * (size_t)self->out_size, 0, 0, 0};
        Zone *zone = NULL;
        int qtype = 0, rcode = 0;
        Source source;
        int known = source_of(&peers[i], &source);
        if (set != NULL && answer(set, self->max_payload, packet, size, &w, &zone, &qtype, &rcode) &&
            (!zone->guarded || (known && networks_contain(&zone->allow, &source)))) {
            /* A guarded zone's sources outside its allow list go to Python (access.py). */
            zone->counts[qtype][rcode]++;
            if (zone->guarded) zone->verdicts[V_ALLOWED]++;
            int episode = 0;
            int send = self->limiter == NULL || !known ||
                       rate_limited(self, zone, &source, &w, now, &episode);
            if (episode) {
                PyObject *peer = peer_object(&peers[i]);
                if (peer == NULL || PyList_Append(episodes, peer) < 0) PyErr_Clear();
                Py_XDECREF(peer);
            }
            if (!send) continue;
            out_iov[answered].iov_base = w.buf;
            out_iov[answered].iov_len = w.len;
            out[answered].msg_hdr.msg_iov = &out_iov[answered];
            out[answered].msg_hdr.msg_iovlen = 1;
            out[answered].msg_hdr.msg_name = &peers[i];
            out[answered].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
            answered++;
            continue;
        }
        PyObject *peer = peer_object(&peers[i]);
        PyObject *item = peer ? Py_BuildValue("(y#N)", (const char *)packet, size, peer) : NULL;
        if (item == NULL || PyList_Append(handed, item) < 0) {
            Py_XDECREF(item);
            PyErr_Clear(); /* the datagram is dropped, as UDP allows */
            continue;
        }
        Py_DECREF(item);
    }
    for (int sent = 0; sent < answered;) {
        int n = sendmmsg(fd, out + sent, (unsigned)(answered - sent), MSG_DONTWAIT);
        if (n > 0) sent += n;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break; /* dropped */
        else sent++; /* this reply cannot go (e.g. its peer is unreachable): the next may */
    }
    if (set != NULL && flush_counts(set, counts, verdicts) < 0) PyErr_Clear();
    Py_XDECREF(capsule);
    return Py_BuildValue("(iNN)", answered, handed, episodes);
}

/* answer(engine, packet) -> bytes or None: one answer without a socket (for the tests). */
static PyObject *engine_answer(Engine *self, PyObject *arg) {
    Py_buffer packet;
    if (PyObject_GetBuffer(arg, &packet, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *capsule = self->zoneset;
    ZoneSet *set = capsule ? PyCapsule_GetPointer(capsule, "dnsbl.zoneset") : NULL;
    Writer w = {self->out, 0, 0, 0};
    Zone *zone = NULL;
    int qtype = 0, rcode = 0;
    PyObject *result;
    /* The packet is copied to a buffer of its own size, so that a read past its end is
     * one AddressSanitizer sees (malloc, not Python's pools, which it cannot see into). */
    unsigned char *copy = malloc(packet.len ? (size_t)packet.len : 1);
    if (copy == NULL) {
        PyBuffer_Release(&packet);
        return PyErr_NoMemory();
    }
    memcpy(copy, packet.buf, (size_t)packet.len);
    Py_ssize_t size = packet.len > MAX_QUERY ? MAX_QUERY : packet.len;
    /* No source here: a guarded zone's answer is Python's (as answer_fast without a peer). */
    if (set != NULL && answer(set, self->max_payload, copy, size, &w, &zone, &qtype, &rcode) &&
        !zone->guarded) {
        zone->counts[qtype][rcode] = 0;
        result = PyBytes_FromStringAndSize((const char *)w.buf, (Py_ssize_t)w.len);
    } else {
        result = Py_NewRef(Py_None);
    }
    free(copy);
    PyBuffer_Release(&packet);
    return result;
}

static PyMethodDef engine_methods[] = {
    {"set_zones", (PyCFunction)engine_set_zones, METH_O,
     "Answer from these zone descriptions from the next batch on."},
    {"set_limiter", (PyCFunction)engine_set_limiter, METH_O,
     "Rate-limit the answers with this RateLimiter (None: no rate limiting)."},
    {"serve", (PyCFunction)engine_serve, METH_VARARGS,
     "Read one batch from the UDP socket `fd` and answer what it can, counting into "
     "`counts` and the verdicts into `verdicts`; returns (answered, [(datagram, peer), ...] "
     "for the Python path, [peer, ...] whose network rate limiting starts on)."},
    {"answer", (PyCFunction)engine_answer, METH_O,
     "The answer to one packet, or None for the Python path (no socket, no counting)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dnsbl.dns._native.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The native UDP engine of one DNS server (see dnsbl.dns.native).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)engine_init,
    .tp_dealloc = (destructor)engine_dealloc,
    .tp_methods = engine_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dnsbl.dns._native",
    "The native UDP engine: batched recvmmsg/sendmmsg around the common query.", -1, NULL, NULL,
    NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&EngineType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (rrl_module_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "BATCH", BATCH);
    return m;
}
