/* The consistency rules of the fs view (Fustor v1 §3), one test per rule or edge, named after
 * it. Times are passed in: every test is deterministic. Unless a test says otherwise the
 * logical clock is cold and unseeded, so the watermark equals the time passed in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fusion/view_fs/arbitrate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { RT = FU_SRC_REALTIME, SNAP = FU_SRC_SNAPSHOT, AUDIT = FU_SRC_AUDIT, OND = FU_SRC_ON_DEMAND };

struct env {
    struct fu_tree t;
    struct fu_fs s;
};

struct r {
    int src;
    bool del, dir, partial, skipped, has_parent, no_mtime;
    uint64_t size;
    double mtime, parent_mtime;
    uint16_t lineage;
};

static struct env *env_new(double hot, double ttl)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    assert_int_equal(fu_tree_init(&e->t), 0);
    assert_int_equal(fu_fs_init(&e->s, &e->t, hot, ttl), 0);
    return e;
}

static void env_free(struct env *e)
{
    fu_fs_free(&e->s);
    fu_tree_free(&e->t);
    free(e);
}

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
        .ctime = x.mtime,
        .parent_mtime = x.parent_mtime,
        .path_len = strlen(path),
    };
    fu_fs_apply(&e->s, &row, path, now, x.lineage);
}

static const struct fu_node *node(struct env *e, const char *path)
{
    fu_nid id = fu_tree_lookup(&e->t, path, strlen(path));
    return id == FU_NID_NONE ? NULL : fu_tree_node(&e->t, id);
}

static bool flag(struct env *e, const char *path, uint16_t f)
{
    const struct fu_node *n = node(e, path);
    assert_non_null(n);
    return (n->flags & f) != 0;
}

static bool suspect(struct env *e, const char *path)
{
    fu_nid id = fu_tree_lookup(&e->t, path, strlen(path));
    bool listed = id != FU_NID_NONE && fu_idmap_find(&e->s.suspects, id);
    /* the flag and the list agree, always */
    assert_true(id == FU_NID_NONE || listed == flag(e, path, FU_N_SUSPECT));
    return listed;
}

static double suspect_until(struct env *e, const char *path)
{
    fu_nid id = fu_tree_lookup(&e->t, path, strlen(path));
    const struct fu_ident *s = fu_idmap_find(&e->s.suspects, id);
    assert_non_null(s);
    return s->a;
}

static bool tomb(struct env *e, const char *path)
{
    return fu_pathmap_find(&e->s.tombs, path, strlen(path)) != FU_SET_NONE;
}

static bool added(struct env *e, const char *path)
{
    fu_nid id = fu_tree_lookup(&e->t, path, strlen(path));
    return id != FU_NID_NONE && fu_idmap_find(&e->s.additions, id);
}

static bool deleted(struct env *e, const char *path)
{
    return fu_pathmap_find(&e->s.deletions, path, strlen(path)) != FU_SET_NONE;
}

#define HOT 30.0
#define TTL 3600.0
#define T0 1700000000.0

/* ------------------------------------------------------------ realtime (§3.5) */

static void test_realtime_upsert_creates_node_and_stamps_last_updated(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/a/f", T0, (struct r){.src = RT, .size = 5, .mtime = T0 - 100});
    assert_non_null(node(e, "/a/f"));
    assert_true(node(e, "/a/f")->updated == T0);
    assert_false(flag(e, "/a/f", FU_N_AGENT_MISSING));
    assert_true(flag(e, "/a", FU_N_AGENT_MISSING)); /* auto-created parent: never confirmed */
    assert_true(node(e, "/a")->updated == T0);      /* but proven to exist now (audit protection) */
    assert_true(node(e, "/")->updated == 0);
    env_free(e);
}

static void test_realtime_upsert_last_write_wins_even_with_older_mtime(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .size = 1, .mtime = T0 - 10});
    ap(e, "/f", T0 + 1, (struct r){.src = RT, .size = 2, .mtime = T0 - 5000}); /* cp -p */
    assert_true(node(e, "/f")->mtime == T0 - 5000);
    assert_int_equal(node(e, "/f")->size, 2);
    env_free(e);
}

static void test_realtime_partial_write_marks_suspect_for_a_full_threshold(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .mtime = T0 - 1000});
    assert_true(suspect(e, "/f"));
    assert_true(suspect_until(e, "/f") == T0 + HOT);
    assert_int_equal(fu_tree_agg(&e->t, FU_NID_ROOT)->suspects, 1);
    env_free(e);
}

static void test_realtime_atomic_write_clears_suspect(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    ap(e, "/f", T0 + 1, (struct r){.src = RT, .mtime = T0 + 1});
    assert_false(suspect(e, "/f"));
    assert_int_equal(fu_tree_agg(&e->t, FU_NID_ROOT)->suspects, 0);
    env_free(e);
}

static void test_realtime_upsert_clears_blind_spots_and_agent_missing(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    assert_true(added(e, "/f"));
    assert_true(flag(e, "/f", FU_N_AGENT_MISSING));
    ap(e, "/g", T0, (struct r){.src = SNAP, .mtime = T0 - 1000});
    ap(e, "/g", T0, (struct r){.src = AUDIT, .del = true, .mtime = T0});
    assert_true(deleted(e, "/g"));
    ap(e, "/f", T0 + 1, (struct r){.src = RT, .mtime = T0 - 1000});
    ap(e, "/g", T0 + 1, (struct r){.src = RT, .mtime = T0 + 1});
    assert_false(added(e, "/f"));
    assert_false(flag(e, "/f", FU_N_AGENT_MISSING) || flag(e, "/f", FU_N_BLIND_ADD));
    assert_false(deleted(e, "/g"));
    assert_false(fu_fs_has_blind_spot(&e->s));
    env_free(e);
}

static void test_realtime_delete_removes_subtree_and_leaves_tombstone_at_watermark(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/d/x", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    ap(e, "/d/y", T0, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    ap(e, "/d", T0 + 5, (struct r){.src = RT, .del = true, .dir = true, .no_mtime = true});
    assert_null(node(e, "/d"));
    assert_null(node(e, "/d/x"));
    assert_true(tomb(e, "/d"));
    uint32_t i = fu_pathmap_find(&e->s.tombs, "/d", 2);
    assert_true(e->s.tombs.ents[i].a == T0 + 5); /* logical: the watermark */
    assert_true(e->s.tombs.ents[i].b == T0 + 5); /* physical: the receive time */
    assert_int_equal(e->s.suspects.count, 0);    /* the subtree's suspects went with it */
    assert_int_equal(e->s.additions.count, 0);
    env_free(e);
}

static void test_realtime_delete_of_an_absent_path_still_leaves_a_tombstone(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/never", T0, (struct r){.src = RT, .del = true, .no_mtime = true});
    assert_true(tomb(e, "/never"));
    env_free(e);
}

/* ------------------------------------------------------------ tombstones (§3.4-§3.6) */

static void test_tombstone_discards_a_scan_row_that_is_not_newer(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .mtime = T0}); /* skew 0: watermark == now */
    ap(e, "/f", T0 + 1, (struct r){.src = RT, .del = true, .no_mtime = true});
    ap(e, "/f", T0 + 2, (struct r){.src = SNAP, .mtime = T0 - 50}); /* a late scan: zombie */
    assert_null(node(e, "/f"));
    ap(e, "/f", T0 + 3, (struct r){.src = AUDIT, .mtime = T0 + 1}); /* == tombstone */
    assert_null(node(e, "/f"));
    assert_true(tomb(e, "/f"));
    env_free(e);
}

static void test_tombstone_reincarnation_needs_mtime_beyond_the_epsilon(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .del = true, .no_mtime = true});
    ap(e, "/f", T0 + 1, (struct r){.src = RT, .mtime = T0 + 0.000005}); /* within 1e-5 */
    assert_null(node(e, "/f"));
    ap(e, "/f", T0 + 1, (struct r){.src = RT, .mtime = T0 + 0.0001});
    assert_non_null(node(e, "/f"));
    assert_false(tomb(e, "/f")); /* reincarnated: the tombstone is gone */
    env_free(e);
}

static void test_tombstone_expires_on_the_timer_at_the_ttl_boundary(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, 100);
    ap(e, "/f", T0, (struct r){.src = RT, .del = true, .no_mtime = true});
    assert_false(fu_fs_tick_due(&e->s, T0 + 100));
    fu_fs_tick(&e->s, T0 + 100); /* p_ts == now - ttl is kept, as v1 */
    assert_true(tomb(e, "/f"));
    assert_true(fu_fs_tick_due(&e->s, T0 + 100.5));
    assert_true(fu_fs_tick(&e->s, T0 + 100.5));
    assert_false(tomb(e, "/f"));
    env_free(e);
}

static void test_tombstone_renewed_by_a_second_delete_lives_from_the_second(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, 100);
    ap(e, "/f", T0, (struct r){.src = RT, .del = true, .no_mtime = true});
    ap(e, "/f", T0 + 50, (struct r){.src = RT, .del = true, .no_mtime = true});
    fu_fs_tick(&e->s, T0 + 120);
    assert_true(tomb(e, "/f"));
    fu_fs_tick(&e->s, T0 + 151);
    assert_false(tomb(e, "/f"));
    env_free(e);
}

/* ------------------------------------------------------------ compensation (§3.5) */

static void test_snapshot_ignores_a_row_not_newer_than_memory(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .size = 7, .mtime = T0 - 100});
    ap(e, "/f", T0 + 1, (struct r){.src = SNAP, .size = 9, .mtime = T0 - 100});
    assert_int_equal(node(e, "/f")->size, 7);
    ap(e, "/f", T0 + 1, (struct r){.src = SNAP, .size = 9, .mtime = T0 - 200});
    assert_int_equal(node(e, "/f")->size, 7);
    ap(e, "/f", T0 + 1, (struct r){.src = SNAP, .size = 9, .mtime = T0 - 50});
    assert_int_equal(node(e, "/f")->size, 9);
    env_free(e);
}

static void test_snapshot_marks_known_and_clears_the_addition(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    assert_true(added(e, "/f"));
    ap(e, "/f", T0 + 1, (struct r){.src = SNAP, .mtime = T0 - 900});
    assert_false(added(e, "/f"));
    assert_false(flag(e, "/f", FU_N_AGENT_MISSING));
    env_free(e);
}

static void test_audit_discovery_is_a_blind_spot_addition_with_agent_missing(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .mtime = T0 - 1000});
    ap(e, "/f", T0 + 1, (struct r){.src = AUDIT, .mtime = T0 - 500}); /* changed unseen */
    assert_true(added(e, "/f"));
    assert_true(flag(e, "/f", FU_N_AGENT_MISSING));
    assert_true(fu_fs_has_blind_spot(&e->s));
    env_free(e);
}

static void test_on_demand_discovery_is_a_blind_spot_and_never_clears_a_suspect(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    ap(e, "/g", T0, (struct r){.src = OND, .mtime = T0 - 1000});
    assert_true(added(e, "/g"));
    ap(e, "/f", T0 + 1, (struct r){.src = OND, .mtime = T0}); /* same mtime: ignored */
    assert_true(suspect(e, "/f"));
    env_free(e);
}

static void test_audit_ignores_row_older_than_parent_mtime(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/d", T0, (struct r){.src = RT, .dir = true, .mtime = T0 - 10});
    ap(e, "/d/gone", T0 + 1,
       (struct r){.src = AUDIT, .mtime = T0 - 100, .has_parent = true, .parent_mtime = T0 - 20});
    assert_null(node(e, "/d/gone")); /* the listing predates what we know of /d */
    ap(e, "/d/new", T0 + 1,
       (struct r){.src = AUDIT, .mtime = T0 - 100, .has_parent = true, .parent_mtime = T0 - 10});
    assert_non_null(node(e, "/d/new"));
    env_free(e);
}

static void test_audit_parent_check_runs_only_with_a_parent_path(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/d", T0, (struct r){.src = RT, .dir = true, .mtime = T0 - 10});
    ap(e, "/d/f", T0 + 1, (struct r){.src = AUDIT, .mtime = T0 - 100});
    assert_non_null(node(e, "/d/f"));
    /* with parent_path but no parent_mtime, v1's `or 0` makes any known parent newer */
    ap(e, "/d/g", T0 + 1, (struct r){.src = AUDIT, .mtime = T0 - 100, .has_parent = true});
    assert_null(node(e, "/d/g"));
    env_free(e);
}

static void tree_d(struct env *e);

static void test_audit_skipped_row_bypasses_the_mtime_check(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/d", T0, (struct r){.src = SNAP, .dir = true, .mtime = T0 - 100});
    ap(e, "/d", T0 + 1, (struct r){.src = AUDIT, .dir = true, .skipped = true, .mtime = T0 - 100});
    assert_true(flag(e, "/d", FU_N_AUDIT_SKIPPED));
    ap(e, "/d", T0 + 2, (struct r){.src = RT, .dir = true, .mtime = T0 - 50});
    assert_true(flag(e, "/d", FU_N_AUDIT_SKIPPED)); /* only an audit says it */
    ap(e, "/d", T0 + 3, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 50});
    assert_false(flag(e, "/d", FU_N_AUDIT_SKIPPED)); /* even a row ignored for its mtime */
    env_free(e);
}

static void test_audit_skipped_only_counts_for_audit_directory_rows(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .mtime = T0 - 500});
    ap(e, "/f", T0 + 1, (struct r){.src = SNAP, .skipped = true, .mtime = T0 - 600});
    ap(e, "/f", T0 + 1, (struct r){.src = AUDIT, .skipped = true, .mtime = T0 - 600});
    assert_true(node(e, "/f")->mtime == T0 - 500); /* no bypass for files or snapshots */
    env_free(e);
}

static void test_audit_end_spares_a_skipped_directory_touched_during_the_audit(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    fu_fs_audit_start(&e->s, T0 + 10, true, "p", 1);
    ap(e, "/d", T0 + 11,
       (struct r){.src = AUDIT, .dir = true, .skipped = true, .mtime = T0 - 1000});
    ap(e, "/d", T0 + 12, (struct r){.src = RT, .dir = true, .mtime = T0 + 12}); /* chmod */
    assert_int_equal(fu_fs_audit_end(&e->s, T0 + 13), 0);
    assert_non_null(node(e, "/d/a"));
    assert_non_null(node(e, "/d/b"));
    env_free(e);
}

/* Aggregation: two pipes (two storages) feed one view and share its root. The audit of one
 * pipe's leader deletes what its storage no longer has, never the other storage's entries. */
static void test_an_audit_deletes_only_its_own_pipes_entries(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    uint16_t la = fu_tree_lineage(&e->t, "host-a", "/mnt/a", "storage-a");
    uint16_t lb = fu_tree_lineage(&e->t, "host-b", "/mnt/b", "storage-b");
    ap(e, "/a-0", T0, (struct r){.src = SNAP, .mtime = T0 - 1000, .lineage = la});
    ap(e, "/a-dir", T0, (struct r){.src = SNAP, .dir = true, .mtime = T0 - 1000, .lineage = la});
    ap(e, "/b-0", T0, (struct r){.src = SNAP, .mtime = T0 - 1000, .lineage = lb});
    ap(e, "/b-gone", T0, (struct r){.src = SNAP, .mtime = T0 - 1000, .lineage = lb});
    ap(e, "/unknown", T0, (struct r){.src = SNAP, .mtime = T0 - 1000}); /* lineage 0 */
    fu_fs_audit_start(&e->s, T0 + 10, true, "storage-b", 1);
    ap(e, "/", T0 + 11, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500, .lineage = lb});
    ap(e, "/b-0", T0 + 11, (struct r){.src = AUDIT, .mtime = T0 - 1000, .lineage = lb});
    assert_int_equal(fu_fs_audit_end_pipe(&e->s, T0 + 13, "storage-b"), 2);
    assert_null(node(e, "/b-gone"));
    assert_null(node(e, "/unknown")); /* no owner known: any leader's audit may delete it */
    assert_non_null(node(e, "/a-0"));
    assert_non_null(node(e, "/a-dir"));
    assert_true(deleted(e, "/b-gone"));
    assert_false(deleted(e, "/a-0"));
    /* Without a pipe (a view fed by one pipe, old journals): every unseen child goes. */
    fu_fs_audit_start(&e->s, T0 + 20, true, "storage-b", 1);
    ap(e, "/", T0 + 21, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500, .lineage = lb});
    ap(e, "/b-0", T0 + 21, (struct r){.src = AUDIT, .mtime = T0 - 1000, .lineage = lb});
    assert_int_equal(fu_fs_audit_end(&e->s, T0 + 23), 2);
    assert_null(node(e, "/a-0"));
    env_free(e);
}

static void test_audit_end_spares_parents_of_realtime_confirmations(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    fu_fs_audit_start(&e->s, T0 + 10, true, "p", 1);
    ap(e, "/d", T0 + 11, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    ap(e, "/d/a", T0 + 11, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    ap(e, "/d/b", T0 + 11, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    ap(e, "/d/new/f", T0 + 12, (struct r){.src = RT, .mtime = T0 + 12}); /* /d/new implied */
    assert_int_equal(fu_fs_audit_end(&e->s, T0 + 13), 2);                /* /d/s and /d/s/x only */
    assert_non_null(node(e, "/d/new/f"));
    env_free(e);
}

static void test_scans_never_refresh_last_updated(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .mtime = T0 - 100});
    ap(e, "/f", T0 + 50, (struct r){.src = AUDIT, .mtime = T0 - 10});
    assert_true(node(e, "/f")->updated == T0);
    ap(e, "/g", T0 + 50, (struct r){.src = SNAP, .mtime = T0 - 10});
    assert_true(node(e, "/g")->updated == 0);
    env_free(e);
}

static void test_scan_of_a_fresh_file_makes_it_suspect_for_its_remaining_life(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = SNAP, .mtime = T0 - 10}); /* age 10 of 30 */
    assert_true(suspect(e, "/f"));
    assert_true(fabs(suspect_until(e, "/f") - (T0 + 20)) < 1e-9);
    env_free(e);
}

static void test_future_mtime_suspect_is_capped_at_the_threshold(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = SNAP, .mtime = T0 + 86400}); /* touch -d tomorrow */
    assert_true(suspect(e, "/f"));
    assert_true(suspect_until(e, "/f") == T0 + HOT);
    env_free(e);
}

static void test_scan_of_an_old_file_clears_its_suspect(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    ap(e, "/f", T0 + 100, (struct r){.src = SNAP, .mtime = T0 + 1}); /* newer, now cold */
    assert_false(suspect(e, "/f"));
    env_free(e);
}

static void test_scan_keeps_an_existing_suspect_deadline(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    ap(e, "/f", T0 + 5, (struct r){.src = SNAP, .mtime = T0 + 4});
    assert_true(suspect_until(e, "/f") == T0 + HOT); /* not renewed by a scan */
    env_free(e);
}

static void
test_compensation_delete_is_a_blind_spot_deletion_unless_tombstoned_or_older(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/a", T0, (struct r){.src = SNAP, .mtime = T0 - 100});
    ap(e, "/a", T0 + 1, (struct r){.src = AUDIT, .del = true, .mtime = T0 - 200});
    assert_non_null(node(e, "/a")); /* memory is newer than the evidence */
    ap(e, "/a", T0 + 1, (struct r){.src = AUDIT, .del = true, .mtime = T0 - 50});
    assert_null(node(e, "/a"));
    assert_true(deleted(e, "/a"));
    ap(e, "/t", T0, (struct r){.src = RT, .del = true, .no_mtime = true});
    ap(e, "/t", T0 + 1, (struct r){.src = AUDIT, .del = true, .no_mtime = true});
    assert_false(deleted(e, "/t"));
    env_free(e);
}

static void test_type_switch_replaces_the_node_and_keeps_arbitrating(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/x", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    ap(e, "/x", T0 + 1, (struct r){.src = RT, .dir = true, .mtime = T0 + 1});
    assert_true(flag(e, "/x", FU_N_DIR));
    assert_false(suspect(e, "/x"));
    assert_int_equal(e->s.suspects.count, 0);
    ap(e, "/x", T0 + 2, (struct r){.src = SNAP, .mtime = T0 + 0.5}); /* older: ignored */
    assert_true(flag(e, "/x", FU_N_DIR));
    ap(e, "/x", T0 + 2, (struct r){.src = SNAP, .mtime = T0 + 2}); /* newer: a file again */
    assert_false(flag(e, "/x", FU_N_DIR));
    env_free(e);
}

/* ------------------------------------------------------------ suspects (§3.8) */

static void test_expired_suspect_is_cleared_when_stable(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    assert_false(fu_fs_tick_due(&e->s, T0 + HOT - 0.1));
    fu_fs_tick(&e->s, T0 + HOT);
    assert_false(suspect(e, "/f"));
    env_free(e);
}

static void test_expired_suspect_is_renewed_when_its_mtime_changed(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    ap(e, "/f", T0 + 5, (struct r){.src = SNAP, .mtime = T0 + 5}); /* changed, deadline kept */
    fu_fs_tick(&e->s, T0 + HOT);
    assert_true(suspect(e, "/f"));
    assert_true(suspect_until(e, "/f") == T0 + 2 * HOT);
    fu_fs_tick(&e->s, T0 + 2 * HOT);
    assert_false(suspect(e, "/f"));
    env_free(e);
}

static void test_large_file_being_written_stays_suspect_until_closed(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    for (int i = 0; i < 100; i++) { /* throttled IN_MODIFY every 10 s for 1000 s */
        double t = T0 + 10.0 * i;
        ap(e, "/big", t,
           (struct r){.src = RT, .partial = true, .size = (uint64_t)i << 20, .mtime = t});
        fu_fs_tick(&e->s, t + 0.5);
        assert_true(suspect(e, "/big"));
    }
    ap(e, "/big", T0 + 1000, (struct r){.src = RT, .size = 100 << 20, .mtime = T0 + 1000});
    assert_false(suspect(e, "/big"));
    env_free(e);
}

static void test_deleted_suspect_leaves_no_deadline_behind(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .mtime = T0});
    ap(e, "/f", T0 + 1, (struct r){.src = RT, .del = true, .no_mtime = true});
    ap(e, "/g", T0 + 2, (struct r){.src = RT, .mtime = T0 + 2}); /* may reuse the node id */
    fu_fs_tick(&e->s, T0 + HOT + 5);
    assert_false(suspect(e, "/g"));
    assert_int_equal(e->s.suspects.count, 0);
    env_free(e);
}

/* ------------------------------------------------------------ sentinel (§3.8, §3.12) */

static void test_sentinel_stable_and_cold_clears_at_once(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .size = 3, .mtime = T0});
    assert_true(fu_fs_sentinel(&e->s, "/f", 2, T0, true, 3, false, T0 + 40)); /* age 40 */
    assert_false(suspect(e, "/f"));
    env_free(e);
}

static void test_sentinel_stable_but_hot_keeps_the_deadline(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .size = 3, .mtime = T0});
    assert_true(fu_fs_sentinel(&e->s, "/f", 2, T0, true, 3, false, T0 + 1));
    assert_true(suspect(e, "/f"));
    assert_true(suspect_until(e, "/f") == T0 + HOT);
    env_free(e);
}

static void test_sentinel_tolerates_an_agent_clock_skewed_by_the_mode(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    /* Storage runs 3600 s behind Fusion: realtime samples give a skew of 3600. */
    for (int i = 0; i < 5; i++)
        ap(e, "/w", T0 + i, (struct r){.src = RT, .mtime = T0 + i - 3600});
    ap(e, "/f", T0 + 10, (struct r){.src = RT, .partial = true, .size = 1, .mtime = T0 - 7200});
    /* The agent reports the mtime shifted by the skew: the same instant, so stable (and cold). */
    assert_true(fu_fs_sentinel(&e->s, "/f", 2, T0 - 7200 - 3600, true, 1, false, T0 + 11));
    assert_false(suspect(e, "/f"));
    assert_true(node(e, "/f")->mtime == T0 - 7200);
    env_free(e);
}

static void test_sentinel_change_updates_the_node_and_renews(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .size = 3, .mtime = T0});
    assert_true(fu_fs_sentinel(&e->s, "/f", 2, T0 + 7, true, 30, false, T0 + 8));
    assert_true(node(e, "/f")->mtime == T0 + 7);
    assert_int_equal(node(e, "/f")->size, 30);
    assert_int_equal(fu_tree_agg(&e->t, FU_NID_ROOT)->bytes, 30);
    assert_true(suspect_until(e, "/f") == T0 + 8 + HOT);
    env_free(e);
}

static void test_sentinel_ignores_paths_that_are_not_suspect(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .size = 3, .mtime = T0 - 100});
    assert_false(fu_fs_sentinel(&e->s, "/f", 2, T0 + 7, true, 30, false, T0 + 8));
    assert_false(fu_fs_sentinel(&e->s, "/nope", 5, T0 + 7, true, 30, false, T0 + 8));
    assert_int_equal(node(e, "/f")->size, 3);
    env_free(e);
}

static void test_sentinel_missing_report_keeps_the_suspect_and_its_mtime(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/f", T0, (struct r){.src = RT, .partial = true, .size = 3, .mtime = T0});
    assert_true(fu_fs_sentinel(&e->s, "/f", 2, 0, false, 0, true, T0 + 20));
    assert_true(suspect(e, "/f"));
    assert_true(node(e, "/f")->mtime == T0); /* v1 would have written 0 */
    assert_true(suspect_until(e, "/f") == T0 + 20 + HOT);
    env_free(e);
}

/* ------------------------------------------------------------ audits (§3.6) */

static void tree_d(struct env *e)
{
    ap(e, "/d", T0, (struct r){.src = SNAP, .dir = true, .mtime = T0 - 1000});
    ap(e, "/d/a", T0, (struct r){.src = SNAP, .mtime = T0 - 1000});
    ap(e, "/d/b", T0, (struct r){.src = SNAP, .mtime = T0 - 1000});
    ap(e, "/d/s", T0, (struct r){.src = SNAP, .dir = true, .mtime = T0 - 1000});
    ap(e, "/d/s/x", T0, (struct r){.src = SNAP, .mtime = T0 - 1000});
}

static void test_audit_end_deletes_children_the_audit_did_not_report(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    fu_fs_audit_start(&e->s, T0 + 10, true, "p", 1);
    ap(e, "/d", T0 + 11, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    ap(e, "/d/a", T0 + 11, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    assert_int_equal(fu_fs_audit_end(&e->s, T0 + 12), 3); /* /d/b and /d/s with /d/s/x */
    assert_non_null(node(e, "/d/a"));
    assert_null(node(e, "/d/b"));
    assert_null(node(e, "/d/s"));
    assert_true(deleted(e, "/d/b") && deleted(e, "/d/s"));
    assert_false(deleted(e, "/d/s/x")); /* the top of a deleted subtree is recorded */
    assert_false(e->s.auditing);
    assert_int_equal(e->s.audit_cycles, 1);
    assert_true(e->s.audit_finished_at == T0 + 12);
    env_free(e);
}

static void test_audit_end_spares_children_of_audit_skipped_directories(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    fu_fs_audit_start(&e->s, T0 + 10, true, "p", 1);
    ap(e, "/d", T0 + 11,
       (struct r){.src = AUDIT, .dir = true, .skipped = true, .mtime = T0 - 1000});
    assert_int_equal(fu_fs_audit_end(&e->s, T0 + 12), 0);
    assert_non_null(node(e, "/d/b"));
    env_free(e);
}

static void test_audit_end_stale_evidence_protection(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    fu_fs_audit_start(&e->s, T0 + 10, true, "p", 1);
    ap(e, "/d", T0 + 11, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    /* cp -p during the audit: realtime confirms /d/b with its old mtime */
    ap(e, "/d/b", T0 + 11.5, (struct r){.src = RT, .mtime = T0 - 1000});
    fu_fs_audit_end(&e->s, T0 + 12);
    assert_non_null(node(e, "/d/b"));
    assert_null(node(e, "/d/a"));
    env_free(e);
}

static void test_audit_end_does_not_protect_realtime_confirmations_before_the_start(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    ap(e, "/d/b", T0 + 5, (struct r){.src = RT, .mtime = T0 - 1000});
    fu_fs_audit_start(&e->s, T0 + 10, true, "p", 1);
    ap(e, "/d", T0 + 11, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    fu_fs_audit_end(&e->s, T0 + 12);
    assert_null(node(e, "/d/b"));
    env_free(e);
}

static void test_audit_end_spares_tombstoned_children(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    ap(e, "/d/b", T0 + 1, (struct r){.src = RT, .del = true, .no_mtime = true});
    ap(e, "/d/b", T0 + 2, (struct r){.src = SNAP, .mtime = T0 + 100}); /* reincarnated... */
    ap(e, "/d/b", T0 + 3, (struct r){.src = RT, .del = true, .no_mtime = true});
    ap(e, "/d/b", T0 + 4, (struct r){.src = OND, .mtime = T0 + 200}); /* ...and again */
    ap(e, "/d/b", T0 + 4.5, (struct r){.src = RT, .del = true, .no_mtime = true});
    assert_true(tomb(e, "/d/b"));
    fu_fs_audit_start(&e->s, T0 + 10, true, "p", 1);
    ap(e, "/d", T0 + 11, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    fu_fs_audit_end(&e->s, T0 + 12);
    assert_false(deleted(e, "/d/b"));
    env_free(e);
}

static void test_audit_end_never_touches_directories_the_audit_did_not_report(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    fu_fs_audit_start(&e->s, T0 + 10, true, "p", 1);
    ap(e, "/d/a", T0 + 11, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    assert_int_equal(fu_fs_audit_end(&e->s, T0 + 12), 0);
    assert_non_null(node(e, "/d/b"));
    assert_non_null(node(e, "/d/s/x"));
    env_free(e);
}

static void test_audit_end_repeated_is_harmless(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    fu_fs_audit_start(&e->s, T0 + 10, true, "p", 1);
    ap(e, "/d", T0 + 11, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    fu_fs_audit_end(&e->s, T0 + 12);
    ap(e, "/d/new", T0 + 13, (struct r){.src = SNAP, .mtime = T0});
    assert_int_equal(fu_fs_audit_end(&e->s, T0 + 14), 0);
    assert_non_null(node(e, "/d/new"));
    assert_int_equal(e->s.audit_cycles, 1);
    env_free(e);
}

static void test_audit_start_is_detected_from_the_first_audit_row(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    assert_false(e->s.auditing);
    ap(e, "/d", T0 + 11, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    assert_true(e->s.auditing);
    assert_true(e->s.audit_start == T0 + 11);
    ap(e, "/d/a", T0 + 12, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    assert_true(e->s.audit_start == T0 + 11); /* later rows do not restart it */
    assert_int_equal(fu_fs_audit_end(&e->s, T0 + 13), 3);
    env_free(e);
}

static void test_audit_late_start_keeps_the_rows_already_seen(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    fu_fs_audit_start(&e->s, T0 + 10, false, "p", 1); /* from the rows, as ingest does */
    ap(e, "/d", T0 + 10, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    ap(e, "/d/a", T0 + 10, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    fu_fs_audit_start(&e->s, T0 + 12, true, "p", 1); /* 2 s later: late, keeps what it saw */
    ap(e, "/d/b", T0 + 13, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    fu_fs_audit_end(&e->s, T0 + 14);
    assert_non_null(node(e, "/d/a"));
    assert_non_null(node(e, "/d/b"));
    assert_null(node(e, "/d/s"));
    env_free(e);
}

static void test_audit_start_after_five_seconds_starts_afresh(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    ap(e, "/d", T0 + 10, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    ap(e, "/d/a", T0 + 10, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    fu_fs_audit_start(&e->s, T0 + 16, true, "p", 1);
    ap(e, "/d", T0 + 17,
       (struct r){.src = AUDIT, .dir = true, .skipped = false, .mtime = T0 - 500});
    fu_fs_audit_end(&e->s, T0 + 18);
    assert_null(node(e, "/d/a")); /* the earlier sighting was forgotten */
    env_free(e);
}

static void test_new_leader_never_finishes_a_deposed_leaders_audit(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    fu_fs_audit_start(&e->s, T0 + 10, false, "p", 1);
    ap(e, "/d", T0 + 10, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    /* leader 1 dies mid-audit; leader 2's first audit rows start a fresh audit */
    ap(e, "/x", T0 + 20, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    assert_true(added(e, "/x"));
    assert_true(fu_fs_audit_start(&e->s, T0 + 30, false, "p", 2));
    assert_true(e->s.audit_start == T0 + 30);
    ap(e, "/y", T0 + 31, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    assert_int_equal(fu_fs_audit_end(&e->s, T0 + 32), 0); /* /d was leader 1's sighting */
    assert_true(added(e, "/y"));
    /* its next audit does not reset what its first one found */
    assert_false(fu_fs_audit_start(&e->s, T0 + 40, false, "p", 2));
    assert_true(added(e, "/y"));
    env_free(e);
}

static void test_audit_end_purges_expired_tombstones(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, 100);
    ap(e, "/old", T0, (struct r){.src = RT, .del = true, .no_mtime = true});
    ap(e, "/new", T0 + 150, (struct r){.src = RT, .del = true, .no_mtime = true});
    fu_fs_audit_start(&e->s, T0 + 190, true, "p", 1);
    fu_fs_audit_end(&e->s, T0 + 200);
    assert_false(tomb(e, "/old"));
    assert_true(tomb(e, "/new"));
    env_free(e);
}

static void test_blind_spot_deletion_is_forgotten_when_an_audit_sees_the_path_again(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    tree_d(e);
    fu_fs_audit_start(&e->s, T0 + 10, true, "p", 1);
    ap(e, "/d", T0 + 11, (struct r){.src = AUDIT, .dir = true, .mtime = T0 - 500});
    fu_fs_audit_end(&e->s, T0 + 12);
    assert_true(deleted(e, "/d/a"));
    ap(e, "/d/a", T0 + 20, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    assert_false(deleted(e, "/d/a"));
    assert_true(added(e, "/d/a"));
    env_free(e);
}

static void test_blind_spots_survive_reconnects_and_reset_when_a_new_leader_audits(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    fu_fs_audit_start(&e->s, T0, true, "p", 1);
    ap(e, "/x", T0 + 1, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    fu_fs_audit_end(&e->s, T0 + 2);
    assert_true(added(e, "/x"));
    /* The same leader audits again (sessions came and went): nothing is reset. */
    assert_false(fu_fs_audit_start(&e->s, T0 + 100, true, "p", 1));
    fu_fs_audit_end(&e->s, T0 + 101);
    assert_true(added(e, "/x"));
    /* Another pipe's leader (aggregation) is not this pipe's new leader... */
    assert_true(fu_fs_audit_start(&e->s, T0 + 200, true, "q", 1));
    fu_fs_audit_end(&e->s, T0 + 201);
    assert_false(added(e, "/x")); /* ...but a first audit resets the view's lists */
    ap(e, "/y", T0 + 300, (struct r){.src = AUDIT, .mtime = T0 - 1000});
    fu_fs_audit_end(&e->s, T0 + 301);
    assert_true(fu_fs_audit_start(&e->s, T0 + 400, true, "p", 2)); /* p's new leader */
    assert_false(added(e, "/y"));
    assert_false(flag(e, "/y", FU_N_BLIND_ADD));
    assert_false(fu_fs_has_blind_spot(&e->s));
    env_free(e);
}

/* ------------------------------------------------------------ logical clock (§3.7) */

static void test_clock_skew_is_the_mode_of_realtime_samples(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    for (int i = 0; i < 10; i++)
        ap(e, "/f", T0 + i, (struct r){.src = RT, .mtime = T0 + i - 7200.4}); /* int: 7200 */
    ap(e, "/g", T0 + 20, (struct r){.src = RT, .mtime = T0 + 20 - 5});
    bool cal;
    assert_true(fu_clock_skew(e->s.clock, &cal) == 7200 && cal);
    assert_true(fu_fs_logical_now(&e->s, T0 + 100) == T0 + 100 - 7200);
    env_free(e);
}

static void test_clock_single_future_mtime_never_becomes_the_mode(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    for (int i = 0; i < 3; i++)
        ap(e, "/f", T0 + i, (struct r){.src = RT, .mtime = T0 + i - 2});
    ap(e, "/touch", T0 + 5, (struct r){.src = RT, .mtime = 2524608000.0}); /* touch -d 2050 */
    assert_true(fu_clock_skew(e->s.clock, NULL) == 2);
    /* and the file is judged in the storage's time: far future, so hot, capped at HOT */
    ap(e, "/scan", T0 + 6, (struct r){.src = SNAP, .mtime = 2524608000.0});
    assert_true(suspect_until(e, "/scan") == T0 + 6 + HOT);
    env_free(e);
}

static void test_clock_non_realtime_rows_do_not_sample(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    ap(e, "/a", T0, (struct r){.src = SNAP, .mtime = T0 - 500});
    ap(e, "/b", T0, (struct r){.src = AUDIT, .mtime = T0 - 500});
    ap(e, "/c", T0, (struct r){.src = OND, .mtime = T0 - 500});
    assert_int_equal(fu_clock_samples(e->s.clock), 0);
    ap(e, "/c", T0, (struct r){.src = RT, .del = true, .no_mtime = true});
    assert_int_equal(fu_clock_samples(e->s.clock), 0);
    env_free(e);
}

static void test_clock_cold_start_uses_the_agent_seed_until_samples_arrive(void **state)
{
    (void)state;
    struct env *e = env_new(HOT, TTL);
    assert_true(fu_fs_logical_now(&e->s, T0) == T0); /* nothing known: Fusion's time */
    fu_clock_seed(e->s.clock, T0, T0 - 3600);        /* the agent says the storage is 1 h behind */
    bool cal;
    assert_true(fu_clock_skew(e->s.clock, &cal) == 3600 && !cal);
    /* a snapshot file written 10 s ago in the storage's time is hot, though 1 h old for us */
    ap(e, "/f", T0 + 1, (struct r){.src = SNAP, .mtime = T0 - 3600 - 9});
    assert_true(suspect(e, "/f"));
    ap(e, "/g", T0 + 2, (struct r){.src = RT, .mtime = T0 + 2 - 60});
    assert_true(fu_clock_skew(e->s.clock, &cal) == 60 && cal); /* samples win */
    env_free(e);
}

static void test_clock_window_forgets_samples_beyond_ten_thousand(void **state)
{
    (void)state;
    struct fu_clock *c = malloc(sizeof(*c));
    assert_non_null(c);
    fu_clock_init(c);
    for (int i = 0; i < 6000; i++)
        fu_clock_sample(c, T0, T0 - 100);
    for (int i = 0; i < 5000; i++)
        fu_clock_sample(c, T0, T0 - 200);
    assert_true(fu_clock_skew(c, NULL) == 100); /* 6000 vs 5000 */
    for (int i = 0; i < 2000; i++)
        fu_clock_sample(c, T0, T0 - 200); /* the oldest 3000 of the 100s drop out */
    assert_int_equal(fu_clock_samples(c), FU_CLOCK_WINDOW);
    assert_true(fu_clock_skew(c, NULL) == 200);
    free(c);
}

static void test_clock_tie_keeps_the_incumbent_mode(void **state)
{
    (void)state;
    struct fu_clock *c = malloc(sizeof(*c));
    assert_non_null(c);
    fu_clock_init(c);
    fu_clock_sample(c, T0, T0 - 50);
    fu_clock_sample(c, T0, T0 - 10);
    assert_true(fu_clock_skew(c, NULL) == 50); /* tied 1:1, the first stays */
    fu_clock_sample(c, T0, T0 - 10);
    assert_true(fu_clock_skew(c, NULL) == 10);
    fu_clock_sample(c, T0, T0 - 50);
    assert_true(fu_clock_skew(c, NULL) == 10);
    fu_clock_sample(c, T0, T0 + 0.9); /* int(-0.9) truncates toward zero, as Python */
    fu_clock_sample(c, T0, T0 + 0.9);
    fu_clock_sample(c, T0, T0 + 0.9);
    assert_true(fu_clock_skew(c, NULL) == 0);
    free(c);
}

/* The rule, by brute force, after each change (a sample leaving, then one entering): the
 * value with the highest count; on a tie the previous mode if it is tied, else the value
 * that reached that count first. */
static int64_t recount_mode(const int64_t *cnt, const int64_t *reached, int64_t mode)
{
    int64_t best = 0;
    for (int k = 0; k < 64; k++)
        best = cnt[k] > best ? cnt[k] : best;
    if (!best)
        return -1;
    if (mode >= 0 && cnt[mode] == best)
        return mode;
    int64_t pick = -1;
    for (int k = 0; k < 64; k++)
        if (cnt[k] == best && (pick < 0 || reached[k] < reached[pick]))
            pick = k;
    return pick;
}

/* The O(1) mode against that recount, over random streams with evictions. */
static void test_clock_mode_matches_a_recount_on_random_streams(void **state)
{
    (void)state;
    struct fu_clock *c = malloc(sizeof(*c));
    int64_t *ring = malloc(FU_CLOCK_WINDOW * sizeof(*ring));
    assert_true(c && ring);
    uint64_t seed = 42;
    for (int round = 0; round < 3; round++) {
        fu_clock_init(c);
        /* count and the step each value reached its count at, for 64 possible values */
        int64_t cnt[64] = {0}, reached[64] = {0};
        int64_t mode = -1;
        size_t len = 0, head = 0, span = round == 0 ? 3 : round == 1 ? 12 : 64;
        for (int64_t step = 1; step <= 30000; step++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            int64_t v = (int64_t)((seed >> 33) % span);
            if (len == FU_CLOCK_WINDOW) {
                int64_t old = ring[head];
                cnt[old]--;
                reached[old] = step * 2; /* entered the lower count now */
                ring[head] = v;
                head = (head + 1) % FU_CLOCK_WINDOW;
                mode = recount_mode(cnt, reached, mode);
            } else {
                ring[len++] = v;
            }
            cnt[v]++;
            reached[v] = step * 2 + 1;
            fu_clock_sample(c, 1000.0 + (double)v, 1000.0);
            mode = recount_mode(cnt, reached, mode);
            assert_true(fu_clock_skew(c, NULL) == (double)mode);
        }
    }
    free(ring);
    free(c);
}

/* ------------------------------------------------------------ determinism */

static void dump(struct env *e, struct fu_buf *out)
{
    struct fu_jw w;
    fu_jw_init(&w, out);
    fu_jw_arr_begin(&w);
    for (fu_nid id = 0; id < e->t.nnodes; id++) {
        const struct fu_node *n = fu_tree_node(&e->t, id);
        if (n->flags & FU_N_FREE)
            continue;
        struct fu_buf p = FU_BUF_INIT;
        fu_tree_path(&e->t, id, &p);
        fu_jw_str(&w, p.data, p.len);
        fu_jw_uint(&w, n->flags);
        fu_jw_double(&w, n->mtime);
        fu_jw_double(&w, n->updated);
        fu_buf_free(&p);
    }
    fu_jw_arr_end(&w);
    fu_fs_write_suspects(&e->s, &w);
    fu_fs_write_blind_spots(&e->s, &w);
}

static void test_apply_is_a_function_of_the_rows_and_their_times(void **state)
{
    (void)state;
    struct fu_buf a = FU_BUF_INIT, b = FU_BUF_INIT;
    for (int pass = 0; pass < 2; pass++) {
        struct env *e = env_new(HOT, 50);
        uint64_t seed = 7;
        for (int i = 0; i < 3000; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            char path[16];
            snprintf(path, sizeof(path), "/%c/%c", 'a' + (int)(seed >> 60) % 3,
                     'a' + (int)(seed >> 56) % 4);
            double now = T0 + i * 0.5;
            struct r x = {.src = (int)(seed >> 40) % 4,
                          .del = (seed >> 30) % 5 == 0,
                          .partial = (seed >> 20) % 3 == 0,
                          .mtime = now - (double)((seed >> 8) % 100)};
            ap(e, path, now, x);
            if (i % 97 == 0)
                fu_fs_audit_start(&e->s, now, true, "p", (uint64_t)i / 1000);
            if (i % 97 == 50)
                fu_fs_audit_end(&e->s, now);
            if (i % 10 == 0)
                fu_fs_tick(&e->s, now);
        }
        dump(e, pass ? &b : &a);
        env_free(e);
    }
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    fu_buf_free(&a);
    fu_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_realtime_upsert_creates_node_and_stamps_last_updated),
        cmocka_unit_test(test_realtime_upsert_last_write_wins_even_with_older_mtime),
        cmocka_unit_test(test_realtime_partial_write_marks_suspect_for_a_full_threshold),
        cmocka_unit_test(test_realtime_atomic_write_clears_suspect),
        cmocka_unit_test(test_realtime_upsert_clears_blind_spots_and_agent_missing),
        cmocka_unit_test(test_realtime_delete_removes_subtree_and_leaves_tombstone_at_watermark),
        cmocka_unit_test(test_realtime_delete_of_an_absent_path_still_leaves_a_tombstone),
        cmocka_unit_test(test_tombstone_discards_a_scan_row_that_is_not_newer),
        cmocka_unit_test(test_tombstone_reincarnation_needs_mtime_beyond_the_epsilon),
        cmocka_unit_test(test_tombstone_expires_on_the_timer_at_the_ttl_boundary),
        cmocka_unit_test(test_tombstone_renewed_by_a_second_delete_lives_from_the_second),
        cmocka_unit_test(test_snapshot_ignores_a_row_not_newer_than_memory),
        cmocka_unit_test(test_snapshot_marks_known_and_clears_the_addition),
        cmocka_unit_test(test_audit_discovery_is_a_blind_spot_addition_with_agent_missing),
        cmocka_unit_test(test_on_demand_discovery_is_a_blind_spot_and_never_clears_a_suspect),
        cmocka_unit_test(test_audit_ignores_row_older_than_parent_mtime),
        cmocka_unit_test(test_audit_parent_check_runs_only_with_a_parent_path),
        cmocka_unit_test(test_audit_skipped_row_bypasses_the_mtime_check),
        cmocka_unit_test(test_audit_skipped_only_counts_for_audit_directory_rows),
        cmocka_unit_test(test_audit_end_spares_a_skipped_directory_touched_during_the_audit),
        cmocka_unit_test(test_audit_end_spares_parents_of_realtime_confirmations),
        cmocka_unit_test(test_an_audit_deletes_only_its_own_pipes_entries),
        cmocka_unit_test(test_new_leader_never_finishes_a_deposed_leaders_audit),
        cmocka_unit_test(test_scans_never_refresh_last_updated),
        cmocka_unit_test(test_scan_of_a_fresh_file_makes_it_suspect_for_its_remaining_life),
        cmocka_unit_test(test_future_mtime_suspect_is_capped_at_the_threshold),
        cmocka_unit_test(test_scan_of_an_old_file_clears_its_suspect),
        cmocka_unit_test(test_scan_keeps_an_existing_suspect_deadline),
        cmocka_unit_test(
            test_compensation_delete_is_a_blind_spot_deletion_unless_tombstoned_or_older),
        cmocka_unit_test(test_type_switch_replaces_the_node_and_keeps_arbitrating),
        cmocka_unit_test(test_expired_suspect_is_cleared_when_stable),
        cmocka_unit_test(test_expired_suspect_is_renewed_when_its_mtime_changed),
        cmocka_unit_test(test_large_file_being_written_stays_suspect_until_closed),
        cmocka_unit_test(test_deleted_suspect_leaves_no_deadline_behind),
        cmocka_unit_test(test_sentinel_stable_and_cold_clears_at_once),
        cmocka_unit_test(test_sentinel_stable_but_hot_keeps_the_deadline),
        cmocka_unit_test(test_sentinel_tolerates_an_agent_clock_skewed_by_the_mode),
        cmocka_unit_test(test_sentinel_change_updates_the_node_and_renews),
        cmocka_unit_test(test_sentinel_ignores_paths_that_are_not_suspect),
        cmocka_unit_test(test_sentinel_missing_report_keeps_the_suspect_and_its_mtime),
        cmocka_unit_test(test_audit_end_deletes_children_the_audit_did_not_report),
        cmocka_unit_test(test_audit_end_spares_children_of_audit_skipped_directories),
        cmocka_unit_test(test_audit_end_stale_evidence_protection),
        cmocka_unit_test(test_audit_end_does_not_protect_realtime_confirmations_before_the_start),
        cmocka_unit_test(test_audit_end_spares_tombstoned_children),
        cmocka_unit_test(test_audit_end_never_touches_directories_the_audit_did_not_report),
        cmocka_unit_test(test_audit_end_repeated_is_harmless),
        cmocka_unit_test(test_audit_start_is_detected_from_the_first_audit_row),
        cmocka_unit_test(test_audit_late_start_keeps_the_rows_already_seen),
        cmocka_unit_test(test_audit_start_after_five_seconds_starts_afresh),
        cmocka_unit_test(test_audit_end_purges_expired_tombstones),
        cmocka_unit_test(test_blind_spot_deletion_is_forgotten_when_an_audit_sees_the_path_again),
        cmocka_unit_test(test_blind_spots_survive_reconnects_and_reset_when_a_new_leader_audits),
        cmocka_unit_test(test_clock_skew_is_the_mode_of_realtime_samples),
        cmocka_unit_test(test_clock_single_future_mtime_never_becomes_the_mode),
        cmocka_unit_test(test_clock_non_realtime_rows_do_not_sample),
        cmocka_unit_test(test_clock_cold_start_uses_the_agent_seed_until_samples_arrive),
        cmocka_unit_test(test_clock_window_forgets_samples_beyond_ten_thousand),
        cmocka_unit_test(test_clock_tie_keeps_the_incumbent_mode),
        cmocka_unit_test(test_clock_mode_matches_a_recount_on_random_streams),
        cmocka_unit_test(test_apply_is_a_function_of_the_rows_and_their_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
