/* The agent's on-disk spool of realtime rows, as a specification: rows come back in the
 * order they went in, across a reopen; delivered rows and segments go, and an empty spool
 * leaves no file; a torn or damaged record cuts the spool there and says so; the bound
 * refuses appends; a spool written for other settings is dropped. And the pipe setting
 * that bounds it, spool_max_mb. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent/spool.h"
#include "common/config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

struct tmp {
    char root[64];
    char dir[128]; /* the spool's directory: inside root, not created */
};

static void tmp_new(struct tmp *t)
{
    snprintf(t->root, sizeof(t->root), "/tmp/fu-test-spool-XXXXXX");
    assert_non_null(mkdtemp(t->root));
    snprintf(t->dir, sizeof(t->dir), "%s/p.spool", t->root);
}

static void tmp_free(struct tmp *t)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->root);
    assert_int_equal(system(cmd), 0);
}

static struct fu_spool *open_spool(const struct tmp *t, const char *sig, uint64_t max, uint64_t seg,
                                   struct fu_spool_info *info)
{
    struct fu_spool *s = NULL;
    assert_int_equal(fu_spool_open(&s, t->dir, sig, max, seg, info), 0);
    assert_non_null(s);
    return s;
}

/* Row i: an upsert of /d/f<i> of size i, every fifth a delete, every third a directory. */
static void append_row(struct fu_spool *s, int i)
{
    char path[32];
    snprintf(path, sizeof(path), "/d/f%d", i);
    struct fu_watch_row r = {
        .op = i % 5 == 4 ? FU_WATCH_DELETE : FU_WATCH_UPSERT,
        .atomic = i % 2 == 0,
        .is_dir = i % 3 == 0,
        .path = path,
        .path_len = strlen(path),
        .size = (uint64_t)i * 1000003,
        .mtime = 1700000000.25 + i,
        .ctime = 1600000000.5 + i,
    };
    assert_int_equal(fu_spool_append(s, &r), 0);
}

struct seen {
    int n;
    int first; /* the row number expected next */
};

/* Checks each row against append_row's, in order. */
static void check_row(void *ctx, const struct fu_watch_row *r)
{
    struct seen *v = ctx;
    int i = v->first + v->n++;
    char path[32];
    snprintf(path, sizeof(path), "/d/f%d", i);
    assert_int_equal(r->path_len, strlen(path));
    assert_memory_equal(r->path, path, r->path_len);
    assert_int_equal(r->path[r->path_len], '\0'); /* as the bus gives paths */
    assert_int_equal(r->op, i % 5 == 4 ? FU_WATCH_DELETE : FU_WATCH_UPSERT);
    assert_int_equal(r->atomic, i % 2 == 0);
    assert_int_equal(r->is_dir, i % 3 == 0);
    assert_int_equal(r->size, (uint64_t)i * 1000003);
    assert_true(r->mtime == 1700000000.25 + i);
    assert_true(r->ctime == 1600000000.5 + i);
}

/* Reads up to max rows, expecting rows first.. in order; commits them when asked. */
static long read_rows(struct fu_spool *s, size_t max, int first, bool commit)
{
    struct seen v = {0, first};
    struct fu_spool_pos upto;
    long n = fu_spool_peek(s, max, check_row, &v, &upto);
    assert_int_equal(n, v.n);
    assert_int_equal(upto.rows, (uint64_t)n);
    if (commit)
        assert_int_equal(fu_spool_commit(s, &upto), 0);
    return n;
}

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        n += l > sl && !strcmp(e->d_name + l - sl, suffix);
    }
    closedir(d);
    return n;
}

/* The path of the spool's k-th segment file (in name order). */
static void nth_segment(const struct tmp *t, int k, char *out, size_t len)
{
    struct dirent **v;
    int n = scandir(t->dir, &v, NULL, alphasort), seen = 0;
    assert_true(n > 0);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t l = strlen(v[i]->d_name);
        if (l > 4 && !strcmp(v[i]->d_name + l - 4, ".seg") && seen++ == k)
            snprintf(out, len, "%s/%s", t->dir, v[i]->d_name);
        free(v[i]);
    }
    free(v);
    assert_true(out[0]);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* ------------------------------------------------------------ the format */

static void test_an_unused_spool_creates_no_file(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 1 << 20, 0, &info);
    assert_int_equal(info.rows, 0);
    assert_false(info.damaged);
    assert_int_equal(fu_spool_flush(s), 0);
    fu_spool_close(s);
    assert_int_equal(access(t.dir, F_OK), -1);
    tmp_free(&t);
}

static void test_rows_come_back_in_order_and_exactly_after_a_reopen(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 1 << 20, 0, &info);
    for (int i = 0; i < 50; i++)
        append_row(s, i);
    assert_int_equal(fu_spool_rows(s), 50);
    assert_int_equal(fu_spool_flush(s), 0);
    for (int i = 50; i < 60; i++) /* appended, not flushed: close writes them */
        append_row(s, i);
    fu_spool_close(s);

    s = open_spool(&t, "sig", 1 << 20, 0, &info);
    assert_int_equal(info.rows, 60);
    assert_false(info.damaged);
    assert_int_equal(info.bytes, fu_spool_bytes(s));
    assert_int_equal(read_rows(s, 1000, 0, false), 60);
    assert_int_equal(read_rows(s, 7, 0, false), 7); /* a peek does not move the read position */
    fu_spool_close(s);
    tmp_free(&t);
}

static void test_delivered_rows_are_not_read_again_and_an_empty_spool_leaves_no_file(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 1 << 20, 0, &info);
    for (int i = 0; i < 10; i++)
        append_row(s, i);
    assert_int_equal(read_rows(s, 3, 0, true), 3);
    assert_int_equal(fu_spool_rows(s), 7);
    assert_int_equal(read_rows(s, 2, 3, true), 2);
    fu_spool_close(s);

    s = open_spool(&t, "sig", 1 << 20, 0, &info); /* resumes where delivery stopped */
    assert_int_equal(info.rows, 5);
    assert_int_equal(read_rows(s, 100, 5, false), 5);
    append_row(s, 10); /* rows appended after a reopen go behind the others */
    assert_int_equal(read_rows(s, 100, 5, true), 6);
    assert_int_equal(fu_spool_rows(s), 0);
    assert_int_equal(fu_spool_bytes(s), 0);
    assert_int_equal(access(t.dir, F_OK), -1); /* gone, directory and all */
    append_row(s, 0);                          /* and it starts again */
    assert_int_equal(read_rows(s, 100, 0, true), 1);
    fu_spool_close(s);
    assert_int_equal(access(t.dir, F_OK), -1);
    tmp_free(&t);
}

static void test_segments_rotate_and_read_ones_are_deleted(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 1 << 20, 256, &info);
    for (int i = 0; i < 40; i++) {
        append_row(s, i);
        assert_int_equal(fu_spool_flush(s), 0);
    }
    int segs = count_files(t.dir, ".seg");
    assert_true(segs >= 5);
    assert_int_equal(read_rows(s, 30, 0, true), 30);
    int left = count_files(t.dir, ".seg");
    assert_true(left < segs && left >= 1);
    fu_spool_close(s);
    s = open_spool(&t, "sig", 1 << 20, 256, &info);
    assert_int_equal(info.rows, 10);
    assert_int_equal(read_rows(s, 100, 30, true), 10);
    assert_int_equal(access(t.dir, F_OK), -1);
    fu_spool_close(s);
    tmp_free(&t);
}

static void test_without_its_head_a_spool_is_read_from_its_oldest_row(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 1 << 20, 0, &info);
    for (int i = 0; i < 10; i++)
        append_row(s, i);
    assert_int_equal(read_rows(s, 4, 0, true), 4);
    fu_spool_close(s);
    char head[160];
    snprintf(head, sizeof(head), "%s/head", t.dir);
    int fd = open(head, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "x", 1, 3), 1); /* its CRC no longer matches */
    close(fd);
    s = open_spool(&t, "sig", 1 << 20, 0, &info);
    assert_false(info.damaged); /* rows sent twice, in order, are harmless */
    assert_int_equal(info.rows, 10);
    assert_int_equal(read_rows(s, 100, 0, false), 10);
    fu_spool_close(s);
    tmp_free(&t);
}

/* ------------------------------------------------------------ damage */

static void test_a_torn_tail_is_cut_and_reported(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 1 << 20, 0, &info);
    for (int i = 0; i < 5; i++)
        append_row(s, i);
    fu_spool_close(s);
    char seg[200];
    nth_segment(&t, 0, seg, sizeof(seg));
    off_t size = file_size(seg);
    assert_int_equal(truncate(seg, size - 3), 0); /* the last record is torn */

    s = open_spool(&t, "sig", 1 << 20, 0, &info);
    assert_true(info.damaged);
    assert_non_null(strstr(info.detail, "torn"));
    assert_int_equal(info.rows, 4);
    assert_int_equal(fu_spool_rows(s), 4);
    append_row(s, 4); /* appends go after the cut */
    fu_spool_close(s);

    s = open_spool(&t, "sig", 1 << 20, 0, &info);
    assert_false(info.damaged); /* cut once, clean since */
    assert_int_equal(info.rows, 5);
    assert_int_equal(read_rows(s, 100, 0, false), 5);
    fu_spool_close(s);
    tmp_free(&t);
}

static void test_a_damaged_record_cuts_the_spool_there_with_its_later_segments(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 1 << 20, 200, &info);
    for (int i = 0; i < 30; i++) {
        append_row(s, i);
        assert_int_equal(fu_spool_flush(s), 0);
    }
    fu_spool_close(s);
    int segs = count_files(t.dir, ".seg");
    assert_true(segs >= 3);
    char seg[200];
    nth_segment(&t, 1, seg, sizeof(seg));
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    char c;
    assert_int_equal(pread(fd, &c, 1, file_size(seg) - 1), 1);
    c ^= 0x20; /* a flipped bit in the segment's last path */
    assert_int_equal(pwrite(fd, &c, 1, file_size(seg) - 1), 1);
    close(fd);

    s = open_spool(&t, "sig", 1 << 20, 200, &info);
    assert_true(info.damaged);
    assert_non_null(strstr(info.detail, "CRC"));
    assert_int_equal(count_files(t.dir, ".seg"), 2); /* the later ones are gone */
    uint64_t rows = info.rows;
    assert_true(rows > 0 && rows < 30);
    assert_int_equal(read_rows(s, 100, 0, false), (long)rows); /* what is left is intact */
    fu_spool_close(s);
    tmp_free(&t);
}

static void test_damage_found_while_reading_is_an_error(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 1 << 20, 0, &info);
    for (int i = 0; i < 3; i++)
        append_row(s, i);
    assert_int_equal(fu_spool_flush(s), 0);
    char seg[200];
    nth_segment(&t, 0, seg, sizeof(seg));
    int fd = open(seg, O_RDWR);
    assert_int_equal(pwrite(fd, "\xff", 1, 32 + 8 + 5), 1); /* the first row's size */
    close(fd);
    struct seen v = {0, 0};
    struct fu_spool_pos upto;
    assert_int_equal(fu_spool_peek(s, 10, check_row, &v, &upto), -EBADMSG);
    fu_spool_drop(s);
    assert_int_equal(fu_spool_rows(s), 0);
    assert_int_equal(access(t.dir, F_OK), -1);
    fu_spool_close(s);
    tmp_free(&t);
}

static void test_a_spool_written_for_other_settings_is_dropped(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "0123456789abcdef", 1 << 20, 0, &info);
    append_row(s, 0);
    fu_spool_close(s);
    s = open_spool(&t, "fedcba9876543210", 1 << 20, 0, &info);
    assert_true(info.foreign);
    assert_int_equal(info.rows, 0);
    assert_int_equal(fu_spool_rows(s), 0);
    assert_int_equal(access(t.dir, F_OK), -1);
    fu_spool_close(s);
    tmp_free(&t);
}

static void test_a_segment_whose_header_was_cut_short_by_a_crash_is_not_damage(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 1 << 20, 0, &info);
    append_row(s, 0);
    fu_spool_close(s);
    char path[200];
    snprintf(path, sizeof(path), "%s/00000000000000ff.seg", t.dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0640); /* created, its header half written */
    assert_int_equal(write(fd, "FUSPOOL1sig", 11), 11);
    close(fd);
    s = open_spool(&t, "sig", 1 << 20, 0, &info);
    assert_false(info.damaged);
    assert_int_equal(info.rows, 1);
    assert_int_equal(access(path, F_OK), -1);
    fu_spool_close(s);
    tmp_free(&t);
}

static void test_a_segment_with_a_bad_header_is_damage(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 1 << 20, 100, &info);
    for (int i = 0; i < 6; i++) {
        append_row(s, i);
        assert_int_equal(fu_spool_flush(s), 0);
    }
    fu_spool_close(s);
    assert_true(count_files(t.dir, ".seg") >= 3);
    char seg[200];
    nth_segment(&t, 1, seg, sizeof(seg));
    int fd = open(seg, O_RDWR);
    assert_int_equal(pwrite(fd, "X", 1, 0), 1); /* its magic */
    close(fd);
    s = open_spool(&t, "sig", 1 << 20, 100, &info);
    assert_true(info.damaged);
    assert_non_null(strstr(info.detail, "bad header"));
    assert_int_equal(count_files(t.dir, ".seg"), 1);
    assert_int_equal(read_rows(s, 100, 0, false), (long)info.rows);
    fu_spool_close(s);
    tmp_free(&t);
}

/* ------------------------------------------------------------ the bound */

static void test_the_bound_refuses_appends_past_max_bytes(void **state)
{
    (void)state;
    struct tmp t;
    tmp_new(&t);
    struct fu_spool_info info;
    struct fu_spool *s = open_spool(&t, "sig", 400, 0, &info);
    int i = 0;
    while (i < 100) {
        char path[32];
        snprintf(path, sizeof(path), "/d/f%d", i);
        struct fu_watch_row r = {.op = FU_WATCH_UPSERT, .path = path, .path_len = strlen(path)};
        int rc = fu_spool_append(s, &r);
        if (rc == -ENOSPC)
            break;
        assert_int_equal(rc, 0);
        i++;
    }
    assert_true(i > 3 && i < 100);
    assert_int_equal(fu_spool_rows(s), (uint64_t)i); /* the refused row is not counted */
    assert_int_equal(fu_spool_flush(s), 0);
    assert_true(fu_spool_bytes(s) <= 400);
    char seg[200];
    nth_segment(&t, 0, seg, sizeof(seg));
    assert_true(file_size(seg) <= 400);
    /* delivering rows does not free room until their segment goes: dropping does */
    fu_spool_drop(s);
    assert_int_equal(fu_spool_bytes(s), 0);
    append_row(s, 1);
    fu_spool_close(s);
    tmp_free(&t);
}

/* ------------------------------------------------------------ the setting */

static int load_agent(const char *pipe_extra, struct fu_config *cfg, struct fu_diags *d, char *home,
                      size_t len)
{
    snprintf(home, len, "/tmp/fu-test-spoolcfg-XXXXXX");
    assert_non_null(mkdtemp(home));
    char p[256];
    snprintf(p, sizeof(p), "%s/agent-config", home);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/agent-config/default.yaml", home);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f,
            "sources:\n  s: {driver: fs, uri: /tmp}\n"
            "senders:\n  t: {driver: fusion, uri: 'http://127.0.0.1:1', credential: {key: k}}\n"
            "pipes:\n  p:\n    source: s\n    sender: t\n%s",
            pipe_extra);
    fclose(f);
    fu_diags_init(d);
    return fu_config_load(cfg, FU_CFG_AGENT, home, NULL, d);
}

static void unload(struct fu_config *cfg, struct fu_diags *d, const char *home)
{
    fu_config_free(cfg);
    fu_diags_free(d);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    assert_int_equal(system(cmd), 0);
}

static void test_spool_max_mb_defaults_to_1024_and_takes_fractions_and_zero(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        double want;
    } cases[] = {{"", 1024}, {"    spool_max_mb: 0.25\n", 0.25}, {"    spool_max_mb: 0\n", 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fu_config cfg;
        struct fu_diags d;
        char home[64];
        assert_int_equal(load_agent(cases[i].yaml, &cfg, &d, home, sizeof(home)), 0);
        const struct fu_cfg_apipe *p = cfg.agent.pipes.v;
        assert_true(fabs(p->spool_max_mb - cases[i].want) < 1e-12);
        unload(&cfg, &d, home);
    }
}

static void test_spool_max_mb_out_of_range_names_file_line_col(void **state)
{
    (void)state;
    static const char *const bad[] = {"    spool_max_mb: -1\n", "    spool_max_mb: lots\n",
                                      "    spool_max_mb: 2000000\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct fu_config cfg;
        struct fu_diags d;
        char home[64];
        assert_int_equal(load_agent(bad[i], &cfg, &d, home, sizeof(home)), -EINVAL);
        assert_true(d.n >= 1);
        char *msg = fu_diag_format(&d.v[0]);
        if (!strstr(msg, "default.yaml:9:19:") || !strstr(msg, "spool_max_mb") ||
            !strstr(msg, "a number from 0 to 1000000"))
            fail_msg("unexpected diagnostic: %s", msg);
        free(msg);
        unload(&cfg, &d, home);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_unused_spool_creates_no_file),
        cmocka_unit_test(test_rows_come_back_in_order_and_exactly_after_a_reopen),
        cmocka_unit_test(test_delivered_rows_are_not_read_again_and_an_empty_spool_leaves_no_file),
        cmocka_unit_test(test_segments_rotate_and_read_ones_are_deleted),
        cmocka_unit_test(test_without_its_head_a_spool_is_read_from_its_oldest_row),
        cmocka_unit_test(test_a_torn_tail_is_cut_and_reported),
        cmocka_unit_test(test_a_damaged_record_cuts_the_spool_there_with_its_later_segments),
        cmocka_unit_test(test_damage_found_while_reading_is_an_error),
        cmocka_unit_test(test_a_spool_written_for_other_settings_is_dropped),
        cmocka_unit_test(test_a_segment_whose_header_was_cut_short_by_a_crash_is_not_damage),
        cmocka_unit_test(test_a_segment_with_a_bad_header_is_damage),
        cmocka_unit_test(test_the_bound_refuses_appends_past_max_bytes),
        cmocka_unit_test(test_spool_max_mb_defaults_to_1024_and_takes_fractions_and_zero),
        cmocka_unit_test(test_spool_max_mb_out_of_range_names_file_line_col),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
