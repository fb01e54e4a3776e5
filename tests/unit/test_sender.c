/* The agent's HTTP client: backoff bounds and jitter, and fail-over along the URI list when a
 * server is not there (real sockets: a closed port on loopback). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent/sender_http.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void test_backoff_grows_exponentially_up_to_the_cap_with_jitter(void **state)
{
    (void)state;
    struct fu_backoff b = {.base = 0.5, .cap = 30, .seed = 1};
    double top = 0.5, sum[8] = {0};
    for (int round = 0; round < 2000; round++) {
        fu_backoff_reset(&b);
        top = 0.5;
        for (int i = 0; i < 8; i++) {
            double d = fu_backoff_next(&b);
            assert_true(d >= 0 && d < top);
            sum[i] += d;
            top = top * 2 > 30 ? 30 : top * 2;
        }
    }
    /* full jitter: the mean is half the ceiling */
    assert_true(sum[0] / 2000 > 0.2 && sum[0] / 2000 < 0.3);
    assert_true(sum[7] / 2000 > 13.5 && sum[7] / 2000 < 16.5); /* ceiling 30 (capped) */
    struct fu_backoff c = {.base = 0.5, .cap = 30, .seed = 1};
    fu_backoff_reset(&b);
    b.seed = 1;
    for (int i = 0; i < 5; i++)
        assert_true(fu_backoff_next(&b) == fu_backoff_next(&c)); /* reproducible by seed */
    b.failures = 5000; /* no overflow after a long outage */
    assert_true(fu_backoff_next(&b) < 30);
}

static void test_backoff_follows_the_pipes_multiplier(void **state)
{
    (void)state;
    /* v1's error_retry_interval 5 s x backoff_multiplier 3, capped at max_backoff_seconds */
    struct fu_backoff b = {.base = 5, .cap = 60, .seed = 7, .mult = 3};
    double top[] = {5, 15, 45, 60, 60};
    for (int round = 0; round < 500; round++) {
        fu_backoff_reset(&b);
        for (int i = 0; i < 5; i++) {
            double d = fu_backoff_next(&b);
            assert_true(d >= 0 && d < top[i]);
        }
    }
    struct fu_backoff flat = {.base = 2, .cap = 60, .seed = 7, .mult = 1};
    for (int i = 0; i < 50; i++)
        assert_true(fu_backoff_next(&flat) < 2); /* a multiplier of 1: a constant ceiling */
}

static int closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(s, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s); /* nobody listens there now */
    return ntohs(a.sin_port);
}

static void test_client_fails_over_along_the_uris(void **state)
{
    (void)state;
    struct fu_strv uris = {0};
    char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/", closed_port());
    fu_strv_push(&uris, u);
    snprintf(u, sizeof(u), "http://127.0.0.1:%d", closed_port());
    fu_strv_push(&uris, u);
    struct fu_hc c;
    assert_int_equal(fu_hc_init(&c, &uris, "key", 2), 0);
    assert_int_not_equal(c.uris.v[0][strlen(c.uris.v[0]) - 1], '/'); /* trailing / dropped */
    struct fu_buf out = FU_BUF_INIT;
    assert_int_equal(c.cur, 0);
    assert_int_equal(fu_hc_call(&c, "GET", "/health", NULL, 0, &out), -1);
    assert_non_null(strstr(c.err, "127.0.0.1"));
    assert_int_equal(c.cur, 1);
    assert_int_equal(fu_hc_call(&c, "GET", "/health", NULL, 0, &out), -1);
    assert_int_equal(c.cur, 0); /* around again */
    fu_buf_free(&out);
    fu_hc_free(&c);
    fu_strv_free(&uris);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_grows_exponentially_up_to_the_cap_with_jitter),
        cmocka_unit_test(test_backoff_follows_the_pipes_multiplier),
        cmocka_unit_test(test_client_fails_over_along_the_uris),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
