/* The view API's reads (Fustor v1 §4.1) as a specification: node JSON fields and order, the
 * nested tree with recursive/max_depth, the metadata limit and 404 bodies, flat pages whose
 * cursors survive concurrent changes, stats equal to a brute-force recount, and search. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/json.h"
#include "fusion/view_fs/query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ a small JSON DOM */

enum { JV_NULL, JV_BOOL, JV_INT, JV_DBL, JV_STR, JV_ARR, JV_OBJ };

struct jv {
    int kind;
    bool b;
    int64_t i;
    double d;
    char *s; /* JV_STR: bytes, NUL-terminated; JV_OBJ: unused */
    size_t slen;
    struct jv *items; /* JV_ARR, JV_OBJ */
    char **keys;      /* JV_OBJ */
    size_t n;
};

static char *dup_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void jv_free(struct jv *v)
{
    for (size_t i = 0; i < v->n; i++) {
        jv_free(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->s);
}

static void jv_read(struct fu_jr *r, enum fu_json_tok tok, struct jv *v)
{
    memset(v, 0, sizeof(*v));
    switch (tok) {
    case FU_JSON_NULL:
        v->kind = JV_NULL;
        return;
    case FU_JSON_TRUE:
    case FU_JSON_FALSE:
        v->kind = JV_BOOL;
        v->b = tok == FU_JSON_TRUE;
        return;
    case FU_JSON_INT:
        v->kind = JV_INT;
        v->i = r->i64;
        return;
    case FU_JSON_DOUBLE:
        v->kind = JV_DBL;
        v->d = r->dbl;
        return;
    case FU_JSON_STRING:
        v->kind = JV_STR;
        v->s = dup_bytes(r->str, r->str_len);
        v->slen = r->str_len;
        return;
    case FU_JSON_ARR_BEGIN:
    case FU_JSON_OBJ_BEGIN: {
        bool obj = tok == FU_JSON_OBJ_BEGIN;
        v->kind = obj ? JV_OBJ : JV_ARR;
        size_t cap = 0;
        for (;;) {
            enum fu_json_tok t = fu_jr_next(r);
            assert_int_not_equal(t, FU_JSON_ERROR);
            if (t == FU_JSON_ARR_END || t == FU_JSON_OBJ_END)
                return;
            if (v->n == cap) {
                cap = cap ? cap * 2 : 8;
                v->items = realloc(v->items, cap * sizeof(*v->items));
                assert_non_null(v->items);
                if (obj) {
                    v->keys = realloc(v->keys, cap * sizeof(*v->keys));
                    assert_non_null(v->keys);
                }
            }
            if (obj) {
                assert_int_equal(t, FU_JSON_KEY);
                v->keys[v->n] = dup_bytes(r->str, r->str_len);
                t = fu_jr_next(r);
            }
            jv_read(r, t, &v->items[v->n]);
            v->n++;
        }
    }
    default:
        fail_msg("unexpected token %d", tok);
    }
}

static struct jv parse(const struct fu_buf *b)
{
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(b), b->len);
    fu_jr_set_max_depth(&r, FU_JSON_MAX_DEPTH);
    struct jv v;
    jv_read(&r, fu_jr_next(&r), &v);
    assert_int_equal(fu_jr_next(&r), FU_JSON_EOF);
    fu_jr_free(&r);
    return v;
}

static const struct jv *get(const struct jv *o, const char *key)
{
    assert_int_equal(o->kind, JV_OBJ);
    for (size_t i = 0; i < o->n; i++)
        if (!strcmp(o->keys[i], key))
            return &o->items[i];
    return NULL;
}

static const char *get_str(const struct jv *o, const char *key)
{
    const struct jv *v = get(o, key);
    assert_non_null(v);
    assert_int_equal(v->kind, JV_STR);
    return v->s;
}

/* ------------------------------------------------------------ fixtures */

static fu_nid put(struct fu_tree *t, const char *path, bool dir, uint64_t size, double mtime)
{
    struct fu_attr a = {.size = size, .mtime = mtime, .ctime = mtime / 2};
    fu_nid id;
    assert_int_equal(fu_tree_upsert(t, path, strlen(path), dir, &a, &id), 0);
    return id;
}

static fu_nid look(const struct fu_tree *t, const char *path)
{
    return fu_tree_lookup(t, path, strlen(path));
}

static struct fu_tree_query tq(const char *path)
{
    return (struct fu_tree_query){
        .path = path, .recursive = true, .max_depth = -1, .max_items = 0, .view_id = "v"};
}

static int run_tree(const struct fu_tree *t, const struct fu_tree_query *q, struct fu_buf *out)
{
    fu_buf_reset(out);
    return fu_query_tree(t, q, out);
}

/* Path order: component by component, bytewise; an ancestor first. */
static int path_order(const void *a, const void *b)
{
    const unsigned char *x = *(const unsigned char *const *)a;
    const unsigned char *y = *(const unsigned char *const *)b;
    for (;; x++, y++) {
        unsigned cx = *x == '/' ? 1 : *x, cy = *y == '/' ? 1 : *y; /* '/' below any name byte */
        if (cx != cy)
            return cx < cy ? -1 : 1;
        if (!cx)
            return 0;
    }
}

/* ------------------------------------------------------------ node JSON */

static void test_file_node_has_v1_fields_in_order(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    fu_nid f = put(&t, "/a/f.txt", false, 42, 100.5);
    fu_tree_node(&t, f)->lineage = fu_tree_lineage(&t, "agent-1", "nfs://h/x", "p");
    fu_tree_set_flags(&t, f, FU_N_SUSPECT | FU_N_AGENT_MISSING, 0);
    struct fu_buf out = FU_BUF_INIT, scratch = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &out);
    fu_query_node_begin(&t, f, false, &scratch, &w);
    fu_jw_obj_end(&w);
    assert_string_equal(fu_buf_str(&out),
                        "{\"name\":\"f.txt\",\"content_type\":\"file\",\"path\":\"/a/f.txt\","
                        "\"size\":42,\"modified_time\":100.5,\"created_time\":50.25,"
                        "\"integrity_suspect\":true,\"last_agent_id\":\"agent-1\","
                        "\"source_uri\":\"nfs://h/x\",\"agent_missing\":true}");
    fu_buf_free(&out);
    fu_buf_free(&scratch);
    fu_tree_free(&t);
}

static void test_directory_node_has_audit_skipped_and_null_lineage(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    fu_nid d = put(&t, "/d", true, 0, 7); /* no agent confirmed it: agent_missing (v1) */
    fu_tree_set_flags(&t, d, FU_N_AUDIT_SKIPPED, 0);
    struct fu_buf out = FU_BUF_INIT, scratch = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &out);
    fu_query_node_begin(&t, d, false, &scratch, &w);
    fu_jw_ckey(&w, "extra"); /* the object is left open for the caller */
    fu_jw_int(&w, 1);
    fu_jw_obj_end(&w);
    assert_string_equal(fu_buf_str(&out),
                        "{\"name\":\"d\",\"content_type\":\"directory\",\"path\":\"/d\","
                        "\"size\":0,\"modified_time\":7.0,\"created_time\":3.5,"
                        "\"integrity_suspect\":false,\"last_agent_id\":null,"
                        "\"source_uri\":null,\"agent_missing\":true,\"audit_skipped\":true,"
                        "\"extra\":1}");
    fu_buf_free(&out);
    fu_buf_free(&scratch);
    fu_tree_free(&t);
}

static void test_root_is_named_empty_with_path_slash(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    struct fu_buf out = FU_BUF_INIT;
    struct fu_tree_query q = tq("/");
    q.only_path = true;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    assert_string_equal(fu_buf_str(&out),
                        "{\"name\":\"\",\"content_type\":\"directory\",\"path\":\"/\","
                        "\"children\":[]}");
    fu_buf_free(&out);
    fu_tree_free(&t);
}

static void test_only_path_gives_name_type_and_path(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/a/x", false, 1, 1);
    struct fu_buf out = FU_BUF_INIT;
    struct fu_tree_query q = tq("/a");
    q.only_path = true;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    assert_string_equal(fu_buf_str(&out),
                        "{\"name\":\"a\",\"content_type\":\"directory\",\"path\":\"/a\","
                        "\"children\":[{\"name\":\"x\",\"content_type\":\"file\","
                        "\"path\":\"/a/x\"}]}");
    fu_buf_free(&out);
    fu_tree_free(&t);
}

/* ------------------------------------------------------------ GET /tree */

static void test_non_recursive_directory_has_empty_children_and_file_none(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/a/b/c", false, 1, 1);
    struct fu_buf out = FU_BUF_INIT;
    struct fu_tree_query q = tq("/a");
    q.recursive = false;
    q.only_path = true;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    assert_string_equal(fu_buf_str(&out), "{\"name\":\"a\",\"content_type\":\"directory\","
                                          "\"path\":\"/a\",\"children\":[]}");
    q.path = "/a/b/c";
    assert_int_equal(run_tree(&t, &q, &out), 200);
    struct jv v = parse(&out);
    assert_null(get(&v, "children"));
    assert_string_equal(get_str(&v, "path"), "/a/b/c");
    jv_free(&v);
    q.recursive = true; /* a file never has children */
    assert_int_equal(run_tree(&t, &q, &out), 200);
    v = parse(&out);
    assert_null(get(&v, "children"));
    jv_free(&v);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

static void test_max_depth_limits_levels_and_forces_recursion(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/a/b/c/d", false, 1, 1);
    put(&t, "/f", false, 1, 1);
    struct fu_buf out = FU_BUF_INIT;
    struct fu_tree_query q = tq("/");
    q.only_path = true;
    q.recursive = false; /* max_depth wins */
    q.max_depth = 0;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    assert_string_equal(fu_buf_str(&out),
                        "{\"name\":\"\",\"content_type\":\"directory\",\"path\":\"/\","
                        "\"children\":[]}");
    q.max_depth = 1;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    assert_string_equal(fu_buf_str(&out),
                        "{\"name\":\"\",\"content_type\":\"directory\",\"path\":\"/\","
                        "\"children\":[{\"name\":\"a\",\"content_type\":\"directory\","
                        "\"path\":\"/a\",\"children\":[]},{\"name\":\"f\",\"content_type\":"
                        "\"file\",\"path\":\"/f\"}]}");
    q.max_depth = 2;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    struct jv v = parse(&out);
    const struct jv *a = &get(&v, "children")->items[0];
    const struct jv *b = &get(a, "children")->items[0];
    assert_string_equal(get_str(b, "path"), "/a/b");
    assert_int_equal(get(b, "children")->n, 0);
    jv_free(&v);
    q.max_depth = -1; /* unlimited */
    q.recursive = true;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    v = parse(&out);
    a = &get(&v, "children")->items[0];
    b = &get(a, "children")->items[0];
    const struct jv *c = &get(b, "children")->items[0];
    assert_string_equal(get_str(&get(c, "children")->items[0], "path"), "/a/b/c/d");
    jv_free(&v);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

static void test_children_are_sorted_by_name_bytewise(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    const char *names[] = {"/b", "/a b", "/B", "/a", "/\xc3\xa9", "/ab", "/A"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        put(&t, names[i], i % 2 == 0, 0, 0);
    struct fu_buf out = FU_BUF_INIT;
    struct fu_tree_query q = tq("/");
    assert_int_equal(run_tree(&t, &q, &out), 200);
    struct jv v = parse(&out);
    const struct jv *kids = get(&v, "children");
    const char *want[] = {"A", "B", "a", "a b", "ab", "b", "\xc3\xa9"};
    assert_int_equal(kids->n, 7);
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(get_str(&kids->items[i], "name"), want[i]);
    jv_free(&v);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

static void test_invalid_utf8_names_round_trip_as_surrogate_escapes(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/d\xff/n\x80\xfe", false, 3, 1);
    struct fu_buf out = FU_BUF_INIT;
    struct fu_tree_query q = tq("/d\xff");
    q.only_path = true;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    assert_non_null(strstr(fu_buf_str(&out), "\"path\":\"/d\\udcff/n\\udc80\\udcfe\""));
    struct jv v = parse(&out);
    assert_string_equal(get_str(&v, "name"), "d\xff");
    const struct jv *k = &get(&v, "children")->items[0];
    assert_string_equal(get_str(k, "name"), "n\x80\xfe");
    assert_string_equal(get_str(k, "path"), "/d\xff/n\x80\xfe");
    jv_free(&v);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

static void test_missing_path_is_404_with_detail(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/f", false, 1, 1);
    struct fu_buf out = FU_BUF_INIT;
    struct fu_tree_query q = tq("/nope");
    assert_int_equal(run_tree(&t, &q, &out), 404);
    assert_string_equal(fu_buf_str(&out),
                        "{\"detail\":\"Path not found or not yet synced: /nope\"}");
    q.path = "/f/below-a-file";
    assert_int_equal(run_tree(&t, &q, &out), 404);
    fu_buf_reset(&out);
    assert_int_equal(fu_query_tree_page(&t, &q, 10, NULL, &out), 404);
    fu_buf_reset(&out);
    struct fu_stats_extra x = {0};
    assert_int_equal(fu_query_stats(&t, "/nope", &x, &out), 404);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

static void test_over_max_items_is_400_with_v1_body(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    char p[64];
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof(p), "/d/s%d/f", i);
        put(&t, p, false, 1, 1);
    }
    /* The whole tree: root, /d, 10 dirs, 10 files = 22 entries. */
    struct fu_buf out = FU_BUF_INIT;
    struct fu_tree_query q = tq("/");
    q.max_items = 22;
    q.view_id = "view-1";
    assert_int_equal(run_tree(&t, &q, &out), 200);
    q.max_items = 21;
    assert_int_equal(run_tree(&t, &q, &out), 400);
    assert_string_equal(fu_buf_str(&out),
                        "{\"detail\":{\"error\":\"Metadata retrieval limit exceeded\","
                        "\"view\":\"view-1\",\"current_count\":22,\"limit\":21,"
                        "\"suggestion\":\"Try a more specific path or reduce recursion depth.\"}}");
    /* The count is of the response, not the view: a subtree or a shallow listing fits. */
    q.path = "/d/s3";
    assert_int_equal(run_tree(&t, &q, &out), 200);
    q.path = "/";
    q.max_depth = 1; /* root and /d */
    q.max_items = 2;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    q.max_depth = 2; /* + the 10 dirs: counting stops at limit + 1 */
    q.max_items = 5;
    assert_int_equal(run_tree(&t, &q, &out), 400);
    struct jv v = parse(&out);
    const struct jv *d = get(&v, "detail");
    assert_int_equal(get(d, "current_count")->i, 6);
    assert_int_equal(get(d, "limit")->i, 5);
    jv_free(&v);
    q.max_items = 12;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    q.recursive = false; /* the node only */
    q.max_depth = -1;
    q.max_items = 1;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

/* ------------------------------------------------------------ pages */

/* A tree of dirs d0..d(nd-1), each with subdirs and files; its paths into *paths, sorted in
 * path order, the root first. */
static size_t build_wide(struct fu_tree *t, char ***paths)
{
    size_t n = 0, cap = 4096;
    char **v = malloc(cap * sizeof(*v));
    assert_non_null(v);
    v[n++] = strdup("/");
    char p[128];
    for (int a = 0; a < 12; a++) {
        snprintf(p, sizeof(p), "/d%d", a);
        put(t, p, true, 0, a);
        v[n++] = strdup(p);
        for (int b = 0; b < 15; b++) {
            snprintf(p, sizeof(p), "/d%d/s %d", a, b);
            put(t, p, true, 0, b);
            v[n++] = strdup(p);
            for (int c = 0; c < 12; c++) {
                snprintf(p, sizeof(p), "/d%d/s %d/f%d.txt", a, b, c);
                put(t, p, false, (uint64_t)c, c);
                v[n++] = strdup(p);
            }
        }
        snprintf(p, sizeof(p), "/d%d.x", a); /* sorts after /d%d's subtree */
        put(t, p, false, 1, 1);
        v[n++] = strdup(p);
    }
    assert_true(n <= cap);
    qsort(v, n, sizeof(*v), path_order);
    *paths = v;
    return n;
}

static void free_paths(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Pages through the subtree, appending every entry's path to *got; returns the count. */
static size_t page_all(const struct fu_tree *t, const struct fu_tree_query *q, size_t size,
                       char ***got)
{
    struct fu_buf out = FU_BUF_INIT;
    char *cursor = NULL;
    size_t n = 0, cap = 0;
    char **v = NULL;
    for (;;) {
        fu_buf_reset(&out);
        assert_int_equal(fu_query_tree_page(t, q, size, cursor, &out), 200);
        free(cursor);
        cursor = NULL;
        struct jv pg = parse(&out);
        const struct jv *e = get(&pg, "entries");
        assert_true(e->n <= size);
        assert_true(n + e->n <= (size_t)fu_tree_count(t)); /* no page repeats forever */
        for (size_t i = 0; i < e->n; i++) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                v = realloc(v, cap * sizeof(*v));
                assert_non_null(v);
            }
            assert_null(get(&e->items[i], "children"));
            v[n++] = strdup(get_str(&e->items[i], "path"));
        }
        const struct jv *nc = get(&pg, "next_cursor");
        assert_non_null(nc);
        if (nc->kind == JV_STR) {
            assert_int_equal(e->n, size);
            cursor = strdup(nc->s);
        } else {
            assert_int_equal(nc->kind, JV_NULL);
        }
        jv_free(&pg);
        if (!cursor)
            break;
    }
    fu_buf_free(&out);
    *got = v;
    return n;
}

static void test_pages_reconstruct_the_full_pre_order_listing(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    char **want;
    size_t nwant = build_wide(&t, &want);
    assert_true(nwant > 2000);
    struct fu_tree_query q = tq("/");
    size_t sizes[] = {1, 7, 1000, 10000};
    for (size_t s = 0; s < 4; s++) {
        char **got;
        size_t ngot = page_all(&t, &q, sizes[s], &got);
        assert_int_equal(ngot, nwant);
        for (size_t i = 0; i < nwant; i++)
            assert_string_equal(got[i], want[i]);
        free_paths(got, ngot);
    }
    /* A subtree: its own entries, in the same order. */
    q.path = "/d3";
    char **got;
    size_t ngot = page_all(&t, &q, 7, &got);
    size_t first = 0;
    while (strcmp(want[first], "/d3"))
        first++;
    assert_int_equal(ngot, 1 + 15 * 13);
    for (size_t i = 0; i < ngot; i++)
        assert_string_equal(got[i], want[first + i]);
    free_paths(got, ngot);
    free_paths(want, nwant);
    fu_tree_free(&t);
}

static void test_pages_respect_max_depth_and_only_path(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    char **all;
    size_t nall = build_wide(&t, &all);
    struct fu_tree_query q = tq("/");
    q.max_depth = 1;
    char **got;
    size_t ngot = page_all(&t, &q, 5, &got);
    assert_int_equal(ngot, 1 + 24); /* root, d0..d11, d0.x..d11.x */
    size_t k = 0;
    for (size_t i = 0; i < nall; i++)
        if (strchr(all[i] + 1, '/') == NULL)
            assert_string_equal(got[k++], all[i]);
    assert_int_equal(k, ngot);
    free_paths(got, ngot);
    q.max_depth = 0;
    ngot = page_all(&t, &q, 1, &got);
    assert_int_equal(ngot, 1);
    free_paths(got, ngot);
    q.max_depth = -1;
    q.recursive = false;
    ngot = page_all(&t, &q, 3, &got);
    assert_int_equal(ngot, 1);
    free_paths(got, ngot);

    struct fu_buf out = FU_BUF_INIT;
    q = tq("/d0/s 0/f0.txt"); /* a file: itself only */
    q.only_path = true;
    assert_int_equal(fu_query_tree_page(&t, &q, 10, NULL, &out), 200);
    assert_string_equal(fu_buf_str(&out),
                        "{\"path\":\"/d0/s 0/f0.txt\",\"entries\":[{\"name\":\"f0.txt\","
                        "\"content_type\":\"file\",\"path\":\"/d0/s 0/f0.txt\"}],"
                        "\"next_cursor\":null}");
    free_paths(all, nall);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

static void expect_page(const struct fu_tree *t, const struct fu_tree_query *q, size_t size,
                        char **cursor, const char *const *want, size_t nwant)
{
    struct fu_buf out = FU_BUF_INIT;
    assert_int_equal(fu_query_tree_page(t, q, size, *cursor, &out), 200);
    free(*cursor);
    *cursor = NULL;
    struct jv pg = parse(&out);
    const struct jv *e = get(&pg, "entries");
    assert_int_equal(e->n, nwant);
    for (size_t i = 0; i < nwant; i++)
        assert_string_equal(get_str(&e->items[i], "path"), want[i]);
    if (get(&pg, "next_cursor")->kind == JV_STR)
        *cursor = strdup(get_str(&pg, "next_cursor"));
    jv_free(&pg);
    fu_buf_free(&out);
}

static void test_page_resumes_after_a_deleted_cursor_entry(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/a/1", false, 1, 1);
    put(&t, "/a/2", false, 1, 1);
    put(&t, "/b/1", false, 1, 1);
    put(&t, "/c", false, 1, 1);
    struct fu_tree_query q = tq("/");
    q.only_path = true;
    char *cursor = NULL;
    const char *p1[] = {"/", "/a", "/a/1"};
    expect_page(&t, &q, 3, &cursor, p1, 3);
    assert_non_null(cursor);
    fu_tree_delete(&t, "/a/1", 4); /* the cursor's entry goes away */
    put(&t, "/a/0", false, 1, 1);  /* before the cursor: not listed */
    put(&t, "/a/1x", false, 1, 1); /* after it: listed */
    const char *p2[] = {"/a/1x", "/a/2"};
    expect_page(&t, &q, 2, &cursor, p2, 2);
    assert_non_null(cursor);
    fu_tree_delete(&t, "/a", 2); /* the cursor's parent goes away */
    put(&t, "/a0", false, 1, 1); /* after /a/2 in path order: listed */
    put(&t, "/a", false, 1, 1);  /* before: not listed */
    const char *p3[] = {"/a0", "/b", "/b/1", "/c"};
    expect_page(&t, &q, 10, &cursor, p3, 4);
    assert_null(cursor);
    fu_tree_free(&t);
}

static void test_pages_under_concurrent_change_never_repeat_or_skip_survivors(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    char **all;
    size_t nall = build_wide(&t, &all);
    bool *touched = calloc(nall, sizeof(bool)); /* deleted at some point */
    assert_non_null(touched);
    srand(7);
    struct fu_tree_query q = tq("/");
    q.only_path = true;
    struct fu_buf out = FU_BUF_INIT;
    char *cursor = NULL, *last = NULL;
    char **seen = NULL;
    size_t nseen = 0, cap = 0;
    int inserted = 0;
    for (;;) {
        fu_buf_reset(&out);
        assert_int_equal(fu_query_tree_page(&t, &q, 13, cursor, &out), 200);
        free(cursor);
        cursor = NULL;
        struct jv pg = parse(&out);
        const struct jv *e = get(&pg, "entries");
        assert_true(nseen + e->n <= nall + (size_t)inserted);
        for (size_t i = 0; i < e->n; i++) {
            const char *p = get_str(&e->items[i], "path");
            if (last) /* strictly increasing: nothing repeats */
                assert_true(path_order(&last, &p) < 0);
            if (nseen == cap) {
                cap = cap ? cap * 2 : 256;
                seen = realloc(seen, cap * sizeof(*seen));
                assert_non_null(seen);
            }
            seen[nseen++] = last = strdup(p);
        }
        const struct jv *nc = get(&pg, "next_cursor");
        if (nc->kind == JV_STR)
            cursor = strdup(nc->s);
        jv_free(&pg);
        if (!cursor)
            break;
        /* Between pages: delete a few random entries (maybe whole dirs), every other time
         * the cursor's own entry, and add some. */
        for (int k = 0; k < 3; k++) {
            size_t i = 1 + (size_t)rand() % (nall - 1);
            if (k == 0 && rand() % 2) {
                char **hit = bsearch(&last, all, nall, sizeof(*all), path_order);
                if (hit && hit != all)
                    i = (size_t)(hit - all);
            }
            fu_tree_delete(&t, all[i], strlen(all[i]));
            size_t l = strlen(all[i]);
            for (size_t j = 0; j < nall; j++) /* it and everything below */
                if (!strncmp(all[j], all[i], l) && (all[j][l] == '\0' || all[j][l] == '/'))
                    touched[j] = true;
        }
        for (int k = 0; k < 2; k++) {
            char p[128];
            snprintf(p, sizeof(p), "/d%d/s %d/new%d", rand() % 12, rand() % 15, inserted++);
            struct fu_attr a = {0};
            fu_nid id;
            assert_int_equal(fu_tree_upsert(&t, p, strlen(p), false, &a, &id), 0);
        }
    }
    /* Every entry that existed throughout was listed (seen is sorted: binary search). */
    size_t survivors = 0;
    for (size_t i = 0; i < nall; i++) {
        if (touched[i])
            continue;
        survivors++;
        assert_non_null(bsearch(&all[i], seen, nseen, sizeof(*seen), path_order));
    }
    assert_true(survivors > nall / 2);
    free_paths(seen, nseen);
    free(touched);
    free_paths(all, nall);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

static char *b64(const char *s)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(s);
    char *o = malloc(n * 2 + 4), *p = o;
    assert_non_null(o);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        *p++ = a[v >> 18];
        *p++ = a[(v >> 12) & 63];
        if (i + 1 < n)
            *p++ = a[(v >> 6) & 63];
        if (i + 2 < n)
            *p++ = a[v & 63];
    }
    *p = '\0';
    return o;
}

static void test_bad_cursor_or_page_size_is_400(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/a/x", false, 1, 1);
    put(&t, "/ab/y", false, 1, 1);
    struct fu_tree_query q = tq("/a");
    struct fu_buf out = FU_BUF_INIT;
    const char *bad_paths[] = {"/ab",   "/ab/y", "/",      "/b",      "a/x",
                               "/a//x", "/a/x/", "/a/./x", "/a/../a", ""};
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        char *c = b64(bad_paths[i]);
        fu_buf_reset(&out);
        assert_int_equal(fu_query_tree_page(&t, &q, 10, c, &out), 400);
        struct jv v = parse(&out);
        assert_int_equal(get(&v, "detail")->kind, JV_STR);
        jv_free(&v);
        free(c);
    }
    const char *garbage[] = {"!!!", "L2E=", "L2E+eA", "L", "L2F"}; /* "L2F": bits left over */
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        fu_buf_reset(&out);
        assert_int_equal(fu_query_tree_page(&t, &q, 10, garbage[i], &out), 400);
    }
    char *ok = b64("/a/x"), *self = b64("/a"), *gone = b64("/a/zz/deep");
    fu_buf_reset(&out);
    assert_int_equal(fu_query_tree_page(&t, &q, 10, ok, &out), 200);
    fu_buf_reset(&out);
    assert_int_equal(fu_query_tree_page(&t, &q, 10, self, &out), 200);
    assert_non_null(strstr(fu_buf_str(&out), "\"path\":\"/a/x\""));
    fu_buf_reset(&out);
    assert_int_equal(fu_query_tree_page(&t, &q, 10, gone, &out), 200);
    assert_non_null(strstr(fu_buf_str(&out), "\"entries\":[]"));
    free(ok);
    free(self);
    free(gone);
    size_t sizes[] = {0, 10001};
    for (size_t i = 0; i < 2; i++) {
        fu_buf_reset(&out);
        assert_int_equal(fu_query_tree_page(&t, &q, sizes[i], NULL, &out), 400);
    }
    fu_buf_reset(&out);
    assert_int_equal(fu_query_tree_page(&t, &q, 10000, NULL, &out), 200);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

/* ------------------------------------------------------------ deep trees */

#define DEEP 10000

static void test_ten_thousand_levels_deep_tree_and_pages(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    struct fu_buf p = FU_BUF_INIT;
    for (int i = 0; i < DEEP; i++)
        fu_buf_puts(&p, "/d");
    fu_buf_puts(&p, "/f");
    put(&t, p.data, false, 5, 1);

    /* The nested tree, checked level by level without a parser (JSON nesting here is far
     * beyond any reader's limit). */
    struct fu_buf out = FU_BUF_INIT, want = FU_BUF_INIT;
    struct fu_tree_query q = tq("/");
    q.only_path = true;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    const char *s = out.data;
    const char *root = "{\"name\":\"\",\"content_type\":\"directory\",\"path\":\"/\","
                       "\"children\":[";
    assert_memory_equal(s, root, strlen(root));
    s += strlen(root);
    for (int i = 1; i <= DEEP + 1; i++) {
        fu_buf_reset(&want);
        bool file = i == DEEP + 1;
        fu_buf_printf(&want, "{\"name\":\"%s\",\"content_type\":\"%s\",\"path\":\"",
                      file ? "f" : "d", file ? "file" : "directory");
        fu_buf_append(&want, p.data, 2 * (size_t)i);
        fu_buf_puts(&want, file ? "\"}" : "\",\"children\":[");
        assert_memory_equal(s, want.data, want.len);
        s += want.len;
    }
    for (int i = 0; i <= DEEP; i++) {
        assert_memory_equal(s, "]}", 2);
        s += 2;
    }
    assert_int_equal(s - out.data, (ptrdiff_t)out.len);

    /* Depth-limited and with the limit checks' walk. */
    q.max_depth = DEEP - 1;
    q.max_items = DEEP + 1;
    assert_int_equal(run_tree(&t, &q, &out), 200);
    q.max_items = DEEP - 1;
    assert_int_equal(run_tree(&t, &q, &out), 400);

    /* Pages: every level in order, checked page by page (the paths add up to 100 MB). */
    q = tq("/");
    q.only_path = true;
    char *cursor = NULL;
    size_t seen = 0;
    do {
        fu_buf_reset(&out);
        assert_int_equal(fu_query_tree_page(&t, &q, 1000, cursor, &out), 200);
        free(cursor);
        cursor = NULL;
        struct jv pg = parse(&out);
        const struct jv *e = get(&pg, "entries");
        for (size_t i = 0; i < e->n; i++, seen++) {
            const char *path = get_str(&e->items[i], "path");
            if (seen == 0) {
                assert_string_equal(path, "/");
                continue;
            }
            assert_int_equal(strlen(path), 2 * seen);
            assert_memory_equal(path, p.data, 2 * seen);
        }
        if (get(&pg, "next_cursor")->kind == JV_STR)
            cursor = strdup(get_str(&pg, "next_cursor"));
        jv_free(&pg);
    } while (cursor);
    assert_int_equal(seen, DEEP + 2);
    fu_buf_free(&want);
    fu_buf_free(&out);
    fu_buf_free(&p);
    fu_tree_free(&t);
}

/* ------------------------------------------------------------ stats */

static void test_stats_of_a_subtree_equal_a_brute_force_recount(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    char **all;
    size_t nall = build_wide(&t, &all);
    srand(11);
    for (int k = 0; k < 40; k++) { /* some suspects, some deletions */
        size_t i = 1 + (size_t)rand() % (nall - 1);
        fu_nid id = look(&t, all[i]);
        if (id != FU_NID_NONE && k % 2)
            fu_tree_set_flags(&t, id, FU_N_SUSPECT, 0);
        else
            fu_tree_delete(&t, all[i], strlen(all[i]));
    }
    const char *dirs[] = {"/", "/d0", "/d5", "/d7/s 3", "/d11/s 14"};
    struct fu_stats_extra x = {.latency_ms = 12.5,
                               .logical_now = 1000.25,
                               .last_audit_finished_at = 0,
                               .audit_cycle_count = 3,
                               .is_auditing = true};
    struct fu_buf out = FU_BUF_INIT;
    for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
        if (look(&t, dirs[d]) == FU_NID_NONE)
            continue;
        size_t dl = strcmp(dirs[d], "/") ? strlen(dirs[d]) : 0;
        uint64_t files = 0, ndirs = 0, bytes = 0, suspects = 0;
        double newest = 0, oldest_dir = -1;
        for (size_t i = 0; i < nall; i++) {
            if (strncmp(all[i], dirs[d], dl) || all[i][dl] != '/' || !all[i][dl + 1])
                continue; /* not strictly below */
            fu_nid id = look(&t, all[i]);
            if (id == FU_NID_NONE)
                continue;
            const struct fu_node *n = fu_tree_node(&t, id);
            if (n->flags & FU_N_DIR) {
                ndirs++;
                if (oldest_dir < 0 || n->mtime < oldest_dir)
                    oldest_dir = n->mtime;
            } else {
                files++;
                bytes += n->size;
                suspects += (n->flags & FU_N_SUSPECT) != 0;
            }
            if (n->mtime > newest)
                newest = n->mtime;
        }
        fu_buf_reset(&out);
        assert_int_equal(fu_query_stats(&t, dirs[d], &x, &out), 200);
        struct jv v = parse(&out);
        assert_int_equal(get(&v, "item_count")->i, (int64_t)(files + ndirs));
        assert_int_equal(get(&v, "total_files")->i, (int64_t)files);
        assert_int_equal(get(&v, "total_directories")->i, (int64_t)ndirs);
        assert_int_equal(get(&v, "total_size")->i, (int64_t)bytes);
        assert_int_equal(get(&v, "suspect_file_count")->i, (int64_t)suspects);
        assert_true(get(&v, "latest_mtime")->d == newest);
        if (oldest_dir < 0) {
            assert_int_equal(get(&v, "staleness_seconds")->kind, JV_NULL);
            assert_int_equal(get(&v, "oldest_item_path")->kind, JV_NULL);
        } else {
            assert_true(get(&v, "staleness_seconds")->d == 1000.25 - oldest_dir);
            const char *op = get_str(&v, "oldest_item_path");
            fu_nid o = look(&t, op); /* names a directory below with that mtime */
            assert_int_not_equal(o, FU_NID_NONE);
            assert_true(fu_tree_node(&t, o)->mtime == oldest_dir);
            assert_int_equal(strncmp(op, dirs[d], dl), 0);
        }
        assert_true(get(&v, "latency_ms")->d == 12.5);
        assert_true(get(&v, "logical_now")->d == 1000.25);
        assert_int_equal(get(&v, "last_audit_finished_at")->kind, JV_NULL);
        assert_int_equal(get(&v, "audit_cycle_count")->i, 3);
        assert_true(get(&v, "is_auditing")->b);
        assert_false(get(&v, "has_blind_spot")->b);
        assert_false(get(&v, "resyncing")->b);
        assert_string_equal(get_str(&v, "path"), dirs[d]);
        jv_free(&v);
    }
    free_paths(all, nall);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

static void test_stats_of_a_file_count_the_file_itself(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    fu_nid f = put(&t, "/a/f", false, 77, 9.5);
    fu_tree_set_flags(&t, f, FU_N_SUSPECT, 0);
    struct fu_stats_extra x = {.last_audit_finished_at = 5.0, .has_blind_spot = true};
    struct fu_buf out = FU_BUF_INIT;
    assert_int_equal(fu_query_stats(&t, "/a/f", &x, &out), 200);
    assert_string_equal(
        fu_buf_str(&out),
        "{\"item_count\":1,\"total_files\":1,\"total_directories\":0,"
        "\"total_size\":77,\"suspect_file_count\":1,\"latest_mtime\":9.5,"
        "\"staleness_seconds\":null,\"oldest_item_path\":null,"
        "\"has_blind_spot\":true,\"latency_ms\":0.0,\"logical_now\":0.0,"
        "\"last_audit_finished_at\":5.0,\"audit_cycle_count\":0,"
        "\"is_auditing\":false,\"resyncing\":false,\"restored\":false,\"path\":\"/a/f\"}");
    /* The root of an empty view: nothing below it. */
    struct fu_tree e;
    assert_int_equal(fu_tree_init(&e), 0);
    fu_buf_reset(&out);
    assert_int_equal(fu_query_stats(&e, "/", &x, &out), 200);
    struct jv v = parse(&out);
    assert_int_equal(get(&v, "item_count")->i, 0);
    assert_string_equal(get_str(&v, "path"), "/");
    jv_free(&v);
    fu_tree_free(&e);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

/* ------------------------------------------------------------ search */

static size_t search_paths(const struct fu_tree *t, const char *pattern, int64_t max,
                           struct fu_buf *out, struct jv *v)
{
    fu_buf_reset(out);
    assert_int_equal(fu_query_search(t, pattern, max, "v", out), 200);
    *v = parse(out);
    assert_int_equal(v->kind, JV_ARR);
    return v->n;
}

static void test_search_matches_glob_on_path_or_name_or_substring(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/logs/app.log", false, 1, 1);
    put(&t, "/logs/old/app.log.1", false, 1, 1);
    put(&t, "/docs/README.md", false, 1, 1);
    put(&t, "/docs/readme-2.txt", false, 1, 1);
    put(&t, "/readme", true, 0, 0); /* a directory never matches */
    put(&t, "/a b", false, 1, 1);
    put(&t, "/a/b", false, 1, 1);
    struct fu_buf out = FU_BUF_INIT;
    struct jv v;

    /* Glob on the path: '*' crosses '/' (fnmatch without FNM_PATHNAME). */
    assert_int_equal(search_paths(&t, "/logs/*.log*", 0, &out, &v), 2);
    assert_string_equal(get_str(&v.items[0], "path"), "/logs/app.log");
    assert_string_equal(get_str(&v.items[1], "path"), "/logs/old/app.log.1");
    assert_string_equal(get_str(&v.items[0], "content_type"), "file");
    assert_non_null(get(&v.items[0], "size")); /* full node objects */
    jv_free(&v);
    /* Glob on the name. */
    assert_int_equal(search_paths(&t, "*.md", 0, &out, &v), 1);
    assert_string_equal(get_str(&v.items[0], "name"), "README.md");
    jv_free(&v);
    assert_int_equal(search_paths(&t, "app.lo?", 0, &out, &v), 1);
    jv_free(&v);
    /* Globs are case-sensitive ... */
    assert_int_equal(search_paths(&t, "*.MD", 0, &out, &v), 0);
    jv_free(&v);
    /* ... substrings of the name are not, and never match on the directories. */
    assert_int_equal(search_paths(&t, "ReAdMe", 0, &out, &v), 2);
    assert_string_equal(get_str(&v.items[0], "path"), "/docs/README.md");
    assert_string_equal(get_str(&v.items[1], "path"), "/docs/readme-2.txt");
    jv_free(&v);
    assert_int_equal(search_paths(&t, "logs", 0, &out, &v), 0); /* a dir name, not a file's */
    jv_free(&v);
    /* Results in path order: /a/b before /a b. */
    assert_int_equal(search_paths(&t, "/a*", 0, &out, &v), 2);
    assert_string_equal(get_str(&v.items[0], "path"), "/a/b");
    assert_string_equal(get_str(&v.items[1], "path"), "/a b");
    jv_free(&v);
    assert_int_equal(search_paths(&t, "no such", 0, &out, &v), 0);
    assert_string_equal(fu_buf_str(&out), "[]");
    jv_free(&v);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

static void test_search_over_max_items_is_400(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    char p[64];
    for (int i = 0; i < 50; i++) {
        snprintf(p, sizeof(p), "/d%d/f%d.dat", i % 5, i);
        put(&t, p, false, 1, 1);
    }
    struct fu_buf out = FU_BUF_INIT;
    struct jv v;
    assert_int_equal(search_paths(&t, "*.dat", 50, &out, &v), 50);
    jv_free(&v);
    fu_buf_reset(&out);
    assert_int_equal(fu_query_search(&t, "*.dat", 49, "view-9", &out), 400);
    v = parse(&out);
    const struct jv *d = get(&v, "detail");
    assert_string_equal(get_str(d, "error"), "Metadata retrieval limit exceeded");
    assert_string_equal(get_str(d, "view"), "view-9");
    assert_int_equal(get(d, "current_count")->i, 50); /* stops at limit + 1 */
    assert_int_equal(get(d, "limit")->i, 49);
    jv_free(&v);
    /* Only matches count: a narrow search fits under the same limit. */
    assert_int_equal(search_paths(&t, "f7.dat", 49, &out, &v), 1);
    jv_free(&v);
    fu_buf_free(&out);
    fu_tree_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_node_has_v1_fields_in_order),
        cmocka_unit_test(test_directory_node_has_audit_skipped_and_null_lineage),
        cmocka_unit_test(test_root_is_named_empty_with_path_slash),
        cmocka_unit_test(test_only_path_gives_name_type_and_path),
        cmocka_unit_test(test_non_recursive_directory_has_empty_children_and_file_none),
        cmocka_unit_test(test_max_depth_limits_levels_and_forces_recursion),
        cmocka_unit_test(test_children_are_sorted_by_name_bytewise),
        cmocka_unit_test(test_invalid_utf8_names_round_trip_as_surrogate_escapes),
        cmocka_unit_test(test_missing_path_is_404_with_detail),
        cmocka_unit_test(test_over_max_items_is_400_with_v1_body),
        cmocka_unit_test(test_pages_reconstruct_the_full_pre_order_listing),
        cmocka_unit_test(test_pages_respect_max_depth_and_only_path),
        cmocka_unit_test(test_page_resumes_after_a_deleted_cursor_entry),
        cmocka_unit_test(test_pages_under_concurrent_change_never_repeat_or_skip_survivors),
        cmocka_unit_test(test_bad_cursor_or_page_size_is_400),
        cmocka_unit_test(test_ten_thousand_levels_deep_tree_and_pages),
        cmocka_unit_test(test_stats_of_a_subtree_equal_a_brute_force_recount),
        cmocka_unit_test(test_stats_of_a_file_count_the_file_itself),
        cmocka_unit_test(test_search_matches_glob_on_path_or_name_or_substring),
        cmocka_unit_test(test_search_over_max_items_is_400),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
