/* The view journal on real files: records come back in order with their positions; a torn
 * tail at any byte is cut off; damage in the middle stops the replay and sets the rest aside;
 * a missing segment is a gap; rotation and dropping keep replays from a snapshot's position
 * right; concurrent appenders share syncs and all return; CRC-32C matches its test vector. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/crc32c.h"
#include "fusion/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct seen {
    uint64_t pos[4096];
    char text[4096][32];
    size_t n;
};

static int collect(void *ctx, const struct fu_journal_rec *r)
{
    struct seen *s = ctx;
    assert_true(s->n < 4096);
    assert_int_equal(r->type, 7);
    s->pos[s->n] = r->pos;
    snprintf(s->text[s->n], sizeof(s->text[0]), "%.*s", (int)r->len, (const char *)r->data);
    s->n++;
    return 0;
}

static char *tmpdir(void)
{
    char *d = strdup("/tmp/fustor-journal-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmdir_all(char *d)
{
    DIR *dir = opendir(d);
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", d, e->d_name);
        unlink(p);
    }
    if (dir)
        closedir(dir);
    rmdir(d);
    free(d);
}

static struct fu_journal *open_replay(const char *dir, uint64_t from, struct seen *s,
                                      struct fu_journal_replay_info *info)
{
    struct fu_journal *j;
    assert_int_equal(fu_journal_open(&j, dir, FU_FSYNC_BATCH, 0), 0);
    memset(s, 0, sizeof(*s));
    assert_int_equal(fu_journal_replay(j, from, collect, s, info), 0);
    return j;
}

static uint64_t append(struct fu_journal *j, const char *text)
{
    uint64_t end = 0;
    assert_int_equal(fu_journal_append(j, 7, text, strlen(text), &end), 0);
    assert_int_equal(fu_journal_wait(j, end), 0);
    return end;
}

static size_t count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        n += l > s && !strcmp(e->d_name + l - s, suffix);
    }
    if (d)
        closedir(d);
    return n;
}

/* The one segment file of a journal (fails when there are several). */
static void only_segment(const char *dir, char *out, size_t n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "journal-", 8) && strstr(e->d_name, ".log") &&
            !strstr(e->d_name, "corrupt") && ++found)
            snprintf(out, n, "%s/%s", dir, e->d_name);
    closedir(d);
    assert_int_equal(found, 1);
}

static void test_crc32c_vector_and_paths_agree(void **state)
{
    (void)state;
    assert_int_equal(fu_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(fu_crc32c_portable(0, "123456789", 9), 0xE3069283u);
    unsigned char buf[1000];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    for (size_t n = 0; n < sizeof(buf); n += 37)
        assert_int_equal(fu_crc32c(0, buf, n), fu_crc32c_portable(0, buf, n));
    /* Incremental: a then b is the whole. */
    assert_int_equal(fu_crc32c(fu_crc32c(0, buf, 100), buf + 100, 900), fu_crc32c(0, buf, 1000));
}

static void test_records_come_back_in_order_across_restarts(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct seen s;
    struct fu_journal_replay_info info;
    struct fu_journal *j = open_replay(dir, 0, &s, &info);
    assert_int_equal(s.n, 0);
    uint64_t e1 = append(j, "one"), e2 = append(j, "two");
    assert_int_equal(e1, 9 + 3);
    assert_int_equal(e2, e1 + 9 + 3);
    fu_journal_close(j);
    j = open_replay(dir, 0, &s, &info);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.text[0], "one");
    assert_string_equal(s.text[1], "two");
    assert_int_equal(s.pos[1], e1);
    assert_int_equal(info.end, e2);
    assert_false(info.corrupt);
    uint64_t e3 = append(j, "three"); /* continues after a restart */
    assert_int_equal(e3, e2 + 9 + 5);
    fu_journal_close(j);
    j = open_replay(dir, 0, &s, &info);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.text[2], "three");
    fu_journal_close(j);
    rmdir_all(dir);
}

static void test_a_torn_tail_at_any_byte_is_cut_off(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct seen s;
    struct fu_journal_replay_info info;
    struct fu_journal *j = open_replay(dir, 0, &s, &info);
    append(j, "first");
    uint64_t good = append(j, "second");
    append(j, "the last record");
    fu_journal_close(j);
    char seg[600];
    only_segment(dir, seg, sizeof(seg));
    struct stat st;
    assert_int_equal(stat(seg, &st), 0);
    char *copy = malloc((size_t)st.st_size);
    FILE *f = fopen(seg, "rb");
    assert_int_equal(fread(copy, 1, (size_t)st.st_size, f), (size_t)st.st_size);
    fclose(f);
    size_t last = 32 + good; /* the last record's offset in the file */
    for (size_t cut = last + 1; cut < (size_t)st.st_size; cut++) {
        f = fopen(seg, "wb");
        fwrite(copy, 1, cut, f);
        fclose(f);
        j = open_replay(dir, 0, &s, &info);
        assert_int_equal(s.n, 2);
        assert_false(info.corrupt);
        assert_int_equal(info.torn_bytes, cut - last);
        assert_int_equal(info.end, good);
        fu_journal_close(j);
        /* Cut for good: the next open finds a clean journal, in two segments now. */
        j = open_replay(dir, 0, &s, &info);
        assert_int_equal(s.n, 2);
        assert_int_equal(info.torn_bytes, 0);
        fu_journal_close(j);
        rmdir_all(dir);
        dir = tmpdir();
        char seg2[600];
        snprintf(seg2, sizeof(seg2), "%s/%s", dir, strrchr(seg, '/') + 1);
        snprintf(seg, sizeof(seg), "%s", seg2);
    }
    /* A flipped byte in the last record's payload, at the very end: torn too. */
    copy[st.st_size - 1] ^= 0x55;
    f = fopen(seg, "wb");
    fwrite(copy, 1, (size_t)st.st_size, f);
    fclose(f);
    j = open_replay(dir, 0, &s, &info);
    assert_int_equal(s.n, 2);
    assert_false(info.corrupt);
    fu_journal_close(j);
    free(copy);
    rmdir_all(dir);
}

static void test_damage_in_the_middle_stops_the_replay_and_appends_go_on(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct seen s;
    struct fu_journal_replay_info info;
    struct fu_journal *j = open_replay(dir, 0, &s, &info);
    uint64_t e1 = append(j, "aaaa");
    append(j, "bbbb");
    append(j, "cccc");
    fu_journal_close(j);
    char seg[600];
    only_segment(dir, seg, sizeof(seg));
    int fd = open(seg, O_RDWR);
    unsigned char x = 'Z';
    assert_int_equal(pwrite(fd, &x, 1, (off_t)(32 + e1 + 9 + 1)), 1); /* inside "bbbb" */
    close(fd);
    j = open_replay(dir, 0, &s, &info);
    assert_int_equal(s.n, 1);
    assert_true(info.corrupt);
    assert_int_equal(info.corrupt_pos, e1);
    assert_non_null(strstr(info.why, "CRC"));
    assert_int_equal(info.end, e1);
    assert_int_equal(count_files(dir, ".corrupt"), 1);
    uint64_t e = append(j, "dddd");
    assert_int_equal(e, e1 + 13);
    fu_journal_close(j);
    j = open_replay(dir, 0, &s, &info);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.text[1], "dddd");
    assert_false(info.corrupt);
    fu_journal_close(j);
    rmdir_all(dir);
}

static void test_rotation_drop_and_replay_from_a_position(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct seen s;
    struct fu_journal_replay_info info;
    struct fu_journal *j = open_replay(dir, 0, &s, &info);
    append(j, "old1");
    append(j, "old2");
    uint64_t pos;
    assert_int_equal(fu_journal_rotate(j, &pos), 0);
    assert_int_equal(pos, fu_journal_end(j));
    assert_int_equal(count_files(dir, ".log"), 2);
    append(j, "new1");
    fu_journal_close(j);
    /* From the rotation point: only what came after. */
    j = open_replay(dir, pos, &s, &info);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.text[0], "new1");
    assert_int_equal(fu_journal_drop_before(j, pos), 1);
    fu_journal_close(j);
    j = open_replay(dir, pos, &s, &info);
    assert_int_equal(s.n, 1);
    assert_false(info.corrupt);
    fu_journal_close(j);
    /* Without the snapshot's position, the dropped start is a gap: nothing replays. */
    j = open_replay(dir, 0, &s, &info);
    assert_int_equal(s.n, 0);
    assert_true(info.corrupt);
    assert_non_null(strstr(info.why, "missing segment"));
    fu_journal_close(j);
    rmdir_all(dir);
}

static void test_a_newer_format_is_refused(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct seen s;
    struct fu_journal_replay_info info;
    struct fu_journal *j = open_replay(dir, 0, &s, &info);
    append(j, "x");
    fu_journal_close(j);
    char seg[600];
    only_segment(dir, seg, sizeof(seg));
    unsigned char h[32];
    int fd = open(seg, O_RDWR);
    assert_int_equal(pread(fd, h, 32, 0), 32);
    h[8] = FU_JOURNAL_FORMAT + 1;
    uint32_t c = fu_crc32c(0, h, 24);
    memcpy(h + 24, &c, 4); /* little-endian hosts */
    assert_int_equal(pwrite(fd, h, 32, 0), 32);
    close(fd);
    assert_int_equal(fu_journal_open(&j, dir, FU_FSYNC_BATCH, 0), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(fu_journal_replay(j, 0, collect, &s, &info), -EPROTO);
    fu_journal_close(j);
    assert_int_equal(count_files(dir, ".log"), 1); /* left as it was */
    rmdir_all(dir);
}

struct appender {
    struct fu_journal *j;
    int id;
};

static void *appender_main(void *arg)
{
    struct appender *a = arg;
    for (int i = 0; i < 200; i++) {
        char t[32];
        int n = snprintf(t, sizeof(t), "%d:%d", a->id, i);
        uint64_t end;
        if (fu_journal_append(a->j, 7, t, (size_t)n, &end) || fu_journal_wait(a->j, end))
            return (void *)1;
    }
    return NULL;
}

static void test_concurrent_appenders_share_syncs_and_keep_their_order(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct seen s;
    struct fu_journal_replay_info info;
    struct fu_journal *j = open_replay(dir, 0, &s, &info);
    pthread_t t[8];
    struct appender a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = (struct appender){j, i};
        pthread_create(&t[i], NULL, appender_main, &a[i]);
    }
    for (int i = 0; i < 8; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    fu_journal_close(j);
    j = open_replay(dir, 0, &s, &info);
    assert_int_equal(s.n, 1600);
    int next[8] = {0};
    for (size_t i = 0; i < s.n; i++) { /* each appender's records in its own order */
        int id, k;
        assert_int_equal(sscanf(s.text[i], "%d:%d", &id, &k), 2);
        assert_int_equal(k, next[id]);
        next[id]++;
    }
    fu_journal_close(j);
    rmdir_all(dir);
}

/* Records acknowledged before their sync (a walk's batches): a kick starts their write-back
 * but does not call them durable; the wait that follows does. With `fsync: off` the synced
 * position is unknown and a kick does nothing. */
static void test_a_kick_writes_back_and_only_a_wait_syncs(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct seen s;
    struct fu_journal_replay_info info;
    struct fu_journal *j = open_replay(dir, 0, &s, &info);
    uint64_t synced = 1, first = append(j, "first");
    assert_true(fu_journal_synced(j, &synced));
    assert_int_equal(synced, first);
    size_t big = 1u << 20;
    char *blob = malloc(big);
    assert_non_null(blob);
    memset(blob, 'x', big);
    uint64_t end = 0;
    for (size_t done = 0; done <= FU_JOURNAL_KICK_BYTES; done += big) {
        assert_int_equal(fu_journal_append(j, 7, blob, big, &end), 0);
        fu_journal_kick(j); /* below the threshold at first, then past it */
        assert_true(fu_journal_synced(j, &synced));
        assert_int_equal(synced, first);
    }
    assert_int_equal(fu_journal_end(j), end);
    assert_int_equal(fu_journal_wait(j, end), 0);
    assert_true(fu_journal_synced(j, &synced));
    assert_int_equal(synced, end);
    fu_journal_close(j);
    j = open_replay(dir, 0, &s, &info);
    assert_int_equal(s.n, (FU_JOURNAL_KICK_BYTES + big) / big + 1);
    assert_int_equal(info.end, end);
    fu_journal_close(j);
    rmdir_all(dir);

    dir = tmpdir();
    assert_int_equal(fu_journal_open(&j, dir, FU_FSYNC_OFF, 0), 0);
    assert_int_equal(fu_journal_replay(j, 0, collect, &s, &info), 0);
    assert_int_equal(fu_journal_append(j, 7, blob, big, &end), 0);
    fu_journal_kick(j);
    synced = 42;
    assert_false(fu_journal_synced(j, &synced));
    assert_int_equal(synced, 42);
    fu_journal_close(j);
    rmdir_all(dir);
    free(blob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vector_and_paths_agree),
        cmocka_unit_test(test_records_come_back_in_order_across_restarts),
        cmocka_unit_test(test_a_torn_tail_at_any_byte_is_cut_off),
        cmocka_unit_test(test_damage_in_the_middle_stops_the_replay_and_appends_go_on),
        cmocka_unit_test(test_rotation_drop_and_replay_from_a_position),
        cmocka_unit_test(test_a_newer_format_is_refused),
        cmocka_unit_test(test_concurrent_appenders_share_syncs_and_keep_their_order),
        cmocka_unit_test(test_a_kick_writes_back_and_only_a_wait_syncs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
