/* The inotify watcher on real directories: event mapping, the IN_MODIFY throttle, renames
 * paired by cookie (files and directories, inside the tree and across its edge), new
 * directories watched before they are listed, exclusions, and queue overflow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent/source_fs/watch_inotify.h"

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct rows {
    struct {
        char path[256];
        int op;
        bool atomic, dir;
        uint64_t size;
    } v[64];
    size_t n;
};

static int collect(void *ctx, const struct fu_watch_row *r)
{
    struct rows *s = ctx;
    if (s->n < 64) {
        snprintf(s->v[s->n].path, sizeof(s->v[0].path), "%s", r->path);
        s->v[s->n].op = r->op;
        s->v[s->n].atomic = r->atomic;
        s->v[s->n].dir = r->is_dir;
        s->v[s->n].size = r->size;
    }
    s->n++;
    return 0;
}

static char root[128], outside[128];

static void path(char *out, size_t n, const char *base, const char *rel)
{
    snprintf(out, n, "%s%s", base, rel);
}

static void write_file(const char *rel, const char *text)
{
    char p[512];
    path(p, sizeof(p), root, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void mkd(const char *rel)
{
    char p[512];
    path(p, sizeof(p), root, rel);
    assert_int_equal(mkdir(p, 0755), 0);
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

static int setup(void **state)
{
    snprintf(root, sizeof(root), "/tmp/fustor-watch-XXXXXX");
    snprintf(outside, sizeof(outside), "/tmp/fustor-outside-XXXXXX");
    assert_non_null(mkdtemp(root));
    assert_non_null(mkdtemp(outside));
    mkd("/d");
    write_file("/d/old", "x");
    struct fu_strv ex = {0};
    fu_strv_push(&ex, "*.swp");
    struct fu_watch *w;
    assert_int_equal(fu_watch_open(&w, root, &ex, 5.0), 0);
    fu_strv_free(&ex);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    fu_watch_close(*state);
    nftw(root, rm, 16, FTW_DEPTH | FTW_PHYS);
    nftw(outside, rm, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Everything pending: reads until the queue stays empty for 150 ms (generous: under a loaded
 * machine and valgrind, a close's event can be queued a little after close() returns, as the
 * kernel may finish the close in deferred work). */
static struct rows drain(struct fu_watch *w, double now)
{
    struct rows r = {0};
    struct pollfd p = {.fd = fu_watch_fd(w), .events = POLLIN};
    while (poll(&p, 1, 150) > 0)
        assert_true(fu_watch_read(w, now, collect, &r) >= 0);
    return r;
}

static int find(const struct rows *r, const char *path, int op)
{
    for (size_t i = 0; i < r->n && i < 64; i++)
        if (!strcmp(r->v[i].path, path) && r->v[i].op == op)
            return (int)i;
    return -1;
}

static void test_watch_covers_existing_directories(void **state)
{
    struct fu_watch *w = *state;
    assert_int_equal(fu_watch_count(w), 2); /* / and /d */
    assert_int_equal(fu_watch_failed(w), 0);
}

static void test_create_and_close_are_atomic_upserts(void **state)
{
    struct fu_watch *w = *state;
    drain(w, 0);
    write_file("/d/new", "hello");
    struct rows r = drain(w, 100);
    int i = find(&r, "/d/new", FU_WATCH_UPSERT);
    assert_true(i >= 0);
    assert_true(r.v[i].atomic);
    assert_int_equal(r.v[r.n - 1].size, 5); /* the last row (close) has the final size */
    assert_true(r.v[r.n - 1].atomic);
}

static void test_modify_is_throttled_and_not_atomic(void **state)
{
    struct fu_watch *w = *state;
    drain(w, 0);
    char p[512];
    path(p, sizeof(p), root, "/d/old");
    FILE *f = fopen(p, "a");
    assert_non_null(f);
    setvbuf(f, NULL, _IONBF, 0);
    fputs("1", f);
    struct rows r = drain(w, 1000);
    assert_int_equal(r.n, 1);
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
    struct fu_watch *w = *state;
    write_file("/gone", "x");
    drain(w, 0);
    char p[512];
    path(p, sizeof(p), root, "/gone");
    assert_int_equal(unlink(p), 0);
    struct rows r = drain(w, 0);
    assert_int_equal(r.n, 1);
    assert_true(find(&r, "/gone", FU_WATCH_DELETE) >= 0);
}

static void test_rename_of_a_file_inside_the_tree_pairs_by_cookie(void **state)
{
    struct fu_watch *w = *state;
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

static void test_new_directory_is_watched_and_listed(void **state)
{
    struct fu_watch *w = *state;
    drain(w, 0);
    mkd("/n");
    mkd("/n/m");
    write_file("/n/m/f", "x");
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/n", FU_WATCH_UPSERT) >= 0);
    assert_true(find(&r, "/n/m", FU_WATCH_UPSERT) >= 0);
    assert_true(find(&r, "/n/m/f", FU_WATCH_UPSERT) >= 0);
    write_file("/n/m/later", "y"); /* the new directories are watched */
    r = drain(w, 0);
    assert_true(find(&r, "/n/m/later", FU_WATCH_UPSERT) >= 0);
}

static void test_rename_of_a_directory_moves_its_watches(void **state)
{
    struct fu_watch *w = *state;
    mkd("/r");
    mkd("/r/s");
    write_file("/r/s/f", "x");
    drain(w, 0);
    mv(root, "/r", root, "/r2");
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/r", FU_WATCH_DELETE) >= 0);
    assert_true(find(&r, "/r2", FU_WATCH_UPSERT) >= 0);
    assert_true(find(&r, "/r2/s/f", FU_WATCH_UPSERT) >= 0); /* reported under its new path */
    write_file("/r2/s/g", "y");
    r = drain(w, 0);
    assert_true(find(&r, "/r2/s/g", FU_WATCH_UPSERT) >= 0);
    assert_true(find(&r, "/r/s/g", FU_WATCH_UPSERT) < 0);
}

static void test_moves_across_the_edge_of_the_tree(void **state)
{
    struct fu_watch *w = *state;
    write_file("/out.txt", "o");
    drain(w, 0);
    mv(root, "/out.txt", outside, "/out.txt");
    struct rows r = drain(w, 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(find(&r, "/out.txt", FU_WATCH_DELETE), 0); /* moved out: gone */
    char p[512];
    path(p, sizeof(p), outside, "/in");
    assert_int_equal(mkdir(p, 0755), 0);
    path(p, sizeof(p), outside, "/in/x");
    FILE *f = fopen(p, "w");
    fclose(f);
    mv(outside, "/in", root, "/in");
    r = drain(w, 0);
    assert_true(find(&r, "/in", FU_WATCH_UPSERT) >= 0);
    assert_true(find(&r, "/in/x", FU_WATCH_UPSERT) >= 0); /* moved in: listed */
}

static void test_excluded_names_are_not_reported(void **state)
{
    struct fu_watch *w = *state;
    drain(w, 0);
    write_file("/d/.edit.swp", "x");
    write_file("/d/kept", "x");
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/d/.edit.swp", FU_WATCH_UPSERT) < 0);
    assert_true(find(&r, "/d/kept", FU_WATCH_UPSERT) >= 0);
}

static void test_queue_overflow_asks_for_a_rescan(void **state)
{
    struct fu_watch *w = *state;
    drain(w, 0);
    FILE *q = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
    int max = 16384;
    if (q) {
        assert_int_equal(fscanf(q, "%d", &max), 1);
        fclose(q);
    }
    mkd("/burst");
    drain(w, 0);
    char rel[64];
    for (int i = 0; i < max / 2 + 100; i++) { /* create + close: two events each */
        snprintf(rel, sizeof(rel), "/burst/f%d", i);
        write_file(rel, "");
    }
    struct rows r = {0};
    int rc = 0;
    struct pollfd p = {.fd = fu_watch_fd(w), .events = POLLIN};
    while (poll(&p, 1, 50) > 0 && rc != -EOVERFLOW)
        rc = fu_watch_read(w, 0, collect, &r);
    assert_int_equal(rc, -EOVERFLOW);
    drain(w, 0);
    write_file("/burst/after", ""); /* still watching */
    r = drain(w, 0);
    assert_true(find(&r, "/burst/after", FU_WATCH_UPSERT) >= 0);
}

static void test_removing_the_root_asks_for_a_new_watcher(void **state)
{
    struct fu_watch *w = *state;
    drain(w, 0);
    assert_int_equal(nftw(root, rm, 16, FTW_DEPTH | FTW_PHYS), 0);
    assert_int_equal(mkdir(root, 0755), 0); /* a new directory under the old name */
    struct rows r = {0};
    int rc = 0;
    struct pollfd p = {.fd = fu_watch_fd(w), .events = POLLIN};
    while (poll(&p, 1, 150) > 0 && rc != -ESTALE)
        rc = fu_watch_read(w, 0, collect, &r);
    assert_int_equal(rc, -ESTALE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch_covers_existing_directories),
        cmocka_unit_test(test_create_and_close_are_atomic_upserts),
        cmocka_unit_test(test_modify_is_throttled_and_not_atomic),
        cmocka_unit_test(test_delete_is_a_delete),
        cmocka_unit_test(test_rename_of_a_file_inside_the_tree_pairs_by_cookie),
        cmocka_unit_test(test_new_directory_is_watched_and_listed),
        cmocka_unit_test(test_rename_of_a_directory_moves_its_watches),
        cmocka_unit_test(test_moves_across_the_edge_of_the_tree),
        cmocka_unit_test(test_excluded_names_are_not_reported),
        cmocka_unit_test(test_queue_overflow_asks_for_a_rescan),
        cmocka_unit_test(test_removing_the_root_asks_for_a_new_watcher), /* last: no tree */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
