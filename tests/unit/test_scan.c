/* The fs source's walk on real directories in a temporary tree: relative paths, symlinks
 * never followed, exclusions and file patterns, the audit's directory-mtime cache, parent
 * mtimes, non-recursive scans, stopping, many entries over several workers, and the
 * directories-only walk that skips leaves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent/source_fs/scan.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

struct seen {
    pthread_mutex_t mu;
    struct row {
        char path[256], parent[256];
        bool dir, skipped;
        uint64_t size;
        double mtime, parent_mtime;
    } v[4096];
    size_t n;
    int fail_after; /* emit fails once this many rows arrived; 0 = never */
};

static int collect(void *ctx, const struct fu_scan_entry *e, size_t n)
{
    struct seen *s = ctx;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < n && s->n < 4096; i++) {
        struct row *r = &s->v[s->n++];
        snprintf(r->path, sizeof(r->path), "%s", e[i].path);
        snprintf(r->parent, sizeof(r->parent), "%s", e[i].parent_path);
        assert_int_equal(strlen(e[i].path), e[i].path_len);
        r->dir = e[i].is_dir;
        r->skipped = e[i].audit_skipped;
        r->size = e[i].size;
        r->mtime = e[i].mtime;
        r->parent_mtime = e[i].parent_mtime;
    }
    int rc = s->fail_after && s->n >= (size_t)s->fail_after ? -42 : 0;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static const struct row *find(const struct seen *s, const char *path)
{
    const struct row *hit = NULL;
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].path, path)) {
            assert_null(hit); /* reported once */
            hit = &s->v[i];
        }
    return hit;
}

static char root[256];

static void put(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s%s", root, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void dir(const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s%s", root, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void set_mtime(const char *rel, time_t t)
{
    char p[512];
    snprintf(p, sizeof(p), "%s%s", root, rel);
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
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
    (void)state;
    snprintf(root, sizeof(root), "/tmp/fustor-scan-XXXXXX");
    assert_non_null(mkdtemp(root));
    dir("/a");
    dir("/a/b");
    dir("/c");
    dir("/.snapshot");
    put("/top", "12345");
    put("/a/f1.dat", "x");
    put("/a/f2.tmp", "xy");
    put("/a/b/f3.dat", "xyz");
    put("/.snapshot/old", "");
    char p[512], t[512];
    snprintf(p, sizeof(p), "%s/a/loop", root);
    assert_int_equal(symlink("..", p), 0);
    snprintf(p, sizeof(p), "%s/etc", root);
    assert_int_equal(symlink("/etc", p), 0);
    snprintf(t, sizeof(t), "%s/a/b/dangling", root);
    assert_int_equal(symlink("/nonexistent", t), 0);
    snprintf(p, sizeof(p), "%s/fifo", root);
    assert_int_equal(mkfifo(p, 0644), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(root, rm, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static struct seen *scan(const struct fu_scan_opts *o, int expect)
{
    struct seen *s = calloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    struct fu_scan_stats st = {0};
    assert_int_equal(fu_scan(o, collect, s, &st), expect);
    return s;
}

static void done(struct seen *s)
{
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void test_scan_reports_entries_relative_to_the_root(void **state)
{
    (void)state;
    struct fu_scan_opts o = {.root = root, .recursive = true, .workers = 2};
    struct seen *s = scan(&o, 0);
    const char *want[] = {"/",    "/a",        "/a/b",      "/c",          "/.snapshot",
                          "/top", "/a/f1.dat", "/a/f2.tmp", "/a/b/f3.dat", "/.snapshot/old"};
    assert_int_equal(s->n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_non_null(find(s, want[i]));
    assert_true(find(s, "/")->dir);
    assert_string_equal(find(s, "/")->parent, "");
    assert_false(find(s, "/top")->dir);
    assert_int_equal(find(s, "/top")->size, 5);
    assert_string_equal(find(s, "/a/b/f3.dat")->parent, "/a/b");
    assert_string_equal(find(s, "/a")->parent, "/");
    done(s);
}

static void test_scan_never_follows_or_reports_symlinks_and_special_files(void **state)
{
    (void)state;
    struct fu_scan_opts o = {.root = root, .recursive = true};
    struct seen *s = scan(&o, 0);
    assert_null(find(s, "/a/loop"));
    assert_null(find(s, "/a/loop/a"));
    assert_null(find(s, "/etc"));
    assert_null(find(s, "/etc/passwd"));
    assert_null(find(s, "/a/b/dangling"));
    assert_null(find(s, "/fifo"));
    done(s);
}

static void test_scan_exclude_globs_and_file_pattern(void **state)
{
    (void)state;
    struct fu_strv ex = {0};
    fu_strv_push(&ex, ".snapshot");
    fu_strv_push(&ex, "*.tmp");
    fu_strv_push(&ex, "/a/b");
    struct fu_scan_opts o = {.root = root, .recursive = true, .exclude = &ex};
    struct seen *s = scan(&o, 0);
    assert_null(find(s, "/.snapshot"));
    assert_null(find(s, "/.snapshot/old"));
    assert_null(find(s, "/a/f2.tmp"));
    assert_null(find(s, "/a/b"));
    assert_null(find(s, "/a/b/f3.dat"));
    assert_non_null(find(s, "/a/f1.dat"));
    done(s);
    o = (struct fu_scan_opts){.root = root, .recursive = true, .file_pattern = "*.dat"};
    s = scan(&o, 0);
    assert_null(find(s, "/top"));
    assert_non_null(find(s, "/a/b/f3.dat"));
    assert_non_null(find(s, "/c")); /* the pattern is for files */
    done(s);
    assert_true(fu_scan_excluded(&ex, "x.tmp", "/deep/x.tmp"));
    assert_false(fu_scan_excluded(&ex, "b", "/c/b"));
    assert_false(fu_scan_excluded(NULL, "b", "/a/b"));
    fu_strv_free(&ex);
    /* Literal names and literal prefixes take a path without fnmatch: each pattern alone
     * decides every name as fnmatch does. */
    static const char *const globs[] = {".fustor-clock-probe-*",
                                        "lost+found",
                                        "*",
                                        "",
                                        ".snap*",
                                        "tmp*x",
                                        "a?c",
                                        "[ab]*",
                                        "\\*",
                                        "abc*"};
    static const char *const names[] = {".fustor-clock-probe-42",
                                        ".fustor-clock-probe-",
                                        "lost+found",
                                        "lost+found2",
                                        ".snapshot",
                                        ".snap",
                                        "snap",
                                        "tmpx",
                                        "tmp",
                                        "abc",
                                        "abcd",
                                        "ab",
                                        "*",
                                        "\\x",
                                        "",
                                        "b.txt",
                                        "a.c"};
    for (size_t g = 0; g < sizeof(globs) / sizeof(globs[0]); g++) {
        struct fu_strv one = {0};
        fu_strv_push(&one, globs[g]);
        for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
            bool want =
                fnmatch(globs[g], names[n], FNM_PERIOD) == 0 || fnmatch(globs[g], names[n], 0) == 0;
            char rel[64];
            snprintf(rel, sizeof(rel), "/d/%s", names[n]);
            if (fu_scan_excluded(&one, names[n], rel) != want)
                fail_msg("exclude '%s' on '%s': want %d", globs[g], names[n], want);
        }
        fu_strv_free(&one);
    }
}

static void test_scan_files_carry_their_parent_mtime(void **state)
{
    (void)state;
    set_mtime("/a/b", 1600000000);
    struct fu_scan_opts o = {.root = root, .recursive = true};
    struct seen *s = scan(&o, 0);
    assert_true(find(s, "/a/b")->mtime == 1600000000.0);
    assert_true(find(s, "/a/b/f3.dat")->parent_mtime == 1600000000.0);
    assert_true(find(s, "/a/b")->parent_mtime == find(s, "/a")->mtime);
    done(s);
}

static void test_audit_cache_skips_the_files_of_unchanged_directories(void **state)
{
    (void)state;
    struct fu_dircache *c = fu_dircache_new();
    struct fu_scan_opts o = {.root = root, .recursive = true, .cache = c};
    struct seen *s = scan(&o, 0);
    assert_false(find(s, "/a")->skipped);
    assert_non_null(find(s, "/a/f1.dat"));
    assert_int_equal(fu_dircache_size(c), 5);
    done(s);
    /* nothing changed: every directory is silent, its subdirectories still walked */
    s = scan(&o, 0);
    assert_true(find(s, "/a")->skipped && find(s, "/a/b")->skipped);
    assert_null(find(s, "/a/f1.dat"));
    assert_null(find(s, "/a/b/f3.dat"));
    done(s);
    /* a new file bumps /a's mtime: /a is listed again, /a/b stays silent */
    put("/a/new.dat", "n");
    set_mtime("/a", 1700000000);
    s = scan(&o, 0);
    assert_false(find(s, "/a")->skipped);
    assert_non_null(find(s, "/a/new.dat"));
    assert_non_null(find(s, "/a/f1.dat"));
    assert_true(find(s, "/a/b")->skipped);
    done(s);
    fu_dircache_free(c);
}

static void test_snapshot_fills_the_cache_that_is_saved_and_loaded(void **state)
{
    (void)state;
    struct fu_dircache *c = fu_dircache_new();
    struct fu_scan_opts o = {.root = root, .recursive = true, .cache = c, .cache_fill = true};
    fu_dircache_begin(c);
    dir("/gone");
    struct seen *s = scan(&o, 0);
    assert_false(find(s, "/a")->skipped); /* filling: everything listed */
    assert_non_null(find(s, "/a/f1.dat"));
    assert_int_equal(fu_dircache_size(c), 6);
    done(s);
    s = scan(&o, 0); /* and again: a snapshot never skips */
    assert_non_null(find(s, "/a/b/f3.dat"));
    done(s);
    /* /gone goes: a walk after it does not see it, and the saved cache drops it */
    char gone[512], file[512];
    snprintf(gone, sizeof(gone), "%s/gone", root);
    assert_int_equal(rmdir(gone), 0);
    fu_dircache_begin(c);
    done(scan(&o, 0));
    snprintf(file, sizeof(file), "%s.dircache", root);
    assert_int_equal(fu_dircache_save(c, file, "inc-1:sig"), 0);
    fu_dircache_free(c);

    char *tok = NULL;
    assert_int_equal(fu_dircache_load(file, &c, &tok), 0);
    assert_string_equal(tok, "inc-1:sig");
    assert_int_equal(fu_dircache_size(c), 5);
    free(tok);
    /* an audit with the loaded cache: nothing changed, every directory silent */
    struct fu_scan_opts a = {.root = root, .recursive = true, .cache = c};
    s = scan(&a, 0);
    assert_true(find(s, "/a")->skipped && find(s, "/a/b")->skipped && find(s, "/")->skipped);
    assert_null(find(s, "/a/f1.dat"));
    done(s);
    fu_dircache_free(c);

    /* damage: a flipped byte, a cut file, none at all */
    FILE *f = fopen(file, "r+b");
    assert_non_null(f);
    fseek(f, 30, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 30, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
    assert_int_equal(fu_dircache_load(file, &c, &tok), -EBADMSG);
    assert_null(c);
    assert_null(tok);
    assert_int_equal(truncate(file, 10), 0);
    assert_int_equal(fu_dircache_load(file, &c, &tok), -EBADMSG);
    unlink(file);
    assert_int_equal(fu_dircache_load(file, &c, &tok), -ENOENT);
    /* a token too long to be one */
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    c = fu_dircache_new();
    assert_int_equal(fu_dircache_save(c, file, big), -EINVAL);
    fu_dircache_free(c);
}

static void test_scan_of_one_directory_without_recursion(void **state)
{
    (void)state;
    struct fu_scan_opts o = {.root = root, .subpath = "/a", .recursive = false};
    struct seen *s = scan(&o, 0);
    assert_non_null(find(s, "/a"));
    assert_string_equal(find(s, "/a")->parent, "/");
    assert_non_null(find(s, "/a/f1.dat"));
    assert_non_null(find(s, "/a/b"));
    assert_null(find(s, "/a/b/f3.dat"));
    assert_null(find(s, "/top"));
    done(s);
}

static void test_scan_stops_when_the_receiver_fails(void **state)
{
    (void)state;
    struct fu_scan_opts o = {.root = root, .recursive = true, .chunk = 1, .workers = 2};
    struct seen *s = calloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->fail_after = 3;
    assert_int_equal(fu_scan(&o, collect, s, NULL), -42);
    assert_true(s->n < 10);
    done(s);
}

static void test_scan_of_a_missing_root_fails(void **state)
{
    (void)state;
    struct fu_scan_opts o = {.root = "/nonexistent/fustor", .recursive = true};
    assert_int_equal(fu_scan(&o, collect, NULL, NULL), -ENOENT);
}

static void test_scan_many_entries_over_several_workers(void **state)
{
    (void)state;
    char rel[64];
    for (int d = 0; d < 40; d++) {
        snprintf(rel, sizeof(rel), "/many%02d", d);
        dir(rel);
        for (int f = 0; f < 60; f++) {
            snprintf(rel, sizeof(rel), "/many%02d/f%02d", d, f);
            put(rel, "");
        }
    }
    struct fu_scan_opts o = {.root = root, .recursive = true, .workers = 4, .chunk = 7};
    struct fu_scan_stats st = {0};
    struct seen *s = calloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    assert_int_equal(fu_scan(&o, collect, s, &st), 0);
    assert_int_equal(st.files, 40 * 60 + 6); /* with /a/new.dat of the cache test */
    assert_int_equal(st.dirs, 40 + 5);
    assert_int_equal(s->n, 40 * 60 + 6 + 40 + 5);
    for (int d = 0; d < 40; d += 13) {
        snprintf(rel, sizeof(rel), "/many%02d/f%02d", d, 59);
        assert_non_null(find(s, rel));
    }
    done(s);
}

/* Creates a subdirectory in /deep/leaf when that directory is reported: after its report, as
 * after a watch on it. */
static int collect_and_grow(void *ctx, const struct fu_scan_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(e[i].path, "/deep/leaf"))
            dir("/deep/leaf/late");
    return collect(ctx, e, n);
}

static void test_dirs_only_walk_reports_every_directory_and_lists_no_leaf(void **state)
{
    (void)state;
    dir("/deep");
    dir("/deep/x");
    dir("/deep/x/y");
    dir("/deep/leaf");
    put("/deep/x/y/file", "z");
    struct fu_scan_opts o = {
        .root = root, .subpath = "/deep", .recursive = true, .dirs_only = true, .workers = 2};
    struct fu_scan_stats st = {0};
    struct seen *s = calloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    assert_int_equal(fu_scan(&o, collect_and_grow, s, &st), 0);
    const char *want[] = {"/deep", "/deep/x", "/deep/x/y", "/deep/leaf", "/deep/leaf/late"};
    assert_int_equal(s->n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_true(find(s, want[i])->dir);
    /* /deep/x/y and /deep/leaf/late hold no subdirectory: on a filesystem whose link counts
     * say so, neither is listed (/deep/leaf is: the directory made after its report counts) */
    struct statfs sf;
    assert_int_equal(statfs(root, &sf), 0);
    bool trusted =
        sf.f_type == EXT4_SUPER_MAGIC || sf.f_type == XFS_SUPER_MAGIC || sf.f_type == TMPFS_MAGIC;
    assert_int_equal(st.leaves, trusted ? 2 : 0);
    done(s);
    char p[512];
    snprintf(p, sizeof(p), "%s/deep", root);
    nftw(p, rm, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_reports_entries_relative_to_the_root),
        cmocka_unit_test(test_scan_never_follows_or_reports_symlinks_and_special_files),
        cmocka_unit_test(test_scan_exclude_globs_and_file_pattern),
        cmocka_unit_test(test_scan_files_carry_their_parent_mtime),
        cmocka_unit_test(test_audit_cache_skips_the_files_of_unchanged_directories),
        cmocka_unit_test(test_snapshot_fills_the_cache_that_is_saved_and_loaded),
        cmocka_unit_test(test_scan_of_one_directory_without_recursion),
        cmocka_unit_test(test_scan_stops_when_the_receiver_fails),
        cmocka_unit_test(test_scan_of_a_missing_root_fails),
        cmocka_unit_test(test_scan_many_entries_over_several_workers),
        cmocka_unit_test(test_dirs_only_walk_reports_every_directory_and_lists_no_leaf),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
