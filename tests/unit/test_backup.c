/* Backup and restore of views (fusion/backup.h) on real files: a restored view opens with the
 * backup's state, its journal going on from the snapshot's position, under a new
 * incarnation; a failed backup leaves nothing behind; the manifest parser names what is
 * wrong with a manifest, field by field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "fusion/backup.h"
#include "fusion/journal.h"
#include "fusion/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmpdir(void)
{
    char *d = strdup("/tmp/fustor-backup-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = fu_path_join(path, e->d_name);
        rm_rf(p);
        free(p);
    }
    closedir(d);
    rmdir(path);
}

static char *join(const char *a, const char *b)
{
    char *p = fu_path_join(a, b);
    assert_non_null(p);
    return p;
}

static bool exists(const char *a, const char *b)
{
    char *p = join(a, b);
    bool ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

/* A view named `id` with storage in home/data/views/<id>. */
static void open_view(struct fu_view *v, const char *home, const char *id)
{
    assert_int_equal(fu_view_init(v, id, 2, 3600), 0);
    char sub[64];
    snprintf(sub, sizeof(sub), "data/views/%s", id);
    char *dir = join(home, sub);
    bool damaged;
    assert_int_equal(fu_view_open_storage(v, dir, FU_FSYNC_OFF, 0, 2, &damaged), 0);
    assert_false(damaged);
    free(dir);
}

/* Applies files /<prefix>/f0 .. f<n-1> in one batch. */
static void add_files(struct fu_view *v, const char *prefix, int n)
{
    struct fu_row *rows = calloc((size_t)n, sizeof(*rows));
    struct fu_buf paths = FU_BUF_INIT;
    for (int i = 0; i < n; i++) {
        rows[i] = (struct fu_row){.op = FU_ROW_UPSERT,
                                  .src = FU_SRC_REALTIME,
                                  .atomic = true,
                                  .has_mtime = true,
                                  .size = (uint64_t)i,
                                  .mtime = 1000 + i,
                                  .ctime = 1000 + i};
        rows[i].path_off = paths.len;
        fu_buf_printf(&paths, "/%s/f%d", prefix, i);
        rows[i].path_len = paths.len - rows[i].path_off;
        fu_buf_putc(&paths, '\0');
    }
    uint64_t jpos = 0;
    assert_int_equal(fu_view_apply(v, rows, (size_t)n, paths.data, 2000, 0, "a1", "/mnt", NULL, 0,
                                   "p", 0, &jpos),
                     n);
    assert_int_equal(fu_view_durable(v, jpos), 0);
    free(rows);
    fu_buf_free(&paths);
}

static char *read_text(const char *dir, const char *name)
{
    char *p = join(dir, name);
    struct fu_buf b = FU_BUF_INIT;
    int rc = fu_read_file(p, 1 << 20, &b);
    free(p);
    if (rc < 0) {
        fu_buf_free(&b);
        return NULL;
    }
    return b.data ? fu_buf_detach(&b) : strdup("");
}

static void test_a_restored_view_opens_with_the_backup_and_its_journal_goes_on(void **state)
{
    (void)state;
    char *home = tmpdir(), *home2 = tmpdir(), *base = tmpdir();
    char *dir = join(base, "backup");
    struct fu_view v;
    open_view(&v, home, "v");
    add_files(&v, "a", 50);
    struct fu_buf manifest = FU_BUF_INIT;
    char err[512] = "";
    struct fu_view *views[] = {&v};
    assert_int_equal(fu_backup_take(views, 1, dir, &manifest, err, sizeof(err)), 0);
    uint64_t pos = v.snap_pos;
    uint32_t entries = fu_tree_count(&v.tree); /* the root, /a and its 50 files */
    assert_int_equal(entries, 52);
    add_files(&v, "after", 5); /* not in the backup */
    char old_inc[33];
    fu_view_incarnation(&v, old_inc);
    fu_view_free(&v);

    /* The manifest, on disk and returned, names the copy. */
    struct fu_backup_manifest m;
    char *text = read_text(dir, "MANIFEST.json");
    assert_non_null(text);
    assert_string_equal(text, fu_buf_str(&manifest));
    assert_int_equal(fu_backup_manifest_parse(text, strlen(text), &m, err, sizeof(err)), 0);
    assert_int_equal(m.format, FU_BACKUP_FORMAT);
    assert_int_equal(m.nviews, 1);
    assert_string_equal(m.views[0].view_id, "v");
    assert_int_equal(m.views[0].position, pos);
    assert_int_equal(m.views[0].entries, entries);
    char *copy = join(dir, m.views[0].file);
    struct stat st;
    assert_int_equal(stat(copy, &st), 0);
    assert_int_equal((uint64_t)st.st_size, m.views[0].bytes);
    free(copy);
    fu_backup_manifest_free(&m);
    free(text);

    struct fu_strv done = {0};
    assert_int_equal(fu_backup_restore(home2, dir, &done, err, sizeof(err)), 0);
    assert_true(done.n >= 3);
    assert_non_null(strstr(done.v[1], "had no data directory before"));
    fu_strv_free(&done);
    char *vdir = join(home2, "data/views/v");
    assert_false(exists(vdir, "incarnation"));

    /* Opens at the snapshot's position, no journal to replay, a new incarnation. */
    open_view(&v, home2, "v");
    assert_true(v.restored);
    assert_int_equal(v.snap_pos, pos);
    assert_int_equal(v.replayed, 0);
    assert_int_equal(fu_journal_end(v.journal), pos);
    assert_int_equal(fu_tree_count(&v.tree), entries);
    char inc[33];
    fu_view_incarnation(&v, inc);
    assert_string_not_equal(inc, old_inc);
    assert_true(exists(vdir, "incarnation"));
    add_files(&v, "b", 3);
    uint64_t end = fu_journal_end(v.journal);
    assert_true(end > pos);
    fu_view_free(&v);

    /* And a restart replays what came after the restore. */
    open_view(&v, home2, "v");
    assert_int_equal(v.replayed, 1);
    assert_int_equal(fu_journal_end(v.journal), end);
    assert_int_equal(fu_tree_count(&v.tree), entries + 4); /* /b and its 3 files */
    fu_view_incarnation(&v, old_inc);
    assert_string_equal(inc, old_inc);
    fu_view_free(&v);

    /* A second restore sets the restored directory aside. */
    assert_int_equal(fu_backup_restore(home2, dir, &done, err, sizeof(err)), 0);
    assert_non_null(strstr(done.v[1], "its previous data is kept in"));
    assert_non_null(strstr(done.v[1], "data/views/v.before-restore-"));
    fu_strv_free(&done);

    fu_buf_free(&manifest);
    free(vdir);
    rm_rf(home);
    rm_rf(home2);
    rm_rf(base);
    free(dir);
    free(home);
    free(home2);
    free(base);
}

static void test_a_backup_goes_only_into_an_absent_or_empty_dir(void **state)
{
    (void)state;
    char *home = tmpdir(), *dir = tmpdir();
    struct fu_view v;
    open_view(&v, home, "v");
    struct fu_view *views[] = {&v};
    struct fu_buf manifest = FU_BUF_INIT;
    char err[512];
    char *f = join(dir, "x");
    assert_int_equal(fu_write_file_atomic(f, "x", 1, 0600), 0);
    assert_int_equal(fu_backup_take(views, 1, dir, &manifest, err, sizeof(err)), -ENOTEMPTY);
    assert_non_null(strstr(err, "is not empty"));
    assert_int_equal(fu_backup_take(views, 1, f, &manifest, err, sizeof(err)), -ENOTDIR);
    assert_int_equal(fu_backup_take(views, 1, "relative", &manifest, err, sizeof(err)), -EINVAL);
    unlink(f);
    assert_int_equal(fu_backup_take(views, 1, dir, &manifest, err, sizeof(err)), 0); /* empty */
    assert_true(exists(dir, "MANIFEST.json"));
    fu_view_free(&v);
    fu_buf_free(&manifest);
    free(f);
    rm_rf(home);
    rm_rf(dir);
    free(home);
    free(dir);
}

static void test_a_failed_backup_leaves_nothing_behind(void **state)
{
    (void)state;
    char *home = tmpdir(), *base = tmpdir();
    char *dir = join(base, "new/backup");
    struct fu_view v, mem;
    open_view(&v, home, "v");
    add_files(&v, "a", 3);
    struct fu_buf manifest = FU_BUF_INIT;
    char err[512];
    /* The same view twice: the second one's directory exists; the first's copy goes. */
    struct fu_view *twice[] = {&v, &v};
    assert_int_equal(fu_backup_take(twice, 2, dir, &manifest, err, sizeof(err)), -EEXIST);
    assert_non_null(strstr(err, "view v: cannot create"));
    assert_int_equal(access(dir, F_OK), -1);
    /* A view without storage: refused before anything is written. */
    assert_int_equal(fu_view_init(&mem, "mem", 2, 3600), 0);
    struct fu_view *views[] = {&v, &mem};
    assert_int_equal(fu_backup_take(views, 2, dir, &manifest, err, sizeof(err)), -ENOTSUP);
    assert_non_null(strstr(err, "view mem has no storage"));
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(fu_backup_take(views, 0, dir, &manifest, err, sizeof(err)), -ENOENT);
    fu_view_free(&mem);
    fu_view_free(&v);
    fu_buf_free(&manifest);
    rm_rf(home);
    rm_rf(base);
    free(dir);
    free(home);
    free(base);
}

/* A manifest with one view, `view` replacing its fields when given. */
static int parse(const char *top, const char *view, char *err, size_t errlen)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"fustor_backup\": 1, \"fustor_version\": \"0.1.0\", \"snapshot_format\": 1, "
             "\"state_format\": 1, %s\"views\": [%s]}",
             top,
             view ? view
                  : "{\"view_id\": \"v\", \"file\": \"v/snapshot-00000000000000ff.fsnap\", "
                    "\"position\": 255, \"entries\": 3, \"bytes\": 99, \"created_at\": 1.5}");
    struct fu_backup_manifest m;
    int rc = fu_backup_manifest_parse(text, strlen(text), &m, err, errlen);
    if (rc == 0)
        fu_backup_manifest_free(&m);
    return rc;
}

static void expect_error(const char *top, const char *view, const char *needle)
{
    char err[512] = "";
    assert_int_equal(parse(top, view, err, sizeof(err)), -EINVAL);
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_the_manifest_parser_names_what_is_wrong(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(parse("", NULL, err, sizeof(err)), 0);
    assert_int_equal(parse("\"later_field\": {\"x\": [1]}, ", NULL, err, sizeof(err)), 0);
    expect_error("\"fustor_backup\": 1.5, ", NULL, "fustor_backup must be a non-negative integer");
    expect_error("\"views\": [], ", NULL, "views is given twice");
    expect_error("", "{\"view_id\": \"v\"}", "views[0] lacks file");
    expect_error("", "{\"view_id\": \"v\", \"file\": \"v/snapshot-00000000000000ff.fsnap\"}",
                 "views[0] lacks position");
    expect_error("", "7", "views[0] must be an object, not a number");
    expect_error("", "{\"view_id\": \"..\", \"file\": \"x\", \"position\": 1}",
                 "views[0].view_id is not a view id");
    expect_error("", "{\"view_id\": \"a/b\", \"file\": \"x\", \"position\": 1}",
                 "views[0].view_id is not a view id");
    expect_error("", "{\"view_id\": \"v\\u0000\", \"file\": \"x\", \"position\": 1}",
                 "without NUL bytes");
    expect_error("",
                 "{\"view_id\": \"v\", \"file\": \"../v/snapshot-0000000000000001.fsnap\", "
                 "\"position\": 1}",
                 "file must be \"v/snapshot-0000000000000001.fsnap\"");
    expect_error("",
                 "{\"view_id\": \"v\", \"file\": \"v/snapshot-0000000000000001.fsnap\", "
                 "\"position\": 1, \"entries\": \"3\"}",
                 "views[0].entries must be a non-negative integer, not a string");
    expect_error("",
                 "{\"view_id\": \"v\", \"file\": \"v/snapshot-0000000000000001.fsnap\", "
                 "\"position\": 1, \"created_at\": []}",
                 "views[0].created_at must be a number, not an array");
    expect_error("",
                 "{\"view_id\": \"v\", \"file\": \"v/snapshot-0000000000000001.fsnap\", "
                 "\"position\": 1}, {\"view_id\": \"v\", \"file\": "
                 "\"v/snapshot-0000000000000001.fsnap\", \"position\": 1}",
                 "view v is listed twice");
    expect_error("", "", "views is empty");
    const char *bad[] = {"", "[]", "{", "{\"views\": [}", "{} {}", "nul"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct fu_backup_manifest m;
        assert_int_equal(fu_backup_manifest_parse(bad[i], strlen(bad[i]), &m, err, sizeof(err)),
                         -EINVAL);
        assert_int_equal(m.nviews, 0);
    }
    /* Truncations of a good manifest never crash and never parse. */
    char text[512];
    snprintf(text, sizeof(text),
             "{\"fustor_backup\": 1, \"snapshot_format\": 1, \"state_format\": 1, \"views\": "
             "[{\"view_id\": \"v\", \"file\": \"v/snapshot-0000000000000001.fsnap\", "
             "\"position\": 1}]}");
    size_t n = strlen(text);
    for (size_t len = 0; len < n; len++) {
        struct fu_backup_manifest m;
        assert_int_equal(fu_backup_manifest_parse(text, len, &m, err, sizeof(err)), -EINVAL);
    }
    struct fu_backup_manifest m;
    assert_int_equal(fu_backup_manifest_parse(text, n, &m, err, sizeof(err)), 0);
    fu_backup_manifest_free(&m);
}

int main(void)
{
    fu_log_set_level(FU_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_restored_view_opens_with_the_backup_and_its_journal_goes_on),
        cmocka_unit_test(test_a_backup_goes_only_into_an_absent_or_empty_dir),
        cmocka_unit_test(test_a_failed_backup_leaves_nothing_behind),
        cmocka_unit_test(test_the_manifest_parser_names_what_is_wrong),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
