/* The fs view's tree, as a specification: parents auto-created, type switches, recursive
 * deletes, subtree aggregates kept exact (checked against a brute-force recount after every
 * step of a random workload), sorted listings, byte names, deep paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/paths.h"
#include "fusion/view_fs/tree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fu_nid put(struct fu_tree *t, const char *path, bool dir, uint64_t size, double mtime)
{
    struct fu_attr a = {.size = size, .mtime = mtime, .ctime = mtime};
    fu_nid id;
    assert_int_equal(fu_tree_upsert(t, path, strlen(path), dir, &a, &id), 0);
    return id;
}

static fu_nid look(const struct fu_tree *t, const char *path)
{
    return fu_tree_lookup(t, path, strlen(path));
}

static const struct fu_agg *agg_at(const struct fu_tree *t, const char *path)
{
    fu_nid id = look(t, path);
    assert_int_not_equal(id, FU_NID_NONE);
    return fu_tree_agg(t, id);
}

static void test_upsert_creates_missing_parents_as_directories(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    fu_nid f = put(&t, "/a/b/c.txt", false, 10, 100);
    fu_nid b = look(&t, "/a/b");
    assert_int_not_equal(b, FU_NID_NONE);
    assert_true(fu_tree_node(&t, b)->flags & FU_N_DIR);
    assert_true(fu_tree_node(&t, b)->mtime == 0); /* unknown until reported */
    assert_int_equal(fu_tree_node(&t, f)->parent, b);
    assert_int_equal(look(&t, "/a/b/c.txt"), f);
    assert_int_equal(look(&t, "/a/b/missing"), FU_NID_NONE);
    assert_int_equal(look(&t, "/a/b/c.txt/x"), FU_NID_NONE); /* below a file */
    assert_int_equal(look(&t, "/"), FU_NID_ROOT);
    assert_int_equal(fu_tree_count(&t), 4);
    fu_tree_free(&t);
}

static void test_aggregates_count_the_whole_subtree(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/a/x", false, 10, 5);
    put(&t, "/a/b/y", false, 20, 7);
    put(&t, "/a/b/z", false, 30, 6);
    put(&t, "/c", false, 1, 9);
    const struct fu_agg *r = agg_at(&t, "/");
    assert_int_equal(r->files, 4);
    assert_int_equal(r->dirs, 2);
    assert_int_equal(r->bytes, 61);
    assert_true(r->newest_mtime == 9);
    const struct fu_agg *a = agg_at(&t, "/a");
    assert_int_equal(a->files, 3);
    assert_int_equal(a->dirs, 1);
    assert_int_equal(a->bytes, 60);
    assert_true(a->newest_mtime == 7);
    /* A size change moves bytes up the chain. */
    put(&t, "/a/b/y", false, 25, 7);
    assert_int_equal(agg_at(&t, "/a/b")->bytes, 55);
    assert_int_equal(agg_at(&t, "/")->bytes, 66);
    fu_tree_free(&t);
}

static void test_newest_mtime_falls_back_when_the_newest_goes(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/d/old", false, 1, 100);
    put(&t, "/d/new", false, 1, 300);
    put(&t, "/d/sub/mid", false, 1, 200);
    assert_true(agg_at(&t, "/")->newest_mtime == 300);
    assert_int_equal(fu_tree_delete(&t, "/d/new", 6), 1);
    assert_true(agg_at(&t, "/d")->newest_mtime == 200);
    assert_true(agg_at(&t, "/")->newest_mtime == 200);
    put(&t, "/d/sub/mid", false, 1, 50); /* an older mtime, as cp -p gives */
    assert_true(agg_at(&t, "/d")->newest_mtime == 100);
    assert_true(agg_at(&t, "/d/sub")->newest_mtime == 50);
    fu_tree_free(&t);
}

static void test_delete_directory_removes_subtree_and_updates_aggregates(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/keep", false, 5, 1);
    for (int i = 0; i < 50; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/gone/d%d/f%d", i % 5, i);
        put(&t, p, false, 2, 1);
    }
    assert_int_equal(fu_tree_count(&t), 1 + 1 + 1 + 5 + 50);
    assert_int_equal(fu_tree_delete(&t, "/gone", 5), 56);
    assert_int_equal(look(&t, "/gone"), FU_NID_NONE);
    assert_int_equal(look(&t, "/gone/d1/f1"), FU_NID_NONE);
    const struct fu_agg *r = agg_at(&t, "/");
    assert_int_equal(r->files, 1);
    assert_int_equal(r->dirs, 0);
    assert_int_equal(r->bytes, 5);
    assert_int_equal(fu_tree_count(&t), 2);
    assert_int_equal(fu_tree_delete(&t, "/nothing", 8), 0);
    /* Deleting the root empties the view but keeps the root. */
    assert_int_equal(fu_tree_delete(&t, "/", 1), 1);
    assert_int_equal(fu_tree_count(&t), 1);
    assert_int_equal(agg_at(&t, "/")->files, 0);
    fu_tree_free(&t);
}

static void test_type_switch_replaces_the_entry(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    put(&t, "/x/f1", false, 3, 1);
    put(&t, "/x/f2", false, 4, 1);
    /* The directory /x becomes a file: its subtree goes. */
    fu_nid x = put(&t, "/x", false, 9, 2);
    assert_false(fu_tree_node(&t, x)->flags & FU_N_DIR);
    assert_int_equal(look(&t, "/x/f1"), FU_NID_NONE);
    assert_int_equal(agg_at(&t, "/")->files, 1);
    assert_int_equal(agg_at(&t, "/")->dirs, 0);
    assert_int_equal(agg_at(&t, "/")->bytes, 9);
    /* A file below a file turns the parent back into a directory. */
    put(&t, "/x/y", false, 1, 3);
    assert_true(fu_tree_node(&t, look(&t, "/x"))->flags & FU_N_DIR);
    assert_int_equal(agg_at(&t, "/")->files, 1);
    assert_int_equal(agg_at(&t, "/")->dirs, 1);
    assert_int_equal(agg_at(&t, "/")->bytes, 1);
    /* The root is always a directory. */
    struct fu_attr a = {0};
    fu_nid id;
    assert_int_equal(fu_tree_upsert(&t, "/", 1, false, &a, &id), -EINVAL);
    fu_tree_free(&t);
}

static void test_children_are_listed_sorted_bytewise(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    const char *names[] = {"b", "a", "B", "ab", "\xc3\xa9", "a.", "aa"};
    for (size_t i = 0; i < 7; i++) {
        char p[16];
        snprintf(p, sizeof(p), "/d/%s", names[i]);
        put(&t, p, false, 0, 0);
    }
    fu_nid *kids;
    size_t n = fu_tree_children_sorted(&t, look(&t, "/d"), &kids);
    assert_int_equal(n, 7);
    const char *want[] = {"B", "a", "a.", "aa", "ab", "b", "\xc3\xa9"};
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *name = fu_tree_name(&t, kids[i], &l);
        assert_int_equal(l, strlen(want[i]));
        assert_memory_equal(name, want[i], l);
    }
    free(kids);
    fu_tree_free(&t);
}

static void test_names_are_bytes_and_paths_rebuild_exactly(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    const char p[] = "/data/\xe9t\xe9/\xff\xfe name";
    fu_nid id = put(&t, p, false, 1, 1);
    struct fu_buf b = FU_BUF_INIT;
    fu_tree_path(&t, id, &b);
    assert_int_equal(b.len, sizeof(p) - 1);
    assert_memory_equal(b.data, p, b.len);
    fu_tree_path(&t, FU_NID_ROOT, &b);
    assert_string_equal(b.data, "/");
    fu_buf_free(&b);
    fu_tree_free(&t);
}

static void test_paths_ten_thousand_levels_deep(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    struct fu_buf p = FU_BUF_INIT;
    for (int i = 0; i < 10000; i++)
        fu_buf_puts(&p, "/d");
    fu_buf_puts(&p, "/leaf");
    fu_nid id = put(&t, p.data, false, 7, 42);
    assert_int_equal(fu_tree_lookup(&t, p.data, p.len), id);
    assert_int_equal(agg_at(&t, "/")->dirs, 10000);
    assert_int_equal(agg_at(&t, "/")->bytes, 7);
    struct fu_buf back = FU_BUF_INIT;
    fu_tree_path(&t, id, &back);
    assert_int_equal(back.len, p.len);
    assert_memory_equal(back.data, p.data, p.len);
    assert_int_equal(fu_tree_delete(&t, "/d", 2), 10001);
    assert_int_equal(fu_tree_count(&t), 1);
    fu_buf_free(&p);
    fu_buf_free(&back);
    fu_tree_free(&t);
}

static void test_suspect_flags_are_counted_in_aggregates(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    fu_nid a = put(&t, "/s/a", false, 1, 1);
    fu_nid b = put(&t, "/s/t/b", false, 1, 1);
    fu_tree_set_flags(&t, a, FU_N_SUSPECT, 0);
    fu_tree_set_flags(&t, b, FU_N_SUSPECT, 0);
    fu_tree_set_flags(&t, b, FU_N_SUSPECT, 0); /* idempotent */
    assert_int_equal(agg_at(&t, "/")->suspects, 2);
    assert_int_equal(agg_at(&t, "/s/t")->suspects, 1);
    fu_tree_set_flags(&t, a, 0, FU_N_SUSPECT);
    assert_int_equal(agg_at(&t, "/s")->suspects, 1);
    fu_tree_delete(&t, "/s/t", 4);
    assert_int_equal(agg_at(&t, "/")->suspects, 0);
    fu_tree_set_flags(&t, a, FU_N_DIR | FU_N_FREE, 0); /* structural bits are not settable */
    assert_false(fu_tree_node(&t, a)->flags & (FU_N_DIR | FU_N_FREE));
    fu_tree_free(&t);
}

static void test_lineage_pairs_are_interned(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    uint16_t a = fu_tree_lineage(&t, "agent-1", "/mnt/a", "p1");
    uint16_t b = fu_tree_lineage(&t, "agent-2", "/mnt/a", "p1");
    uint16_t c = fu_tree_lineage(&t, "agent-1", "/mnt/a", "p2"); /* one source, two pipes */
    assert_int_not_equal(a, 0);
    assert_int_not_equal(a, b);
    assert_int_not_equal(a, c);
    assert_int_equal(fu_tree_lineage(&t, "agent-1", "/mnt/a", "p1"), a);
    assert_int_equal(fu_tree_lineage(&t, NULL, NULL, NULL), 0);
    const char *agent, *uri;
    fu_tree_lineage_get(&t, b, &agent, &uri);
    assert_string_equal(agent, "agent-2");
    assert_string_equal(uri, "/mnt/a");
    assert_string_equal(fu_tree_lineage_pipe(&t, c), "p2");
    assert_string_equal(fu_tree_lineage_pipe(&t, 0), "");
    fu_tree_lineage_get(&t, 0, &agent, &uri);
    assert_null(agent);
    fu_tree_free(&t);
}

/* ------------------------------------------------------------ model check */

struct recount {
    uint64_t files, dirs, bytes, suspects;
    double newest, oldest_dir; /* oldest_dir: -1 when no directory is below */
};

/* Brute force, iteratively: the totals below `dir`. */
static struct recount recount(const struct fu_tree *t, fu_nid dir)
{
    struct recount r = {0, 0, 0, 0, 0, -1};
    fu_nid cur = fu_tree_first_child(t, dir);
    while (cur != FU_NID_NONE) {
        const struct fu_node *n = fu_tree_node(t, cur);
        if (n->flags & FU_N_DIR) {
            r.dirs++;
            if (r.oldest_dir < 0 || n->mtime < r.oldest_dir)
                r.oldest_dir = n->mtime;
        } else {
            r.files++;
            r.bytes += n->size;
            r.suspects += (n->flags & FU_N_SUSPECT) != 0;
        }
        if (n->mtime > r.newest)
            r.newest = n->mtime;
        if (fu_tree_first_child(t, cur) != FU_NID_NONE) {
            cur = fu_tree_first_child(t, cur);
            continue;
        }
        while (cur != FU_NID_NONE && fu_tree_node(t, cur)->next == FU_NID_NONE) {
            cur = fu_tree_node(t, cur)->parent;
            if (cur == dir)
                cur = FU_NID_NONE;
        }
        if (cur != FU_NID_NONE)
            cur = fu_tree_node(t, cur)->next;
    }
    return r;
}

static void check_invariants(const struct fu_tree *t)
{
    uint32_t live = 0;
    struct fu_buf p = FU_BUF_INIT;
    for (fu_nid id = 0; id < t->nnodes; id++) {
        const struct fu_node *n = fu_tree_node(t, id);
        if (n->flags & FU_N_FREE)
            continue;
        live++;
        fu_tree_path(t, id, &p);
        assert_int_equal(fu_tree_lookup(t, p.data, p.len), id); /* the index finds it */
        if (!(n->flags & FU_N_DIR))
            continue;
        struct recount r = recount(t, id);
        const struct fu_agg *g = fu_tree_agg(t, id);
        double oldest = g->oldest_dir == FU_NID_NONE ? -1 : g->oldest_dir_mtime;
        if (g->oldest_dir != FU_NID_NONE) { /* it names a live directory with that mtime */
            const struct fu_node *o = fu_tree_node(t, g->oldest_dir);
            assert_false(o->flags & FU_N_FREE);
            assert_true(o->flags & FU_N_DIR);
            assert_true(o->mtime == g->oldest_dir_mtime);
            fu_nid up = o->parent;
            while (up != FU_NID_NONE && up != id)
                up = fu_tree_node(t, up)->parent;
            assert_int_equal(up, id); /* and it lies below this directory */
        }
        if (oldest != r.oldest_dir)
            fail_msg("oldest directory below %s: %g, recount %g", p.data, oldest, r.oldest_dir);
        if (g->files != r.files || g->dirs != r.dirs || g->bytes != r.bytes ||
            g->suspects != r.suspects || g->newest_mtime != r.newest)
            fail_msg("aggregate of %s: files %lu/%lu dirs %lu/%lu bytes %lu/%lu suspects "
                     "%lu/%lu newest %g/%g",
                     p.data, (unsigned long)g->files, (unsigned long)r.files,
                     (unsigned long)g->dirs, (unsigned long)r.dirs, (unsigned long)g->bytes,
                     (unsigned long)r.bytes, (unsigned long)g->suspects, (unsigned long)r.suspects,
                     g->newest_mtime, r.newest);
    }
    assert_int_equal(live, fu_tree_count(t));
    fu_buf_free(&p);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_random_workload_keeps_aggregates_exact(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    for (int step = 0; step < 4000; step++) {
        /* A small namespace (3 levels x 4 names) so that operations collide often. */
        char path[32];
        int depth = 1 + (int)(rnd() % 3), len = 0;
        for (int d = 0; d < depth; d++)
            len += snprintf(path + len, sizeof(path) - (size_t)len, "/%c", (char)('a' + rnd() % 4));
        uint64_t op = rnd() % 10;
        if (op < 6) {
            put(&t, path, rnd() % 4 == 0, rnd() % 1000, (double)(rnd() % 500));
        } else if (op < 8) {
            fu_tree_delete(&t, path, (size_t)len);
        } else {
            fu_nid id = look(&t, path);
            if (id != FU_NID_NONE)
                fu_tree_set_flags(&t, id, rnd() % 2 ? FU_N_SUSPECT : 0,
                                  rnd() % 2 ? FU_N_SUSPECT : 0);
        }
        check_invariants(&t);
    }
    fu_tree_free(&t);
}

/* A walk from the root by fu_tree_child alone: what a lookup must find, whatever the tree
 * remembers of the last directory written to. */
static fu_nid walk_from_root(const struct fu_tree *t, const char *path)
{
    fu_nid cur = FU_NID_ROOT;
    const char *p = path;
    while (*p && cur != FU_NID_NONE) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if (!n)
            break;
        if (!(fu_tree_node(t, cur)->flags & FU_N_DIR))
            return FU_NID_NONE;
        cur = fu_tree_child(t, cur, p, n);
        p += n;
    }
    return cur;
}

static fu_nid put_known(struct fu_tree *t, const char *path, bool dir, double mtime)
{
    struct fu_attr a = {.size = 1, .mtime = mtime, .ctime = mtime};
    fu_nid known = look(t, path), id;
    assert_int_equal(known, walk_from_root(t, path));
    assert_int_equal(fu_tree_upsert_known(t, path, strlen(path), dir, known, &a, &id), 0);
    assert_int_equal(walk_from_root(t, path), id);
    return id;
}

static void test_the_remembered_directory_never_misleads_a_lookup(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    /* Freed ids are reused: a directory removed and its id handed to another entry must not
     * be found again under the old path. */
    fu_nid e = put_known(&t, "/d/e/f", false, 1);
    assert_int_equal(fu_tree_delete(&t, "/d/e", 4), 2);
    fu_nid q = put_known(&t, "/q", true, 2);
    put_known(&t, "/q/r", false, 3);
    assert_int_equal(look(&t, "/d/e/f"), FU_NID_NONE);
    assert_int_equal(look(&t, "/d/e/g"), FU_NID_NONE);
    fu_nid g = put_known(&t, "/d/e/g", false, 4);
    assert_int_not_equal(g, FU_NID_NONE);
    assert_int_equal(look(&t, "/d/e/g"), g);
    (void)e;
    (void)q;
    /* A type switch of the remembered directory. */
    put_known(&t, "/s/t/u", false, 5);
    put_known(&t, "/s/t", false, 6); /* the directory becomes a file */
    assert_int_equal(look(&t, "/s/t/u"), FU_NID_NONE);
    assert_true(look(&t, "/s/t/v") == FU_NID_NONE);
    put_known(&t, "/s/t/v", false, 7); /* and a directory again */
    assert_true(fu_tree_node(&t, look(&t, "/s/t"))->flags & FU_N_DIR);
    /* Odd spellings: repeated and trailing slashes walk like the plain path. */
    put_known(&t, "/m/n/o", false, 8);
    assert_int_equal(look(&t, "/m//n/o"), look(&t, "/m/n/o"));
    assert_int_equal(look(&t, "/m/n/"), look(&t, "/m/n"));
    assert_int_equal(look(&t, "/m/n/o/"), look(&t, "/m/n/o"));
    put_known(&t, "/m/n//p", false, 9);
    assert_int_equal(look(&t, "/m/n/p"), walk_from_root(&t, "/m/n/p"));
    /* A random workload, every lookup checked against a walk from the root. */
    for (int step = 0; step < 6000; step++) {
        char path[32];
        int depth = 1 + (int)(rnd() % 3), len = 0;
        for (int d = 0; d < depth; d++)
            len += snprintf(path + len, sizeof(path) - (size_t)len, "/%c", (char)('a' + rnd() % 3));
        uint64_t op = rnd() % 10;
        if (op < 6)
            put_known(&t, path, rnd() % 3 == 0, (double)(rnd() % 500));
        else if (op < 8)
            fu_tree_delete(&t, path, (size_t)len);
        else
            assert_int_equal(look(&t, path), walk_from_root(&t, path));
        check_invariants(&t);
    }
    fu_tree_free(&t);
}

static void test_many_entries_grow_and_shrink_the_index(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    char p[64];
    for (int i = 0; i < 100000; i++) {
        snprintf(p, sizeof(p), "/d%03d/f%06d", i % 250, i);
        put(&t, p, false, (uint64_t)i, i);
    }
    assert_int_equal(fu_tree_count(&t), 1 + 250 + 100000);
    for (int i = 0; i < 100000; i += 2) {
        snprintf(p, sizeof(p), "/d%03d/f%06d", i % 250, i);
        assert_int_equal(fu_tree_delete(&t, p, strlen(p)), 1);
    }
    for (int i = 0; i < 100000; i++) {
        snprintf(p, sizeof(p), "/d%03d/f%06d", i % 250, i);
        assert_true((look(&t, p) == FU_NID_NONE) == (i % 2 == 0));
    }
    assert_int_equal(agg_at(&t, "/")->files, 50000);
    /* Freed records are reused. */
    uint32_t before = t.nnodes;
    for (int i = 0; i < 1000; i++) {
        snprintf(p, sizeof(p), "/new/f%d", i);
        put(&t, p, false, 1, 1);
    }
    assert_int_equal(t.nnodes, before);
    fu_tree_free(&t);
}

static void test_equal_names_are_stored_once(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    fu_nid a = put(&t, "/a/data.csv", false, 1, 1);
    fu_nid b = put(&t, "/b/data.csv", false, 1, 1);
    uint64_t bytes = t.names.bytes;
    fu_nid c = put(&t, "/a/b/data.csv", false, 1, 1);
    assert_int_equal(fu_tree_node(&t, a)->name_off, fu_tree_node(&t, b)->name_off);
    assert_int_equal(fu_tree_node(&t, a)->name_off, fu_tree_node(&t, c)->name_off);
    assert_int_equal(t.names.bytes, bytes); /* /a/b/data.csv added no name */
    /* Names of 127 and 128+ bytes take the one- and two-byte length prefixes. */
    char p[4200];
    for (size_t len = 126; len < 4097; len = len < 130 ? len + 1 : len * 2) {
        p[0] = '/';
        memset(p + 1, 'n', len);
        p[len + 1] = '\0';
        fu_nid id = put(&t, p, false, len, 1);
        size_t got;
        const char *name = fu_tree_name(&t, id, &got);
        assert_int_equal(got, len);
        assert_memory_equal(name, p + 1, len);
        assert_int_equal(look(&t, p), id);
    }
    fu_tree_free(&t);
}

static void test_compaction_reclaims_the_names_of_deleted_entries(void **state)
{
    (void)state;
    struct fu_tree t;
    assert_int_equal(fu_tree_init(&t), 0);
    char p[64];
    int n = 120000; /* ~2.4 MiB of distinct names */
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof(p), "/d%02d/unique-name-%07d", i % 16, i);
        put(&t, p, false, (uint64_t)i, i);
    }
    assert_false(fu_tree_maybe_compact(&t)); /* nothing released yet */
    uint64_t full = t.names.bytes;
    for (int i = 0; i < n; i++) {
        if (i % 10 == 0)
            continue;
        snprintf(p, sizeof(p), "/d%02d/unique-name-%07d", i % 16, i);
        assert_int_equal(fu_tree_delete(&t, p, strlen(p)), 1);
    }
    assert_int_equal(t.names.bytes, full); /* released, not yet reclaimed */
    assert_true(fu_tree_maybe_compact(&t));
    assert_true(t.names.bytes < full / 8);
    assert_false(fu_tree_maybe_compact(&t));
    check_invariants(&t);
    struct fu_buf b = FU_BUF_INIT;
    for (int i = 0; i < n; i += 10) {
        snprintf(p, sizeof(p), "/d%02d/unique-name-%07d", i % 16, i);
        fu_nid id = look(&t, p);
        assert_int_not_equal(id, FU_NID_NONE);
        fu_tree_path(&t, id, &b);
        assert_string_equal(b.data, p);
    }
    /* The compacted heap keeps interning: a known name is found, a new one appended. */
    fu_nid again = put(&t, "/d03/unique-name-0000010", false, 1, 1);
    assert_int_equal(fu_tree_node(&t, again)->name_off,
                     fu_tree_node(&t, look(&t, "/d10/unique-name-0000010"))->name_off);
    put(&t, "/brand/new", false, 1, 1);
    assert_int_not_equal(look(&t, "/brand/new"), FU_NID_NONE);
    check_invariants(&t);
    fu_buf_free(&b);
    fu_tree_free(&t);
}

static void test_path_normalisation_rules(void **state)
{
    (void)state;
    struct fu_buf b = FU_BUF_INIT;
    const char *why = NULL;
    static const struct {
        const char *in, *out;
    } ok[] = {{"", "/"},         {"/", "/"},         {"a/b", "/a/b"},     {"//a//b/", "/a/b"},
              {"/./a/./", "/a"}, {"/a/.b", "/a/.b"}, {"/a/...", "/a/..."}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(fu_path_normalize(ok[i].in, strlen(ok[i].in), &b, &why), 0);
        assert_string_equal(b.data, ok[i].out);
    }
    assert_int_equal(fu_path_normalize("/a/../b", 7, &b, &why), -EINVAL);
    assert_non_null(strstr(why, ".."));
    assert_int_equal(fu_path_normalize("/a\0b", 4, &b, &why), -EINVAL);
    assert_non_null(strstr(why, "NUL"));
    char *big = malloc(FU_NAME_MAX + 3);
    big[0] = '/';
    memset(big + 1, 'x', FU_NAME_MAX + 1);
    assert_int_equal(fu_path_normalize(big, FU_NAME_MAX + 2, &b, &why), -EINVAL);
    assert_int_equal(fu_path_normalize(big, FU_NAME_MAX + 1, &b, &why), 0);
    free(big);
    fu_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upsert_creates_missing_parents_as_directories),
        cmocka_unit_test(test_aggregates_count_the_whole_subtree),
        cmocka_unit_test(test_newest_mtime_falls_back_when_the_newest_goes),
        cmocka_unit_test(test_delete_directory_removes_subtree_and_updates_aggregates),
        cmocka_unit_test(test_type_switch_replaces_the_entry),
        cmocka_unit_test(test_children_are_listed_sorted_bytewise),
        cmocka_unit_test(test_names_are_bytes_and_paths_rebuild_exactly),
        cmocka_unit_test(test_paths_ten_thousand_levels_deep),
        cmocka_unit_test(test_suspect_flags_are_counted_in_aggregates),
        cmocka_unit_test(test_lineage_pairs_are_interned),
        cmocka_unit_test(test_random_workload_keeps_aggregates_exact),
        cmocka_unit_test(test_the_remembered_directory_never_misleads_a_lookup),
        cmocka_unit_test(test_many_entries_grow_and_shrink_the_index),
        cmocka_unit_test(test_equal_names_are_stored_once),
        cmocka_unit_test(test_compaction_reclaims_the_names_of_deleted_entries),
        cmocka_unit_test(test_path_normalisation_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
