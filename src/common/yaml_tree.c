/* YAML → fu_ynode tree via libfyaml events. libfyaml's marks are 0-based; ours are 1-based.
 * Aliases are refused (configs stay explicit and every error has one location). */
#include "common/yaml_tree.h"

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/utf8.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdlib.h>
#include <string.h>

#define FU_YAML_MAX_FILE (16u << 20)

struct builder {
    const char *file;
    const char *text; /* the whole input, for scalars we decode ourselves */
    size_t text_len;
    struct fu_diags *d;
    bool ok;
    struct fu_ynode *stack[128];
    int depth;
    struct fu_ynode *root;
    int docs;
};

static struct fu_ynode *node_new(enum fu_ynode_type t, const struct fy_mark *m)
{
    struct fu_ynode *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->type = t;
    n->line = m && m->line >= 0 ? m->line + 1 : 0;
    n->col = m && m->column >= 0 ? m->column + 1 : 0;
    return n;
}

void fu_ynode_free(struct fu_ynode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        fu_ynode_free(n->kids[i]);
    free(n->kids);
    free(n->s);
    free(n);
}

const char *fu_ynode_type_name(const struct fu_ynode *n)
{
    if (!n)
        return "nothing";
    switch (n->type) {
    case FU_Y_MAP:
        return "a mapping";
    case FU_Y_SEQ:
        return "a list";
    default:
        return n->is_null ? "null" : "a scalar";
    }
}

static int add_kid(struct fu_ynode *p, struct fu_ynode *k)
{
    struct fu_ynode **v = realloc(p->kids, (p->n + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    p->kids = v;
    p->kids[p->n++] = k;
    return 0;
}

static bool is_null_text(const char *s)
{
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* Empty values have no mark; they take the position of the key they belong to. */
static void inherit_pos(struct builder *b, struct fu_ynode *n)
{
    if (n->line || b->depth == 0)
        return;
    struct fu_ynode *p = b->stack[b->depth - 1];
    if (p->n > 0) {
        n->line = p->kids[p->n - 1]->line;
        n->col = p->kids[p->n - 1]->col;
    } else {
        n->line = p->line;
        n->col = p->col;
    }
}

static void check_dup_key(struct builder *b, struct fu_ynode *map, struct fu_ynode *key)
{
    if (key->type != FU_Y_SCALAR)
        return;
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        struct fu_ynode *k = map->kids[i];
        if (k->type == FU_Y_SCALAR && k->len == key->len && !memcmp(k->s, key->s, k->len)) {
            fu_diags_add(b->d, FU_SEV_ERROR, b->file, key->line, key->col,
                         "duplicate key '%s' (first defined at line %d)", key->s, k->line);
            b->ok = false;
            return;
        }
    }
}

/* Attach a new node to its parent (or make it the root). On failure the node is freed. */
static bool attach(struct builder *b, struct fu_ynode *n)
{
    inherit_pos(b, n);
    if (b->depth == 0) {
        fu_ynode_free(b->root); /* only reachable after an earlier error */
        b->root = n;
        return true;
    }
    struct fu_ynode *p = b->stack[b->depth - 1];
    if (p->type == FU_Y_MAP && p->n % 2 == 0)
        check_dup_key(b, p, n);
    if (add_kid(p, n) < 0) {
        fu_ynode_free(n);
        return false;
    }
    return true;
}

/* Decodes the raw text of a single-quoted scalar: '' is a quote, and line breaks fold as in
 * every flow scalar (one break with its surrounding blanks is a space; n+1 breaks are n
 * newlines). */
static void decode_single_quoted(const char *raw, size_t len, struct fu_buf *out)
{
    for (size_t i = 0; i < len;) {
        char c = raw[i];
        if (c == '\'' && i + 1 < len && raw[i + 1] == '\'') {
            fu_buf_putc(out, '\'');
            i += 2;
        } else if (c == '\n' || c == '\r') {
            while (out->len && (out->data[out->len - 1] == ' ' || out->data[out->len - 1] == '\t'))
                out->len--;
            size_t breaks = 0;
            while (i < len && strchr(" \t\r\n", raw[i])) {
                breaks +=
                    raw[i] == '\n' || (raw[i] == '\r' && (i + 1 >= len || raw[i + 1] != '\n'));
                i++;
            }
            if (breaks <= 1)
                fu_buf_putc(out, ' ');
            else
                for (size_t k = 1; k < breaks; k++)
                    fu_buf_putc(out, '\n');
        } else {
            fu_buf_putc(out, c);
            i++;
        }
    }
}

/* The scalar's value into n->s and n->len. libfyaml 0.7.12 garbles single-quoted scalars with
 * adjacent '' escapes (and leaks while doing it), so those are decoded here from the source
 * between the token's marks; everything else comes from fy_token_get_text. */
static bool scalar_text(struct builder *b, struct fy_token *tok, struct fu_ynode *n)
{
    struct fu_buf v = FU_BUF_INIT;
    const struct fy_mark *s = fy_token_start_mark(tok), *e = fy_token_end_mark(tok);
    const char *raw = NULL;
    size_t raw_len = 0;
    if (fy_token_scalar_style(tok) == FYSS_SINGLE_QUOTED && s && e &&
        s->input_pos <= e->input_pos && e->input_pos <= b->text_len) {
        raw = b->text + s->input_pos;
        raw_len = e->input_pos - s->input_pos;
    }
    if (raw && memmem(raw, raw_len, "''", 2)) {
        decode_single_quoted(raw, raw_len, &v);
    } else {
        size_t len = 0;
        const char *t = fy_token_get_text(tok, &len);
        if (!t && len)
            return false;
        fu_buf_append(&v, t ? t : "", len);
    }
    if (v.oom) {
        fu_buf_free(&v);
        return false;
    }
    n->len = v.len;
    n->s = fu_buf_detach(&v);
    return true;
}

/* Explicit tags (!!str 8080) would let a value dodge type checks; configs do without. */
static bool refuse_tag(struct builder *b, struct fy_token *tag)
{
    const struct fy_mark *m = fy_token_start_mark(tag);
    fu_diags_add(b->d, FU_SEV_ERROR, b->file, m ? m->line + 1 : 0, m ? m->column + 1 : 0,
                 "YAML tags (!!str, !!int, ...) are not supported in Fustor configs");
    b->ok = false;
    return true;
}

/* Returns false to stop parsing (out of memory or nesting beyond our stack). */
static bool on_event(struct builder *b, struct fy_event *e)
{
    const struct fy_mark *m = fy_event_start_mark(e);
    struct fu_ynode *n;
    switch (e->type) {
    case FYET_DOCUMENT_START:
        if (++b->docs > 1) {
            fu_diags_add(b->d, FU_SEV_ERROR, b->file, m ? m->line + 1 : 0, 0,
                         "a config file holds one YAML document; found a second one");
            b->ok = false;
        }
        break;
    case FYET_ALIAS:
        fu_diags_add(b->d, FU_SEV_ERROR, b->file, m ? m->line + 1 : 0, m ? m->column + 1 : 0,
                     "YAML aliases are not supported in Fustor configs; write the value out");
        b->ok = false;
        break;
    case FYET_SCALAR: {
        if (e->scalar.tag)
            return refuse_tag(b, e->scalar.tag);
        n = node_new(FU_Y_SCALAR, m);
        if (!n || !scalar_text(b, e->scalar.value, n)) {
            fu_ynode_free(n);
            return false;
        }
        size_t len = n->len;
        n->plain = fy_token_scalar_style(e->scalar.value) == FYSS_PLAIN;
        n->is_null = n->plain && is_null_text(n->s);
        if (memchr(n->s, '\0', len)) {
            /* C strings would silently cut the value short there. */
            fu_diags_add(b->d, FU_SEV_ERROR, b->file, n->line, n->col,
                         "a NUL character (\\0) is not allowed in a value or key");
            b->ok = false;
        }
        return attach(b, n);
    }
    case FYET_MAPPING_START:
    case FYET_SEQUENCE_START:
        if (e->type == FYET_MAPPING_START ? e->mapping_start.tag != NULL
                                          : e->sequence_start.tag != NULL)
            return refuse_tag(b, e->type == FYET_MAPPING_START ? e->mapping_start.tag
                                                               : e->sequence_start.tag);
        n = node_new(e->type == FYET_MAPPING_START ? FU_Y_MAP : FU_Y_SEQ, m);
        if (!n)
            return false;
        if (b->depth >= (int)(sizeof(b->stack) / sizeof(b->stack[0]))) {
            fu_diags_add(b->d, FU_SEV_ERROR, b->file, n->line, n->col,
                         "nesting deeper than %d levels", b->depth);
            fu_ynode_free(n);
            b->ok = false;
            return false;
        }
        if (!attach(b, n))
            return false;
        b->stack[b->depth++] = n;
        break;
    case FYET_MAPPING_END:
    case FYET_SEQUENCE_END:
        if (b->depth > 0)
            b->depth--;
        break;
    default:
        break;
    }
    return true;
}

static struct fu_ynode *run(struct fy_parser *p, struct builder *b, struct fy_diag *dg, bool *ok)
{
    struct fy_event *e;
    while ((e = fy_parser_parse(p))) {
        bool go = on_event(b, e);
        fy_parser_event_free(p, e);
        if (!go) {
            if (b->ok)
                fu_diags_add(b->d, FU_SEV_ERROR, b->file, 0, 0, "out of memory");
            b->ok = false;
            break;
        }
    }
    if (fy_parser_get_stream_error(p)) {
        void *it = NULL;
        struct fy_diag_error *de;
        int reported = 0;
        while ((de = fy_diag_errors_iterate(dg, &it))) {
            fu_diags_add(b->d, FU_SEV_ERROR, b->file, de->line, de->column, "YAML syntax error: %s",
                         de->msg);
            reported++;
        }
        if (!reported)
            fu_diags_add(b->d, FU_SEV_ERROR, b->file, 0, 0, "YAML syntax error");
        b->ok = false;
    }
    *ok = b->ok;
    if (!b->ok) {
        fu_ynode_free(b->root);
        return NULL;
    }
    return b->root;
}

/* libfyaml ends the stream quietly at a NUL byte or invalid UTF-8, which would drop the rest
 * of the file without a word; so the text is checked first. Returns false on a problem. */
static bool check_encoding(const char *name, const char *text, size_t len, struct fu_diags *d)
{
    const unsigned char *u = (const unsigned char *)text;
    if (len >= 2 && ((u[0] == 0xFF && u[1] == 0xFE) || (u[0] == 0xFE && u[1] == 0xFF))) {
        fu_diags_add(d, FU_SEV_ERROR, name, 1, 1, "the file is UTF-16; save it as UTF-8");
        return false;
    }
    int line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        size_t l = u[i] ? fu_utf8_len(u + i, len - i) : 0;
        if (!l) {
            fu_diags_add(d, FU_SEV_ERROR, name, line, col,
                         u[i] ? "invalid UTF-8 byte 0x%02x; save the file as UTF-8"
                              : "a NUL byte (0x%02x) in the file; is it a text file?",
                         u[i]);
            return false;
        }
        if (u[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        i += l;
    }
    return true;
}

static struct fu_ynode *load(const char *name, const char *text, size_t len, struct fu_diags *d,
                             bool *ok)
{
    if (!check_encoding(name, text, len, d)) {
        *ok = false;
        return NULL;
    }
    struct builder b = {.file = name, .text = text, .text_len = len, .d = d, .ok = true};
    struct fy_diag_cfg dc;
    fy_diag_cfg_default(&dc);
    dc.fp = NULL;
    dc.output_fn = NULL;
    dc.level = FYET_ERROR;
    struct fy_diag *dg = fy_diag_create(&dc);
    if (!dg) {
        fu_diags_add(d, FU_SEV_ERROR, name, 0, 0, "out of memory");
        *ok = false;
        return NULL;
    }
    fy_diag_set_collect_errors(dg, true);
    struct fy_parse_cfg pc = {.flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2, .diag = dg};
    struct fy_parser *p = fy_parser_create(&pc);
    struct fu_ynode *root = NULL;
    if (p && fy_parser_set_string(p, text, len) == 0) {
        root = run(p, &b, dg, ok);
    } else {
        fu_diags_add(d, FU_SEV_ERROR, name, 0, 0, "out of memory");
        *ok = false;
    }
    if (p)
        fy_parser_destroy(p);
    fy_diag_destroy(dg);
    return root;
}

struct fu_ynode *fu_yaml_load_file(const char *path, struct fu_diags *d, bool *ok)
{
    struct fu_buf text = FU_BUF_INIT;
    int rc = fu_read_file(path, FU_YAML_MAX_FILE, &text);
    if (rc < 0) {
        fu_diags_add(d, FU_SEV_ERROR, path, 0, 0, "cannot read: %s",
                     rc == -EFBIG    ? "file larger than 16 MiB"
                     : rc == -EINVAL ? "not a regular file"
                                     : strerror(-rc));
        *ok = false;
        fu_buf_free(&text);
        return NULL;
    }
    struct fu_ynode *root = load(path, fu_buf_str(&text), text.len, d, ok);
    fu_buf_free(&text);
    return root;
}

struct fu_ynode *fu_yaml_load_string(const char *name, const char *text, size_t len,
                                     struct fu_diags *d, bool *ok)
{
    return load(name, text, len, d, ok);
}
