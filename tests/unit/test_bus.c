/* The event bus of a source: merging of queued rows, overflow per subscriber, cursors and
 * wake-ups. */
#include "agent/bus.h"

#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>

#include <cmocka.h>

static void put(struct fu_bus *b, enum fu_watch_op op, const char *path, uint64_t size)
{
    struct fu_watch_row r = {.op = op,
                             .atomic = true,
                             .path = path,
                             .path_len = strlen(path),
                             .size = size,
                             .mtime = 1.0};
    assert_int_equal(fu_bus_put(b, &r), 0);
}

static void up(struct fu_bus *b, const char *path, uint64_t size)
{
    put(b, FU_WATCH_UPSERT, path, size);
}

static void del(struct fu_bus *b, const char *path)
{
    put(b, FU_WATCH_DELETE, path, 0);
}

/* Rows seen by a peek, as "+path:size" and "-path", joined by spaces. */
struct seen {
    char text[1024];
};

static void collect(void *ctx, const struct fu_watch_row *r)
{
    struct seen *s = ctx;
    size_t n = strlen(s->text);
    if (r->op == FU_WATCH_DELETE)
        snprintf(s->text + n, sizeof(s->text) - n, "%s-%.*s", n ? " " : "", (int)r->path_len,
                 r->path);
    else
        snprintf(s->text + n, sizeof(s->text) - n, "%s+%.*s:%llu", n ? " " : "", (int)r->path_len,
                 r->path, (unsigned long long)r->size);
}

/* Everything queued for s, committed. */
static void drain(struct fu_bus *b, struct fu_bus_sub *s, struct seen *out)
{
    out->text[0] = '\0';
    uint64_t upto;
    fu_bus_peek(b, s, 1000, collect, out, &upto);
    fu_bus_commit(b, s, upto);
}

static void test_repeated_upserts_of_a_path_merge_into_the_newest(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(100);
    struct fu_bus_sub *s = fu_bus_subscribe(b);
    up(b, "/a", 1);
    up(b, "/b", 1);
    up(b, "/a", 2);
    up(b, "/a", 3);
    struct seen seen;
    drain(b, s, &seen);
    assert_string_equal(seen.text, "+/b:1 +/a:3");
    struct fu_bus_stats st;
    fu_bus_stats(b, &st);
    assert_int_equal(st.put, 4);
    assert_int_equal(st.merged, 2);
    fu_bus_unsubscribe(b, s);
    fu_bus_free(b);
}

static void test_a_delete_replaces_a_queued_upsert_at_the_tail(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(100);
    struct fu_bus_sub *s = fu_bus_subscribe(b);
    up(b, "/d", 0);
    up(b, "/d/f", 5);
    del(b, "/d"); /* after its child: the subtree goes */
    struct seen seen;
    drain(b, s, &seen);
    assert_string_equal(seen.text, "+/d/f:5 -/d");
    fu_bus_unsubscribe(b, s);
    fu_bus_free(b);
}

static void test_an_upsert_after_a_delete_is_never_merged_into_it(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(100);
    struct fu_bus_sub *s = fu_bus_subscribe(b);
    /* /d/x exists; /d is removed with its subtree and made again with only /d/y */
    up(b, "/d/x", 1);
    del(b, "/d");
    up(b, "/d", 0);
    up(b, "/d/y", 2);
    struct seen seen;
    drain(b, s, &seen);
    assert_string_equal(seen.text, "+/d/x:1 -/d +/d:0 +/d/y:2");
    fu_bus_unsubscribe(b, s);
    fu_bus_free(b);
}

static void test_a_path_changed_again_after_its_directory_was_remade_goes_last(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(100);
    struct fu_bus_sub *s = fu_bus_subscribe(b);
    up(b, "/d/f", 1);
    del(b, "/d");
    up(b, "/d", 0);
    up(b, "/d/f", 2); /* merged: the old /d/f row would come before the delete */
    struct seen seen;
    drain(b, s, &seen);
    assert_string_equal(seen.text, "-/d +/d:0 +/d/f:2");
    fu_bus_unsubscribe(b, s);
    fu_bus_free(b);
}

static void test_a_full_ring_overflows_only_the_subscribers_that_lag(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(4);
    struct fu_bus_sub *fast = fu_bus_subscribe(b), *slow = fu_bus_subscribe(b);
    char path[16];
    struct seen seen;
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof(path), "/f%d", i);
        up(b, path, (uint64_t)i);
        drain(b, fast, &seen); /* keeps up */
    }
    assert_false(fu_bus_take_overflow(b, fast));
    assert_true(fu_bus_take_overflow(b, slow));
    assert_false(fu_bus_take_overflow(b, slow)); /* told once */
    assert_int_equal(fu_bus_depth(b, slow), 4);
    drain(b, slow, &seen); /* the newest four survive */
    assert_string_equal(seen.text, "+/f2:2 +/f3:3 +/f4:4 +/f5:5");
    struct fu_bus_stats st;
    fu_bus_stats(b, &st);
    assert_int_equal(st.evicted_unsent, 2);
    fu_bus_unsubscribe(b, fast);
    fu_bus_unsubscribe(b, slow);
    fu_bus_free(b);
}

static void test_rows_sent_by_every_subscriber_leave_the_ring(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(100000);
    struct fu_bus_sub *s1 = fu_bus_subscribe(b), *s2 = fu_bus_subscribe(b);
    char path[32];
    for (int i = 0; i < 50000; i++) {
        snprintf(path, sizeof(path), "/f%d", i);
        up(b, path, 1);
    }
    uint64_t upto;
    struct seen seen = {""}; /* only the first rows fit: enough */
    while (fu_bus_peek(b, s1, 1000, collect, &seen, &upto) > 0) {
        seen.text[0] = '\0';
        fu_bus_commit(b, s1, upto);
    }
    struct fu_bus_stats st;
    fu_bus_stats(b, &st);
    assert_int_equal(st.held, 50000); /* s2 has not sent them yet */
    fu_bus_unsubscribe(b, s2);        /* a pipe that stops lets them go too */
    fu_bus_stats(b, &st);
    assert_int_equal(st.held, 0);
    assert_int_equal(st.evicted_unsent, 0);
    up(b, "/f7", 2); /* the path index let go as well: a new row, not a merge */
    fu_bus_stats(b, &st);
    assert_int_equal(st.merged, 0);
    drain(b, s1, &seen);
    assert_string_equal(seen.text, "+/f7:2");
    fu_bus_unsubscribe(b, s1);
    fu_bus_free(b);
}

static void test_a_merge_into_the_oldest_row_of_a_full_ring_loses_nothing(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(3);
    struct fu_bus_sub *s = fu_bus_subscribe(b);
    up(b, "/a", 1);
    up(b, "/b", 1);
    up(b, "/c", 1);
    up(b, "/a", 2); /* full: the oldest row is /a itself, merged rather than lost */
    assert_false(fu_bus_take_overflow(b, s));
    struct seen seen;
    drain(b, s, &seen);
    assert_string_equal(seen.text, "+/b:1 +/c:1 +/a:2");
    fu_bus_unsubscribe(b, s);
    fu_bus_free(b);
}

static void test_merged_rows_make_room_without_an_overflow(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(4);
    struct fu_bus_sub *s = fu_bus_subscribe(b);
    for (int i = 0; i < 50; i++)
        up(b, "/hot", (uint64_t)i); /* one file written over and over */
    assert_false(fu_bus_take_overflow(b, s));
    struct seen seen;
    drain(b, s, &seen);
    assert_string_equal(seen.text, "+/hot:49");
    fu_bus_unsubscribe(b, s);
    fu_bus_free(b);
}

static void test_rows_stay_until_committed_and_a_commit_never_goes_back(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(8);
    struct fu_bus_sub *s = fu_bus_subscribe(b);
    up(b, "/a", 1);
    up(b, "/b", 1);
    struct seen seen = {""};
    uint64_t upto, first;
    assert_int_equal(fu_bus_peek(b, s, 1, collect, &seen, &first), 1);
    assert_string_equal(seen.text, "+/a:1");
    seen.text[0] = '\0';
    assert_int_equal(fu_bus_peek(b, s, 10, collect, &seen, &upto), 2); /* not sent yet */
    assert_string_equal(seen.text, "+/a:1 +/b:1");
    fu_bus_commit(b, s, upto);
    fu_bus_commit(b, s, first); /* a late, smaller commit */
    assert_int_equal(fu_bus_depth(b, s), 0);
    fu_bus_unsubscribe(b, s);
    fu_bus_free(b);
}

static void test_a_row_being_sent_when_merged_is_sent_again_in_its_new_state(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(8);
    struct fu_bus_sub *s = fu_bus_subscribe(b);
    up(b, "/a", 1);
    struct seen seen = {""};
    uint64_t upto;
    fu_bus_peek(b, s, 10, collect, &seen, &upto); /* in flight */
    up(b, "/a", 2);
    fu_bus_commit(b, s, upto);
    drain(b, s, &seen);
    assert_string_equal(seen.text, "+/a:2");
    fu_bus_unsubscribe(b, s);
    fu_bus_free(b);
}

static void test_a_new_subscriber_reads_only_what_comes_after_it(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(8);
    struct fu_bus_sub *s1 = fu_bus_subscribe(b);
    up(b, "/old", 1);
    struct fu_bus_sub *s2 = fu_bus_subscribe(b);
    up(b, "/new", 1);
    struct seen seen;
    drain(b, s2, &seen);
    assert_string_equal(seen.text, "+/new:1");
    drain(b, s1, &seen);
    assert_string_equal(seen.text, "+/old:1 +/new:1");
    fu_bus_unsubscribe(b, s1);
    fu_bus_unsubscribe(b, s2);
    fu_bus_free(b);
}

static bool readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static void test_publish_and_loss_wake_the_subscribers(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(8);
    struct fu_bus_sub *s = fu_bus_subscribe(b);
    int fd = fu_bus_sub_fd(s);
    eventfd_t v;
    fu_bus_publish(b);
    assert_false(readable(fd)); /* nothing new: no wake-up */
    up(b, "/a", 1);
    fu_bus_publish(b);
    assert_true(readable(fd));
    eventfd_read(fd, &v);
    fu_bus_lost(b);
    assert_true(readable(fd));
    assert_true(fu_bus_take_overflow(b, s));
    eventfd_read(fd, &v);
    fu_bus_wake_all(b);
    assert_true(readable(fd));
    assert_false(fu_bus_take_overflow(b, s));
    fu_bus_unsubscribe(b, s);
    fu_bus_free(b);
}

static void test_the_ring_grows_to_its_capacity_and_keeps_order(void **state)
{
    (void)state;
    struct fu_bus *b = fu_bus_new(5000);
    struct fu_bus_sub *s = fu_bus_subscribe(b);
    char path[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(path, sizeof(path), "/f%d", i);
        up(b, path, (uint64_t)i);
    }
    for (int i = 0; i < 3000; i += 2) { /* every other file again: moved to the tail */
        snprintf(path, sizeof(path), "/f%d", i);
        up(b, path, (uint64_t)i + 1);
    }
    assert_false(fu_bus_take_overflow(b, s));
    struct {
        int last_odd, last_even;
        bool ordered;
    } c = {-1, -1, true};
    uint64_t upto;
    struct seen seen;
    size_t total = 0;
    for (;;) { /* row by row, checking the order */
        seen.text[0] = '\0';
        size_t n = fu_bus_peek(b, s, 1, collect, &seen, &upto);
        if (!n)
            break;
        fu_bus_commit(b, s, upto);
        int k;
        unsigned long long size;
        assert_int_equal(sscanf(seen.text, "+/f%d:%llu", &k, &size), 2);
        if (k % 2) { /* odd files first, in order, untouched */
            c.ordered &= c.last_even < 0 && k > c.last_odd && size == (unsigned long long)k;
            c.last_odd = k;
        } else {
            c.ordered &= k > c.last_even && size == (unsigned long long)k + 1;
            c.last_even = k;
        }
        total++;
    }
    assert_true(c.ordered);
    assert_int_equal(total, 3000);
    fu_bus_unsubscribe(b, s);
    fu_bus_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repeated_upserts_of_a_path_merge_into_the_newest),
        cmocka_unit_test(test_a_delete_replaces_a_queued_upsert_at_the_tail),
        cmocka_unit_test(test_an_upsert_after_a_delete_is_never_merged_into_it),
        cmocka_unit_test(test_a_path_changed_again_after_its_directory_was_remade_goes_last),
        cmocka_unit_test(test_a_full_ring_overflows_only_the_subscribers_that_lag),
        cmocka_unit_test(test_rows_sent_by_every_subscriber_leave_the_ring),
        cmocka_unit_test(test_a_merge_into_the_oldest_row_of_a_full_ring_loses_nothing),
        cmocka_unit_test(test_merged_rows_make_room_without_an_overflow),
        cmocka_unit_test(test_rows_stay_until_committed_and_a_commit_never_goes_back),
        cmocka_unit_test(test_a_row_being_sent_when_merged_is_sent_again_in_its_new_state),
        cmocka_unit_test(test_a_new_subscriber_reads_only_what_comes_after_it),
        cmocka_unit_test(test_publish_and_loss_wake_the_subscribers),
        cmocka_unit_test(test_the_ring_grows_to_its_capacity_and_keeps_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
