/* A view's kept `tree` answers: served while the view has not changed, never after a
 * change, and bounded in count and bytes. */
#include "fusion/view.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The kept answer to `key` at the view's generation now, as a string; NULL: none. */
static char *kept(struct fu_view *v, const char *key)
{
    struct fu_buf out = FU_BUF_INIT;
    pthread_rwlock_rdlock(&v->lock);
    bool hit = fu_view_answer_get(v, key, v->gen, &out);
    pthread_rwlock_unlock(&v->lock);
    if (!hit) {
        fu_buf_free(&out);
        return NULL;
    }
    fu_buf_putc(&out, '\0');
    return out.data;
}

static void keep(struct fu_view *v, const char *key, const char *body)
{
    pthread_rwlock_rdlock(&v->lock);
    fu_view_answer_put(v, key, v->gen, body, strlen(body));
    pthread_rwlock_unlock(&v->lock);
}

static void add_file(struct fu_view *v, const char *path)
{
    struct fu_row row = {.op = FU_ROW_UPSERT,
                         .src = FU_SRC_REALTIME,
                         .atomic = true,
                         .has_mtime = true,
                         .size = 1,
                         .mtime = 1000,
                         .ctime = 1000,
                         .path_len = strlen(path)};
    assert_int_equal(fu_view_apply(v, &row, 1, path, 2000, 0, "a1", "/mnt", NULL, 0, "p", 0, NULL),
                     1);
}

static void test_an_answer_is_served_until_the_view_changes(void **state)
{
    (void)state;
    struct fu_view v;
    assert_int_equal(fu_view_init(&v, "v", 2, 3600), 0);
    keep(&v, "1 -1 0 0 /", "{\"a\":1}");
    char *got = kept(&v, "1 -1 0 0 /");
    assert_non_null(got);
    assert_string_equal(got, "{\"a\":1}");
    free(got);
    assert_null(kept(&v, "1 -1 0 0 /x")); /* another query */

    add_file(&v, "/x"); /* a change: what was kept is not the view any more */
    assert_null(kept(&v, "1 -1 0 0 /"));

    /* Any write-locked step counts, even one that changes nothing visible. */
    keep(&v, "1 -1 0 0 /", "{\"a\":2}");
    fu_view_write_lock(&v);
    pthread_rwlock_unlock(&v.lock);
    assert_null(kept(&v, "1 -1 0 0 /"));
    fu_view_free(&v);
}

static void test_answers_are_bounded_in_count_and_bytes(void **state)
{
    (void)state;
    struct fu_view v;
    assert_int_equal(fu_view_init(&v, "v", 2, 3600), 0);
    char key[32];
    for (int i = 0; i < FU_VIEW_ANSWERS; i++) {
        snprintf(key, sizeof(key), "q%d", i);
        keep(&v, key, key);
    }
    free(kept(&v, "q0")); /* served: now the most recently used */
    keep(&v, "q-new", "new");
    char *got = kept(&v, "q0");
    assert_non_null(got);
    free(got);
    assert_null(kept(&v, "q1")); /* the least recently served gave way */
    got = kept(&v, "q-new");
    assert_string_equal(got, "new");
    free(got);

    /* Bytes: answers of the largest size kept fill the budget, the oldest giving way; a
     * larger one is not kept at all. */
    char *big = malloc(FU_VIEW_ANSWER_MAX + 2);
    memset(big, 'b', FU_VIEW_ANSWER_MAX + 1);
    big[FU_VIEW_ANSWER_MAX] = '\0';
    int fit = (int)(FU_VIEW_ANSWERS_MAX / FU_VIEW_ANSWER_MAX);
    for (int i = 0; i <= fit; i++) {
        snprintf(key, sizeof(key), "big%d", i);
        keep(&v, key, big);
    }
    assert_true(v.answers_bytes <= FU_VIEW_ANSWERS_MAX);
    assert_null(kept(&v, "big0"));
    snprintf(key, sizeof(key), "big%d", fit);
    got = kept(&v, key);
    assert_non_null(got);
    assert_int_equal(strlen(got), FU_VIEW_ANSWER_MAX);
    free(got);
    big[FU_VIEW_ANSWER_MAX] = 'b';
    big[FU_VIEW_ANSWER_MAX + 1] = '\0';
    keep(&v, "huge", big);
    assert_null(kept(&v, "huge"));
    free(big);
    fu_view_free(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_answer_is_served_until_the_view_changes),
        cmocka_unit_test(test_answers_are_bounded_in_count_and_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
