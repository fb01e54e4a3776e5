/* Config engine: walks YAML trees against the schema tables (config_fusion.c,
 * config_agent.c), merges files by id, checks references, applies env overrides, and
 * serialises configs to JSON for `status --config` and for reload diffs. */
#include "common/config.h"

#include "common/config_schema.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/suggest.h"
#include "common/yaml_tree.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ID_LEN 128

struct ctx {
    struct fu_config *cfg;
    const struct fu_schema *root;
    struct fu_diags *d;
    const char *file;   /* current file, owned by cfg->files */
    struct fu_buf path; /* dotted key path of the node being parsed, for messages */
    /* Globals already set (by offset), to warn when a later file sets them again. */
    struct {
        const void *addr;
        struct fu_loc loc;
    } globals[32];
    size_t n_globals;
};

static void *at_off(void *base, size_t off)
{
    return (char *)base + off;
}

static void err(struct ctx *c, const struct fu_ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err(struct ctx *c, const struct fu_ynode *n, const char *fmt, ...)
{
    struct fu_buf m = FU_BUF_INIT;
    if (c->path.len)
        fu_buf_printf(&m, "%s: ", fu_buf_str(&c->path));
    va_list ap;
    va_start(ap, fmt);
    fu_buf_vprintf(&m, fmt, ap);
    va_end(ap);
    fu_diags_add(c->d, FU_SEV_ERROR, c->file, n ? n->line : 0, n ? n->col : 0, "%s",
                 fu_buf_str(&m));
    fu_buf_free(&m);
}

static size_t path_push(struct ctx *c, const char *key)
{
    size_t old = c->path.len;
    if (old)
        fu_buf_putc(&c->path, '.');
    fu_buf_puts(&c->path, key);
    return old;
}

static void path_pop(struct ctx *c, size_t old)
{
    c->path.len = old;
    if (c->path.data)
        c->path.data[old] = '\0';
}

/* ---------------------------------------------------------------- freeing */

static void free_obj(const struct fu_schema *s, void *base);

/* Section items start with struct fu_cfg_item, whose id is owned too. */
static void free_vec(const struct fu_schema *s, struct fu_cfg_vec *v, bool items)
{
    for (size_t i = 0; i < v->n; i++) {
        void *it = at_off(v->v, i * s->size);
        free_obj(s, it);
        if (items)
            free(((struct fu_cfg_item *)it)->id);
    }
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

static void free_field(const struct fu_field *f, void *p)
{
    switch (f->type) {
    case FT_STR:
    case FT_ENUM:
    case FT_ANY:
        free(*(char **)p);
        *(char **)p = NULL;
        break;
    case FT_STRV:
        fu_strv_free(p);
        break;
    case FT_REF:
        free(((struct fu_cfg_ref *)p)->id);
        ((struct fu_cfg_ref *)p)->id = NULL;
        break;
    case FT_REFV: {
        struct fu_cfg_refv *rv = p;
        for (size_t i = 0; i < rv->n; i++)
            free(rv->v[i].id);
        free(rv->v);
        rv->v = NULL;
        rv->n = 0;
        break;
    }
    case FT_OBJ:
        if (!(f->flags & F_ALIAS))
            free_obj(f->sub, p);
        break;
    case FT_SECTION:
    case FT_LIST:
        free_vec(f->sub, p, f->type == FT_SECTION);
        break;
    default:
        break;
    }
}

static void free_obj(const struct fu_schema *s, void *base)
{
    for (size_t i = 0; i < s->nfields; i++)
        free_field(&s->fields[i], at_off(base, s->fields[i].off));
}

/* Items of a section start with struct fu_cfg_item (id + loc). */
static void free_item(const struct fu_schema *s, void *item)
{
    free_obj(s, item);
    free(((struct fu_cfg_item *)item)->id);
    memset(item, 0, s->size);
}

/* ---------------------------------------------------------------- scalars */

static bool scalar_or_err(struct ctx *c, const struct fu_ynode *n, const char *what)
{
    if (n->type == FU_Y_SCALAR && !n->is_null)
        return true;
    err(c, n, "expected %s, got %s", what, fu_ynode_type_name(n));
    return false;
}

/* Decimal integers, optionally signed; "3600.0" counts too (pydantic accepts it). */
static bool parse_int_text(const char *s, int64_t *out)
{
    const char *p = s + (*s == '+' || *s == '-');
    if (*p < '0' || *p > '9')
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno)
        return false;
    if (*end == '.') {
        const char *z = end + 1;
        while (*z == '0')
            z++;
        if (*z)
            return false;
    } else if (*end) {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_float_text(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s))
        return false;
    char *end;
    double d = strtod(s, &end);
    if (*end || !isfinite(d))
        return false;
    /* strtod also takes hex floats and "infinity"; YAML numbers are decimal. */
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE_", *p))
            return false;
    *out = d;
    return true;
}

static int parse_bool_text(const char *s)
{
    static const char *const t[] = {"true", "yes", "on", "1"};
    static const char *const f[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < FU_COUNT(t); i++) {
        if (!strcasecmp(s, t[i]))
            return 1;
        if (!strcasecmp(s, f[i]))
            return 0;
    }
    return -1;
}

static bool has_range(const struct fu_field *f)
{
    return f->min != 0 || f->max != 0;
}

static void describe_range(struct fu_buf *b, const struct fu_field *f, bool integer)
{
    if (!has_range(f)) {
        fu_buf_puts(b, integer ? "an integer" : "a number");
        return;
    }
    fu_buf_printf(b, "%s from %.15g to %.15g", integer ? "an integer" : "a number", f->min, f->max);
}

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = strdup(s);
}

/* JSON text for an untyped scalar: plain true/false/null/numbers stay bare. */
static char *any_to_json(const struct fu_ynode *n)
{
    struct fu_buf b = FU_BUF_INIT;
    double d;
    if (n->is_null)
        fu_buf_puts(&b, "null");
    else if (n->plain && (!strcmp(n->s, "true") || !strcmp(n->s, "false")))
        fu_buf_puts(&b, n->s);
    else if (n->plain && parse_float_text(n->s, &d) &&
             fu_json_validate(n->s, n->len, NULL, NULL) == 0)
        fu_buf_puts(&b, n->s); /* a number that is also valid JSON as written */
    else
        fu_json_escape(&b, n->s, n->len);
    return fu_buf_detach(&b);
}

/* ---------------------------------------------------------------- walking */

static void parse_obj(struct ctx *c, const struct fu_schema *s, void *base,
                      const struct fu_ynode *map, bool global);

static bool check_nonempty_str(struct ctx *c, const struct fu_field *f, const struct fu_ynode *n)
{
    if ((f->flags & F_NONEMPTY) && n->len == 0) {
        err(c, n, "must not be empty");
        return false;
    }
    return true;
}

static bool parse_ref(struct ctx *c, struct fu_cfg_ref *r, const struct fu_ynode *n)
{
    if (!scalar_or_err(c, n, "an id (a string)") ||
        !check_nonempty_str(c, &(struct fu_field){.flags = F_NONEMPTY}, n))
        return false;
    set_str(&r->id, n->s);
    r->loc = (struct fu_loc){c->file, n->line, n->col};
    return true;
}

static bool valid_id(const char *s, size_t len)
{
    if (len == 0 || len > MAX_ID_LEN || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return false;
    return true;
}

static void *vec_append(struct fu_cfg_vec *v, size_t size)
{
    void *nv = realloc(v->v, (v->n + 1) * size);
    if (!nv)
        return NULL;
    v->v = nv;
    void *item = at_off(v->v, v->n * size);
    memset(item, 0, size);
    v->n++;
    return item;
}

static void parse_section(struct ctx *c, const struct fu_field *f, struct fu_cfg_vec *v,
                          const struct fu_ynode *n)
{
    if (n->type == FU_Y_SCALAR && n->is_null)
        return; /* "pipes:" with nothing under it */
    if (n->type != FU_Y_MAP) {
        err(c, n, "expected a mapping of %s ids to their settings, got %s", f->sub->name,
            fu_ynode_type_name(n));
        return;
    }
    const struct fu_schema *s = f->sub;
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const struct fu_ynode *k = n->kids[i], *val = n->kids[i + 1];
        if (k->type != FU_Y_SCALAR) {
            err(c, k, "expected a %s id, got %s", s->name, fu_ynode_type_name(k));
            continue;
        }
        size_t old = path_push(c, k->s);
        if (!valid_id(k->s, k->len)) {
            err(c, k,
                "invalid %s id: use 1-%d letters, digits, '.', '_' or '-', starting with a "
                "letter or digit",
                s->name, MAX_ID_LEN);
            path_pop(c, old);
            continue;
        }
        if (val->type != FU_Y_MAP) {
            err(c, val, "expected the settings of %s '%s' (a mapping), got %s", s->name, k->s,
                fu_ynode_type_name(val));
            path_pop(c, old);
            continue;
        }
        struct fu_cfg_item *it = (struct fu_cfg_item *)fu_cfg_find(v, s->size, k->s);
        if (it) {
            fu_diags_add(c->d, FU_SEV_WARNING, c->file, k->line, k->col,
                         "%s '%s' is defined in %s:%d and again in %s:%d; the later definition "
                         "wins",
                         s->name, k->s, it->loc.file, it->loc.line, c->file, k->line);
            free_item(s, it);
        } else {
            it = vec_append(v, s->size);
            if (!it) {
                err(c, k, "out of memory");
                path_pop(c, old);
                return;
            }
        }
        if (s->defaults)
            s->defaults(it);
        it->id = strdup(k->s);
        it->loc = (struct fu_loc){c->file, k->line, k->col};
        parse_obj(c, s, it, val, false);
        path_pop(c, old);
    }
}

static void parse_list(struct ctx *c, const struct fu_field *f, struct fu_cfg_vec *v,
                       const struct fu_ynode *n)
{
    free_vec(f->sub, v, false); /* a list is replaced as a whole, never merged */
    if (n->type == FU_Y_SCALAR && n->is_null)
        return;
    if (n->type != FU_Y_SEQ) {
        err(c, n, "expected a list of %ss, got %s", f->sub->name, fu_ynode_type_name(n));
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", i);
        size_t old = path_push(c, idx);
        const struct fu_ynode *e = n->kids[i];
        if (e->type != FU_Y_MAP) {
            err(c, e, "expected a %s (a mapping), got %s", f->sub->name, fu_ynode_type_name(e));
        } else {
            void *item = vec_append(v, f->sub->size);
            if (!item) {
                err(c, e, "out of memory");
                path_pop(c, old);
                return;
            }
            if (f->sub->defaults)
                f->sub->defaults(item);
            if (f->flags & F_ITEM_LOC)
                *(struct fu_loc *)item = (struct fu_loc){c->file, e->line, e->col};
            parse_obj(c, f->sub, item, e, false);
        }
        path_pop(c, old);
    }
}

static void parse_field(struct ctx *c, const struct fu_field *f, void *base,
                        const struct fu_ynode *n, bool global)
{
    void *p = at_off(base, f->off);
    struct fu_buf what = FU_BUF_INIT;
    int64_t iv;
    double dv;

    if (n->type == FU_Y_SCALAR && n->is_null && (f->flags & F_NULLABLE) && f->type != FT_SECTION &&
        f->type != FT_LIST) {
        if (f->type == FT_FLOAT)
            *(double *)p = NAN;
        else if (f->type == FT_OBJ)
            ; /* "credential:" with nothing: keep defaults */
        else
            free_field(f, p);
        return;
    }
    switch (f->type) {
    case FT_STR:
        if (scalar_or_err(c, n, "a string") && check_nonempty_str(c, f, n))
            set_str(p, n->s);
        break;
    case FT_ANY:
        if (n->type != FU_Y_SCALAR) {
            err(c, n, "expected a single value, got %s", fu_ynode_type_name(n));
            break;
        }
        free(*(char **)p);
        *(char **)p = any_to_json(n);
        break;
    case FT_ENUM: {
        if (!scalar_or_err(c, n, "a string"))
            break;
        const char *hit = NULL;
        size_t nc = 0;
        for (; f->choices[nc]; nc++)
            if ((f->flags & F_ICASE) ? !strcasecmp(n->s, f->choices[nc])
                                     : !strcmp(n->s, f->choices[nc]))
                hit = f->choices[nc];
        if ((f->flags & F_ICASE) && !hit && !strcasecmp(n->s, "WARN"))
            hit = "WARNING";
        if ((f->flags & F_ICASE) && !hit && !strcasecmp(n->s, "CRITICAL"))
            hit = "ERROR";
        if (hit) {
            set_str(p, hit);
            break;
        }
        for (size_t i = 0; i < nc; i++)
            fu_buf_printf(&what, "%s'%s'", i ? ", " : "", f->choices[i]);
        const char *sug = fu_suggest(n->s, f->choices, nc);
        if (sug)
            err(c, n, "unknown value '%s' (did you mean '%s'?); expected one of %s", n->s, sug,
                fu_buf_str(&what));
        else
            err(c, n, "unknown value '%s'; expected one of %s", n->s, fu_buf_str(&what));
        break;
    }
    case FT_INT:
        describe_range(&what, f, true);
        if (!scalar_or_err(c, n, fu_buf_str(&what)))
            break;
        if (!parse_int_text(n->s, &iv) ||
            (has_range(f) && ((double)iv < f->min || (double)iv > f->max)))
            err(c, n, "expected %s, got '%s'", fu_buf_str(&what), n->s);
        else
            *(int64_t *)p = iv;
        break;
    case FT_FLOAT:
        describe_range(&what, f, false);
        if (!scalar_or_err(c, n, fu_buf_str(&what)))
            break;
        if (!parse_float_text(n->s, &dv) || (has_range(f) && (dv < f->min || dv > f->max)))
            err(c, n, "expected %s, got '%s'", fu_buf_str(&what), n->s);
        else
            *(double *)p = dv;
        break;
    case FT_BOOL: {
        if (!scalar_or_err(c, n, "true or false"))
            break;
        int b = parse_bool_text(n->s);
        if (b < 0)
            err(c, n, "expected true or false, got '%s'", n->s);
        else
            *(bool *)p = b;
        break;
    }
    case FT_STRV: {
        struct fu_strv *sv = p;
        if ((f->flags & F_ONE_OK) && n->type != FU_Y_SEQ) { /* "x" is ["x"] */
            fu_strv_free(sv);
            if (scalar_or_err(c, n, "a string or a list of strings") &&
                ((f->flags & F_NONEMPTY) ? check_nonempty_str(c, f, n) : true))
                fu_strv_push(sv, n->s);
            break;
        }
        if (n->type != FU_Y_SEQ) {
            err(c, n, "expected a list of strings, got %s", fu_ynode_type_name(n));
            break;
        }
        fu_strv_free(sv);
        for (size_t i = 0; i < n->n; i++)
            if (scalar_or_err(c, n->kids[i], "a string") &&
                check_nonempty_str(c, &(struct fu_field){.flags = F_NONEMPTY}, n->kids[i]))
                fu_strv_push(sv, n->kids[i]->s);
        if ((f->flags & F_NONEMPTY) && n->n == 0)
            err(c, n, "must list at least one entry");
        break;
    }
    case FT_REF:
        parse_ref(c, p, n);
        break;
    case FT_REFV: {
        struct fu_cfg_refv *rv = p;
        if (n->type != FU_Y_SEQ) {
            err(c, n, "expected a list of ids, got %s", fu_ynode_type_name(n));
            break;
        }
        free_field(f, p);
        rv->v = calloc(n->n ? n->n : 1, sizeof(*rv->v));
        if (!rv->v)
            break;
        for (size_t i = 0; i < n->n; i++)
            if (parse_ref(c, &rv->v[rv->n], n->kids[i]))
                rv->n++;
        if ((f->flags & F_NONEMPTY) && n->n == 0)
            err(c, n, "must list at least one id");
        break;
    }
    case FT_OBJ:
        if (n->type == FU_Y_SCALAR && !n->is_null && (f->flags & F_SHORTHAND)) {
            parse_field(c, &f->sub->fields[0], p, n, global);
            break;
        }
        if (n->type != FU_Y_MAP) {
            if (f->flags & F_SHORTHAND)
                err(c, n, "expected a %s value or a mapping, got %s", f->sub->fields[0].key,
                    fu_ynode_type_name(n));
            else
                err(c, n, "expected a mapping, got %s", fu_ynode_type_name(n));
            break;
        }
        parse_obj(c, f->sub, p, n, global);
        break;
    case FT_SECTION:
        parse_section(c, f, p, n);
        break;
    case FT_LIST:
        parse_list(c, f, p, n);
        break;
    }
    fu_buf_free(&what);
}

/* An unknown key: suggest the closest key, or say where an exact match lives one level down
 * (a common slip: hot_file_threshold directly under a view instead of under driver_params). */
static void unknown_key(struct ctx *c, const struct fu_schema *s, const struct fu_ynode *k)
{
    const char *cands[64];
    size_t nc = 0;
    for (size_t i = 0; i < s->nfields && nc < FU_COUNT(cands); i++)
        cands[nc++] = s->fields[i].key;
    const char *sug = fu_suggest(k->s, cands, nc);
    if (sug) {
        err(c, k, "unknown key '%s' (did you mean '%s'?)", k->s, sug);
        return;
    }
    for (size_t i = 0; i < s->nfields; i++) {
        const struct fu_field *f = &s->fields[i];
        if (f->type != FT_OBJ || (f->flags & F_ALIAS))
            continue;
        for (size_t j = 0; j < f->sub->nfields; j++)
            if (!strcmp(f->sub->fields[j].key, k->s)) {
                err(c, k, "unknown key '%s' here; it belongs under '%s'", k->s, f->key);
                return;
            }
    }
    struct fu_buf all = FU_BUF_INIT;
    for (size_t i = 0; i < nc; i++)
        fu_buf_printf(&all, "%s%s", i ? ", " : "", cands[i]);
    err(c, k, "unknown key '%s'; valid keys here: %s", k->s, fu_buf_str(&all));
    fu_buf_free(&all);
}

/* `addr` identifies the setting: `port` and `fusion: {port}` are the same one. */
static void note_global(struct ctx *c, const void *addr, const struct fu_ynode *k)
{
    for (size_t i = 0; i < c->n_globals; i++) {
        if (c->globals[i].addr != addr)
            continue;
        const struct fu_loc *l = &c->globals[i].loc;
        fu_diags_add(c->d, FU_SEV_WARNING, c->file, k->line, k->col,
                     "'%s' is also set at %s:%d; this later setting wins", k->s, l->file, l->line);
        c->globals[i].loc = (struct fu_loc){c->file, k->line, k->col};
        return;
    }
    if (c->n_globals < FU_COUNT(c->globals)) {
        c->globals[c->n_globals].addr = addr;
        c->globals[c->n_globals].loc = (struct fu_loc){c->file, k->line, k->col};
        c->n_globals++;
    }
}

static void parse_obj(struct ctx *c, const struct fu_schema *s, void *base,
                      const struct fu_ynode *map, bool global)
{
    uint64_t seen = 0;
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct fu_ynode *k = map->kids[i], *v = map->kids[i + 1];
        if (k->type != FU_Y_SCALAR) {
            err(c, k, "expected a key (a string), got %s", fu_ynode_type_name(k));
            continue;
        }
        const struct fu_field *f = NULL;
        size_t fi = 0;
        for (; fi < s->nfields; fi++)
            if (!strcmp(s->fields[fi].key, k->s)) {
                f = &s->fields[fi];
                break;
            }
        if (!f) {
            unknown_key(c, s, k);
            continue;
        }
        seen |= 1ull << fi;
        size_t old = path_push(c, k->s);
        if (global && f->type != FT_SECTION && !(f->flags & F_ALIAS))
            note_global(c, at_off(base, f->off), k);
        parse_field(c, f, base, v, global && (f->flags & F_ALIAS));
        path_pop(c, old);
    }
    for (size_t fi = 0; fi < s->nfields; fi++)
        if ((s->fields[fi].flags & F_REQUIRED) && !(seen & (1ull << fi)))
            err(c, map, "missing required key '%s'", s->fields[fi].key);
}

/* ---------------------------------------------------------------- references */

const struct fu_cfg_item *fu_cfg_find(const struct fu_cfg_vec *sec, size_t item_size,
                                      const char *id)
{
    for (size_t i = 0; i < sec->n; i++) {
        const struct fu_cfg_item *it = at_off(sec->v, i * item_size);
        if (it->id && !strcmp(it->id, id))
            return it;
    }
    return NULL;
}

static const struct fu_field *root_section(const struct fu_schema *root, const char *key)
{
    for (size_t i = 0; i < root->nfields; i++)
        if (root->fields[i].type == FT_SECTION && !strcmp(root->fields[i].key, key))
            return &root->fields[i];
    return NULL;
}

static void check_ref(struct ctx *c, const struct fu_field *f, const struct fu_cfg_ref *r,
                      const char *owner)
{
    if (!r->id)
        return;
    const struct fu_field *sf = root_section(c->root, f->ref);
    const struct fu_cfg_vec *sec = at_off(c->cfg, sf->off);
    if (fu_cfg_find(sec, sf->sub->size, r->id))
        return;
    const char **ids = calloc(sec->n + 1, sizeof(*ids));
    for (size_t i = 0; ids && i < sec->n; i++)
        ids[i] = ((const struct fu_cfg_item *)at_off(sec->v, i * sf->sub->size))->id;
    const char *sug = ids ? fu_suggest(r->id, ids, sec->n) : NULL;
    fu_diags_add(c->d, FU_SEV_ERROR, r->loc.file, r->loc.line, r->loc.col,
                 "%s.%s: %s '%s' is not defined in any file%s%s%s", owner, f->key, sf->sub->name,
                 r->id, sug ? " (did you mean '" : "", sug ? sug : "", sug ? "'?)" : "");
    free(ids);
}

static void check_refs_obj(struct ctx *c, const struct fu_schema *s, void *base, const char *owner)
{
    for (size_t i = 0; i < s->nfields; i++) {
        const struct fu_field *f = &s->fields[i];
        void *p = at_off(base, f->off);
        if (f->type == FT_REF) {
            check_ref(c, f, p, owner);
        } else if (f->type == FT_REFV) {
            struct fu_cfg_refv *rv = p;
            for (size_t j = 0; j < rv->n; j++)
                check_ref(c, f, &rv->v[j], owner);
        } else if (f->type == FT_OBJ && !(f->flags & F_ALIAS)) {
            check_refs_obj(c, f->sub, p, owner);
        } else if (f->type == FT_LIST || f->type == FT_SECTION) {
            struct fu_cfg_vec *v = p;
            for (size_t j = 0; j < v->n; j++) {
                void *item = at_off(v->v, j * f->sub->size);
                struct fu_buf o = FU_BUF_INIT;
                if (f->type == FT_SECTION)
                    fu_buf_printf(&o, "%s.%s", f->key, ((struct fu_cfg_item *)item)->id);
                else
                    fu_buf_printf(&o, "%s.%s.%zu", owner, f->key, j);
                check_refs_obj(c, f->sub, item, fu_buf_str(&o));
                fu_buf_free(&o);
            }
        }
    }
}

/* ---------------------------------------------------------------- loading */

const char *fu_cfg_kind_name(enum fu_cfg_kind kind)
{
    return kind == FU_CFG_FUSION ? "fusion" : "agent";
}

static const struct fu_schema *schema_of(enum fu_cfg_kind kind)
{
    return kind == FU_CFG_FUSION ? &fu_fusion_schema : &fu_agent_schema;
}

char *fu_config_home(void)
{
    const char *h = getenv("FUSTOR_HOME");
    if (h && *h)
        return strdup(h);
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : "/";
    }
    return fu_path_join(home, ".fustor");
}

static void cfg_init(struct fu_config *cfg, enum fu_cfg_kind kind)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->kind = kind;
    schema_of(kind)->defaults(cfg);
}

void fu_config_free(struct fu_config *cfg)
{
    free_obj(schema_of(cfg->kind), cfg);
    fu_strv_free(&cfg->files);
    free(cfg->home);
    free(cfg->dir);
    free(cfg->active_file);
    memset(cfg, 0, sizeof(*cfg));
}

static void load_one(struct ctx *c, const char *path)
{
    if (fu_strv_push(&c->cfg->files, path) < 0)
        return;
    c->file = c->cfg->files.v[c->cfg->files.n - 1];
    bool ok = true;
    struct fu_ynode *root = fu_yaml_load_file(c->file, c->d, &ok);
    if (!ok)
        return;
    if (!root) {
        fu_diags_add(c->d, FU_SEV_WARNING, c->file, 0, 0, "file is empty; it defines nothing");
        return;
    }
    if (root->type == FU_Y_SCALAR && root->is_null) {
        fu_diags_add(c->d, FU_SEV_WARNING, c->file, 0, 0, "file is empty; it defines nothing");
    } else if (root->type != FU_Y_MAP) {
        err(c, root, "expected a mapping at the top level (keys such as %s), got %s",
            c->cfg->kind == FU_CFG_FUSION ? "receivers, views, pipes" : "sources, senders, pipes",
            fu_ynode_type_name(root));
    } else {
        parse_obj(c, c->root, c->cfg, root, true);
    }
    fu_ynode_free(root);
}

static void finish(struct ctx *c)
{
    c->file = NULL;
    check_refs_obj(c, c->root, c->cfg, "");
    if (c->cfg->kind == FU_CFG_FUSION)
        fu_fusion_check(c->cfg, c->d);
    else
        fu_agent_check(c->cfg, c->d);
}

static int ends_with_yaml(const char *name)
{
    size_t l = strlen(name);
    return (l > 5 && !strcmp(name + l - 5, ".yaml")) || (l > 4 && !strcmp(name + l - 4, ".yml"));
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int fu_config_load_files(struct fu_config *cfg, enum fu_cfg_kind kind, const char *const *files,
                         size_t n, const char *active_file, struct fu_diags *d)
{
    size_t errs0 = d->n_errors;
    cfg_init(cfg, kind);
    struct ctx c = {.cfg = cfg, .root = schema_of(kind), .d = d};
    for (size_t i = 0; i < n; i++)
        load_one(&c, files[i]);
    if (active_file)
        cfg->active_file = strdup(active_file);
    finish(&c);
    fu_buf_free(&c.path);
    return d->n_errors > errs0 ? -EINVAL : 0;
}

static void apply_env(struct fu_config *cfg, struct fu_diags *d)
{
    const char *lv = getenv("FUSTOR_LOG_LEVEL");
    struct fu_cfg_logging *lg = (struct fu_cfg_logging *)fu_config_logging(cfg);
    if (lv && *lv) {
        static const char *const levels[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
        const char *hit = NULL;
        for (size_t i = 0; i < FU_COUNT(levels); i++)
            if (!strcasecmp(lv, levels[i]))
                hit = levels[i];
        if (!strcasecmp(lv, "WARN"))
            hit = "WARNING";
        if (!strcasecmp(lv, "CRITICAL"))
            hit = "ERROR";
        if (hit)
            set_str(&lg->level, hit);
        else
            fu_diags_add(d, FU_SEV_ERROR, "FUSTOR_LOG_LEVEL", 0, 0,
                         "expected DEBUG, INFO, WARNING (WARN) or ERROR (CRITICAL), got '%s'", lv);
    }
    const char *port = getenv("FUSTOR_FUSION_PORT");
    if (cfg->kind == FU_CFG_FUSION && port && *port) {
        int64_t p;
        if (parse_int_text(port, &p) && p >= 1 && p <= 65535)
            cfg->fusion.port = p;
        else
            fu_diags_add(d, FU_SEV_ERROR, "FUSTOR_FUSION_PORT", 0, 0,
                         "expected a TCP port from 1 to 65535, got '%s'", port);
    }
}

/* Resolves `start FILE`: a bare name is looked up in the config dir (".yaml" may be left
 * off); anything with a '/' is a path. Returns the absolute path (caller frees) and sets
 * *in_dir when the file is one of the dir's own. */
static char *resolve_start_file(const char *dir, const char *arg, bool *in_dir, struct fu_diags *d)
{
    char *cand = strchr(arg, '/') ? strdup(arg) : fu_path_join(dir, arg);
    struct stat st;
    if (cand && stat(cand, &st) < 0 && !strchr(arg, '/') && !ends_with_yaml(arg)) {
        size_t l = strlen(cand);
        char *y = malloc(l + 6);
        if (y) {
            memcpy(y, cand, l);
            memcpy(y + l, ".yaml", 6);
            free(cand);
            cand = y;
        }
    }
    char *real = cand ? realpath(cand, NULL) : NULL;
    if (!real) {
        fu_diags_add(d, FU_SEV_ERROR, arg, 0, 0, "cannot open config file: %s (looked for %s)",
                     strerror(errno), cand ? cand : arg);
        free(cand);
        return NULL;
    }
    free(cand);
    char *rdir = realpath(dir, NULL);
    size_t rl = rdir ? strlen(rdir) : 0;
    *in_dir = rdir && !strncmp(real, rdir, rl) && real[rl] == '/' && !strchr(real + rl + 1, '/');
    free(rdir);
    return real;
}

int fu_config_load(struct fu_config *cfg, enum fu_cfg_kind kind, const char *home,
                   const char *start_file, struct fu_diags *d)
{
    size_t errs0 = d->n_errors;
    cfg_init(cfg, kind);
    struct ctx c = {.cfg = cfg, .root = schema_of(kind), .d = d};
    cfg->home = strdup(home);
    char sub[32];
    snprintf(sub, sizeof(sub), "%s-config", fu_cfg_kind_name(kind));
    cfg->dir = fu_path_join(home, sub);

    DIR *dh = opendir(cfg->dir);
    if (!dh) {
        fu_diags_add(d, FU_SEV_ERROR, cfg->dir, 0, 0,
                     "cannot open the config directory: %s (create it and put a default.yaml "
                     "in it, or set FUSTOR_HOME)",
                     strerror(errno));
        return -EINVAL;
    }
    struct fu_strv names = {0};
    struct dirent *de;
    while ((de = readdir(dh)))
        if (de->d_name[0] != '.' && ends_with_yaml(de->d_name))
            fu_strv_push(&names, de->d_name);
    closedir(dh);
    qsort(names.v, names.n, sizeof(char *), name_cmp);

    char *extra = NULL;
    bool in_dir = true;
    if (start_file) {
        extra = resolve_start_file(cfg->dir, start_file, &in_dir, d);
        if (!extra) {
            fu_strv_free(&names);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < names.n; i++) {
        char *p = fu_path_join(cfg->dir, names.v[i]);
        if (!p)
            continue;
        load_one(&c, p);
        if (extra && in_dir) {
            char *rp = realpath(p, NULL);
            if (rp && !strcmp(rp, extra)) {
                free(cfg->active_file);
                cfg->active_file = strdup(p);
            }
            free(rp);
        } else if (!extra && !strcmp(names.v[i], "default.yaml")) {
            cfg->active_file = strdup(p);
        }
        free(p);
    }
    /* A file outside the dir, or one in it that the scan skips (not *.yaml), loads last. */
    if (extra && !cfg->active_file) {
        load_one(&c, extra);
        cfg->active_file = strdup(extra);
    }
    if (names.n == 0 && !extra)
        fu_diags_add(d, FU_SEV_WARNING, cfg->dir, 0, 0, "no *.yaml files in the config directory");
    else if (!cfg->active_file)
        fu_diags_add(d, FU_SEV_WARNING, cfg->dir, 0, 0,
                     "no default.yaml: `start` without a file activates no pipes");
    free(extra);
    fu_strv_free(&names);
    finish(&c);
    apply_env(cfg, d);
    fu_buf_free(&c.path);
    return d->n_errors > errs0 ? -EINVAL : 0;
}

/* ---------------------------------------------------------------- queries */

const struct fu_cfg_vec *fu_config_pipes(const struct fu_config *cfg)
{
    return cfg->kind == FU_CFG_FUSION ? &cfg->fusion.pipes : &cfg->agent.pipes;
}

const struct fu_cfg_item *fu_config_pipe_at(const struct fu_config *cfg, size_t i)
{
    size_t sz =
        cfg->kind == FU_CFG_FUSION ? sizeof(struct fu_cfg_fpipe) : sizeof(struct fu_cfg_apipe);
    return at_off(fu_config_pipes(cfg)->v, i * sz);
}

const struct fu_cfg_logging *fu_config_logging(const struct fu_config *cfg)
{
    return cfg->kind == FU_CFG_FUSION ? &cfg->fusion.logging : &cfg->agent.logging;
}

bool fu_config_pipe_active(const struct fu_config *cfg, const struct fu_cfg_item *pipe)
{
    if (!cfg->active_file || !pipe->loc.file || strcmp(pipe->loc.file, cfg->active_file))
        return false;
    if (cfg->kind == FU_CFG_FUSION) {
        const struct fu_cfg_fpipe *p = (const void *)pipe;
        const struct fu_cfg_receiver *r =
            p->receiver.id
                ? (const void *)fu_cfg_find(&cfg->fusion.receivers, sizeof(*r), p->receiver.id)
                : NULL;
        if (p->disabled || !r || r->disabled)
            return false;
        for (size_t i = 0; i < p->views.n; i++) {
            const struct fu_cfg_view *v =
                (const void *)fu_cfg_find(&cfg->fusion.views, sizeof(*v), p->views.v[i].id);
            if (v && !v->disabled)
                return true;
        }
        return false;
    }
    const struct fu_cfg_apipe *p = (const void *)pipe;
    const struct fu_cfg_source *s =
        p->source.id ? (const void *)fu_cfg_find(&cfg->agent.sources, sizeof(*s), p->source.id)
                     : NULL;
    const struct fu_cfg_sender *t =
        p->sender.id ? (const void *)fu_cfg_find(&cfg->agent.senders, sizeof(*t), p->sender.id)
                     : NULL;
    return !p->disabled && s && !s->disabled && t && !t->disabled;
}

/* ---------------------------------------------------------------- JSON dumps */

static void dump_obj(struct fu_jw *w, const struct fu_schema *s, const void *base, bool redact);

static void dump_ref(struct fu_jw *w, const struct fu_cfg_ref *r)
{
    fu_jw_cstr(w, r->id);
}

static void dump_field(struct fu_jw *w, const struct fu_field *f, const void *p, bool redact)
{
    bool hide = redact && (f->flags & F_SECRET);
    switch (f->type) {
    case FT_STR:
    case FT_ENUM:
        fu_jw_cstr(w, hide && *(char *const *)p ? "***" : *(char *const *)p);
        break;
    case FT_ANY:
        if (*(char *const *)p)
            fu_jw_raw(w, *(char *const *)p, strlen(*(char *const *)p));
        else
            fu_jw_null(w);
        break;
    case FT_INT:
        fu_jw_int(w, *(const int64_t *)p);
        break;
    case FT_FLOAT:
        fu_jw_double(w, *(const double *)p);
        break;
    case FT_BOOL:
        fu_jw_bool(w, *(const bool *)p);
        break;
    case FT_STRV: {
        const struct fu_strv *sv = p;
        fu_jw_arr_begin(w);
        for (size_t i = 0; i < sv->n; i++)
            fu_jw_cstr(w, hide ? "***" : sv->v[i]);
        fu_jw_arr_end(w);
        break;
    }
    case FT_REF:
        dump_ref(w, p);
        break;
    case FT_REFV: {
        const struct fu_cfg_refv *rv = p;
        fu_jw_arr_begin(w);
        for (size_t i = 0; i < rv->n; i++)
            dump_ref(w, &rv->v[i]);
        fu_jw_arr_end(w);
        break;
    }
    case FT_OBJ:
        dump_obj(w, f->sub, p, redact);
        break;
    case FT_SECTION: {
        const struct fu_cfg_vec *v = p;
        fu_jw_obj_begin(w);
        for (size_t i = 0; i < v->n; i++) {
            const struct fu_cfg_item *it = at_off(v->v, i * f->sub->size);
            fu_jw_key(w, it->id, strlen(it->id));
            dump_obj(w, f->sub, it, redact);
        }
        fu_jw_obj_end(w);
        break;
    }
    case FT_LIST: {
        const struct fu_cfg_vec *v = p;
        fu_jw_arr_begin(w);
        for (size_t i = 0; i < v->n; i++)
            dump_obj(w, f->sub, at_off(v->v, i * f->sub->size), redact);
        fu_jw_arr_end(w);
        break;
    }
    }
}

/* `skip` names one field to leave out (NULL for none). */
static void dump_obj_skip(struct fu_jw *w, const struct fu_schema *s, const void *base, bool redact,
                          const char *skip)
{
    fu_jw_obj_begin(w);
    for (size_t i = 0; i < s->nfields; i++) {
        const struct fu_field *f = &s->fields[i];
        if ((f->flags & F_ALIAS) || (skip && !strcmp(f->key, skip)))
            continue;
        fu_jw_ckey(w, f->key);
        dump_field(w, f, at_off((void *)base, f->off), redact);
    }
    fu_jw_obj_end(w);
}

static void dump_obj(struct fu_jw *w, const struct fu_schema *s, const void *base, bool redact)
{
    dump_obj_skip(w, s, base, redact, NULL);
}

void fu_config_to_json(const struct fu_config *cfg, bool redact, struct fu_buf *out)
{
    struct fu_jw w;
    fu_jw_init(&w, out);
    dump_obj(&w, schema_of(cfg->kind), cfg, redact);
}

static const struct fu_cfg_item *dump_item(struct fu_jw *w, const struct fu_config *cfg,
                                           const char *section, const char *id, const char *skip)
{
    const struct fu_field *sf = root_section(schema_of(cfg->kind), section);
    const struct fu_cfg_item *it =
        id ? fu_cfg_find(at_off((void *)cfg, sf->off), sf->sub->size, id) : NULL;
    if (it)
        dump_obj_skip(w, sf->sub, it, false, skip);
    else
        fu_jw_null(w);
    return it;
}

void fu_config_pipe_fingerprint(const struct fu_config *cfg, const struct fu_cfg_item *pipe,
                                struct fu_buf *out)
{
    struct fu_jw w;
    fu_jw_init(&w, out);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "pipe");
    dump_item(&w, cfg, "pipes", pipe->id, NULL);
    if (cfg->kind == FU_CFG_FUSION) {
        const struct fu_cfg_fpipe *p = (const void *)pipe;
        /* The receiver's own settings and only the keys that open this pipe: adding a key
         * for another pipe on a shared receiver does not change this one. */
        fu_jw_ckey(&w, "receiver");
        const struct fu_cfg_receiver *r =
            (const void *)dump_item(&w, cfg, "receivers", p->receiver.id, "api_keys");
        fu_jw_ckey(&w, "keys");
        fu_jw_arr_begin(&w);
        for (size_t i = 0; r && i < r->api_keys.n; i++) {
            const struct fu_cfg_api_key *k = FU_CFG_AT(&r->api_keys, struct fu_cfg_api_key, i);
            if (k->pipe_id.id && !strcmp(k->pipe_id.id, pipe->id))
                fu_jw_cstr(&w, k->key);
        }
        fu_jw_arr_end(&w);
        fu_jw_ckey(&w, "views");
        fu_jw_arr_begin(&w);
        for (size_t i = 0; i < p->views.n; i++)
            dump_item(&w, cfg, "views", p->views.v[i].id, NULL);
        fu_jw_arr_end(&w);
    } else {
        const struct fu_cfg_apipe *p = (const void *)pipe;
        fu_jw_ckey(&w, "source");
        dump_item(&w, cfg, "sources", p->source.id, NULL);
        fu_jw_ckey(&w, "sender");
        dump_item(&w, cfg, "senders", p->sender.id, NULL);
    }
    fu_jw_obj_end(&w);
}

static const struct fu_cfg_item *active_pipe(const struct fu_config *cfg, const char *id)
{
    size_t sz =
        cfg->kind == FU_CFG_FUSION ? sizeof(struct fu_cfg_fpipe) : sizeof(struct fu_cfg_apipe);
    const struct fu_cfg_item *it = fu_cfg_find(fu_config_pipes(cfg), sz, id);
    return it && fu_config_pipe_active(cfg, it) ? it : NULL;
}

void fu_config_diff(const struct fu_config *old, const struct fu_config *cur,
                    struct fu_config_diff *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < fu_config_pipes(cur)->n; i++) {
        const struct fu_cfg_item *p = fu_config_pipe_at(cur, i);
        if (!fu_config_pipe_active(cur, p))
            continue;
        const struct fu_cfg_item *o = active_pipe(old, p->id);
        if (!o) {
            fu_strv_push(&out->added, p->id);
            continue;
        }
        struct fu_buf a = FU_BUF_INIT, b = FU_BUF_INIT;
        fu_config_pipe_fingerprint(old, o, &a);
        fu_config_pipe_fingerprint(cur, p, &b);
        if (a.len != b.len || memcmp(fu_buf_str(&a), fu_buf_str(&b), a.len))
            fu_strv_push(&out->changed, p->id);
        fu_buf_free(&a);
        fu_buf_free(&b);
    }
    for (size_t i = 0; i < fu_config_pipes(old)->n; i++) {
        const struct fu_cfg_item *p = fu_config_pipe_at(old, i);
        if (fu_config_pipe_active(old, p) && !active_pipe(cur, p->id))
            fu_strv_push(&out->removed, p->id);
    }
    const struct fu_cfg_logging *a = fu_config_logging(old), *b = fu_config_logging(cur);
#define DIFFSTR(x, y) (((x) == NULL) != ((y) == NULL) || ((x) && strcmp((x), (y))))
    out->logging_changed = DIFFSTR(a->level, b->level) || DIFFSTR(a->format, b->format) ||
                           DIFFSTR(a->file, b->file) || DIFFSTR(a->dir, b->dir);
#undef DIFFSTR
}

void fu_config_diff_free(struct fu_config_diff *d)
{
    fu_strv_free(&d->added);
    fu_strv_free(&d->removed);
    fu_strv_free(&d->changed);
}
