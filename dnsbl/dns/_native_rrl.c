/* Response rate limiting in the native engine, and the network lists it and a zone's allow
 * list are checked against.
 *
 * The rules are those of dnsbl.dns.ratelimit.RateLimiter, step for step: that module is
 * their definition, and tests/dns/test_native_rrl.py drives both with the same sequence of
 * (source, answer, zone, time) and compares every decision. What differs is the table: the
 * buckets live in one open-addressing hash table that grows up to twice the bucket limit and
 * never past it, and an answer class is held as the 64-bit keyed hash of its name (or zone)
 * instead of the name itself, as BIND does (two classes sharing a hash share a bucket; with
 * a secret seed drawn at start, no client can aim for that).
 *
 * Python uses the same object (RateLimiter.check) for the queries the engine hands back, so
 * a server has one set of buckets whichever path answers.
 */
#include "_native.h"

#include <math.h>
#include <sys/random.h>
#include <time.h>

#define SWEEP_EVERY 5.0 /* seconds between sweeps: dnsbl.dns.ratelimit._SWEEP_EVERY */

static uint64_t seed = 0x9E3779B97F4A7C15ull;

double monotonic_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic()'s clock */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* FNV-1a from a secret seed, then a finaliser that mixes every bit into every other. */
static uint64_t hash_more(uint64_t h, const unsigned char *data, size_t len, int lower) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = data[i];
        if (lower && c >= 'A' && c <= 'Z') c += 32; /* bytes.lower() */
        h = (h ^ c) * 0x100000001B3ull;
    }
    return h;
}

static uint64_t hash_done(uint64_t h) {
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    return h ^ (h >> 31);
}

uint64_t hash_bytes(const unsigned char *data, size_t len) {
    return hash_done(hash_more(seed, data, len, 0));
}

/* -- sources and networks ------------------------------------------------------------------ */

int source_of(const struct sockaddr_storage *addr, Source *out) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    memset(out, 0, sizeof *out);
    if (addr->ss_family == AF_INET) {
        out->family = 4;
        memcpy(out->addr, &((const struct sockaddr_in *)addr)->sin_addr, 4);
        return 1;
    }
    if (addr->ss_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
        if (memcmp(a, mapped, 12) == 0) {
            out->family = 4;
            memcpy(out->addr, a + 12, 4);
        } else {
            out->family = 6;
            memcpy(out->addr, a, 16);
        }
        return 1;
    }
    return 0;
}

/* A list of (version, packed network address, prefix length); see native.network_list. */
int networks_parse(PyObject *list, Networks *out) {
    out->n = 0;
    out->items = NULL;
    if (!PyTuple_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "networks: a tuple expected");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(list);
    out->items = PyMem_Calloc(n ? n : 1, sizeof(Network));
    if (out->items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int version, prefix;
        const char *packed;
        Py_ssize_t len;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(list, i), "iy#i", &version, &packed, &len, &prefix))
            return -1;
        if (!((version == 4 && len == 4 && prefix >= 0 && prefix <= 32) ||
              (version == 6 && len == 16 && prefix >= 0 && prefix <= 128))) {
            PyErr_SetString(PyExc_ValueError, "networks: (4, 4 bytes, 0..32) or (6, 16, 0..128)");
            return -1;
        }
        Network *net = &out->items[i];
        net->family = (unsigned char)version;
        net->prefix = (unsigned char)prefix;
        memcpy(net->addr, packed, (size_t)len);
        out->n = i + 1;
    }
    return 0;
}

int networks_contain(const Networks *networks, const Source *source) {
    for (Py_ssize_t i = 0; i < networks->n; i++) {
        const Network *net = &networks->items[i];
        if (net->family != source->family) continue;
        int whole = net->prefix / 8, bits = net->prefix % 8;
        if (memcmp(net->addr, source->addr, (size_t)whole) != 0) continue;
        if (bits && ((net->addr[whole] ^ source->addr[whole]) & (0xFF << (8 - bits)) & 0xFF))
            continue;
        return 1;
    }
    return 0;
}

/* -- the limiter --------------------------------------------------------------------------- */

typedef struct {
    unsigned char net[8]; /* 4 or 6, then the /24's 3 or the /56's 7 bytes */
    unsigned char rcode;
    unsigned char kind;   /* 0: an error (rcode); 1: positive (type, name); 2: empty (zone) */
    unsigned char limited, used;
    uint32_t slips;
    uint64_t hash;
    double balance, stamp;
} Bucket;

struct Limiter {
    PyObject_HEAD
    double rate, window;
    int slip, log_only;
    Networks exempt;
    Bucket *slots;
    size_t cap, count, limit, max_cap;
    size_t cleared; /* buckets dropped by the last fresh start not yet logged, or 0 */
    double swept;
};

static size_t slot_of(const Limiter *l, const Bucket *key) {
    uint64_t h = hash_done(key->hash ^ hash_more(seed, key->net, 10, 0));
    size_t mask = l->cap - 1, i = (size_t)h & mask;
    while (l->slots[i].used && (memcmp(l->slots[i].net, key->net, 10) != 0 ||
                                l->slots[i].hash != key->hash))
        i = (i + 1) & mask;
    return i;
}

/* The table anew at `cap` slots with the buckets stamped at `stale` or later. */
static int rebuild(Limiter *l, size_t cap, double stale) {
    Bucket *old = l->slots;
    size_t old_cap = l->cap;
    Bucket *slots = PyMem_Calloc(cap, sizeof(Bucket));
    if (slots == NULL) return -1;
    l->slots = slots;
    l->cap = cap;
    l->count = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].used || old[i].stamp < stale) continue;
        l->slots[slot_of(l, &old[i])] = old[i];
        l->count++;
    }
    PyMem_Free(old);
    return 0;
}

/* RateLimiter._sweep. */
static void sweep(Limiter *l, double now) {
    l->swept = now;
    if (l->count < l->limit / 2) return;
    if (rebuild(l, l->cap, now - l->window) < 0 || l->count >= l->limit) {
        l->cleared = l->count ? l->count : 1;
        memset(l->slots, 0, l->cap * sizeof(Bucket));
        l->count = 0;
    }
}

int limiter_log_only(const Limiter *l) { return l->log_only; }

/* Whether a fresh start of the table is yet to be logged (take_cleared). */
int limiter_cleared(const Limiter *l) { return l->cleared != 0; }

int limiter_ready(const Limiter *l) { return l->slots != NULL; }

/* RateLimiter.check for a source not proven by a cookie; `*episode`: 1 when this answer
 * starts its network's limiting (to be logged once). */
int limiter_check(Limiter *l, const Source *source, const unsigned char *a, size_t len,
                  uint64_t zone_hash, double now, int *episode) {
    *episode = 0;
    if (networks_contain(&l->exempt, source)) return RRL_SEND;
    if (now - l->swept > SWEEP_EVERY) sweep(l, now);
    Bucket key;
    memset(&key, 0, sizeof key);
    key.net[0] = (unsigned char)source->family;
    memcpy(key.net + 1, source->addr, source->family == 4 ? 3 : 7);
    /* answer_class */
    key.rcode = len >= 12 ? a[3] & 0x0F : 2;
    if (key.rcode != 0 && key.rcode != 3) {
        key.kind = 0;
    } else if (key.rcode == 0 && (a[6] | a[7])) {
        size_t end = 12;
        while (end < len && a[end]) end += (size_t)a[end] + 1;
        size_t name_end = end < len ? end : len;
        size_t type_start = end + 1 < len ? end + 1 : len;
        size_t type_end = end + 3 < len ? end + 3 : len;
        unsigned char type_len = (unsigned char)(type_end - type_start);
        uint64_t h = hash_more(seed, &type_len, 1, 0);
        h = hash_more(h, a + type_start, type_end - type_start, 0);
        key.hash = hash_done(hash_more(h, a + 12, name_end - 12, 1));
        key.kind = 1;
    } else {
        key.hash = zone_hash;
        key.kind = 2;
    }
    size_t i = slot_of(l, &key);
    Bucket *bucket = &l->slots[i];
    double rate = l->rate;
    if (!bucket->used) {
        if (l->count >= l->limit) sweep(l, now); /* never more than `limit` buckets */
        if (l->count + 1 > l->cap / 2 && l->cap < l->max_cap &&
            rebuild(l, l->cap * 2, -INFINITY) < 0 && l->count + 1 >= l->cap) {
            /* No memory to grow, and no free slot left: start afresh rather than probe
             * forever. */
            l->cleared = l->count;
            memset(l->slots, 0, l->cap * sizeof(Bucket));
            l->count = 0;
        }
        bucket = &l->slots[slot_of(l, &key)];
        *bucket = key;
        bucket->used = 1;
        bucket->balance = rate;
        bucket->stamp = now;
        l->count++;
    } else if (now > bucket->stamp) {
        /* Credit what the time since earned, up to one second's worth. */
        bucket->balance = fmin(rate, bucket->balance + (now - bucket->stamp) * rate);
        bucket->stamp = now;
    }
    bucket->balance -= 1;
    if (bucket->balance >= 0) {
        bucket->limited = 0;
        return RRL_SEND;
    }
    bucket->balance = fmax(bucket->balance, -l->window * rate);
    if (!bucket->limited) {
        bucket->limited = 1;
        *episode = 1;
    }
    int action = RRL_DROP;
    if (l->slip) {
        bucket->slips++;
        if (bucket->slips >= (uint32_t)l->slip) {
            bucket->slips = 0;
            action = RRL_SLIP;
        }
    }
    return action;
}

/* ratelimit.truncated, in place: header and question only, TC set; the new length. */
size_t truncate_answer(unsigned char *a, size_t len) {
    if (len < 12) return len;
    size_t end = 12;
    while (end < len && a[end]) end += (size_t)a[end] + 1;
    a[2] |= 0x02;
    memset(a + 6, 0, 6);
    if (end + 5 <= len && (a[4] | a[5])) return end + 5;
    a[4] = a[5] = 0;
    return 12;
}

/* -- the Python type ----------------------------------------------------------------------- */

static int limiter_init(Limiter *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"rate", "window", "slip", "log_only", "exempt", "limit", "now", NULL};
    double rate, window, now;
    int slip, log_only;
    PyObject *exempt;
    Py_ssize_t limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ddipO!nd", names, &rate, &window, &slip,
                                     &log_only, &PyTuple_Type, &exempt, &limit, &now))
        return -1;
    if (rate <= 0 || window < 0 || slip < 0 || limit < 2) {
        PyErr_SetString(PyExc_ValueError, "rate > 0, window >= 0, slip >= 0, limit >= 2");
        return -1;
    }
    PyMem_Free(self->exempt.items);
    PyMem_Free(self->slots);
    self->slots = NULL;
    if (networks_parse(exempt, &self->exempt) < 0) return -1;
    self->rate = rate;
    self->window = window;
    self->slip = slip;
    self->log_only = log_only;
    self->limit = (size_t)limit;
    self->max_cap = 16;
    while (self->max_cap < 2 * self->limit) self->max_cap *= 2;
    self->cap = 16;
    self->count = 0;
    self->swept = now;
    self->slots = PyMem_Calloc(self->cap, sizeof(Bucket));
    if (self->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void limiter_dealloc(Limiter *self) {
    PyMem_Free(self->exempt.items);
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* check(packed_address, answer, zone, now) -> (action, episode) */
static PyObject *limiter_check_py(Limiter *self, PyObject *args) {
    const char *packed, *answer, *zone;
    Py_ssize_t packed_len, answer_len, zone_len;
    double now;
    if (!PyArg_ParseTuple(args, "y#y#s#d", &packed, &packed_len, &answer, &answer_len, &zone,
                          &zone_len, &now))
        return NULL;
    if (self->slots == NULL) {
        PyErr_SetString(PyExc_ValueError, "RateLimiter not initialised");
        return NULL;
    }
    if (packed_len != 4 && packed_len != 16) {
        PyErr_SetString(PyExc_ValueError, "a packed IPv4 or IPv6 address expected");
        return NULL;
    }
    Source source;
    memset(&source, 0, sizeof source);
    source.family = packed_len == 4 ? 4 : 6;
    memcpy(source.addr, packed, (size_t)packed_len);
    int episode;
    int action = limiter_check(self, &source, (const unsigned char *)answer, (size_t)answer_len,
                               hash_bytes((const unsigned char *)zone, (size_t)zone_len), now,
                               &episode);
    return Py_BuildValue("(iO)", action, episode ? Py_True : Py_False);
}

static PyObject *limiter_len(Limiter *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromSize_t(self->count);
}

/* The buckets the last fresh start dropped (0: none since the last call), to be logged. */
static PyObject *limiter_take_cleared(Limiter *self, PyObject *Py_UNUSED(ignored)) {
    size_t cleared = self->cleared;
    self->cleared = 0;
    return PyLong_FromSize_t(cleared);
}

static PyMethodDef limiter_methods[] = {
    {"take_cleared", (PyCFunction)limiter_take_cleared, METH_NOARGS,
     "The number of buckets the last fresh start dropped, once (0: none)."},
    {"check", (PyCFunction)limiter_check_py, METH_VARARGS,
     "check(packed_address, answer, zone, now) -> (action, whether limiting starts)."},
    {"buckets", (PyCFunction)limiter_len, METH_NOARGS, "The number of buckets held."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject LimiterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dnsbl.dns._native.RateLimiter",
    .tp_basicsize = sizeof(Limiter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The token buckets of response rate limiting (see dnsbl.dns.ratelimit).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)limiter_init,
    .tp_dealloc = (destructor)limiter_dealloc,
    .tp_methods = limiter_methods,
};

int rrl_module_init(PyObject *module) {
    uint64_t drawn;
    if (getrandom(&drawn, sizeof drawn, 0) == (ssize_t)sizeof drawn) seed ^= drawn;
    if (PyType_Ready(&LimiterType) < 0) return -1;
    return PyModule_AddObjectRef(module, "RateLimiter", (PyObject *)&LimiterType);
}
