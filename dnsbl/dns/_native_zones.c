/* Reading a zone description (dnsbl.dns.native.zone_description) into C structures that
 * borrow from it: buffer views of the index's arrays, its overlay dict, its records. */
#include "_native.h"

static void level_release(Level *level) {
    if (level->kind == 1) PyBuffer_Release(&level->starts);
    if (level->kind != 0) PyBuffer_Release(&level->ids);
}

void zoneset_free(ZoneSet *set) {
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
        PyMem_Free(zone->allow.items);
    }
    PyMem_Free(set->zones);
    Py_XDECREF(set->descriptions);
    PyMem_Free(set);
}

void zoneset_capsule_free(PyObject *capsule) {
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

/* A zone: (wire, native, soa_tail, ttl, keys, tables4, tables6, values, name, guarded,
 * allow, verdict_keys); see native.py. */
int zone_parse(PyObject *desc, Zone *zone) {
    if (!PyTuple_Check(desc) || PyTuple_GET_SIZE(desc) != 12) {
        PyErr_SetString(PyExc_TypeError, "zone description: a tuple of 12 expected");
        return -1;
    }
    Py_ssize_t name_len;
    const char *name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(desc, 8), &name_len);
    if (name == NULL) return -1;
    zone->name_hash = hash_bytes((const unsigned char *)name, (size_t)name_len);
    zone->guarded = PyObject_IsTrue(PyTuple_GET_ITEM(desc, 9));
    if (zone->guarded < 0) return -1;
    if (networks_parse(PyTuple_GET_ITEM(desc, 10), &zone->allow) < 0) return -1;
    PyObject *verdict_keys = PyTuple_GET_ITEM(desc, 11);
    if (!PyTuple_Check(verdict_keys) || PyTuple_GET_SIZE(verdict_keys) != NVERDICTS) {
        PyErr_SetString(PyExc_TypeError, "zone description: 3 verdict keys expected");
        return -1;
    }
    for (int v = 0; v < NVERDICTS; v++) zone->verdict_keys[v] = PyTuple_GET_ITEM(verdict_keys, v);
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
