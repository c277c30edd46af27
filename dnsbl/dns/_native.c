/* The native UDP engine: a loop per UDP listener, on a thread of its own, that waits for and
 * receives a batch of datagrams with recvmmsg without the GIL, answers the common query from
 * the zone index's own arrays with it, and sends the batch with sendmmsg without it again.
 *
 * It answers the A, TXT and AAAA queries dnsbl.dns.wire.answer_fast answers, byte for byte
 * as it does, and hands everything else back to Python unchanged (ANY too: what ANY gets
 * over UDP is policy), which answers it on the event loop: the Python engine is its oracle
 * (tests/dns/test_native.py). What it reads, it reads through the buffer protocol from the
 * arrays the index already holds (IPv4 starts, value ids) or from the index's own Python
 * objects (IPv6 starts, the change-log overlay), always with the GIL: there is no second copy
 * of the listings. Python builds each zone's description (dnsbl.dns.native) and hands it over
 * with Engine.set_zones; a batch takes the set current when it starts.
 *
 * Why a thread: woken by the event loop, every datagram at a moderate rate cost a turn of the
 * interpreter's loop (its selector, its callback) that rbldnsd does not pay; here a query
 * costs a poll, the two socket calls and one uncontended take of the GIL.
 *
 * Every read of a packet is bounds-checked against its received length; every answer is
 * written with a check against the transport's size limit (a longer one goes to Python,
 * which sets TC). The GIL is held for one batch at a time, never while waiting.
 */
#include "_native.h"

/* -- the engine ---------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *zoneset;    /* a capsule holding the current ZoneSet */
    PyObject *limiter;    /* a RateLimiter (_native_rrl.c), or NULL: no rate limiting */
    Py_ssize_t max_payload;
    Py_ssize_t out_size;  /* room for one answer: the largest limit any query can have */
    int nbounds;          /* the latency histogram's upper bounds (dnsbl.dns.timing) */
    uint64_t bounds_ns[MAX_BOUNDS];
    uint64_t latency_counts[MAX_BOUNDS + 1]; /* the last: slower than every bound */
    uint64_t latency_ns;
} Engine;

static void engine_dealloc(Engine *self) {
    Py_XDECREF(self->zoneset);
    Py_XDECREF(self->limiter);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int engine_init(Engine *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"max_payload", "latency_bounds", NULL};
    Py_ssize_t max_payload;
    PyObject *bounds = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n|O!", names, &max_payload, &PyTuple_Type,
                                     &bounds))
        return -1;
    if (max_payload < 512 || max_payload > 65535) {
        PyErr_SetString(PyExc_ValueError, "max_payload must lie in 512..65535");
        return -1;
    }
    Py_ssize_t nbounds = bounds ? PyTuple_GET_SIZE(bounds) : 0;
    if (nbounds > MAX_BOUNDS) {
        PyErr_SetString(PyExc_ValueError, "too many latency bounds");
        return -1;
    }
    for (Py_ssize_t i = 0; i < nbounds; i++) {
        double seconds = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i));
        if (seconds == -1.0 && PyErr_Occurred()) return -1;
        self->bounds_ns[i] = (uint64_t)(seconds * 1e9 + 0.5);
    }
    self->nbounds = (int)nbounds;
    self->max_payload = max_payload;
    self->out_size = max_payload;
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

/* One listener's datagrams in flight: what recvmmsg filled and what sendmmsg will send. Each
 * loop has its own (the engine serves every listener of a server, one thread each). */
typedef struct {
    unsigned char *in;    /* BATCH * MAX_QUERY */
    unsigned char *out;   /* BATCH * out_size */
    size_t out_size;
    int received, answered;
    struct mmsghdr queries[BATCH];
    struct iovec query_iov[BATCH];
    struct sockaddr_storage peers[BATCH];
    struct mmsghdr replies[BATCH];
    struct iovec reply_iov[BATCH];
} Batch;

static Batch *batch_new(size_t out_size) {
    Batch *b = PyMem_RawCalloc(1, sizeof(Batch));
    if (b == NULL) return NULL;
    b->in = PyMem_RawMalloc((size_t)BATCH * MAX_QUERY);
    b->out = PyMem_RawMalloc((size_t)BATCH * out_size);
    b->out_size = out_size;
    if (b->in == NULL || b->out == NULL) {
        PyMem_RawFree(b->in);
        PyMem_RawFree(b->out);
        PyMem_RawFree(b);
        return NULL;
    }
    return b;
}

static void batch_free(Batch *b) {
    if (b == NULL) return;
    PyMem_RawFree(b->in);
    PyMem_RawFree(b->out);
    PyMem_RawFree(b);
}

/* Up to BATCH datagrams from `fd` without waiting (no Python here: called without the GIL);
 * -1 and errno on an error. */
static int batch_receive(Batch *b, int fd) {
    for (int i = 0; i < BATCH; i++) {
        b->query_iov[i].iov_base = b->in + (size_t)i * MAX_QUERY;
        b->query_iov[i].iov_len = MAX_QUERY;
        memset(&b->queries[i], 0, sizeof b->queries[i]);
        b->queries[i].msg_hdr.msg_iov = &b->query_iov[i];
        b->queries[i].msg_hdr.msg_iovlen = 1;
        b->queries[i].msg_hdr.msg_name = &b->peers[i];
        b->queries[i].msg_hdr.msg_namelen = sizeof b->peers[i];
    }
    b->answered = 0;
    b->received = recvmmsg(fd, b->queries, BATCH, MSG_DONTWAIT, NULL);
    return b->received;
}

/* Send the batch's answers (no Python here: called without the GIL). A reply the socket
 * cannot take now is dropped, as UDP allows: the client retries. */
static void batch_send(Batch *b, int fd) {
    for (int sent = 0; sent < b->answered;) {
        int n = sendmmsg(fd, b->replies + sent, (unsigned)(b->answered - sent), MSG_DONTWAIT);
        if (n > 0) sent += n;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break; /* dropped */
        else sent++; /* this reply cannot go (e.g. its peer is unreachable): the next may */
    }
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

/* Answer what the batch received from `set` (with the GIL): the answers into its replies,
 * the other datagrams as (datagram, peer) into `handed`, the sources whose network rate
 * limiting starts on into `episodes`. */
static void batch_answer(Engine *self, Batch *b, ZoneSet *set, PyObject *handed,
                         PyObject *episodes) {
    double now = self->limiter != NULL ? monotonic_now() : 0; /* one reading per batch */
    for (int i = 0; i < b->received; i++) {
        const unsigned char *packet = b->in + (size_t)i * MAX_QUERY;
        unsigned int length = b->queries[i].msg_len;
        Py_ssize_t size = length > MAX_QUERY ? MAX_QUERY : (Py_ssize_t)length;
        struct sockaddr_storage *peer_addr = &b->peers[i];
        Writer w = {b->out + (size_t)b->answered * b->out_size, 0, 0, 0};
        Zone *zone = NULL;
        int qtype = 0, rcode = 0;
        Source source;
        int known = source_of(peer_addr, &source);
        if (set != NULL && answer(set, self->max_payload, packet, size, &w, &zone, &qtype, &rcode) &&
            (!zone->guarded || (known && networks_contain(&zone->allow, &source)))) {
            /* A guarded zone's sources outside its allow list go to Python (access.py). */
            zone->counts[qtype][rcode]++;
            if (zone->guarded) zone->verdicts[V_ALLOWED]++;
            int episode = 0;
            int send = self->limiter == NULL || !known ||
                       rate_limited(self, zone, &source, &w, now, &episode);
            if (episode) {
                PyObject *peer = peer_object(peer_addr);
                if (peer == NULL || PyList_Append(episodes, peer) < 0) PyErr_Clear();
                Py_XDECREF(peer);
            }
            if (!send) continue;
            int n = b->answered++;
            b->reply_iov[n].iov_base = w.buf;
            b->reply_iov[n].iov_len = w.len;
            memset(&b->replies[n], 0, sizeof b->replies[n]);
            b->replies[n].msg_hdr.msg_iov = &b->reply_iov[n];
            b->replies[n].msg_hdr.msg_iovlen = 1;
            b->replies[n].msg_hdr.msg_name = peer_addr;
            b->replies[n].msg_hdr.msg_namelen = b->queries[i].msg_hdr.msg_namelen;
            continue;
        }
        PyObject *peer = peer_object(peer_addr);
        PyObject *item = peer ? Py_BuildValue("(y#N)", (const char *)packet, size, peer) : NULL;
        if (item == NULL || PyList_Append(handed, item) < 0) PyErr_Clear(); /* dropped */
        Py_XDECREF(item);
    }
}

/* -- the loop ------------------------------------------------------------------------------ */

/* Answer times of the natively answered queries, per batch: its mean per query, weighted by
 * its size (dnsbl.dns.timing). Updated by every loop thread without the GIL, so atomically. */
static void latency_record(Engine *self, uint64_t nanoseconds, int count) {
    uint64_t each = nanoseconds / (uint64_t)count;
    int bucket = 0;
    while (bucket < self->nbounds && each > self->bounds_ns[bucket]) bucket++;
    __atomic_fetch_add(&self->latency_counts[bucket], (uint64_t)count, __ATOMIC_RELAXED);
    __atomic_fetch_add(&self->latency_ns, nanoseconds, __ATOMIC_RELAXED);
}

static uint64_t clock_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* handoff(handed, episodes); an error in it is reported, and the loop goes on. */
static void hand_off(PyObject *handoff, PyObject *handed, PyObject *episodes) {
    PyObject *result = PyObject_CallFunctionObjArgs(handoff, handed, episodes, NULL);
    if (result == NULL) PyErr_WriteUnraisable(handoff);
    Py_XDECREF(result);
}

/* Whether there is anything for Python: datagrams, episodes to log, a fresh start of the
 * rate limiter's table to log. */
static int hand_off_due(Engine *self, PyObject *handed, PyObject *episodes) {
    int cleared = self->limiter != NULL && limiter_cleared((Limiter *)self->limiter);
    return PyList_GET_SIZE(handed) > 0 || PyList_GET_SIZE(episodes) > 0 || cleared;
}

/* run(fd, wake_fd, counts, verdicts, handoff): the loop of UDP socket `fd` until `wake_fd`
 * (an eventfd) is readable. It waits and does its socket calls without the GIL, and takes it
 * once a batch: to answer from the zone set current then, count into `counts` and the access
 * verdicts into `verdicts` — and, only when there is any, once more after the batch's answers
 * went out, to call handoff(handed, episodes) with what Python must answer and log. So a query
 * costs no turn of the event loop, the event loop waits at most one batch for the GIL, and a
 * datagram handed to Python is answered after those the batch answered natively (the order
 * a client asking twice on one socket sees). */
static PyObject *engine_run(Engine *self, PyObject *args) {
    int fd, wake_fd;
    PyObject *counts, *verdicts, *handoff;
    if (!PyArg_ParseTuple(args, "iiO!O!O", &fd, &wake_fd, &PyDict_Type, &counts, &PyDict_Type,
                          &verdicts, &handoff))
        return NULL;
    Batch *b = batch_new((size_t)self->out_size);
    if (b == NULL) return PyErr_NoMemory();
    int failure = 0, answered = 0;
    uint64_t started = 0;
    PyObject *handed = NULL, *episodes = NULL; /* the last batch's, for Python once it is sent */
    for (;;) {
        int received = -1, error = 0, woken = 0, due = handed != NULL;
        Py_BEGIN_ALLOW_THREADS
        if (answered) {
            batch_send(b, fd); /* the last batch's answers, before anything else */
            latency_record(self, clock_ns() - started, answered);
        }
        if (!due) {
            struct pollfd ready[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
            if (poll(ready, 2, -1) < 0) {
                error = errno;
            } else if (ready[1].revents) {
                woken = 1;
            } else {
                started = clock_ns();
                received = batch_receive(b, fd);
                if (received < 0) error = errno;
            }
        }
        Py_END_ALLOW_THREADS
        answered = 0;
        if (due) {
            hand_off(handoff, handed, episodes);
            Py_CLEAR(handed);
            Py_CLEAR(episodes);
            continue;
        }
        if (woken) break;
        if (received <= 0) {
            if (error == EBADF || error == ENOTSOCK || error == EINVAL || error == EFAULT) {
                errno = error; /* the socket itself is unusable: nothing more to answer */
                PyErr_SetFromErrno(PyExc_OSError);
                failure = 1;
                break;
            }
            if (error == ENOMEM || error == ENOBUFS) {
                /* The kernel is short of memory: a moment's rest, not a busy loop. */
                Py_BEGIN_ALLOW_THREADS
                poll(NULL, 0, 1);
                Py_END_ALLOW_THREADS
            }
            continue; /* nothing yet, interrupted, or an ICMP error for an earlier reply */
        }
        handed = PyList_New(0);
        episodes = PyList_New(0);
        if (handed == NULL || episodes == NULL) {
            Py_CLEAR(handed);
            Py_CLEAR(episodes);
            failure = 1;
            break;
        }
        /* This batch's zones: a publish during it swaps the engine's set, not this one. */
        PyObject *capsule = Py_XNewRef(self->zoneset);
        ZoneSet *set = capsule ? PyCapsule_GetPointer(capsule, "dnsbl.zoneset") : NULL;
        batch_answer(self, b, set, handed, episodes);
        if (set != NULL && flush_counts(set, counts, verdicts) < 0) PyErr_Clear();
        Py_XDECREF(capsule);
        answered = b->answered;
        if (!hand_off_due(self, handed, episodes)) {
            Py_CLEAR(handed);
            Py_CLEAR(episodes);
        }
    }
    batch_free(b);
    if (failure) return NULL;
    Py_RETURN_NONE;
}

/* latency() -> ([count per bound, and one for slower], seconds): what the loops recorded. */
static PyObject *engine_latency(Engine *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *buckets = PyList_New(self->nbounds + 1);
    if (buckets == NULL) return NULL;
    for (int i = 0; i <= self->nbounds; i++) {
        uint64_t n = __atomic_load_n(&self->latency_counts[i], __ATOMIC_RELAXED);
        PyObject *count = PyLong_FromUnsignedLongLong(n);
        if (count == NULL) {
            Py_DECREF(buckets);
            return NULL;
        }
        PyList_SET_ITEM(buckets, i, count);
    }
    double seconds = (double)__atomic_load_n(&self->latency_ns, __ATOMIC_RELAXED) / 1e9;
    return Py_BuildValue("(Nd)", buckets, seconds);
}

/* answer(engine, packet) -> bytes or None: one answer without a socket (for the tests). */
static PyObject *engine_answer(Engine *self, PyObject *arg) {
    Py_buffer packet;
    if (PyObject_GetBuffer(arg, &packet, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *capsule = self->zoneset;
    ZoneSet *set = capsule ? PyCapsule_GetPointer(capsule, "dnsbl.zoneset") : NULL;
    unsigned char *out = malloc((size_t)self->out_size);
    Writer w = {out, 0, 0, 0};
    Zone *zone = NULL;
    int qtype = 0, rcode = 0;
    PyObject *result;
    /* The packet is copied to a buffer of its own size, so that a read past its end is
     * one AddressSanitizer sees (malloc, not Python's pools, which it cannot see into). */
    unsigned char *copy = malloc(packet.len ? (size_t)packet.len : 1);
    if (copy == NULL || out == NULL) {
        free(copy);
        free(out);
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
    free(out);
    PyBuffer_Release(&packet);
    return result;
}

static PyMethodDef engine_methods[] = {
    {"set_zones", (PyCFunction)engine_set_zones, METH_O,
     "Answer from these zone descriptions from the next batch on."},
    {"set_limiter", (PyCFunction)engine_set_limiter, METH_O,
     "Rate-limit the answers with this RateLimiter (None: no rate limiting)."},
    {"run", (PyCFunction)engine_run, METH_VARARGS,
     "run(fd, wake_fd, counts, verdicts, handoff): answer UDP socket `fd` until `wake_fd` is "
     "readable, counting into `counts` and the verdicts into `verdicts`, and calling "
     "handoff([(datagram, peer), ...], [peer, ...]) with what the Python path must answer "
     "and the sources whose network rate limiting starts on. Call it on a thread of its own."},
    {"latency", (PyCFunction)engine_latency, METH_NOARGS,
     "([count per latency bound, then slower], seconds) of the natively answered queries."},
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
