/* The native engine's shared parts: a zone as the C code holds it, and the functions the
 * engine (_native.c) calls in the zone reader (_native_zones.c) and the answerer
 * (_native_answer.c). See _native.c for what the engine is. */
#ifndef DNSBL_NATIVE_H
#define DNSBL_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64          /* datagrams per batch: what one take of the GIL answers at most */
#define MAX_QUERY 4096    /* longer datagrams arrive cut (the Python path does the same) */
#define MAX_VALUES 64     /* values one answer may join; more go to Python */
#define MAX_BOUNDS 32     /* latency histogram bounds at most */
#define NQTYPES 4         /* A, TXT, ANY, AAAA: the order of the zone description's keys */

typedef unsigned __int128 u128;

/* -- sources and networks (_native_rrl.c) --------------------------------------------------- */

/* A query's source as dnsbl.dns.access.source_address reads it: an IPv4-mapped IPv6 address
 * is IPv4. `family` 4 uses addr[0..3]. */
typedef struct {
    int family;
    unsigned char addr[16];
} Source;

typedef struct {
    unsigned char family, prefix;
    unsigned char addr[16];
} Network;

/* A list of networks: an allow list, or rate limiting's exempt networks. */
typedef struct {
    Py_ssize_t n;
    Network *items;
} Networks;

enum { V_ALLOWED, V_RATE_LIMITED, V_SLIPPED, NVERDICTS }; /* a zone's verdict count slots */
enum { RRL_SEND, RRL_SLIP, RRL_DROP }; /* dnsbl.dns.ratelimit.Action */

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
    uint64_t name_hash;   /* of the zone's name: its NXDOMAIN and empty answers' RRL class */
    int guarded;          /* answered only to sources in `allow`; the others go to Python */
    Networks allow;
    PyObject *verdict_keys[NVERDICTS]; /* access count keys (zone, verdict) */
    unsigned long verdicts[NVERDICTS];
} Zone;

typedef struct {
    Py_ssize_t nzones;
    Zone *zones;
    PyObject *descriptions; /* the list the zones borrow from, kept alive with them */
} ZoneSet;

/* An answer being written, never past `cap` (the transport's limit): `full` once it would. */
typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int full;
} Writer;

enum { QT_A, QT_TXT, QT_ANY, QT_AAAA }; /* the count slots: FAST_QTYPES order */

/* _native_rrl.c: sources, network lists and the rate limiter (a Python type, RateLimiter). */
extern PyTypeObject LimiterType;
typedef struct Limiter Limiter;
int source_of(const struct sockaddr_storage *addr, Source *out);
int networks_parse(PyObject *list, Networks *out);
int networks_contain(const Networks *networks, const Source *source);
uint64_t hash_bytes(const unsigned char *data, size_t len);
int limiter_check(Limiter *l, const Source *source, const unsigned char *answer, size_t len,
                  uint64_t zone_hash, double now, int *episode);
int limiter_log_only(const Limiter *l);
int limiter_cleared(const Limiter *l);
int limiter_ready(const Limiter *l);
size_t truncate_answer(unsigned char *answer, size_t len);
double monotonic_now(void);
int rrl_module_init(PyObject *module);

/* _native_zones.c: a zone description (dnsbl.dns.native.zone_description) read in. */
int zone_parse(PyObject *desc, Zone *zone);
void zoneset_free(ZoneSet *set);
void zoneset_capsule_free(PyObject *capsule);

/* _native_answer.c: the answer to packet[0:size] into `w` and its count slot; 0 when the
 * Python path must answer it. */
int answer(ZoneSet *set, Py_ssize_t max_payload, const unsigned char *p, Py_ssize_t size,
           Writer *w, Zone **counted, int *qtype_slot, int *rcode_slot);

#endif
