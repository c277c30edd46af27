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
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64          /* datagrams per call: one batch, then the event loop's turn */
#define MAX_QUERY 4096    /* longer datagrams arrive cut (the Python path does the same) */
#define MAX_VALUES 64     /* values one answer may join; more go to Python */
#define NQTYPES 4         /* A, TXT, ANY, AAAA: the order of the zone description's keys */

typedef unsigned __int128 u128;

/* -- a zone, as the index holds it --------------------------------------------------------- */

typedef struct {
    int length;           /* prefix length */
    int kind;             /* 0: no level at this length (overlay only); 1: uint32 buffer; 2: list */
    Py_buffer starts;     /* kind 1 */
    PyObject *list;       /* kind 2, borrowed from the description */
    Py_buffer ids;        /* value ids: unsigned, itemsize 1, 2, 4 or 8 */
    Py_ssize_t count;
} Level;

typedef struct {
    int nlevels;
    Level *levels;        /* longest prefix first */
    PyObject *delta;      /* borrowed dict (length, start) -> id or None; NULL when empty */
} Table;

typedef struct {
    PyObject *a_record;   /* bytes or NULL: the value's A record (NULL: no value at this id) */
    PyObject *txt_record; /* bytes or NULL: its TXT record, when its text has no `$` */
    PyObject *txt_template; /* bytes or NULL: its text, when it has a `$` (rendered here) */
} ValueRecords;

typedef struct {
    const char *wire;     /* the apex in lowercase wire form */
    Py_ssize_t wire_len;
    int native;           /* 0: every query of this zone goes to Python */
    const char *soa_tail;
    Py_ssize_t soa_tail_len;
    uint32_t ttl;
    PyObject *keys[NQTYPES][2]; /* count keys (zone, qtype, rcode): NOERROR, NXDOMAIN */
    unsigned long counts[NQTYPES][2];
    int ntables[2];       /* [0]: IPv4, [1]: IPv6 */
    Table *tables[2];
    Py_ssize_t nvalues;
    ValueRecords *values;
} Zone;

typedef struct {
    Py_ssize_t nzones;
    Zone *zones;
    PyObject *descriptions; /* the list the zones borrow from, kept alive with them */
} ZoneSet;

static void level_release(Level *level) {
    if (level->kind == 1) PyBuffer_Release(&level->starts);
    if (level->kind != 0) PyBuffer_Release(&level->ids);
}

static void zoneset_free(ZoneSet *set) {
    if (set == NULL) return;
    for (Py_ssize_t z = 0; z < set->nzones; z++) {
        Zone *zone = &set->zones[z];
        for (int f = 0; f < 2; f++) {
            for (int t = 0; t < zone->ntables[f]; t++) {
                Table *table = &zone->tables[f][t];
                for (int l = 0; l < table->nlevels; l++) level_release(&table->levels[l]);
                PyMem_Free(table->levels);
            }
            PyMem_Free(zone->tables[f]);
        }
        PyMem_Free(zone->values);
    }
    PyMem_Free(set->zones);
    Py_XDECREF(set->descriptions);
    PyMem_Free(set);
}

static void zoneset_capsule_free(PyObject *capsule) {
    zoneset_free((ZoneSet *)PyCapsule_GetPointer(capsule, "dnsbl.zoneset"));
}

static int bytes_item(PyObject *tuple, Py_ssize_t i, const char **data, Py_ssize_t *len) {
    PyObject *item = PyTuple_GET_ITEM(tuple, i);
    if (!PyBytes_Check(item)) {
        PyErr_Format(PyExc_TypeError, "zone description item %zd: bytes expected", i);
        return -1;
    }
    *data = PyBytes_AS_STRING(item);
    *len = PyBytes_GET_SIZE(item);
    return 0;
}

static PyObject *optional_bytes(PyObject *item) {
    if (item == Py_None) return NULL;
    if (!PyBytes_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "value records: bytes or None expected");
        return (PyObject *)-1;
    }
    return item;
}

/* A level: (length, starts or None, ids or None). */
static int level_parse(PyObject *desc, int family, Level *level) {
    if (!PyTuple_Check(desc) || PyTuple_GET_SIZE(desc) != 3) {
        PyErr_SetString(PyExc_TypeError, "level: (length, starts, ids) expected");
        return -1;
    }
    level->length = (int)PyLong_AsLong(PyTuple_GET_ITEM(desc, 0));
    if (level->length == -1 && PyErr_Occurred()) return -1;
    if (level->length < 0 || level->length > (family == 4 ? 32 : 128)) {
        PyErr_SetString(PyExc_ValueError, "level: prefix length out of range");
        return -1;
    }
    PyObject *starts = PyTuple_GET_ITEM(desc, 1);
    PyObject *ids = PyTuple_GET_ITEM(desc, 2);
    if (starts == Py_None) {
        level->kind = 0;
        return 0;
    }
    if (PyObject_GetBuffer(ids, &level->ids, PyBUF_FORMAT | PyBUF_ND) < 0) return -1;
    Py_ssize_t size = level->ids.itemsize;
    if ((size != 1 && size != 2 && size != 4 && size != 8) || level->ids.ndim != 1 ||
        level->ids.format == NULL || strchr("BHILQ", level->ids.format[0]) == NULL) {
        PyBuffer_Release(&level->ids);
        PyErr_SetString(PyExc_TypeError, "level: value ids must be an unsigned array");
        return -1;
    }
    Py_ssize_t count = level->ids.len / size;
    if (family == 4 && PyObject_CheckBuffer(starts)) {
        if (PyObject_GetBuffer(starts, &level->starts, PyBUF_FORMAT | PyBUF_ND) < 0) {
            PyBuffer_Release(&level->ids);
            return -1;
        }
        if (level->starts.itemsize != 4 || level->starts.ndim != 1 ||
            level->starts.format == NULL || strchr("IL", level->starts.format[0]) == NULL ||
            level->starts.len / 4 != count) {
            PyBuffer_Release(&level->starts);
            PyBuffer_Release(&level->ids);
            PyErr_SetString(PyExc_TypeError, "level: IPv4 starts must be array('I') of the ids' size");
            return -1;
        }
        level->kind = 1;
    } else if ((PyList_Check(starts) || PyTuple_Check(starts)) &&
               PySequence_Fast_GET_SIZE(starts) == count) {
        level->list = starts;
        level->kind = 2;
    } else {
        PyBuffer_Release(&level->ids);
        PyErr_SetString(PyExc_TypeError, "level: starts must be array('I') or a list of ints");
        return -1;
    }
    level->count = count;
    return 0;
}

/* A table: (levels, delta). */
static int table_parse(PyObject *desc, int family, Table *table) {
    if (!PyTuple_Check(desc) || PyTuple_GET_SIZE(desc) != 2 ||
        !PyTuple_Check(PyTuple_GET_ITEM(desc, 0)) || !PyDict_Check(PyTuple_GET_ITEM(desc, 1))) {
        PyErr_SetString(PyExc_TypeError, "table: (levels tuple, delta dict) expected");
        return -1;
    }
    PyObject *levels = PyTuple_GET_ITEM(desc, 0);
    PyObject *delta = PyTuple_GET_ITEM(desc, 1);
    table->delta = PyDict_GET_SIZE(delta) ? delta : NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(levels);
    table->levels = PyMem_Calloc(n ? n : 1, sizeof(Level));
    if (table->levels == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (level_parse(PyTuple_GET_ITEM(levels, i), family, &table->levels[i]) < 0) return -1;
        table->nlevels = (int)i + 1;
    }
    return 0;
}

/* A zone: (wire, native, soa_tail, ttl, keys, tables4, tables6, values); see native.py. */
static int zone_parse(PyObject *desc, Zone *zone) {
    if (!PyTuple_Check(desc) || PyTuple_GET_SIZE(desc) != 8) {
        PyErr_SetString(PyExc_TypeError, "zone description: a tuple of 8 expected");
        return -1;
    }
    if (bytes_item(desc, 0, &zone->wire, &zone->wire_len) < 0) return -1;
    zone->native = PyObject_IsTrue(PyTuple_GET_ITEM(desc, 1));
    if (zone->native < 0) return -1;
    if (bytes_item(desc, 2, &zone->soa_tail, &zone->soa_tail_len) < 0) return -1;
    unsigned long ttl = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(desc, 3));
    if (PyErr_Occurred()) return -1;
    zone->ttl = (uint32_t)ttl;
    PyObject *keys = PyTuple_GET_ITEM(desc, 4);
    if (!PyTuple_Check(keys) || PyTuple_GET_SIZE(keys) != NQTYPES) {
        PyErr_SetString(PyExc_TypeError, "zone description: 4 key pairs expected");
        return -1;
    }
    for (int q = 0; q < NQTYPES; q++) {
        PyObject *pair = PyTuple_GET_ITEM(keys, q);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "zone description: key pairs expected");
            return -1;
        }
        zone->keys[q][0] = PyTuple_GET_ITEM(pair, 0);
        zone->keys[q][1] = PyTuple_GET_ITEM(pair, 1);
    }
    for (int f = 0; f < 2; f++) {
        PyObject *tables = PyTuple_GET_ITEM(desc, 5 + f);
        if (!PyTuple_Check(tables)) {
            PyErr_SetString(PyExc_TypeError, "zone description: a tuple of tables expected");
            return -1;
        }
        Py_ssize_t n = PyTuple_GET_SIZE(tables);
        zone->tables[f] = PyMem_Calloc(n ? n : 1, sizeof(Table));
        if (zone->tables[f] == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t t = 0; t < n; t++) {
            zone->ntables[f] = (int)t + 1;
            if (table_parse(PyTuple_GET_ITEM(tables, t), f ? 6 : 4, &zone->tables[f][t]) < 0)
                return -1;
        }
    }
    PyObject *values = PyTuple_GET_ITEM(desc, 7);
    if (!PyTuple_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "zone description: a tuple of values expected");
        return -1;
    }
    zone->nvalues = PyTuple_GET_SIZE(values);
    zone->values = PyMem_Calloc(zone->nvalues ? zone->nvalues : 1, sizeof(ValueRecords));
    if (zone->values == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t v = 0; v < zone->nvalues; v++) {
        PyObject *item = PyTuple_GET_ITEM(values, v);
        if (item == Py_None) continue;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_TypeError, "value records: (a, txt, template) expected");
            return -1;
        }
        PyObject *a = optional_bytes(PyTuple_GET_ITEM(item, 0));
        PyObject *txt = optional_bytes(PyTuple_GET_ITEM(item, 1));
        PyObject *template = optional_bytes(PyTuple_GET_ITEM(item, 2));
        if (a == (PyObject *)-1 || txt == (PyObject *)-1 || template == (PyObject *)-1 ||
            a == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "value records: an A record is required");
            return -1;
        }
        zone->values[v].a_record = a;
        zone->values[v].txt_record = txt;
        zone->values[v].txt_template = template;
    }
    return 0;
}

/* -- the engine ---------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *zoneset;    /* a capsule holding the current ZoneSet */
    Py_ssize_t max_payload;
    Py_ssize_t out_size;  /* room for one answer: the largest limit any query can have */
    unsigned char *in;    /* BATCH * MAX_QUERY */
    unsigned char *out;   /* BATCH * out_size */
} Engine;

static void engine_dealloc(Engine *self) {
    Py_XDECREF(self->zoneset);
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

/* -- looking an address up ----------------------------------------------------------------- */

/* The id at `i` of a level's value ids. */
static unsigned long long level_id(const Level *level, Py_ssize_t i) {
    const unsigned char *p = (const unsigned char *)level->ids.buf;
    switch (level->ids.itemsize) {
    case 1: return p[i];
    case 2: return ((const uint16_t *)p)[i];
    case 4: return ((const uint32_t *)p)[i];
    default: return ((const uint64_t *)p)[i];
    }
}

static PyObject *int128_object(u128 value) {
    if (value >> 64 == 0) return PyLong_FromUnsignedLongLong((unsigned long long)value);
    PyObject *high = PyLong_FromUnsignedLongLong((unsigned long long)(value >> 64));
    if (high == NULL) return NULL;
    PyObject *shift = PyLong_FromLong(64);
    PyObject *shifted = shift ? PyNumber_Lshift(high, shift) : NULL;
    Py_XDECREF(shift);
    Py_DECREF(high);
    if (shifted == NULL) return NULL;
    PyObject *low = PyLong_FromUnsignedLongLong((unsigned long long)value);
    PyObject *sum = low ? PyNumber_Or(shifted, low) : NULL;
    Py_XDECREF(low);
    Py_DECREF(shifted);
    return sum;
}

/* The position of `start` in a level, or -1; -2 on a Python error. */
static Py_ssize_t level_find(const Level *level, u128 start, PyObject *start_object) {
    Py_ssize_t low = 0, high = level->count;
    if (level->kind == 1) {
        if (start > 0xFFFFFFFFu) return -1;
        const uint32_t *starts = (const uint32_t *)level->starts.buf;
        uint32_t key = (uint32_t)start;
        while (low < high) {
            Py_ssize_t mid = low + (high - low) / 2;
            if (starts[mid] < key) low = mid + 1;
            else high = mid;
        }
        return low < level->count && starts[low] == key ? low : -1;
    }
    /* The list may not change under us (the index never changes one), but check anyway. */
    if (PySequence_Fast_GET_SIZE(level->list) != level->count) return -1;
    while (low < high) {
        Py_ssize_t mid = low + (high - low) / 2;
        int less = PyObject_RichCompareBool(PySequence_Fast_GET_ITEM(level->list, mid), start_object, Py_LT);
        if (less < 0) return -2;
        if (less) low = mid + 1;
        else high = mid;
    }
    if (low >= level->count) return -1;
    int equal = PyObject_RichCompareBool(PySequence_Fast_GET_ITEM(level->list, low), start_object, Py_EQ);
    if (equal < 0) return -2;
    return equal ? low : -1;
}

/* Table.match: the value id of the longest prefix holding `address`; 0 for none (an
 * exclusion also answers 0: it lists nothing); -1 to hand the query to Python. */
static long long table_match(const Table *table, int bits, u128 address) {
    for (int l = 0; l < table->nlevels; l++) {
        const Level *level = &table->levels[l];
        int length = level->length;
        u128 start = length == 0 ? 0 : (address >> (bits - length)) << (bits - length);
        PyObject *start_object = NULL;
        if (table->delta != NULL || level->kind == 2) {
            start_object = int128_object(start);
            if (start_object == NULL) return -1;
        }
        if (table->delta != NULL) {
            PyObject *key = Py_BuildValue("(iO)", length, start_object);
            if (key == NULL) {
                Py_DECREF(start_object);
                return -1;
            }
            PyObject *hit = PyDict_GetItemWithError(table->delta, key);
            Py_DECREF(key);
            if (hit == NULL && PyErr_Occurred()) {
                Py_DECREF(start_object);
                return -1;
            }
            if (hit == Py_None) {
                Py_DECREF(start_object);
                continue; /* removed from the base: this length says nothing */
            }
            if (hit != NULL) {
                Py_DECREF(start_object);
                long long id = PyLong_AsLongLong(hit);
                return id < 0 ? -1 : id;
            }
        }
        if (level->kind != 0) {
            Py_ssize_t i = level_find(level, start, start_object);
            Py_XDECREF(start_object);
            if (i == -2) return -1;
            if (i >= 0) return (long long)level_id(level, i);
        } else {
            Py_XDECREF(start_object);
        }
    }
    return 0;
}

/* -- answering one query ------------------------------------------------------------------- */

enum { QT_A, QT_TXT, QT_ANY, QT_AAAA }; /* the count slots: FAST_QTYPES order */

typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int full;
} Writer;

static void put(Writer *w, const void *data, size_t n) {
    if (w->full || n > w->cap - w->len) {
        w->full = 1;
        return;
    }
    memcpy(w->buf + w->len, data, n);
    w->len += n;
}

static void put_u16(Writer *w, unsigned v) {
    unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    put(w, b, 2);
}

static int octet_label(const unsigned char *p, Py_ssize_t left, int *value, Py_ssize_t *used) {
    if (left < 2) return 0;
    int n = p[0];
    if (n < 1 || n > 3 || left < 1 + n) return 0;
    int v = 0;
    for (int i = 1; i <= n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (p[i] - '0');
    }
    if (n > 1 && p[1] == '0') return 0; /* "01" names nothing */
    if (v > 255) return 0;
    *value = v;
    *used = 1 + n;
    return 1;
}

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The zone whose apex is exactly packet[offset .. first zero byte], or NULL. */
static Zone *zone_at(ZoneSet *set, const unsigned char *p, Py_ssize_t size, Py_ssize_t offset,
                     Py_ssize_t *end) {
    if (offset >= size) return NULL;
    const unsigned char *zero = memchr(p + offset, 0, (size_t)(size - offset));
    if (zero == NULL) return NULL;
    *end = zero - p;
    Py_ssize_t len = *end + 1 - offset;
    for (Py_ssize_t z = 0; z < set->nzones; z++) {
        Zone *zone = &set->zones[z];
        if (zone->wire_len != len) continue;
        Py_ssize_t i = 0;
        for (; i < len; i++) {
            unsigned char c = p[offset + i];
            if (c >= 'A' && c <= 'Z') c += 32; /* bytes.lower(): ASCII only */
            if (c != (unsigned char)zone->wire[i]) break;
        }
        if (i == len) return zone;
    }
    return NULL;
}

/* The address as dnsbl.addresses.address_text writes it, or 0 where this cannot promise to:
 * inet_ntop and Python's ipaddress agree on RFC 5952 form except where the first 80 bits
 * are zero (inet_ntop writes an embedded IPv4 address there), which Python then renders. */
static size_t address_text(char *out, int family, uint32_t v4, u128 v6) {
    if (family == 4)
        return (size_t)snprintf(out, INET6_ADDRSTRLEN, "%u.%u.%u.%u", v4 >> 24, (v4 >> 16) & 255,
                                (v4 >> 8) & 255, v4 & 255);
    if (v6 >> 48 == 0) return 0;
    unsigned char raw[16];
    for (int i = 0; i < 16; i++) raw[i] = (unsigned char)(v6 >> (8 * (15 - i)));
    if (inet_ntop(AF_INET6, raw, out, INET6_ADDRSTRLEN) == NULL) return 0;
    return strlen(out);
}

/* The TXT record of a `$` template for an address (as zones.txt_record makes it). */
static void put_txt_rendered(Writer *w, const Zone *zone, PyObject *template, const char *shown,
                             size_t shown_len) {
    const unsigned char *t = (const unsigned char *)PyBytes_AS_STRING(template);
    Py_ssize_t n = PyBytes_GET_SIZE(template);
    /* The text first, into the answer's room past the record's fixed part. */
    size_t lead = 12; /* pointer, type, class, TTL, RDLENGTH */
    if (w->full || w->cap - w->len < lead) {
        w->full = 1;
        return;
    }
    size_t base = w->len;
    Writer text = {w->buf + base + lead, 0, w->cap - base - lead, 0};
    for (Py_ssize_t i = 0; i < n; i++) {
        if (t[i] != '$') put(&text, &t[i], 1);
        else if (i + 1 < n && t[i + 1] == '$') {
            put(&text, "$", 1);
            i++;
        } else put(&text, shown, shown_len);
    }
    if (text.full) {
        w->full = 1;
        return;
    }
    /* Cut into 255-byte character-strings: one length byte before each, moved in place
     * from the back so nothing is overwritten before it is moved. */
    size_t chunks = text.len ? (text.len + 254) / 255 : 1;
    size_t rdlength = text.len + chunks;
    if (rdlength > 65535 || w->cap - base - lead < rdlength) {
        w->full = 1;
        return;
    }
    unsigned char *data = w->buf + base + lead;
    for (size_t c = chunks; c-- > 0;) {
        size_t from = c * 255;
        size_t size = text.len - from < 255 ? text.len - from : 255;
        if (text.len == 0) size = 0;
        memmove(data + from + c + 1, data + from, size);
        data[from + c] = (unsigned char)size;
    }
    unsigned char fixed[12] = {0xC0, 0x0C, 0x00, 0x10, 0x00, 0x01,
                               (unsigned char)(zone->ttl >> 24), (unsigned char)(zone->ttl >> 16),
                               (unsigned char)(zone->ttl >> 8), (unsigned char)zone->ttl,
                               (unsigned char)(rdlength >> 8), (unsigned char)rdlength};
    memcpy(w->buf + base, fixed, 12);
    w->len = base + lead + rdlength;
}

/* The answer to packet[0:size] into `w`, and its count slot; 0 when Python must answer. */
static int answer(ZoneSet *set, Py_ssize_t max_payload, const unsigned char *p, Py_ssize_t size,
                  Writer *w, Zone **counted, int *qtype_slot, int *rcode_slot) {
    static const unsigned char counts_plain[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    static const unsigned char counts_edns[8] = {0, 1, 0, 0, 0, 0, 0, 1};
    if (size < 17 || (p[2] & 0xFE)) return 0;
    if (memcmp(p + 4, counts_plain, 8) != 0 && memcmp(p + 4, counts_edns, 8) != 0) return 0;

    Zone *zone = NULL;
    Py_ssize_t offset = 12, end = 0;
    int family = 4;
    uint32_t v4 = 0;
    u128 v6 = 0;
    int octets[4], ok = 1;
    for (int i = 0; i < 4 && ok; i++) {
        Py_ssize_t used;
        ok = octet_label(p + offset, size - offset, &octets[i], &used);
        if (ok) offset += used;
    }
    if (ok) {
        zone = zone_at(set, p, size, offset, &end);
        v4 = (uint32_t)octets[3] << 24 | (uint32_t)octets[2] << 16 | (uint32_t)octets[1] << 8 |
             (uint32_t)octets[0];
    }
    if (zone == NULL) {
        if (size < 76) return 0;
        for (int i = 0; i < 32; i++) {
            if (p[12 + 2 * i] != 1 || hex_value(p[13 + 2 * i]) < 0) return 0;
        }
        offset = 76;
        zone = zone_at(set, p, size, offset, &end);
        if (zone == NULL) return 0;
        family = 6;
        for (int i = 31; i >= 0; i--) v6 = v6 << 4 | (u128)hex_value(p[13 + 2 * i]);
    }
    if (!zone->native || end > 266) return 0;
    Py_ssize_t qend = end + 5;
    if (qend > size || p[end + 3] != 0 || p[end + 4] != 1 || p[end + 1] != 0) return 0;
    int qtype;
    switch (p[end + 2]) {
    case 1: qtype = QT_A; break;
    case 16: qtype = QT_TXT; break;
    case 255: return 0; /* ANY: what it answers over UDP is the Python path's policy */
    case 28: qtype = QT_AAAA; break;
    default: return 0;
    }
    Py_ssize_t limit;
    int edns = p[11] != 0;
    if (edns) {
        if (size != qend + 11 || p[qend] != 0 || p[qend + 1] != 0 || p[qend + 2] != 41) return 0;
        if (p[qend + 6] || p[qend + 9] || p[qend + 10]) return 0;
        Py_ssize_t payload = p[qend + 3] << 8 | p[qend + 4];
        limit = payload < 512 ? 512 : payload;
        if (limit > max_payload) limit = max_payload;
    } else {
        if (size != qend) return 0;
        limit = 512;
    }
    /* The RFC 5782 test addresses are the Python path's. */
    if (family == 4 && (v4 == 0x7F000001u || v4 == 0x7F000002u)) return 0;
    if (family == 6 && (v6 == 1 || v6 == (((u128)0xFFFF7F00u << 16) | 1) ||
                        v6 == (((u128)0xFFFF7F00u << 16) | 2)))
        return 0;

    /* The values that list the address, one per category, in the tables' order. */
    long long found[MAX_VALUES];
    int nfound = 0;
    int f = family == 4 ? 0 : 1;
    for (int t = 0; t < zone->ntables[f]; t++) {
        long long id = table_match(&zone->tables[f][t], family == 4 ? 32 : 128,
                                   family == 4 ? (u128)v4 : v6);
        if (id < 0) {
            PyErr_Clear();
            return 0;
        }
        if (id == 0) continue;
        if (id >= zone->nvalues || nfound == MAX_VALUES) return 0;
        if (zone->values[id].a_record == NULL) continue;
        found[nfound++] = id;
    }
    if (nfound == 0 && offset == 20) return 0; /* also an IPv6 /16: maybe an empty non-terminal */

    w->len = 0;
    w->full = 0;
    w->cap = (size_t)limit;
    unsigned char header[12] = {p[0], p[1], (unsigned char)(0x84 | (p[2] & 1)), 0, 0, 1, 0, 0,
                                0, 0, 0, (unsigned char)edns};
    put(w, header, 12);
    put(w, p + 12, (size_t)(qend - 12));
    unsigned records = 0;
    if (qtype == QT_A) {
        for (int i = 0; i < nfound; i++) {
            PyObject *a = zone->values[found[i]].a_record;
            int seen = 0;
            for (int j = 0; j < i && !seen; j++) {
                PyObject *b = zone->values[found[j]].a_record;
                seen = a == b || (PyBytes_GET_SIZE(a) == PyBytes_GET_SIZE(b) &&
                                  memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b),
                                         (size_t)PyBytes_GET_SIZE(a)) == 0);
            }
            if (seen) continue;
            put(w, PyBytes_AS_STRING(a), (size_t)PyBytes_GET_SIZE(a));
            records++;
        }
    }
    if (qtype == QT_TXT) {
        size_t starts[MAX_VALUES];
        size_t lengths[MAX_VALUES];
        int ntxt = 0;
        char shown[INET6_ADDRSTRLEN];
        size_t shown_len = 0;
        for (int i = 0; i < nfound; i++) {
            ValueRecords *value = &zone->values[found[i]];
            if (value->txt_record == NULL && value->txt_template == NULL) continue;
            size_t at = w->len;
            if (value->txt_record != NULL)
                put(w, PyBytes_AS_STRING(value->txt_record),
                    (size_t)PyBytes_GET_SIZE(value->txt_record));
            else {
                if (shown_len == 0) shown_len = address_text(shown, family, v4, v6);
                if (shown_len == 0) return 0; /* an address only Python writes as text */
                put_txt_rendered(w, zone, value->txt_template, shown, shown_len);
            }
            if (w->full) return 0;
            size_t len = w->len - at;
            int seen = 0;
            for (int j = 0; j < ntxt && !seen; j++)
                seen = lengths[j] == len && memcmp(w->buf + starts[j], w->buf + at, len) == 0;
            if (seen) {
                w->len = at; /* an RRset holds no duplicates */
                continue;
            }
            starts[ntxt] = at;
            lengths[ntxt++] = len;
            records++;
        }
    }
    int rcode = nfound ? 0 : 3;
    if (records == 0) {
        /* The SOA's owner is the apex: a pointer into the question's name. */
        put_u16(w, 0xC000 | (unsigned)offset);
        put(w, zone->soa_tail, (size_t)zone->soa_tail_len);
    }
    if (edns) {
        unsigned char opt[11] = {0, 0, 41, (unsigned char)(max_payload >> 8),
                                 (unsigned char)max_payload, 0, 0, 0, 0, 0, 0};
        put(w, opt, 11);
    }
    if (w->full) return 0; /* too long for the transport: Python answers with TC */
    w->buf[3] = (unsigned char)((p[3] & 0x10) | rcode);
    w->buf[6] = (unsigned char)(records >> 8);
    w->buf[7] = (unsigned char)records;
    w->buf[9] = records ? 0 : 1;
    *counted = zone;
    *qtype_slot = qtype;
    *rcode_slot = rcode ? 1 : 0;
    return 1;
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

static int flush_counts(ZoneSet *set, PyObject *counts) {
    int status = 0;
    for (Py_ssize_t z = 0; z < set->nzones; z++) {
        Zone *zone = &set->zones[z];
        for (int q = 0; q < NQTYPES; q++) {
            for (int r = 0; r < 2; r++) {
                unsigned long n = zone->counts[q][r];
                if (n == 0) continue;
                zone->counts[q][r] = 0;
                if (status < 0) continue;
                PyObject *key = zone->keys[q][r];
                PyObject *have = PyDict_GetItemWithError(counts, key);
                if (have == NULL && PyErr_Occurred()) {
                    status = -1;
                    continue;
                }
                PyObject *add = PyLong_FromUnsignedLong(n);
                PyObject *sum = add && have ? PyNumber_Add(have, add) : add;
                if (sum == NULL || PyDict_SetItem(counts, key, sum) < 0) status = -1;
                if (sum != add) Py_XDECREF(sum);
                Py_XDECREF(add);
            }
        }
    }
    return status;
}

/* serve(fd, counts) -> (answered, [(datagram, peer), ...]) */
static PyObject *engine_serve(Engine *self, PyObject *args) {
    int fd;
    PyObject *counts;
    if (!PyArg_ParseTuple(args, "iO!", &fd, &PyDict_Type, &counts)) return NULL;
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
            return Py_BuildValue("(i[])", 0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *handed = PyList_New(0);
    if (handed == NULL) return NULL;
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
        if (set != NULL && answer(set, self->max_payload, packet, size, &w, &zone, &qtype, &rcode)) {
            zone->counts[qtype][rcode]++;
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
    if (set != NULL && flush_counts(set, counts) < 0) PyErr_Clear();
    Py_XDECREF(capsule);
    return Py_BuildValue("(iN)", answered, handed);
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
    if (set != NULL && answer(set, self->max_payload, copy, size, &w, &zone, &qtype, &rcode)) {
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
    {"serve", (PyCFunction)engine_serve, METH_VARARGS,
     "Read one batch from the UDP socket `fd` and answer what it can; returns (answered, "
     "[(datagram, peer), ...]) with the datagrams the Python path must answer."},
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
    PyModule_AddIntConstant(m, "BATCH", BATCH);
    return m;
}
