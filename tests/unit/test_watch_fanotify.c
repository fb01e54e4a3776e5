/* The fanotify watcher on real directories (a filesystem mark on /tmp's filesystem): the same
 * rows as the inotify watcher for creates, writes, the FAN_MODIFY throttle, deletes, renames
 * (files and directories, inside the tree and across its edge), new directories and
 * exclusions; plus what a filesystem-wide mark adds: changes elsewhere on the filesystem are
 * not reported, other filesystems below the root are marked only when asked, and the root
 * going away (removed or moved) is noticed. Needs root (CAP_SYS_ADMIN): skipped otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "watch_rows.h"

#include "agent/source_fs/watch_fanotify.h"

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* root and outside share the group's watcher; sibling is root's name plus a suffix, so a
 * plain prefix test would take it for a part of the root. */
static char root[128], outside[128], sibling[160];

static void path(char *out, size_t n, const char *base, const char *rel)
{
    snprintf(out, n, "%s%s", base, rel);
}

static void write_at(const char *base, const char *rel, const char *text)
{
    char p[512];
    path(p, sizeof(p), base, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void write_file(const char *rel, const char *text)
{
    write_at(root, rel, text);
}

static void mkd_at(const char *base, const char *rel)
{
    char p[512];
    path(p, sizeof(p), base, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void mkd(const char *rel)
{
    mkd_at(root, rel);
}

static void mv(const char *from_base, const char *from, const char *to_base, const char *to)
{
    char a[512], b[512];
    path(a, sizeof(a), from_base, from);
    path(b, sizeof(b), to_base, to);
    assert_int_equal(rename(a, b), 0);
}

static int rm(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static void rm_tree(const char *p)
{
    nftw(p, rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* Whether an error from fu_fanwatch_open means "no fanotify here" (the agent falls back to
 * inotify), which skips the tests rather than failing them. */
static bool unavailable(int rc)
{
    return rc == -EPERM || rc == -ENOSYS || rc == -EINVAL || rc == -ENODEV || rc == -EXDEV ||
           rc == -EOPNOTSUPP;
}

static int setup(void **state)
{
    *state = NULL;
    snprintf(root, sizeof(root), "/tmp/fustor-fanwatch-XXXXXX");
    snprintf(outside, sizeof(outside), "/tmp/fustor-fanoutside-XXXXXX");
    assert_non_null(mkdtemp(root));
    assert_non_null(mkdtemp(outside));
    snprintf(sibling, sizeof(sibling), "%s-sibling", root);
    assert_int_equal(mkdir(sibling, 0755), 0);
    mkd("/d");
    write_file("/d/old", "x");
    if (geteuid() != 0) {
        print_message("fanotify watcher: not root, the tests are skipped\n");
        return 0;
    }
    struct fu_strv ex = {0};
    fu_strv_push(&ex, "*.swp");
    fu_strv_push(&ex, "/skip");
    struct fu_fanwatch *w = NULL;
    int rc = fu_fanwatch_open(&w, root, &ex, 5.0, false);
    fu_strv_free(&ex);
    if (unavailable(rc)) {
        print_message("fanotify watcher: unavailable here (%s), the tests are skipped\n",
                      strerror(-rc));
        return 0;
    }
    assert_int_equal(rc, 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    fu_fanwatch_close(*state);
    rm_tree(root);
    rm_tree(outside);
    rm_tree(sibling);
    return 0;
}

static struct fu_fanwatch *watcher(void **state)
{
    if (!*state)
        skip();
    return *state;
}

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* Everything pending: reads until no row came for 150 ms, as the inotify tests wait for an
 * empty queue. The mark covers the whole filesystem, whose other changes (read and dropped)
 * may keep the queue from ever being empty; 20 s at most. */
static struct rows drain(struct fu_fanwatch *w, double now)
{
    struct rows r = {0};
    struct pollfd p = {.fd = fu_fanwatch_fd(w), .events = POLLIN};
    double start = mono(), last = start;
    while (mono() - last < 0.15 && mono() - start < 20) {
        if (poll(&p, 1, 50) <= 0)
            continue;
        size_t had = r.n;
        int rc = fu_fanwatch_read(w, now, collect, &r);
        if (rc < 0)
            print_message("fu_fanwatch_read: %s\n", strerror(-rc));
        assert_true(rc >= 0);
        if (r.n != had)
            last = mono();
    }
    return r;
}

static int find(const struct rows *r, const char *path, int op)
{
    for (size_t i = 0; i < r->n && i < 64; i++)
        if (!strcmp(r->v[i].path, path) && r->v[i].op == op)
            return (int)i;
    return -1;
}

/* Reads until fu_fanwatch_read returns `want`, or until the queue stays empty for 150 ms
 * (20 s at most); returns the last value read. */
static int read_until(struct fu_fanwatch *w, int want)
{
    struct rows r = {0};
    int rc = 0;
    struct pollfd p = {.fd = fu_fanwatch_fd(w), .events = POLLIN};
    double start = mono();
    while (rc != want && mono() - start < 20 && poll(&p, 1, 150) > 0)
        rc = fu_fanwatch_read(w, 0, collect, &r);
    return rc;
}

static void test_one_mark_covers_the_whole_tree(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    assert_int_equal(fu_fanwatch_count(w), 1);
    assert_int_equal(fu_fanwatch_failed(w), 0);
}

static void test_create_and_close_are_atomic_upserts(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    drain(w, 0);
    write_file("/d/new", "hello");
    struct rows r = drain(w, 100);
    int i = find(&r, "/d/new", FU_WATCH_UPSERT);
    assert_true(i >= 0);
    assert_true(r.v[i].atomic);
    assert_false(r.v[i].dir);
    assert_int_equal(r.v[r.n - 1].size, 5); /* the last row (close) has the final size */
    assert_true(r.v[r.n - 1].atomic);
}

static void test_modify_is_throttled_and_not_atomic(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    drain(w, 0);
    char p[512];
    path(p, sizeof(p), root, "/d/old");
    FILE *f = fopen(p, "a");
    assert_non_null(f);
    setvbuf(f, NULL, _IONBF, 0);
    fputs("1", f);
    struct rows r = drain(w, 1000);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].path, "/d/old");
    assert_int_equal(r.v[0].op, FU_WATCH_UPSERT);
    assert_false(r.v[0].atomic);
    fputs("2", f);
    r = drain(w, 1002); /* within the 5 s throttle: nothing */
    assert_int_equal(r.n, 0);
    fputs("3", f);
    r = drain(w, 1006); /* past it */
    assert_int_equal(r.n, 1);
    assert_false(r.v[0].atomic);
    fclose(f);
    r = drain(w, 1007);
    assert_int_equal(r.n, 1);
    assert_true(r.v[0].atomic); /* the close */
    assert_int_equal(r.v[0].size, 4);
}

static void test_delete_is_a_delete(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    write_file("/gone", "x");
    drain(w, 0);
    char p[512];
    path(p, sizeof(p), root, "/gone");
    assert_int_equal(unlink(p), 0);
    struct rows r = drain(w, 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(find(&r, "/gone", FU_WATCH_DELETE), 0);
    assert_false(r.v[0].dir);
}

static void test_rename_of_a_file_inside_the_tree_is_a_delete_and_an_upsert(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    write_file("/a.txt", "abc");
    drain(w, 0);
    mv(root, "/a.txt", root, "/d/b.txt");
    struct rows r = drain(w, 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(find(&r, "/a.txt", FU_WATCH_DELETE), 0);
    assert_int_equal(find(&r, "/d/b.txt", FU_WATCH_UPSERT), 1);
    assert_true(r.v[1].atomic);
    assert_int_equal(r.v[1].size, 3);
}

static void test_new_directory_is_listed_and_covered(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    drain(w, 0);
    mkd("/n");
    mkd("/n/m");
    write_file("/n/m/f", "x");
    struct rows r = drain(w, 0);
    int i = find(&r, "/n", FU_WATCH_UPSERT);
    assert_true(i >= 0);
    assert_true(r.v[i].dir);
    assert_true(find(&r, "/n/m", FU_WATCH_UPSERT) >= 0);
    assert_true(find(&r, "/n/m/f", FU_WATCH_UPSERT) >= 0);
    write_file("/n/m/later", "y"); /* the filesystem mark covers new directories */
    r = drain(w, 0);
    assert_true(find(&r, "/n/m/later", FU_WATCH_UPSERT) >= 0);
}

static void test_rename_of_a_directory_reports_its_contents_under_the_new_path(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    mkd("/r");
    mkd("/r/s");
    write_file("/r/s/f", "x");
    drain(w, 0);
    mv(root, "/r", root, "/r2");
    struct rows r = drain(w, 0);
    int i = find(&r, "/r", FU_WATCH_DELETE);
    assert_true(i >= 0);
    assert_true(r.v[i].dir);
    assert_true(find(&r, "/r2", FU_WATCH_UPSERT) >= 0);
    assert_true(find(&r, "/r2/s/f", FU_WATCH_UPSERT) >= 0); /* reported under its new path */
    write_file("/r2/s/g", "y"); /* the cached path of /r/s is not used any more */
    r = drain(w, 0);
    assert_true(find(&r, "/r2/s/g", FU_WATCH_UPSERT) >= 0);
    assert_true(find(&r, "/r/s/g", FU_WATCH_UPSERT) < 0);
}

static void test_moves_across_the_edge_of_the_tree(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    write_file("/out.txt", "o");
    drain(w, 0);
    mv(root, "/out.txt", outside, "/out.txt");
    struct rows r = drain(w, 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(find(&r, "/out.txt", FU_WATCH_DELETE), 0); /* moved out: gone */

    mkd_at(outside, "/in");
    write_at(outside, "/in/x", "");
    drain(w, 0); /* outside the root: nothing */
    mv(outside, "/in", root, "/in");
    r = drain(w, 0);
    assert_true(find(&r, "/in", FU_WATCH_UPSERT) >= 0);
    assert_true(find(&r, "/in/x", FU_WATCH_UPSERT) >= 0); /* moved in: listed */
    write_file("/in/y", "y");
    r = drain(w, 0);
    assert_true(find(&r, "/in/y", FU_WATCH_UPSERT) >= 0); /* and covered */

    mv(root, "/in", outside, "/away");
    r = drain(w, 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(find(&r, "/in", FU_WATCH_DELETE), 0);
    assert_true(r.v[0].dir);
    write_at(outside, "/away/z", "z"); /* not ours any more */
    r = drain(w, 0);
    assert_int_equal(r.n, 0);
}

static void test_changes_elsewhere_on_the_filesystem_are_not_reported(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    drain(w, 0);
    write_at(outside, "/o", "o");
    mkd_at(outside, "/od");
    write_at(outside, "/od/f", "f");
    write_at(sibling, "/s", "s"); /* its path starts with the root's */
    mv(outside, "/o", outside, "/o2");
    struct rows r = drain(w, 0);
    assert_int_equal(r.n, 0);
}

static void test_excluded_names_and_directories_are_not_reported(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    drain(w, 0);
    write_file("/d/.edit.swp", "x");
    write_file("/d/kept", "x");
    mkd("/skip"); /* excluded by its path */
    mkd("/skip/sub");
    write_file("/skip/f", "x");
    write_file("/skip/sub/g", "x");
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/d/.edit.swp", FU_WATCH_UPSERT) < 0);
    assert_true(find(&r, "/d/kept", FU_WATCH_UPSERT) >= 0);
    for (size_t i = 0; i < r.n && i < 64; i++)
        assert_true(strncmp(r.v[i].path, "/skip", 5) != 0);
    mv(root, "/skip/f", root, "/d/f"); /* out of an excluded directory: an upsert only */
    r = drain(w, 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(find(&r, "/d/f", FU_WATCH_UPSERT), 0);
}

static void test_symlinks_and_fifos_are_not_upserted_but_their_deletes_are_reported(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    drain(w, 0);
    char p[512];
    path(p, sizeof(p), root, "/link");
    assert_int_equal(symlink("/d", p), 0);
    char q[512];
    path(q, sizeof(q), root, "/fifo");
    assert_int_equal(mkfifo(q, 0644), 0);
    struct rows r = drain(w, 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(unlink(q), 0);
    r = drain(w, 0); /* as the inotify watcher does: the view may hold no row for them */
    assert_true(find(&r, "/link", FU_WATCH_DELETE) >= 0);
    assert_true(find(&r, "/fifo", FU_WATCH_DELETE) >= 0);
}

static void test_a_directory_attribute_change_is_an_upsert(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    drain(w, 0);
    char p[512];
    path(p, sizeof(p), root, "/d");
    assert_int_equal(chmod(p, 0700), 0);
    struct rows r = drain(w, 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].path, "/d");
    assert_int_equal(r.v[0].op, FU_WATCH_UPSERT);
    assert_true(r.v[0].dir);
    assert_true(r.v[0].atomic);
}

/* The kernel merges one process's queued events on one entry, losing their order: the
 * entry's state when the event is read decides. */
static void test_an_entry_replaced_between_two_reads_ends_as_an_upsert(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    write_file("/d/rep", "x");
    drain(w, 0);
    char p[512];
    path(p, sizeof(p), root, "/d/rep");
    assert_int_equal(unlink(p), 0);
    write_file("/d/rep", "new!");
    struct rows r = drain(w, 0);
    int i = find(&r, "/d/rep", FU_WATCH_DELETE);
    assert_true(i >= 0);
    assert_true(r.n >= 2 && r.n <= 64);
    assert_string_equal(r.v[r.n - 1].path, "/d/rep");
    assert_int_equal(r.v[r.n - 1].op, FU_WATCH_UPSERT);
    assert_int_equal(r.v[r.n - 1].size, 4);
}

static void test_an_entry_created_and_deleted_between_two_reads_is_not_upserted(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    drain(w, 0);
    write_file("/d/brief", "x");
    char p[512];
    path(p, sizeof(p), root, "/d/brief");
    assert_int_equal(unlink(p), 0);
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/d/brief", FU_WATCH_UPSERT) < 0);
    assert_true(find(&r, "/d/brief", FU_WATCH_DELETE) >= 0);
}

static void test_a_missing_root_cannot_be_opened(void **state)
{
    watcher(state);
    struct fu_fanwatch *w = NULL;
    char p[512];
    path(p, sizeof(p), root, "/no-such-dir");
    assert_int_equal(fu_fanwatch_open(&w, p, NULL, 1.0, false), -ENOENT);
    assert_null(w);
    path(p, sizeof(p), root, "/d/old"); /* a file */
    assert_int_equal(fu_fanwatch_open(&w, p, NULL, 1.0, false), -ENOTDIR);
}

/* ------------------------------------------------------------ a tree of its own */

static char own[128];

static int own_setup(void **state)
{
    (void)state;
    snprintf(own, sizeof(own), "/tmp/fustor-fanown-XXXXXX");
    assert_non_null(mkdtemp(own));
    return 0;
}

static int own_teardown(void **state)
{
    (void)state;
    char p[512];
    path(p, sizeof(p), own, "/mnt");
    umount2(p, MNT_DETACH); /* if a test mounted something there */
    path(p, sizeof(p), own, "/fuse");
    if (access(p, F_OK) == 0) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "fusermount -u -z '%s' 2>/dev/null", p);
        (void)!system(cmd); /* fails when the test did not mount it */
    }
    rm_tree(own);
    char moved[160];
    snprintf(moved, sizeof(moved), "%s-moved", own);
    rm_tree(moved);
    return 0;
}

static void test_other_filesystems_below_the_root_are_marked_only_when_asked(void **state)
{
    watcher(state);
    mkd_at(own, "/mnt");
    char mnt[512];
    path(mnt, sizeof(mnt), own, "/mnt");
    if (mount("fustor-test", mnt, "tmpfs", 0, "size=1m") < 0)
        skip(); /* no mounts in this container */
    struct fu_fanwatch *w = NULL;
    assert_int_equal(fu_fanwatch_open(&w, own, NULL, 1.0, true), 0);
    if (fu_fanwatch_failed(w)) { /* a kernel whose tmpfs has no fsid (before 6.x) */
        fu_fanwatch_close(w);
        skip();
    }
    assert_int_equal(fu_fanwatch_count(w), 2);
    mkd_at(own, "/mnt/sub");
    write_at(own, "/mnt/sub/f", "abc");
    write_at(own, "/top", "t");
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/mnt/sub", FU_WATCH_UPSERT) >= 0);
    int i = find(&r, "/mnt/sub/f", FU_WATCH_UPSERT);
    assert_true(i >= 0);
    assert_int_equal(r.v[i].size, 3);
    assert_true(find(&r, "/top", FU_WATCH_UPSERT) >= 0);
    fu_fanwatch_close(w);

    assert_int_equal(fu_fanwatch_open(&w, own, NULL, 1.0, false), 0);
    assert_int_equal(fu_fanwatch_count(w), 1);
    write_at(own, "/mnt/sub/g", "g"); /* on the tmpfs: not marked */
    write_at(own, "/top2", "t");
    r = drain(w, 0);
    assert_true(find(&r, "/mnt/sub/g", FU_WATCH_UPSERT) < 0);
    assert_true(find(&r, "/top2", FU_WATCH_UPSERT) >= 0);
    fu_fanwatch_close(w);
}

static void test_a_fuse_filesystem_cannot_be_marked(void **state)
{
    watcher(state);
    if (access("/usr/bin/bindfs", X_OK) != 0)
        skip();
    mkd_at(own, "/src");
    mkd_at(own, "/fuse");
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "bindfs '%s/src' '%s/fuse' 2>/dev/null", own, own);
    if (system(cmd) != 0)
        skip(); /* no /dev/fuse here */
    char p[512];
    path(p, sizeof(p), own, "/fuse");
    struct fu_fanwatch *w = NULL;
    int rc = fu_fanwatch_open(&w, p, NULL, 1.0, false);
    fu_fanwatch_close(w);
    assert_true(rc == -ENODEV || rc == -EXDEV || rc == -EOPNOTSUPP); /* inotify's turn */
}

static void test_moving_the_root_away_asks_for_a_new_watcher(void **state)
{
    watcher(state);
    struct fu_fanwatch *w = NULL;
    assert_int_equal(fu_fanwatch_open(&w, own, NULL, 1.0, false), 0);
    char moved[160];
    snprintf(moved, sizeof(moved), "%s-moved", own);
    assert_int_equal(rename(own, moved), 0);
    assert_int_equal(read_until(w, -ESTALE), -ESTALE);
    fu_fanwatch_close(w);
    assert_int_equal(rename(moved, own), 0);
}

/* ------------------------------------------------------------ the shared watcher, last */

static void test_queue_overflow_asks_for_a_rescan(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    drain(w, 0);
    FILE *q = fopen("/proc/sys/fs/fanotify/max_queued_events", "r");
    int max = 16384;
    if (q) {
        assert_int_equal(fscanf(q, "%d", &max), 1);
        fclose(q);
    }
    mkd("/burst");
    drain(w, 0);
    char rel[64];
    for (int i = 0; i < max + 1000; i++) { /* one event each: create and close merge */
        snprintf(rel, sizeof(rel), "/burst/f%d", i);
        write_file(rel, "");
    }
    assert_int_equal(read_until(w, -EOVERFLOW), -EOVERFLOW);
    drain(w, 0);
    write_file("/burst/after", ""); /* still watching */
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/burst/after", FU_WATCH_UPSERT) >= 0);
}

static void test_removing_the_root_asks_for_a_new_watcher(void **state)
{
    struct fu_fanwatch *w = watcher(state);
    drain(w, 0);
    assert_int_equal(nftw(root, rm, 16, FTW_DEPTH | FTW_PHYS), 0);
    assert_int_equal(mkdir(root, 0755), 0); /* a new directory under the old name */
    assert_int_equal(read_until(w, -ESTALE), -ESTALE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_mark_covers_the_whole_tree),
        cmocka_unit_test(test_create_and_close_are_atomic_upserts),
        cmocka_unit_test(test_modify_is_throttled_and_not_atomic),
        cmocka_unit_test(test_delete_is_a_delete),
        cmocka_unit_test(test_rename_of_a_file_inside_the_tree_is_a_delete_and_an_upsert),
        cmocka_unit_test(test_new_directory_is_listed_and_covered),
        cmocka_unit_test(test_rename_of_a_directory_reports_its_contents_under_the_new_path),
        cmocka_unit_test(test_moves_across_the_edge_of_the_tree),
        cmocka_unit_test(test_changes_elsewhere_on_the_filesystem_are_not_reported),
        cmocka_unit_test(test_excluded_names_and_directories_are_not_reported),
        cmocka_unit_test(test_symlinks_and_fifos_are_not_upserted_but_their_deletes_are_reported),
        cmocka_unit_test(test_a_directory_attribute_change_is_an_upsert),
        cmocka_unit_test(test_an_entry_replaced_between_two_reads_ends_as_an_upsert),
        cmocka_unit_test(test_an_entry_created_and_deleted_between_two_reads_is_not_upserted),
        cmocka_unit_test(test_a_missing_root_cannot_be_opened),
        cmocka_unit_test_setup_teardown(
            test_other_filesystems_below_the_root_are_marked_only_when_asked, own_setup,
            own_teardown),
        cmocka_unit_test_setup_teardown(test_a_fuse_filesystem_cannot_be_marked, own_setup,
                                        own_teardown),
        cmocka_unit_test_setup_teardown(test_moving_the_root_away_asks_for_a_new_watcher, own_setup,
                                        own_teardown),
        cmocka_unit_test(test_queue_overflow_asks_for_a_rescan),
        cmocka_unit_test(test_removing_the_root_asks_for_a_new_watcher), /* last: no tree */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
