/* Answering one query: the address looked up in a zone's tables (longest prefix, the
 * overlay first), the answer joined from the prebuilt records, as dnsbl.dns.wire does. */
#include "_native.h"

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
int answer(ZoneSet *set, Py_ssize_t max_payload, const unsigned char *p, Py_ssize_t size,
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
