/* A view's state as bytes and back (view_fs/state_io.c), as a specification: a restored state
 * is the same state (the same bytes when written again, the same answers to every query) and
 * goes on exactly as the original does; any other input is refused without harm and leaves
 * an empty, usable view. States come from random workloads of fu_fs_apply and friends, with
 * a fixed seed: every run is the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fusion/view_fs/query.h"
#include "fusion/view_fs/state_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { RT = FU_SRC_REALTIME, SNAP = FU_SRC_SNAPSHOT, AUDIT = FU_SRC_AUDIT, OND = FU_SRC_ON_DEMAND };

#define HOT 30.0
#define TTL 600.0
#define T0 1700000000.0

struct env {
    struct fu_tree t;
    struct fu_fs s;
};

static struct env *env_new(void)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    assert_int_equal(fu_tree_init(&e->t), 0);
    assert_int_equal(fu_fs_init(&e->s, &e->t, HOT, TTL), 0);
    return e;
}

static void env_free(struct env *e)
{
    fu_fs_free(&e->s);
    fu_tree_free(&e->t);
    free(e);
}

struct r {
    int src;
    bool del, dir, partial, skipped, has_parent, no_mtime;
    int agent; /* 0: no lineage */
    uint64_t size;
    double mtime, parent_mtime;
};

static void ap(struct env *e, const char *path, double now, struct r x)
{
    struct fu_row row = {
        .op = x.del ? FU_ROW_DELETE : FU_ROW_UPSERT,
        .src = (uint8_t)x.src,
        .is_dir = x.dir,
        .atomic = !x.partial,
        .audit_skipped = x.skipped,
        .has_mtime = !x.no_mtime,
        .has_parent = x.has_parent,
        .size = x.size,
        .mtime = x.mtime,
        .ctime = x.mtime - 1,
        .parent_mtime = x.parent_mtime,
        .path_len = strlen(path),
    };
    char agent[16];
    snprintf(agent, sizeof(agent), "agent-%d", x.agent);
    uint16_t lineage = x.agent ? fu_tree_lineage(&e->t, agent, "/mnt/share", "p") : 0;
    fu_fs_apply(&e->s, &row, path, now, lineage);
}

static void dump(const struct env *e, struct fu_buf *b)
{
    fu_buf_reset(b);
    assert_int_equal(fu_state_write(&e->t, &e->s, b), 0);
}

static int load(struct env *e, const void *p, size_t len)
{
    return fu_state_read(&e->t, &e->s, p, len);
}

static void assert_same_bytes(const struct fu_buf *a, const struct fu_buf *b)
{
    assert_int_equal(a->len, b->len);
    for (size_t i = 0; i < a->len; i++)
        if (a->data[i] != b->data[i])
            fail_msg("the serialisations differ first at byte %zu of %zu", i, a->len);
}

/* ------------------------------------------------------------ workloads */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A small namespace, so operations collide: /X, /X/Y, /X/Y/Z over d0..d2 and f0..f3. */
static const char *const NAMES[] = {"d0", "d1", "d2", "f0", "f1", "f2", "f3"};
#define NNAMES 7

static void random_path(uint64_t *rng, char *path, size_t cap, bool *dir)
{
    int depth = 1 + (int)(rnd(rng) % 3), len = 0;
    for (int d = 0; d < depth; d++) {
        int k = d + 1 < depth ? (int)(rnd(rng) % 3) : (int)(rnd(rng) % NNAMES);
        len += snprintf(path + len, cap - (size_t)len, "/%s", NAMES[k]);
    }
    /* Mostly what the name says; now and then the other type (a type switch). */
    *dir = path[len - 2] == 'd';
    if (rnd(rng) % 10 == 0)
        *dir = !*dir;
}

/* One operation, drawn once and applied alike to every env of `v`. */
static void random_op(struct env **v, size_t n, uint64_t *rng, double *now, bool audit_end)
{
    char path[64];
    bool dir;
    random_path(rng, path, sizeof(path), &dir);
    uint64_t op = rnd(rng) % 100;
    bool hot = rnd(rng) % 2;
    double mtime = *now - (hot ? (double)(rnd(rng) % 5) : 100.0 + (double)(rnd(rng) % 1000));
    struct r x = {
        .dir = dir, .size = rnd(rng) % 5000, .mtime = mtime, .agent = (int)(rnd(rng) % 3)};
    if (op < 30) {
        x.src = RT;
        x.partial = !dir && rnd(rng) % 3 == 0;
    } else if (op < 40) {
        x.src = RT;
        x.del = true;
    } else if (op < 48) {
        x.src = SNAP;
    } else if (op < 62) {
        x.src = AUDIT;
        x.skipped = dir && rnd(rng) % 3 == 0;
        x.has_parent = rnd(rng) % 2;
        x.parent_mtime = *now - (double)(rnd(rng) % 2000);
    } else if (op < 66) {
        x.src = OND;
    } else if (op < 70) {
        x.src = rnd(rng) % 2 ? SNAP : AUDIT;
        x.del = true;
    }
    if (op < 70) {
        for (size_t i = 0; i < n; i++)
            ap(v[i], path, *now, x);
    } else if (op < 75) {
        for (size_t i = 0; i < n; i++)
            fu_fs_tick(&v[i]->s, *now);
    } else if (op < 81) {
        bool missing = rnd(rng) % 5 == 0, same = rnd(rng) % 2;
        uint64_t size = rnd(rng) % 5000;
        for (size_t i = 0; i < n; i++) {
            fu_nid id = fu_tree_lookup(&v[i]->t, path, strlen(path));
            double m = same && id != FU_NID_NONE ? fu_tree_node(&v[i]->t, id)->mtime : mtime;
            fu_fs_sentinel(&v[i]->s, path, strlen(path), m, !same, size, missing, *now);
        }
    } else if (op < 85) {
        bool explicit_ = rnd(rng) % 2;
        char pipe[8];
        snprintf(pipe, sizeof(pipe), "p%d", (int)(rnd(rng) % 2));
        uint64_t epoch = 1 + rnd(rng) % 3;
        for (size_t i = 0; i < n; i++)
            fu_fs_audit_start(&v[i]->s, *now, explicit_, pipe, epoch);
    } else if (op < 88) {
        if (audit_end)
            for (size_t i = 0; i < n; i++)
                fu_fs_audit_end(&v[i]->s, *now);
    } else if (op < 90) {
        double storage = *now - (double)(rnd(rng) % 100);
        for (size_t i = 0; i < n; i++)
            fu_clock_seed(v[i]->s.clock, *now, storage);
    } else if (op < 98) {
        *now += (double)(rnd(rng) % 20);
    } else {
        *now += TTL + (double)(rnd(rng) % 100); /* tombstones and suspects expire */
    }
    *now += 0.25;
}

/* Clock samples that fill the ring and wrap it, over values that come and go (a few values,
 * then many, then others): records are freed and taken again, so the clock's free list is
 * out of order, and its mode was decided by ties. */
static void churn_clock(struct env **v, size_t n, uint64_t *rng, double now, int samples)
{
    for (int k = 0; k < samples; k++) {
        uint64_t r = rnd(rng);
        double skew = k < samples / 5       ? (double)(r % 40)
                      : k < samples * 4 / 5 ? 1000.0 + (double)(r % 4000)
                                            : 9000.0 + (double)(r % 300);
        for (size_t i = 0; i < n; i++)
            fu_clock_sample(v[i]->s.clock, now, now - skew - 0.5);
    }
}

/* A state with every part in use: suspects, blind-spot additions and deletions,
 * tombstones, seen nodes of an audit in progress, lineages, a clock (wrapped, with enough
 * samples). */
static struct env *busy_state(uint64_t seed, double *now, int steps, int samples)
{
    struct env *e = env_new();
    uint64_t rng = seed;
    *now = T0;
    for (int i = 0; i < steps; i++)
        random_op(&e, 1, &rng, now, true);
    churn_clock(&e, 1, &rng, *now, samples);
    fu_fs_audit_start(&e->s, *now, true, "p0", 9);
    for (int i = 0; i < 60; i++) {
        char path[64];
        bool dir;
        random_path(&rng, path, sizeof(path), &dir);
        ap(e, path, *now, (struct r){.src = AUDIT, .dir = dir, .mtime = *now - 50 - i, .agent = 1});
    }
    ap(e, "/d2/new-partial", *now, (struct r){.src = RT, .partial = true, .mtime = *now});
    ap(e, "/d1/gone", *now, (struct r){.src = RT, .mtime = *now - 3});
    ap(e, "/d1/gone", *now + 1, (struct r){.src = RT, .del = true, .mtime = *now - 3});
    ap(e, "/d0/compensated", *now, (struct r){.src = SNAP, .del = true, .mtime = *now});
    ap(e, "/d0/audit-found", *now, (struct r){.src = AUDIT, .mtime = *now - 40});
    ap(e, "/d2/late", *now, (struct r){.src = RT, .mtime = *now - 1e5}); /* a latency */
    return e;
}

/* ------------------------------------------------------------ comparing two views */

static void json_of(const struct env *e, int what, struct fu_buf *out)
{
    struct fu_jw w;
    fu_buf_reset(out);
    fu_jw_init(&w, out);
    size_t count = 0;
    if (what == 0)
        assert_int_equal(fu_fs_write_suspects(&e->s, &w), 0);
    else if (what == 1)
        assert_int_equal(fu_fs_write_blind_spots(&e->s, &w), 0);
    else
        assert_int_equal(fu_fs_write_suspect_paths(&e->s, &w, &count), 0);
}

static void stats_of(const struct env *e, const char *path, double now, struct fu_buf *out)
{
    struct fu_stats_extra x = {
        .latency_ms = e->s.latency_ms,
        .logical_now = fu_fs_logical_now(&e->s, now),
        .last_audit_finished_at = e->s.audit_finished_at,
        .audit_cycle_count = e->s.audit_cycles,
        .is_auditing = e->s.auditing,
        .has_blind_spot = fu_fs_has_blind_spot(&e->s),
    };
    fu_buf_reset(out);
    fu_query_stats(&e->t, path, &x, out);
}

/* Every path of the namespace, to look up in both. */
static size_t all_paths(char paths[][16])
{
    size_t n = 0;
    for (int a = 0; a < NNAMES; a++) {
        snprintf(paths[n++], 16, "/%s", NAMES[a]);
        for (int b = 0; b < NNAMES; b++) {
            snprintf(paths[n++], 16, "/%s/%s", NAMES[a], NAMES[b]);
            for (int c = 0; c < NNAMES; c++)
                snprintf(paths[n++], 16, "/%s/%s/%s", NAMES[a], NAMES[b], NAMES[c]);
        }
    }
    return n;
}

/* Returns how many paths of the namespace the two hold. */
static size_t assert_same_views(const struct env *a, const struct env *b, double now)
{
    struct fu_buf x = FU_BUF_INIT, y = FU_BUF_INIT;
    dump(a, &x);
    dump(b, &y);
    assert_same_bytes(&x, &y);

    static char paths[NNAMES * (1 + NNAMES * (1 + NNAMES))][16];
    size_t n = all_paths(paths);
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = paths[i];
        fu_nid ia = fu_tree_lookup(&a->t, p, strlen(p)), ib = fu_tree_lookup(&b->t, p, strlen(p));
        assert_int_equal(ia, ib); /* the same node ids */
        if (ia == FU_NID_NONE)
            continue;
        found++;
        assert_memory_equal(fu_tree_node(&a->t, ia), fu_tree_node(&b->t, ib),
                            sizeof(struct fu_node));
        if (!(fu_tree_node(&a->t, ia)->flags & FU_N_DIR))
            continue;
        const struct fu_agg *ga = fu_tree_agg(&a->t, ia), *gb = fu_tree_agg(&b->t, ib);
        assert_int_equal(ga->files, gb->files);
        assert_int_equal(ga->dirs, gb->dirs);
        assert_int_equal(ga->bytes, gb->bytes);
        assert_int_equal(ga->suspects, gb->suspects);
        assert_true(ga->newest_mtime == gb->newest_mtime);
        assert_int_equal(ga->oldest_dir, gb->oldest_dir);
        stats_of(a, p, now, &x);
        stats_of(b, p, now, &y);
        assert_string_equal(fu_buf_str(&x), fu_buf_str(&y));
    }
    const struct fu_agg *ra = fu_tree_agg(&a->t, FU_NID_ROOT);
    const struct fu_agg *rb = fu_tree_agg(&b->t, FU_NID_ROOT);
    assert_true(ra->files == rb->files && ra->dirs == rb->dirs && ra->bytes == rb->bytes &&
                ra->suspects == rb->suspects && ra->newest_mtime == rb->newest_mtime &&
                ra->oldest_dir == rb->oldest_dir);
    stats_of(a, "/", now, &x);
    stats_of(b, "/", now, &y);
    assert_string_equal(fu_buf_str(&x), fu_buf_str(&y));
    for (int what = 0; what < 3; what++) {
        json_of(a, what, &x);
        json_of(b, what, &y);
        assert_string_equal(fu_buf_str(&x), fu_buf_str(&y));
    }
    assert_true(fu_fs_logical_now(&a->s, now) == fu_fs_logical_now(&b->s, now));
    assert_int_equal(fu_clock_samples(a->s.clock), fu_clock_samples(b->s.clock));
    assert_int_equal(fu_tree_count(&a->t), fu_tree_count(&b->t));
    fu_buf_free(&x);
    fu_buf_free(&y);
    return found;
}

/* An empty view, as after init, that still works. */
static void assert_empty_and_usable(struct env *e, double now)
{
    assert_int_equal(fu_tree_count(&e->t), 1);
    const struct fu_agg *g = fu_tree_agg(&e->t, FU_NID_ROOT);
    assert_true(g->files == 0 && g->dirs == 0 && g->bytes == 0 && g->suspects == 0);
    assert_int_equal(fu_tree_first_child(&e->t, FU_NID_ROOT), FU_NID_NONE);
    assert_int_equal(e->s.suspects.count, 0);
    assert_int_equal(e->s.additions.count, 0);
    assert_int_equal(e->s.deletions.count, 0);
    assert_int_equal(e->s.tombs.count, 0);
    assert_int_equal(e->s.nseen, 0);
    assert_false(e->s.auditing);
    assert_int_equal(fu_clock_samples(e->s.clock), 0);
    assert_true(e->s.tree == &e->t && e->s.hot == HOT && e->s.tomb_ttl == TTL);
    ap(e, "/after/failure", now, (struct r){.src = RT, .partial = true, .size = 3, .mtime = now});
    fu_nid id = fu_tree_lookup(&e->t, "/after/failure", 14);
    assert_int_not_equal(id, FU_NID_NONE);
    assert_true(fu_tree_node(&e->t, id)->flags & FU_N_SUSPECT);
    assert_int_equal(fu_tree_agg(&e->t, FU_NID_ROOT)->files, 1);
    fu_tree_delete(&e->t, "/after", 6); /* the hook still reaches the consistency state */
    assert_int_equal(e->s.suspects.count, 0);
}

/* Whatever a load accepted must be safe to use: queries, writes, timers, more rows. */
static void exercise(struct env *e, double now)
{
    struct fu_buf b = FU_BUF_INIT;
    dump(e, &b);
    for (int what = 0; what < 3; what++)
        json_of(e, what, &b);
    stats_of(e, "/", now, &b);
    stats_of(e, "/d0", now, &b);
    uint64_t rng = 7;
    double t = now;
    for (int i = 0; i < 40; i++)
        random_op(&e, 1, &rng, &t, true);
    fu_fs_audit_end(&e->s, t);
    fu_fs_tick(&e->s, t + 10 * TTL);
    fu_tree_compact(&e->t);
    dump(e, &b);
    fu_buf_free(&b);
}

/* ------------------------------------------------------------ round trips */

static void test_random_workload_round_trips_exactly(void **state)
{
    (void)state;
    double now;
    struct env *a = busy_state(12345, &now, 3000, 25000);
    /* The workload reached every part of the state. */
    assert_true(a->s.auditing && a->s.nseen > 0);
    assert_true(a->s.suspects.count > 0 && a->s.additions.count > 0);
    assert_true(a->s.deletions.count > 0 && a->s.tombs.count > 0);
    assert_true(a->s.nblind_epochs > 0 && a->t.lineages.n > 2 && a->s.latency_ms > 0);
    assert_int_equal(fu_clock_samples(a->s.clock), FU_CLOCK_WINDOW);
    bool ascending = true; /* the clock's free list was reordered by the churn */
    const struct fu_clock *c = a->s.clock;
    for (uint32_t f = c->free_head; f && c->vals[f].next; f = c->vals[f].next)
        ascending &= c->vals[f].next == f + 1;
    assert_false(ascending);
    assert_true(a->t.free_head != FU_NID_NONE); /* freed ids, to be reused alike */

    struct fu_buf x = FU_BUF_INIT, y = FU_BUF_INIT;
    dump(a, &x);
    struct env *b = env_new();
    assert_int_equal(load(b, x.data, x.len), 0);
    dump(b, &y);
    assert_same_bytes(&x, &y);
    assert_true(assert_same_views(a, b, now) > 20);
    assert_int_equal(b->t.dc_id, FU_NID_NONE);

    /* Loading over a state replaces it. */
    struct env *d = busy_state(999, &now, 500, 100);
    assert_int_equal(load(d, x.data, x.len), 0);
    assert_same_views(a, d, now);
    fu_buf_free(&x);
    fu_buf_free(&y);
    env_free(a);
    env_free(b);
    env_free(d);
}

static void test_restored_state_evolves_like_the_original(void **state)
{
    (void)state;
    double now;
    struct env *a = busy_state(777, &now, 2500, 25000);
    struct fu_buf x = FU_BUF_INIT, y = FU_BUF_INIT;
    dump(a, &x);
    struct env *b = env_new();
    assert_int_equal(load(b, x.data, x.len), 0);

    struct env *both[2] = {a, b};
    uint64_t rng = 4242;
    for (int step = 0; step < 3000; step++) {
        random_op(both, 2, &rng, &now, true);
        if (step % 50 == 0) {
            dump(a, &x);
            dump(b, &y);
            assert_same_bytes(&x, &y);
        }
    }
    /* An audit ends, timers fire later, the clock moves on, names are compacted. */
    fu_fs_audit_end(&a->s, now);
    fu_fs_audit_end(&b->s, now);
    churn_clock(both, 2, &rng, now, 15000);
    assert_int_equal(fu_fs_tick(&a->s, now + HOT + 1), fu_fs_tick(&b->s, now + HOT + 1));
    assert_int_equal(fu_fs_tick(&a->s, now + TTL + 1), fu_fs_tick(&b->s, now + TTL + 1));
    assert_int_equal(fu_tree_compact(&a->t), 0);
    assert_int_equal(fu_tree_compact(&b->t), 0);
    for (int step = 0; step < 300; step++)
        random_op(both, 2, &rng, &now, true);
    assert_same_views(a, b, now);
    fu_buf_free(&x);
    fu_buf_free(&y);
    env_free(a);
    env_free(b);
}

static void test_empty_state_round_trips(void **state)
{
    (void)state;
    struct env *a = env_new(), *b = env_new();
    struct fu_buf x = FU_BUF_INIT, y = FU_BUF_INIT;
    dump(a, &x);
    ap(b, "/some/file", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    assert_int_equal(load(b, x.data, x.len), 0);
    dump(b, &y);
    assert_same_bytes(&x, &y);
    assert_same_views(a, b, T0);
    assert_empty_and_usable(b, T0);
    fu_buf_free(&x);
    fu_buf_free(&y);
    env_free(a);
    env_free(b);
}

static void test_appends_to_what_the_buffer_holds(void **state)
{
    (void)state;
    double now;
    struct env *a = busy_state(5, &now, 200, 500), *b = env_new();
    struct fu_buf x = FU_BUF_INIT, y = FU_BUF_INIT;
    fu_buf_puts(&x, "header");
    assert_int_equal(fu_state_write(&a->t, &a->s, &x), 0);
    assert_int_equal(load(b, x.data + 6, x.len - 6), 0);
    dump(b, &y);
    assert_int_equal(y.len, x.len - 6);
    assert_memory_equal(y.data, x.data + 6, y.len);
    fu_buf_free(&x);
    fu_buf_free(&y);
    env_free(a);
    env_free(b);
}

static void test_restored_tree_tells_the_consistency_state_what_it_frees(void **state)
{
    (void)state;
    struct env *a = env_new(), *b = env_new();
    ap(a, "/dir/hot", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    ap(a, "/dir/found", T0, (struct r){.src = AUDIT, .mtime = T0 - 100});
    fu_fs_audit_end(&a->s, T0);
    assert_int_equal(a->s.suspects.count, 1);
    assert_int_equal(a->s.additions.count, 1);
    struct fu_buf x = FU_BUF_INIT;
    dump(a, &x);
    assert_int_equal(load(b, x.data, x.len), 0);
    ap(b, "/dir", T0 + 1, (struct r){.src = RT, .del = true, .dir = true, .mtime = T0});
    assert_int_equal(b->s.suspects.count, 0);
    assert_int_equal(b->s.additions.count, 0);
    assert_true(b->s.tombs.count == 1);
    fu_buf_free(&x);
    env_free(a);
    env_free(b);
}

/* ------------------------------------------------------------ hostile input */

static void test_every_truncation_is_refused_and_leaves_an_empty_view(void **state)
{
    (void)state;
    double now;
    struct env *a = busy_state(31337, &now, 60, 20);
    struct fu_buf x = FU_BUF_INIT;
    dump(a, &x);
    struct env *b = env_new();
    for (size_t len = 0; len < x.len; len++) {
        /* A copy of exactly len bytes, so that reading past it is an error valgrind and ASan
         * see. */
        char *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, x.data, len);
        ap(b, "/before/load", now, (struct r){.src = AUDIT, .mtime = now - 100}); /* to empty */
        if (load(b, copy, len) != -EINVAL)
            fail_msg("a prefix of %zu bytes of %zu was not refused", len, x.len);
        free(copy);
        assert_empty_and_usable(b, now);
    }
    assert_int_equal(load(b, x.data, x.len), 0);
    assert_same_views(a, b, now);
    fu_buf_free(&x);
    env_free(a);
    env_free(b);
}

static void test_trailing_bytes_are_refused(void **state)
{
    (void)state;
    double now;
    struct env *a = busy_state(2024, &now, 300, 25000), *b = env_new();
    struct fu_buf x = FU_BUF_INIT;
    dump(a, &x);
    size_t len = x.len;
    fu_buf_putc(&x, '\0');
    assert_int_equal(load(b, x.data, x.len), -EINVAL);
    assert_empty_and_usable(b, now);
    char *again = malloc(len);
    assert_non_null(again);
    memcpy(again, x.data, len);
    fu_buf_append(&x, again, len); /* a second state after the first */
    free(again);
    assert_int_equal(load(b, x.data, x.len), -EINVAL);
    assert_empty_and_usable(b, now);
    assert_int_equal(load(b, x.data, len), 0);
    assert_same_views(a, b, now);
    fu_buf_free(&x);
    env_free(a);
    env_free(b);
}

/* A load of corrupted bytes: refused (and the view empty) or accepted (and safe to use). */
static int try_load(struct env *e, const unsigned char *p, size_t len, double now)
{
    unsigned char *copy = malloc(len ? len : 1); /* exactly len bytes, for valgrind and ASan */
    assert_non_null(copy);
    memcpy(copy, p, len);
    int rc = load(e, copy, len);
    free(copy);
    if (rc == 0)
        exercise(e, now);
    else if (rc == -EINVAL)
        assert_empty_and_usable(e, now);
    else
        fail_msg("load returned %d", rc);
    return rc;
}

static void test_corrupted_bytes_never_harm(void **state)
{
    (void)state;
    double now;
    struct env *a = busy_state(8086, &now, 120, 40), *b = env_new();
    struct fu_buf x = FU_BUF_INIT;
    dump(a, &x);
    unsigned char *buf = malloc(x.len);
    assert_non_null(buf);
    uint64_t rng = 99;
    int accepted = 0, refused = 0;
    /* Single bytes, anywhere, then near the ends, where the nodes and the consistency state
     * lie (the middle is mostly the two hash indexes). */
    for (int i = 0; i < 3000; i++) {
        memcpy(buf, x.data, x.len);
        size_t edge = x.len < 1500 ? x.len : 1500;
        size_t pos = rnd(&rng) % 3 == 0   ? rnd(&rng) % x.len
                     : rnd(&rng) % 2 == 0 ? rnd(&rng) % edge
                                          : x.len - 1 - rnd(&rng) % edge;
        buf[pos] ^= (unsigned char)(1 + rnd(&rng) % 255);
        if (try_load(b, buf, x.len, now) == 0)
            accepted++;
        else
            refused++;
    }
    /* Whole 32-bit fields set to the values that break bounds. */
    static const uint32_t nasty[] = {
        0,     1,          2,          3,          64,         1023,       1024,       65535,
        65536, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 0x00010000, 0x00100000, 0xFFFF0000};
    for (int i = 0; i < 2000; i++) {
        memcpy(buf, x.data, x.len);
        size_t pos = rnd(&rng) % (x.len - 3);
        uint32_t v = nasty[rnd(&rng) % (sizeof(nasty) / sizeof(nasty[0]))];
        memcpy(buf + pos, &v, 4);
        if (try_load(b, buf, x.len, now) == 0)
            accepted++;
        else
            refused++;
    }
    assert_true(refused > 0 && accepted > 0); /* doubles and flags may change harmlessly */
    assert_int_equal(try_load(b, (const unsigned char *)x.data, x.len, now), 0);
    free(buf);
    fu_buf_free(&x);
    env_free(a);
    env_free(b);
}

static void test_garbage_is_refused(void **state)
{
    (void)state;
    double now;
    struct env *a = busy_state(1, &now, 50, 20), *b = env_new();
    struct fu_buf x = FU_BUF_INIT;
    dump(a, &x);
    size_t cap = x.len + 512;
    unsigned char *buf = malloc(cap);
    assert_non_null(buf);
    uint64_t rng = 5150;
    for (int i = 0; i < 2000; i++) {
        size_t len = rnd(&rng) % cap;
        for (size_t k = 0; k < len; k++)
            buf[k] = (unsigned char)rnd(&rng);
        /* Half of them behind a valid start (header, or the first section whole), so that
         * the garbage reaches the inner readers. */
        uint32_t tree_len;
        memcpy(&tree_len, x.data + 12, 4); /* the tree section: tag, length u64, body */
        size_t keep = i % 4 == 0 ? 8 : i % 4 == 1 ? 20 + (size_t)tree_len : 0;
        if (keep > len)
            keep = len;
        memcpy(buf, x.data, keep);
        int rc = try_load(b, buf, len, now);
        if (rc == 0)
            fail_msg("garbage of %zu bytes loaded", len);
    }
    free(buf);
    fu_buf_free(&x);
    env_free(a);
    env_free(b);
}

/* Walks the documented layout (state_io.c's header comment) to the hash indexes. */
struct walk {
    unsigned char *p;
    size_t off;
};

static uint32_t w32(struct walk *w)
{
    uint32_t v;
    memcpy(&v, w->p + w->off, 4);
    w->off += 4;
    return v;
}

static uint64_t w64(struct walk *w)
{
    uint64_t v;
    memcpy(&v, w->p + w->off, 8);
    w->off += 8;
    return v;
}

struct indexes {
    size_t names, names_n; /* offsets of the slot arrays, and their sizes */
    size_t tree, tree_n;
    size_t tombs, tombs_n;
    size_t suspects, suspects_n;
    size_t seen, seen_n; /* the audit's seen ids */
};

static void skip_pathmap(struct walk *w, size_t *slots, size_t *nslots)
{
    w->off += 4; /* cap */
    uint32_t nents = w32(w);
    w->off += 8; /* count, free_head */
    *nslots = w64(w);
    *slots = w->off;
    w->off += *nslots * 4;
    for (uint32_t i = 0; i < nents; i++) {
        uint32_t len = w32(w);
        w->off += len == UINT32_MAX ? 4 : 20 + len;
    }
}

static void skip_idmap(struct walk *w, size_t *slots, size_t *nslots)
{
    *nslots = w64(w);
    uint64_t count = w64(w);
    *slots = w->off;
    w->off += *nslots * 4 + count * 20;
}

static struct indexes find_indexes(unsigned char *buf)
{
    struct indexes x;
    struct walk w = {buf, 20}; /* magic, format, "TREE", length */
    uint32_t nnodes = w32(&w);
    w.off += 12 + 8 + (size_t)nnodes * sizeof(struct fu_node);
    uint32_t nchunks = w32(&w);
    w.off += 8;
    for (uint32_t c = 0; c < nchunks; c++)
        w.off += w32(&w);
    x.names_n = w64(&w);
    w.off += 8;
    x.names = w.off;
    w.off += x.names_n * 4;
    x.tree_n = w64(&w);
    w.off += 8;
    x.tree = w.off;
    w.off += x.tree_n * 4;
    uint32_t naggs = w32(&w);
    w.off += 4 + (size_t)naggs * 56;
    uint32_t nstrings = w32(&w);
    for (uint32_t i = 0; i < nstrings; i++)
        w.off += w32(&w);
    w.off += 12 + 4; /* "CONS", length, seq */
    skip_pathmap(&w, &x.tombs, &x.tombs_n);
    w.off += w64(&w) * 16; /* tomb heap */
    skip_idmap(&w, &x.suspects, &x.suspects_n);
    w.off += w64(&w) * 16; /* suspect heap */
    size_t slots, nslots;
    skip_idmap(&w, &slots, &nslots);   /* additions */
    skip_pathmap(&w, &slots, &nslots); /* deletions */
    uint64_t epochs = w64(&w);
    for (uint64_t i = 0; i < epochs; i++)
        w.off += w32(&w) + 8;
    w.off += 1 + 8 + 8 + 8 + 1 + 8; /* auditing ... latency_ms */
    x.seen_n = w64(&w);
    x.seen = w.off;
    return x;
}

/* Moves the first entry of a slot array (of `n` u32 slots at `at`, `empty` marking the empty
 * ones) half the array away, into an empty slot: counts stay right, but a lookup no longer
 * finds it. */
static void misplace(unsigned char *buf, size_t at, size_t n, uint32_t empty)
{
    uint32_t *slots = malloc(n * 4);
    assert_non_null(slots);
    memcpy(slots, buf + at, n * 4);
    size_t i = 0;
    while (slots[i] == empty)
        i++;
    size_t j = (i + n / 2) % n;
    while (slots[j] != empty)
        j = (j + 1) % n;
    slots[j] = slots[i];
    slots[i] = empty;
    memcpy(buf + at, slots, n * 4);
    free(slots);
}

static void test_entries_out_of_place_in_a_hash_index_are_refused(void **state)
{
    (void)state;
    double now;
    struct env *a = busy_state(4711, &now, 150, 30), *b = env_new();
    struct fu_buf x = FU_BUF_INIT;
    dump(a, &x);
    assert_true(a->s.tombs.count > 0 && a->s.suspects.count > 0);
    struct indexes at = find_indexes((unsigned char *)x.data);
    assert_int_equal(at.names_n, a->t.names.nslots);
    assert_int_equal(at.tree_n, a->t.nslots);
    assert_int_equal(at.tombs_n, a->s.tombs.nslots);
    assert_int_equal(at.suspects_n, a->s.suspects.nslots);
    unsigned char *buf = malloc(x.len);
    assert_non_null(buf);
    for (int which = 0; which < 4; which++) {
        memcpy(buf, x.data, x.len);
        if (which == 0)
            misplace(buf, at.names, at.names_n, UINT32_MAX);
        else if (which == 1)
            misplace(buf, at.tree, at.tree_n, FU_NID_NONE);
        else if (which == 2)
            misplace(buf, at.tombs, at.tombs_n, 0);
        else
            misplace(buf, at.suspects, at.suspects_n, FU_SET_NONE);
        assert_int_equal(try_load(b, buf, x.len, now), -EINVAL);
    }
    assert_int_equal(try_load(b, (const unsigned char *)x.data, x.len, now), 0);
    free(buf);
    fu_buf_free(&x);
    env_free(a);
    env_free(b);
}

/* The consistency state names nodes: each must be a live node that carries the matching flag
 * (its release hook would otherwise never come, and the id would outlive its node). */
static void test_consistency_state_that_disagrees_with_the_tree_is_refused(void **state)
{
    (void)state;
    double now;
    struct env *a = busy_state(65537, &now, 150, 30), *b = env_new();
    struct fu_buf x = FU_BUF_INIT;
    dump(a, &x);
    assert_true(a->s.suspects.count > 0 && a->s.additions.count > 0 && a->s.nseen > 0);
    struct indexes at = find_indexes((unsigned char *)x.data);
    assert_int_equal(at.seen_n, a->s.nseen);
    fu_nid suspect = FU_NID_NONE, plain = FU_NID_NONE;
    for (fu_nid id = 1; id < a->t.nnodes; id++) {
        uint16_t f = fu_tree_node(&a->t, id)->flags;
        if ((f & FU_N_SUSPECT) && !(f & FU_N_FREE))
            suspect = id;
        if (!(f & (FU_N_SUSPECT | FU_N_BLIND_ADD | FU_N_FREE)))
            plain = id;
    }
    assert_true(suspect != FU_NID_NONE && plain != FU_NID_NONE);
    unsigned char *buf = malloc(x.len);
    assert_non_null(buf);
    size_t nodes = 20 + 24; /* the node records: after the header and the tree's counters */
    for (int which = 0; which < 4; which++) {
        memcpy(buf, x.data, x.len);
        uint16_t flags;
        fu_nid id = which == 0 ? suspect : plain;
        memcpy(&flags, buf + nodes + (size_t)id * sizeof(struct fu_node) + 20, 2);
        if (which == 0)
            flags &= (uint16_t)~FU_N_SUSPECT; /* listed, not flagged */
        else if (which == 1)
            flags |= FU_N_SUSPECT; /* flagged, not listed */
        else if (which == 2)
            flags |= FU_N_BLIND_ADD;
        memcpy(buf + nodes + (size_t)id * sizeof(struct fu_node) + 20, &flags, 2);
        if (which == 3) { /* an audit that saw a node beyond the arena */
            uint32_t beyond = a->t.nnodes;
            memcpy(buf + at.seen, &beyond, 4);
        }
        assert_int_equal(try_load(b, buf, x.len, now), -EINVAL);
    }
    free(buf);
    fu_buf_free(&x);
    env_free(a);
    env_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_workload_round_trips_exactly),
        cmocka_unit_test(test_restored_state_evolves_like_the_original),
        cmocka_unit_test(test_empty_state_round_trips),
        cmocka_unit_test(test_appends_to_what_the_buffer_holds),
        cmocka_unit_test(test_restored_tree_tells_the_consistency_state_what_it_frees),
        cmocka_unit_test(test_every_truncation_is_refused_and_leaves_an_empty_view),
        cmocka_unit_test(test_trailing_bytes_are_refused),
        cmocka_unit_test(test_corrupted_bytes_never_harm),
        cmocka_unit_test(test_garbage_is_refused),
        cmocka_unit_test(test_entries_out_of_place_in_a_hash_index_are_refused),
        cmocka_unit_test(test_consistency_state_that_disagrees_with_the_tree_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
