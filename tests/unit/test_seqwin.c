/* Fusion's window of applied batch numbers per session, as a specification: in-order and
 * out-of-order numbers, the contiguous mark, the slide past the window and what it counts
 * as applied, and the list of batches being applied. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fusion/seqwin.h"

#include <errno.h>
#include <string.h>

struct win {
    uint64_t done, bits[FU_SEQWIN_WORDS];
};

static bool applied(const struct win *w, uint64_t seq)
{
    return fu_seqwin_applied(w->done, w->bits, seq);
}

static void mark(struct win *w, uint64_t seq)
{
    fu_seqwin_mark(&w->done, w->bits, seq);
}

static void test_nothing_is_applied_at_first(void **state)
{
    (void)state;
    struct win w = {0};
    assert_false(applied(&w, 1));
    assert_false(applied(&w, FU_SEQWIN_SIZE));
    assert_false(applied(&w, UINT64_MAX));
}

static void test_numbers_in_order_move_the_contiguous_mark(void **state)
{
    (void)state;
    struct win w = {0};
    for (uint64_t s = 1; s <= 10000; s++) {
        assert_false(applied(&w, s));
        mark(&w, s);
        assert_true(applied(&w, s));
        assert_int_equal(w.done, s);
    }
    for (int i = 0; i < FU_SEQWIN_WORDS; i++) /* nothing is left marked above it */
        assert_int_equal(w.bits[i], 0);
    mark(&w, 5); /* marking an old one again changes nothing */
    assert_int_equal(w.done, 10000);
}

static void test_out_of_order_numbers_are_kept_until_the_gap_fills(void **state)
{
    (void)state;
    struct win w = {0};
    mark(&w, 3);
    mark(&w, 5);
    assert_int_equal(w.done, 0);
    assert_true(applied(&w, 3));
    assert_true(applied(&w, 5));
    assert_false(applied(&w, 1));
    assert_false(applied(&w, 2));
    assert_false(applied(&w, 4));
    mark(&w, 1);
    assert_int_equal(w.done, 1);
    mark(&w, 2); /* fills the gap: done runs over 3 too */
    assert_int_equal(w.done, 3);
    assert_false(applied(&w, 4));
    mark(&w, 4);
    assert_int_equal(w.done, 5);
    assert_false(applied(&w, 6));
}

static void test_the_top_of_the_window_is_still_inside_it(void **state)
{
    (void)state;
    struct win w = {0};
    mark(&w, FU_SEQWIN_SIZE); /* done = 0: the highest number the window holds */
    assert_int_equal(w.done, 0);
    assert_true(applied(&w, FU_SEQWIN_SIZE));
    assert_false(applied(&w, 1));
    assert_false(applied(&w, FU_SEQWIN_SIZE + 1));
}

static void
test_a_number_beyond_the_window_slides_it_and_what_falls_below_counts_as_applied(void **state)
{
    (void)state;
    struct win w = {0};
    mark(&w, 1);
    mark(&w, 3); /* 2 is missing */
    mark(&w, 10);
    uint64_t far = 3 + FU_SEQWIN_SIZE; /* the new low edge is 3 */
    mark(&w, far);
    assert_int_equal(w.done, 3);
    assert_true(applied(&w, 2)); /* below the low edge: counted as applied */
    assert_true(applied(&w, 10));
    assert_false(applied(&w, 11));
    assert_true(applied(&w, far));
    assert_false(applied(&w, far - 1));
    /* a jump of more than a window forgets every mark */
    mark(&w, far + 3 * FU_SEQWIN_SIZE);
    assert_int_equal(w.done, far + 2 * FU_SEQWIN_SIZE);
    assert_true(applied(&w, far + 2 * FU_SEQWIN_SIZE));
    assert_false(applied(&w, far + 2 * FU_SEQWIN_SIZE + 1));
    assert_true(applied(&w, far + 3 * FU_SEQWIN_SIZE));
}

static void test_bits_reused_after_a_slide_start_clear(void **state)
{
    (void)state;
    struct win w = {0};
    for (uint64_t s = 2; s <= FU_SEQWIN_SIZE; s++) /* all but 1 */
        mark(&w, s);
    assert_int_equal(w.done, 0);
    mark(&w, FU_SEQWIN_SIZE + 1); /* slides by one: 1 counts as applied, the run follows */
    assert_int_equal(w.done, FU_SEQWIN_SIZE + 1);
    for (uint64_t s = FU_SEQWIN_SIZE + 2; s < 2 * FU_SEQWIN_SIZE; s += 97)
        assert_false(applied(&w, s));
}

static void test_the_busy_list_refuses_a_second_copy_and_a_full_list(void **state)
{
    (void)state;
    uint64_t busy[3] = {0};
    assert_int_equal(fu_seqwin_busy_add(busy, 3, 7), 0);
    assert_int_equal(fu_seqwin_busy_add(busy, 3, 7), -EBUSY);
    assert_int_equal(fu_seqwin_busy_add(busy, 3, 8), 0);
    assert_int_equal(fu_seqwin_busy_add(busy, 3, 9), 0);
    assert_int_equal(fu_seqwin_busy_add(busy, 3, 10), -ENOSPC);
    fu_seqwin_busy_del(busy, 3, 8);
    assert_int_equal(fu_seqwin_busy_add(busy, 3, 10), 0);
    fu_seqwin_busy_del(busy, 3, 7);
    assert_int_equal(fu_seqwin_busy_add(busy, 3, 7), 0); /* a refused batch may come again */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_is_applied_at_first),
        cmocka_unit_test(test_numbers_in_order_move_the_contiguous_mark),
        cmocka_unit_test(test_out_of_order_numbers_are_kept_until_the_gap_fills),
        cmocka_unit_test(test_the_top_of_the_window_is_still_inside_it),
        cmocka_unit_test(
            test_a_number_beyond_the_window_slides_it_and_what_falls_below_counts_as_applied),
        cmocka_unit_test(test_bits_reused_after_a_slide_start_clear),
        cmocka_unit_test(test_the_busy_list_refuses_a_second_copy_and_a_full_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
