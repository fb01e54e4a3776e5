/* fields_mapping: compiling a pipe's mapping into a tree of target keys, and writing rows
 * through it; see fieldmap.h. The conversions are Python's, as Fustor v1 applies them:
 * str(), int(), float() and v1's own boolean test, a failed one keeping the original value.
 *
 * Why a tree: dotted targets nest ("a.b" and "a.c" share one "a" object), and an object is
 * written only when some value under it is. Each object node knows which row fields its
 * leaves read (a bit mask) and whether it holds a hardcoded value, so that test is one AND
 * per object and a row is written in one pass, without building anything. */
#include "agent/fieldmap.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const fu_fm_field_names[FU_FM_NFIELDS] = {
    "path",         "file_name",   "size",         "modified_time", "created_time",
    "is_directory", "parent_path", "parent_mtime", "audit_skipped", "is_atomic_write"};

enum conv { CONV_NONE, CONV_STR, CONV_INT, CONV_FLOAT, CONV_BOOL };
enum kind { K_OBJ, K_FIELD, K_CONST };

#define FIELD_NONE 0xFF /* a source field no row has: never written */

struct node {
    char *key; /* owned; NULL for the root */
    size_t key_len;
    enum kind kind;
    uint8_t field;      /* K_FIELD: enum fu_fm_field or FIELD_NONE */
    uint8_t conv;       /* K_FIELD: enum conv */
    char *json;         /* K_CONST: the value as canonical JSON, owned */
    size_t json_len;    /* K_CONST */
    unsigned mask;      /* K_OBJ: fields the leaves under it read */
    bool has_const;     /* K_OBJ: a hardcoded value under it, so it is always written */
    struct node *kids;  /* K_OBJ: owned, in the order of their first mention */
    size_t nkids, ncap; /* K_OBJ */
};

struct fu_fieldmap {
    struct node root;
    char *fields_json;
};

void fu_fm_row_init(struct fu_fm_row *r, const char *path, size_t len, bool attrs, uint64_t size,
                    double mtime, double ctime, bool is_dir)
{
    const char *slash = memrchr(path, '/', len);
    *r = (struct fu_fm_row){
        .present = FU_FM_BIT(FU_FM_PATH) | FU_FM_BIT(FU_FM_FILE_NAME),
        .path = path,
        .path_len = len,
        .file_name = slash ? slash + 1 : path,
        .file_name_len = slash ? len - (size_t)(slash + 1 - path) : len,
    };
    if (!attrs)
        return;
    r->present |= FU_FM_BIT(FU_FM_SIZE) | FU_FM_BIT(FU_FM_MODIFIED_TIME) |
                  FU_FM_BIT(FU_FM_CREATED_TIME) | FU_FM_BIT(FU_FM_IS_DIRECTORY);
    r->size = size;
    r->modified_time = mtime;
    r->created_time = ctime;
    r->is_directory = is_dir;
}

/* ------------------------------------------------------------ Python's conversions */

/* Python's str.strip() set, ASCII part: space, \t \n \v \f \r and \x1c-\x1f. */
static bool py_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static void py_strip(const char **s, size_t *n)
{
    while (*n && py_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && py_space((*s)[*n - 1]))
        (*n)--;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Digits with single '_' between them (Python's digitpart), from s[*i]; copied to out
 * without the underscores. False if there is not one digit, or an '_' is misplaced. */
static bool digitpart(const char *s, size_t n, size_t *i, char *out, size_t *o)
{
    if (*i >= n || !is_digit(s[*i]))
        return false;
    while (*i < n) {
        if (is_digit(s[*i])) {
            out[(*o)++] = s[(*i)++];
        } else if (s[*i] == '_' && *i + 1 < n && is_digit(s[*i + 1])) {
            (*i)++;
        } else {
            break;
        }
    }
    return true;
}

/* int(s) of a decimal text: the integer's digits (any length, as Python's) into *out
 * (malloc'd, caller frees). False if Python would raise. */
static bool py_int_text(const char *s, size_t n, char **out)
{
    py_strip(&s, &n);
    size_t i = 0, o = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    char *d = malloc(n + 2);
    if (!d)
        return false;
    d[o++] = '-';
    if (!digitpart(s, n, &i, d, &o) || i != n) {
        free(d);
        return false;
    }
    size_t z = 1; /* leading zeros go; zero has no sign */
    while (z + 1 < o && d[z] == '0')
        z++;
    if (z + 1 == o && d[z] == '0')
        neg = false;
    if (neg)
        d[--z] = '-';
    memmove(d, d + z, o - z);
    d[o - z] = '\0';
    *out = d;
    return true;
}

/* float(s) of a decimal text, as Python parses it (underscores between digits, "1.", ".5",
 * exponents). Python's "inf" and "nan", and overflows to infinity, have no JSON form: they
 * count as failures here, and the original string is kept. */
static bool py_float_text(const char *s, size_t n, double *out)
{
    py_strip(&s, &n);
    char small[128];
    char *d = n + 2 <= sizeof(small) ? small : malloc(n + 2);
    if (!d)
        return false;
    size_t i = 0, o = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        d[o++] = s[i++];
    bool ok = digitpart(s, n, &i, d, &o);
    if (i < n && s[i] == '.') {
        d[o++] = s[i++];
        ok = digitpart(s, n, &i, d, &o) || ok; /* "1." and ".5", not "." */
    }
    if (ok && i < n && (s[i] == 'e' || s[i] == 'E')) {
        d[o++] = s[i++];
        if (i < n && (s[i] == '+' || s[i] == '-'))
            d[o++] = s[i++];
        ok = digitpart(s, n, &i, d, &o);
    }
    ok = ok && i == n;
    d[o] = '\0';
    if (ok) {
        *out = strtod(d, NULL);
        ok = isfinite(*out);
    }
    if (d != small)
        free(d);
    return ok;
}

/* repr(v) of a Python float: the shortest digits that read back to v, fixed notation for
 * exponents -4..15 with at least one decimal, else d.ddde+XX. `out` holds 32 bytes. */
static size_t py_float_repr(double v, char *out)
{
    if (!isfinite(v))
        return (size_t)sprintf(out, "%s", isnan(v) ? "nan" : v < 0 ? "-inf" : "inf");
    char tmp[40];
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    char dig[24];
    size_t nd = 0, o = 0;
    const char *p = tmp + (tmp[0] == '-');
    for (; *p && *p != 'e'; p++)
        if (is_digit(*p))
            dig[nd++] = *p;
    int exp = *p ? atoi(p + 1) : 0;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    if (tmp[0] == '-')
        out[o++] = '-';
    if (exp >= 16 || exp < -4) {
        out[o++] = dig[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, dig + 1, nd - 1);
            o += nd - 1;
        }
        return o + (size_t)sprintf(out + o, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    }
    if (exp < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int k = -1; k > exp; k--)
            out[o++] = '0';
        memcpy(out + o, dig, nd);
        return o + nd;
    }
    for (size_t k = 0; k <= (size_t)exp; k++)
        out[o++] = k < nd ? dig[k] : '0';
    out[o++] = '.';
    if ((size_t)exp + 1 < nd) {
        memcpy(out + o, dig + exp + 1, nd - (size_t)exp - 1);
        o += nd - (size_t)exp - 1;
    } else {
        out[o++] = '0';
    }
    return o;
}

/* v1's boolean of a string: 'true', '1', 'yes' and 'on' in any case; anything else is false. */
static bool py_str_truthy(const char *s, size_t n)
{
    static const char *const t[] = {"true", "1", "yes", "on"};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strlen(t[i]) == n && !strncasecmp(s, t[i], n))
            return true;
    return false;
}

/* ------------------------------------------------------------ writing values */

static void put_str(struct fu_jw *w, enum conv c, const char *s, size_t n)
{
    char *digits;
    double d;
    switch (c) {
    case CONV_INT:
        if (py_int_text(s, n, &digits)) {
            fu_jw_raw(w, digits, strlen(digits));
            free(digits);
            return;
        }
        break;
    case CONV_FLOAT:
        if (py_float_text(s, n, &d)) {
            fu_jw_double(w, d);
            return;
        }
        break;
    case CONV_BOOL:
        fu_jw_bool(w, py_str_truthy(s, n));
        return;
    default:
        break;
    }
    fu_jw_str(w, s, n);
}

static void put_u64(struct fu_jw *w, enum conv c, uint64_t v)
{
    char tmp[24];
    switch (c) {
    case CONV_STR:
        fu_jw_str(w, tmp, (size_t)snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v));
        break;
    case CONV_FLOAT:
        fu_jw_double(w, (double)v);
        break;
    case CONV_BOOL:
        fu_jw_bool(w, v != 0);
        break;
    default:
        fu_jw_uint(w, v);
    }
}

static void put_double(struct fu_jw *w, enum conv c, double v)
{
    char tmp[400]; /* "%.0f" of DBL_MAX has 309 digits */
    switch (c) {
    case CONV_STR:
        fu_jw_str(w, tmp, py_float_repr(v, tmp));
        break;
    case CONV_INT: /* int() truncates; of inf or nan it raises, and v stays */
        if (isfinite(v)) {
            double t = trunc(v);
            int n =
                t == 0 ? snprintf(tmp, sizeof(tmp), "0") : snprintf(tmp, sizeof(tmp), "%.0f", t);
            fu_jw_raw(w, tmp, (size_t)n);
        } else {
            fu_jw_double(w, v);
        }
        break;
    case CONV_BOOL:
        fu_jw_bool(w, v != 0); /* NaN is true, as in Python */
        break;
    default:
        fu_jw_double(w, v);
    }
}

static void put_bool(struct fu_jw *w, enum conv c, bool v)
{
    switch (c) {
    case CONV_STR:
        fu_jw_cstr(w, v ? "True" : "False");
        break;
    case CONV_INT:
        fu_jw_int(w, v);
        break;
    case CONV_FLOAT:
        fu_jw_double(w, v ? 1.0 : 0.0);
        break;
    default:
        fu_jw_bool(w, v);
    }
}

static void put_field(struct fu_jw *w, const struct node *n, const struct fu_fm_row *r)
{
    enum conv c = (enum conv)n->conv;
    switch ((enum fu_fm_field)n->field) {
    case FU_FM_PATH:
        put_str(w, c, r->path, r->path_len);
        break;
    case FU_FM_FILE_NAME:
        put_str(w, c, r->file_name, r->file_name_len);
        break;
    case FU_FM_PARENT_PATH:
        put_str(w, c, r->parent_path, r->parent_path_len);
        break;
    case FU_FM_SIZE:
        put_u64(w, c, r->size);
        break;
    case FU_FM_MODIFIED_TIME:
        put_double(w, c, r->modified_time);
        break;
    case FU_FM_CREATED_TIME:
        put_double(w, c, r->created_time);
        break;
    case FU_FM_PARENT_MTIME:
        put_double(w, c, r->parent_mtime);
        break;
    case FU_FM_IS_DIRECTORY:
        put_bool(w, c, r->is_directory);
        break;
    case FU_FM_AUDIT_SKIPPED:
        put_bool(w, c, r->audit_skipped);
        break;
    case FU_FM_IS_ATOMIC_WRITE:
        put_bool(w, c, r->is_atomic_write);
        break;
    case FU_FM_NFIELDS:
        break;
    }
}

static void write_obj(const struct node *obj, struct fu_jw *w, const struct fu_fm_row *r)
{
    for (size_t i = 0; i < obj->nkids; i++) {
        const struct node *n = &obj->kids[i];
        switch (n->kind) {
        case K_FIELD:
            if (n->field == FIELD_NONE || !(r->present & FU_FM_BIT(n->field)))
                continue; /* v1: a None value is not written */
            fu_jw_key(w, n->key, n->key_len);
            put_field(w, n, r);
            break;
        case K_CONST:
            fu_jw_key(w, n->key, n->key_len);
            fu_jw_raw(w, n->json, n->json_len);
            break;
        case K_OBJ:
            if (!n->has_const && !(n->mask & r->present))
                continue; /* nothing under it would be written */
            fu_jw_key(w, n->key, n->key_len);
            fu_jw_obj_begin(w);
            write_obj(n, w, r);
            fu_jw_obj_end(w);
            break;
        }
    }
}

void fu_fieldmap_write(const struct fu_fieldmap *m, struct fu_jw *w, const struct fu_fm_row *r)
{
    write_obj(&m->root, w, r);
}

const char *fu_fieldmap_fields_json(const struct fu_fieldmap *m)
{
    return m->fields_json;
}

/* ------------------------------------------------------------ compiling */

static void node_free(struct node *n)
{
    for (size_t i = 0; i < n->nkids; i++)
        node_free(&n->kids[i]);
    free(n->kids);
    free(n->key);
    free(n->json);
}

void fu_fieldmap_free(struct fu_fieldmap *m)
{
    if (!m)
        return;
    node_free(&m->root);
    free(m->fields_json);
    free(m);
}

static struct node *kid_find(struct node *obj, const char *key, size_t len)
{
    for (size_t i = 0; i < obj->nkids; i++)
        if (obj->kids[i].key_len == len && !memcmp(obj->kids[i].key, key, len))
            return &obj->kids[i];
    return NULL;
}

static struct node *kid_add(struct node *obj, const char *key, size_t len, enum kind kind)
{
    if (obj->nkids == obj->ncap) {
        size_t cap = obj->ncap ? obj->ncap * 2 : 4;
        struct node *v = realloc(obj->kids, cap * sizeof(*v));
        if (!v)
            return NULL;
        obj->kids = v;
        obj->ncap = cap;
    }
    struct node *n = &obj->kids[obj->nkids];
    *n = (struct node){.kind = kind, .key = strndup(key, len), .key_len = len};
    if (!n->key)
        return NULL;
    obj->nkids++;
    return n;
}

/* "field:type": the field's id (FIELD_NONE if no row has it) and the conversion. As in v1,
 * the field ends at the first ':'. */
static int parse_source(const char *spec, uint8_t *field, uint8_t *conv)
{
    static const struct {
        const char *name;
        enum conv c;
    } types[] = {{"string", CONV_STR},   {"str", CONV_STR},      {"integer", CONV_INT},
                 {"int", CONV_INT},      {"number", CONV_FLOAT}, {"float", CONV_FLOAT},
                 {"boolean", CONV_BOOL}, {"bool", CONV_BOOL}};
    size_t fl = strcspn(spec, ":");
    *field = FIELD_NONE;
    for (int f = 0; f < FU_FM_NFIELDS; f++)
        if (strlen(fu_fm_field_names[f]) == fl && !strncmp(spec, fu_fm_field_names[f], fl))
            *field = (uint8_t)f;
    *conv = CONV_NONE;
    if (!spec[fl])
        return 0;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(spec + fl + 1, types[i].name)) {
            *conv = (uint8_t)types[i].c;
            return 0;
        }
    return -EINVAL;
}

/* The value's canonical JSON (as Python would send it: -2.5e3 goes as -2500.0). */
static char *canonical_json(const char *text, size_t *len)
{
    struct fu_buf b = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &b);
    struct fu_jr r;
    fu_jr_init(&r, text, strlen(text));
    enum fu_json_tok t = fu_jr_next(&r);
    if (t == FU_JSON_ERROR || fu_json_copy_value(&r, t, &w) < 0 || fu_jr_next(&r) != FU_JSON_EOF) {
        fu_buf_reset(&b); /* not ours to judge: config validation made it; send it as is */
        fu_buf_puts(&b, text);
    }
    fu_jr_free(&r);
    if (b.oom) {
        fu_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return fu_buf_detach(&b);
}

/* Adds one mapping's leaf under root; -EINVAL with a message when its target clashes. */
static int insert(struct node *root, const struct fu_cfg_field_map *fm, char *err, size_t errlen)
{
    const char *to = fm->to ? fm->to : "";
    struct node *cur = root;
    const char *seg = to;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        if (!len) {
            snprintf(err, errlen, "'to: %s' has an empty key", to);
            return -EINVAL;
        }
        struct node *n = kid_find(cur, seg, len);
        if (dot) {
            if (n && n->kind != K_OBJ) {
                snprintf(err, errlen, "'to: %s': '%.*s' is also a value", to, (int)(dot - to), to);
                return -EINVAL;
            }
            if (!n && !(n = kid_add(cur, seg, len, K_OBJ)))
                return -ENOMEM;
            cur = n;
            seg = dot + 1;
            continue;
        }
        if (n) {
            snprintf(err, errlen, "'to: %s' is %s", to,
                     n->kind == K_OBJ ? "also an object" : "mapped twice");
            return -EINVAL;
        }
        if (!fm->hardcoded_value && !fm->source.n) {
            snprintf(err, errlen, "'to: %s' has no source nor hardcoded_value", to);
            return -EINVAL;
        }
        struct node *leaf = kid_add(cur, seg, len, fm->hardcoded_value ? K_CONST : K_FIELD);
        if (!leaf)
            return -ENOMEM;
        if (fm->hardcoded_value) {
            if (!(leaf->json = canonical_json(fm->hardcoded_value, &leaf->json_len)))
                return -ENOMEM;
        } else if (parse_source(fm->source.v[0], &leaf->field, &leaf->conv) < 0) {
            snprintf(err, errlen, "'to: %s': unknown type in '%s'", to, fm->source.v[0]);
            return -EINVAL;
        }
        return 0;
    }
}

/* Each object's mask and has_const, from its leaves up. */
static void summarise(struct node *obj)
{
    for (size_t i = 0; i < obj->nkids; i++) {
        struct node *n = &obj->kids[i];
        if (n->kind == K_OBJ) {
            summarise(n);
            obj->mask |= n->mask;
            obj->has_const |= n->has_const;
        } else if (n->kind == K_CONST) {
            obj->has_const = true;
        } else if (n->field != FIELD_NONE) {
            obj->mask |= FU_FM_BIT(n->field);
        }
    }
}

int fu_fieldmap_compile(const struct fu_cfg_vec *mappings, struct fu_fieldmap **out, char *err,
                        size_t errlen)
{
    *out = NULL;
    if (!mappings || !mappings->n)
        return 0;
    struct fu_fieldmap *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    for (size_t i = 0; i < mappings->n; i++) {
        int rc = insert(&m->root, FU_CFG_AT(mappings, struct fu_cfg_field_map, i), err, errlen);
        if (rc < 0) {
            if (rc == -ENOMEM)
                snprintf(err, errlen, "out of memory");
            fu_fieldmap_free(m);
            return rc;
        }
    }
    summarise(&m->root);
    struct fu_buf b = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &b);
    fu_jw_arr_begin(&w);
    for (size_t i = 0; i < m->root.nkids; i++)
        fu_jw_str(&w, m->root.kids[i].key, m->root.kids[i].key_len);
    fu_jw_arr_end(&w);
    if (b.oom) {
        fu_buf_free(&b);
        fu_fieldmap_free(m);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    m->fields_json = fu_buf_detach(&b);
    *out = m;
    return 0;
}
