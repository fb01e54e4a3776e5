/* The inotify watcher on real directories: event mapping, the IN_MODIFY throttle, renames
 * paired by cookie (files and directories, inside the tree and across its edge), new
 * directories watched before they are listed, exclusions, and queue overflow. Then the watch
 * limit (v1's LRU): past it, the newest directories by recursive mtime are watched, a new one
 * takes the coldest one's watch, activity keeps a directory and its ancestors hot, the root
 * stays, and the kernel's own limit (ENOSPC, set per user namespace) is found and kept to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "watch_rows.h"

#include "agent/source_fs/watch_inotify.h"

#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* ------------------------------------------------------------ the watch limit */

#define LONG_AGO 1000000000.0 /* 2001: far outside any monitoring window */
#define DAY 86400.0

static int setup_tree(void **state)
{
    snprintf(root, sizeof(root), "/tmp/fustor-watch-XXXXXX");
    snprintf(outside, sizeof(outside), "/tmp/fustor-outside-XXXXXX");
    assert_non_null(mkdtemp(root));
    assert_non_null(mkdtemp(outside));
    *state = NULL;
    return 0;
}

static void set_mtime(const char *rel, double t)
{
    char p[512];
    path(p, sizeof(p), root, rel);
    struct timespec ts[2] = {{(time_t)t, 0}, {(time_t)t, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static struct fu_watch *open_limited(void **state, size_t max_watches, double min_window)
{
    struct fu_watch_opts o = {.root = root,
                              .throttle_sec = 5.0,
                              .max_watches = max_watches,
                              .min_window_sec = min_window};
    struct fu_watch *w;
    assert_int_equal(fu_watch_open_opts(&w, &o), 0);
    *state = w; /* closed by teardown */
    return w;
}

struct expect {
    const char *dir;
    bool watched;
};

/* Whether each directory reports events: a file is created in each (activity: those watched
 * become the hottest). */
static void expect_watched(struct fu_watch *w, const struct expect *e, size_t n)
{
    static unsigned seq;
    char rel[16][256];
    assert_true(n <= 16);
    drain(w, 0);
    for (size_t i = 0; i < n; i++) {
        snprintf(rel[i], sizeof(rel[i]), "%s/probe%u", e[i].dir[1] ? e[i].dir : "", seq++);
        write_file(rel[i], "x");
    }
    struct rows r = drain(w, 0);
    for (size_t i = 0; i < n; i++) {
        bool seen = find(&r, rel[i], FU_WATCH_UPSERT) >= 0;
        if (seen != e[i].watched)
            fail_msg("%s: %s", e[i].dir, seen ? "watched, expected not" : "not watched");
    }
}

#define EXPECT_WATCHED(w, ...)                                                                     \
    do {                                                                                           \
        const struct expect e_[] = {__VA_ARGS__};                                                  \
        expect_watched(w, e_, sizeof(e_) / sizeof(e_[0]));                                         \
    } while (0)

/* /old's own mtime is the oldest but /old/deep below it is the newest; /d1../d6 a day apart.
 * Nine directories with the root (whose mtime is now). */
static void make_aged_tree(void)
{
    mkd("/old");
    mkd("/old/deep");
    char rel[32];
    for (int i = 1; i <= 6; i++) {
        snprintf(rel, sizeof(rel), "/d%d", i);
        mkd(rel);
        set_mtime(rel, LONG_AGO + i * DAY);
    }
    set_mtime("/old/deep", LONG_AGO + 10 * DAY);
    set_mtime("/old", LONG_AGO);
}

static void test_past_the_limit_the_newest_directories_by_recursive_mtime_are_watched(void **state)
{
    make_aged_tree();
    struct fu_watch *w = open_limited(state, 4, 0);
    assert_int_equal(fu_watch_count(w), 4);
    assert_int_equal(fu_watch_unwatched(w), 5);
    assert_int_equal(fu_watch_failed(w), 5); /* the unwatched, and no other failure */
    EXPECT_WATCHED(w, {"/", true}, {"/old", true}, {"/old/deep", true}, {"/d6", true},
                   {"/d5", false}, {"/d4", false}, {"/d3", false}, {"/d2", false}, {"/d1", false});
}

static void test_many_directories_the_newest_are_watched_and_new_ones_evict_the_oldest(void **state)
{
    char rel[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(rel, sizeof(rel), "/d%04d", i);
        mkd(rel);
        set_mtime(rel, LONG_AGO + i * 60.0);
    }
    struct fu_watch *w = open_limited(state, 1001, 0); /* the root and the newest 1000 */
    assert_int_equal(fu_watch_count(w), 1001);
    assert_int_equal(fu_watch_unwatched(w), 1000);
    drain(w, 0);
    for (int i = 0; i < 10; i++) {
        snprintf(rel, sizeof(rel), "/n%d", i);
        mkd(rel);
    }
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/n9", FU_WATCH_UPSERT) >= 0);
    assert_int_equal(fu_watch_count(w), 1001);
    assert_int_equal(fu_watch_unwatched(w), 1010);
    EXPECT_WATCHED(w, {"/d0000", false}, {"/d0999", false}, {"/d1000", false}, {"/d1009", false},
                   {"/d1010", true}, {"/d1999", true}, {"/n0", true}, {"/n9", true});
}

static void test_a_new_directory_takes_the_watch_of_the_coldest(void **state)
{
    make_aged_tree();
    struct fu_watch *w = open_limited(state, 4, 0); /* /, /old, /old/deep, /d6 */
    drain(w, 0);
    mkd("/new");
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/new", FU_WATCH_UPSERT) >= 0);
    assert_int_equal(fu_watch_count(w), 4);
    assert_int_equal(fu_watch_unwatched(w), 6);
    EXPECT_WATCHED(w, {"/new", true}, {"/d6", false}, {"/old/deep", true}, {"/old", true});
}

static void test_of_equally_cold_directories_the_deepest_goes_first(void **state)
{
    mkd("/p");
    mkd("/p/q");
    mkd("/x");
    set_mtime("/p/q", LONG_AGO + DAY); /* /p's heat too: it has nothing newer */
    set_mtime("/p", LONG_AGO);
    set_mtime("/x", LONG_AGO + 2 * DAY);
    struct fu_watch *w = open_limited(state, 4, 0);
    assert_int_equal(fu_watch_unwatched(w), 0);
    drain(w, 0);
    mkd("/x/new");
    drain(w, 0);
    assert_int_equal(fu_watch_count(w), 4);
    /* /p/q goes: had /p gone instead, a rename in /p would go unseen by /p/q's watch */
    EXPECT_WATCHED(w, {"/p", true}, {"/p/q", false}, {"/x/new", true});
}

static void test_activity_keeps_a_directory_and_its_ancestors_watched(void **state)
{
    mkd("/p");
    mkd("/p/q");
    mkd("/x");
    mkd("/y");
    mkd("/z");
    set_mtime("/p/q", LONG_AGO + 2 * DAY);
    set_mtime("/p", LONG_AGO + 1 * DAY);
    set_mtime("/x", LONG_AGO + 3 * DAY);
    set_mtime("/y", LONG_AGO + 4 * DAY);
    set_mtime("/z", LONG_AGO);
    struct fu_watch *w = open_limited(state, 5, 0); /* all but /z; /p/q is the coldest */
    assert_int_equal(fu_watch_unwatched(w), 1);
    drain(w, 0);
    write_file("/p/q/f", "x"); /* now /p/q, and /p above it, are the hottest */
    drain(w, 0);
    mkd("/n");
    drain(w, 0);
    assert_int_equal(fu_watch_count(w), 5);
    EXPECT_WATCHED(w, {"/p/q", true}, {"/p", true}, {"/y", true}, {"/n", true}, {"/x", false},
                   {"/z", false});
}

static void test_the_root_is_never_evicted(void **state)
{
    mkd("/a");
    set_mtime("/a", LONG_AGO);
    set_mtime("/", LONG_AGO);
    struct fu_watch *w = open_limited(state, 1, 0);
    assert_int_equal(fu_watch_count(w), 1);
    drain(w, 0);
    mkd("/new");
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/new", FU_WATCH_UPSERT) >= 0); /* seen by the root's watch */
    assert_int_equal(fu_watch_count(w), 1);
    assert_int_equal(fu_watch_unwatched(w), 2);
    EXPECT_WATCHED(w, {"/", true}, {"/new", false}, {"/a", false});
}

static void test_a_directory_moved_out_gives_its_watches_back(void **state)
{
    mkd("/a");
    mkd("/a/s");
    mkd("/b");
    struct fu_watch *w = open_limited(state, 4, 0);
    assert_int_equal(fu_watch_count(w), 4);
    drain(w, 0);
    mv(root, "/a", outside, "/a");
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/a", FU_WATCH_DELETE) >= 0);
    assert_int_equal(fu_watch_count(w), 2);
    char p[512];
    path(p, sizeof(p), outside, "/a/s/f");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    r = drain(w, 0);
    assert_int_equal(r.n, 0); /* no longer reported, under its old path or any */
    mkd("/c");
    mkd("/c/d");
    drain(w, 0);
    assert_int_equal(fu_watch_count(w), 4);
    assert_int_equal(fu_watch_unwatched(w), 0); /* room without evicting anything */
    EXPECT_WATCHED(w, {"/b", true}, {"/c", true}, {"/c/d", true});
}

static void test_a_renamed_directory_keeps_its_place_past_the_limit(void **state)
{
    make_aged_tree();
    struct fu_watch *w = open_limited(state, 4, 0); /* /, /old, /old/deep, /d6 */
    drain(w, 0);
    mv(root, "/old", root, "/renamed");
    struct rows r = drain(w, 0);
    assert_true(find(&r, "/renamed/deep", FU_WATCH_UPSERT) >= 0);
    assert_int_equal(fu_watch_count(w), 4);
    assert_int_equal(fu_watch_unwatched(w), 5); /* nothing new: no eviction */
    EXPECT_WATCHED(w, {"/renamed", true}, {"/renamed/deep", true}, {"/d6", true}, {"/d5", false});
}

static size_t count_lines(const char *file, const char *needle)
{
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    char line[2048];
    size_t n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void test_evicting_a_recently_active_directory_warns_once_a_minute(void **state)
{
    char log[] = "/tmp/fustor-watch-log-XXXXXX";
    int fd = mkstemp(log);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(fu_log_setup("fustor", FU_LOG_INFO, false, log), 0);
    mkd("/a");
    mkd("/b");
    double recent = (double)time(NULL) - 120; /* young for a window of years */
    set_mtime("/a", recent);
    set_mtime("/b", recent);
    struct fu_watch *w = open_limited(state, 3, 1e9);
    drain(w, 0);
    mkd("/n1");
    drain(w, 0);
    mkd("/n2");
    drain(w, 0);
    fu_log_close();
    assert_int_equal(fu_watch_count(w), 3);
    assert_int_equal(fu_watch_unwatched(w), 2); /* evicted all the same */
    assert_int_equal(count_lines(log, "lost their watch"), 1);
    assert_int_equal(count_lines(log, "the watch limit (max_watches 3) is reached"), 1);
    unlink(log);
}

/* The kernel's limit, in a child process with its own user namespace, whose inotify watch
 * limit (/proc/sys/user/max_inotify_watches) it may set. No cmocka there: it exits 0, 77 when
 * it cannot have the namespace, or the line of the first failed check. */
#define CHILD_CHECK(c)                                                                             \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "child: check failed at line %d: %s\n", __LINE__, #c);                 \
            _exit(__LINE__ % 250 + 1);                                                             \
        }                                                                                          \
    } while (0)

static bool set_ns_watch_limit(int n)
{
    FILE *f = fopen("/proc/sys/user/max_inotify_watches", "w");
    if (!f)
        return false;
    bool ok = fprintf(f, "%d\n", n) > 0;
    return fclose(f) == 0 && ok;
}

static bool child_watched(struct fu_watch *w, const char *dir)
{
    static unsigned seq;
    char rel[256], p[512];
    snprintf(rel, sizeof(rel), "%s/probe%u", dir[1] ? dir : "", seq++);
    path(p, sizeof(p), root, rel);
    struct pollfd pf = {.fd = fu_watch_fd(w), .events = POLLIN};
    struct rows r = {0};
    while (poll(&pf, 1, 150) > 0)
        CHILD_CHECK(fu_watch_read(w, 0, collect, &r) >= 0);
    r.n = 0;
    FILE *f = fopen(p, "w");
    CHILD_CHECK(f);
    fclose(f);
    while (poll(&pf, 1, 150) > 0)
        CHILD_CHECK(fu_watch_read(w, 0, collect, &r) >= 0);
    return find(&r, rel, FU_WATCH_UPSERT) >= 0;
}

static int kernel_limit_child(void)
{
    if (unshare(CLONE_NEWUSER) < 0 || !set_ns_watch_limit(4))
        return 77;
    /* at open: the fifth watch fails, and the four kept are the newest */
    struct fu_watch *w;
    CHILD_CHECK(fu_watch_open(&w, root, NULL, 5.0) == 0);
    CHILD_CHECK(fu_watch_count(w) == 4);
    CHILD_CHECK(fu_watch_unwatched(w) == 5);
    CHILD_CHECK(child_watched(w, "/old/deep"));
    CHILD_CHECK(child_watched(w, "/d6"));
    CHILD_CHECK(!child_watched(w, "/d5"));
    fu_watch_close(w);
    /* at run time: every directory watched, then the kernel's limit drops to what is used */
    CHILD_CHECK(set_ns_watch_limit(100));
    CHILD_CHECK(fu_watch_open(&w, root, NULL, 5.0) == 0);
    CHILD_CHECK(fu_watch_count(w) == 9 && fu_watch_unwatched(w) == 0);
    CHILD_CHECK(set_ns_watch_limit(9));
    char p[512];
    path(p, sizeof(p), root, "/new");
    CHILD_CHECK(mkdir(p, 0755) == 0);
    CHILD_CHECK(child_watched(w, "/new"));
    CHILD_CHECK(fu_watch_count(w) == 9);
    CHILD_CHECK(fu_watch_unwatched(w) == 1);
    CHILD_CHECK(!child_watched(w, "/d1")); /* the coldest */
    fu_watch_close(w);
    return 0;
}

static void test_the_kernels_limit_is_found_and_kept_to(void **state)
{
    (void)state;
    make_aged_tree();
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (!pid)
        _exit(kernel_limit_child());
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        skip(); /* no user namespaces here */
    assert_int_equal(WEXITSTATUS(st), 0);
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
    const struct CMUnitTest limit_tests[] = {
        cmocka_unit_test_setup_teardown(
            test_past_the_limit_the_newest_directories_by_recursive_mtime_are_watched, setup_tree,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_many_directories_the_newest_are_watched_and_new_ones_evict_the_oldest, setup_tree,
            teardown),
        cmocka_unit_test_setup_teardown(test_a_new_directory_takes_the_watch_of_the_coldest,
                                        setup_tree, teardown),
        cmocka_unit_test_setup_teardown(test_of_equally_cold_directories_the_deepest_goes_first,
                                        setup_tree, teardown),
        cmocka_unit_test_setup_teardown(test_activity_keeps_a_directory_and_its_ancestors_watched,
                                        setup_tree, teardown),
        cmocka_unit_test_setup_teardown(test_the_root_is_never_evicted, setup_tree, teardown),
        cmocka_unit_test_setup_teardown(test_a_directory_moved_out_gives_its_watches_back,
                                        setup_tree, teardown),
        cmocka_unit_test_setup_teardown(test_a_renamed_directory_keeps_its_place_past_the_limit,
                                        setup_tree, teardown),
        cmocka_unit_test_setup_teardown(
            test_evicting_a_recently_active_directory_warns_once_a_minute, setup_tree, teardown),
        cmocka_unit_test_setup_teardown(test_the_kernels_limit_is_found_and_kept_to, setup_tree,
                                        teardown),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    return failed + cmocka_run_group_tests(limit_tests, NULL, NULL);
}
