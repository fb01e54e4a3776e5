/* The JSON reader and writer, as a specification: JSONTestSuite conformance, exact numbers,
 * escapes (including the surrogateescape mapping for non-UTF-8 bytes), limits and error
 * offsets, and round-trip properties over random inputs from a seeded generator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/fsutil.h"
#include "common/json.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUITE FU_TEST_SHARED "/testdata/json-test-suite/test_parsing"

/* Parses a whole document; returns the final token (EOF or ERROR). */
static enum fu_json_tok parse_all(const char *s, size_t n, struct fu_jr *r)
{
    fu_jr_init(r, s, n);
    enum fu_json_tok t;
    while ((t = fu_jr_next(r)) > FU_JSON_EOF)
        ;
    return t;
}

static int run_suite(char prefix, size_t *count)
{
    DIR *d = opendir(SUITE);
    if (!d)
        fail_msg("cannot open %s", SUITE);
    int bad = 0;
    struct dirent *e;
    *count = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] != prefix || e->d_name[1] != '_')
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", SUITE, e->d_name);
        struct fu_buf b = FU_BUF_INIT;
        assert_int_equal(fu_read_file(path, 64 << 20, &b), 0);
        struct fu_jr r;
        enum fu_json_tok t = parse_all(b.data ? b.data : "", b.len, &r);
        if (prefix == 'y' && t != FU_JSON_EOF) {
            fprintf(stderr, "rejected %s: %s at %zu\n", e->d_name, r.err_msg, r.err_off);
            bad++;
        }
        if (prefix == 'n' && t != FU_JSON_ERROR) {
            fprintf(stderr, "accepted %s\n", e->d_name);
            bad++;
        }
        if (t == FU_JSON_ERROR) {
            assert_non_null(r.err_msg);
            assert_true(r.err_off <= b.len);
        }
        fu_jr_free(&r);
        fu_buf_free(&b);
        (*count)++;
    }
    closedir(d);
    return bad;
}

static void test_suite_y_files_are_accepted(void **state)
{
    (void)state;
    size_t n;
    assert_int_equal(run_suite('y', &n), 0);
    assert_true(n >= 90);
}

static void test_suite_n_files_are_rejected(void **state)
{
    (void)state;
    size_t n;
    assert_int_equal(run_suite('n', &n), 0);
    assert_true(n >= 180);
}

static void test_suite_i_files_do_not_crash(void **state)
{
    (void)state;
    size_t n;
    run_suite('i', &n); /* either answer is fine; ASan/UBSan catch misbehaviour */
    assert_true(n >= 30);
}

static void test_strings_without_escapes_are_zero_copy(void **state)
{
    (void)state;
    const char *doc = "{\"path\":\"/data/a.txt\",\"esc\":\"a\\nb\"}";
    struct fu_jr r;
    fu_jr_init(&r, doc, strlen(doc));
    assert_int_equal(fu_jr_next(&r), FU_JSON_OBJ_BEGIN);
    assert_int_equal(fu_jr_next(&r), FU_JSON_KEY);
    assert_ptr_equal(r.str, doc + 2);
    assert_int_equal(r.str_len, 4);
    assert_int_equal(fu_jr_next(&r), FU_JSON_STRING);
    assert_ptr_equal(r.str, doc + 9);
    assert_memory_equal(r.str, "/data/a.txt", 11);
    assert_int_equal(fu_jr_next(&r), FU_JSON_KEY);
    assert_int_equal(fu_jr_next(&r), FU_JSON_STRING);
    assert_true(r.str < doc || r.str >= doc + strlen(doc)); /* decoded into scratch */
    assert_int_equal(r.str_len, 3);
    assert_memory_equal(r.str, "a\nb", 3);
    assert_int_equal(fu_jr_next(&r), FU_JSON_OBJ_END);
    assert_int_equal(fu_jr_next(&r), FU_JSON_EOF);
    fu_jr_free(&r);
}

static void want_int(const char *doc, int64_t v)
{
    struct fu_jr r;
    fu_jr_init(&r, doc, strlen(doc));
    assert_int_equal(fu_jr_next(&r), FU_JSON_INT);
    assert_true(r.i64 == v);
    assert_int_equal(fu_jr_next(&r), FU_JSON_EOF);
    fu_jr_free(&r);
}

static void want_double(const char *doc, double v)
{
    struct fu_jr r;
    fu_jr_init(&r, doc, strlen(doc));
    assert_int_equal(fu_jr_next(&r), FU_JSON_DOUBLE);
    if (memcmp(&r.dbl, &v, sizeof(v)))
        fail_msg("%s parsed as %.17g, expected %.17g", doc, r.dbl, v);
    assert_int_equal(fu_jr_next(&r), FU_JSON_EOF);
    fu_jr_free(&r);
}

static void test_int64_is_exact_and_larger_integers_become_doubles(void **state)
{
    (void)state;
    want_int("0", 0);
    want_int("-0", 0);
    want_int("9223372036854775807", INT64_MAX);
    want_int("-9223372036854775808", INT64_MIN);
    want_int("1706000000123", 1706000000123LL);
    want_double("9223372036854775808", 9223372036854775808.0);
    want_double("-9223372036854775809", -9223372036854775809.0);
    want_double("100000000000000000000000", 1e23);
}

static void test_doubles_are_correctly_rounded(void **state)
{
    (void)state;
    want_double("0.1", 0.1);
    want_double("1706000123.0", 1706000123.0);
    want_double("1706000000.12", 1706000000.12);
    want_double("-2.5e-3", -2.5e-3);
    want_double("1e308", 1e308);
    want_double("1.7976931348623157e308", 1.7976931348623157e308);
    want_double("5e-324", 5e-324);
    want_double("2.2250738585072011e-308", 2.2250738585072011e-308);
    want_double("0.30000000000000004", 0.30000000000000004);
    want_double("123456789012345678901234567890e-10", 12345678901234567890.123456789);
    want_double("1E+2", 100.0);
    want_double("1e400", HUGE_VAL);
    want_double("1e-400", 0.0);
}

static void want_error(const char *doc, size_t off, const char *msg_part)
{
    struct fu_jr r;
    assert_int_equal(parse_all(doc, strlen(doc), &r), FU_JSON_ERROR);
    if (r.err_off != off || !strstr(r.err_msg, msg_part))
        fail_msg("%s: got '%s' at %zu, expected '%s' at %zu", doc, r.err_msg, r.err_off, msg_part,
                 off);
    /* Errors are sticky. */
    assert_int_equal(fu_jr_next(&r), FU_JSON_ERROR);
    fu_jr_free(&r);
}

static void test_errors_report_offset_and_reason(void **state)
{
    (void)state;
    want_error("[1,]", 3, "unexpected character");
    want_error("{\"a\" 1}", 5, "':' expected");
    want_error("{\"a\":1,}", 7, "string key");
    want_error("[\"abc", 1, "unterminated string");
    want_error("[1] x", 4, "trailing data");
    want_error("\"a\tb\"", 2, "control character");
    want_error("\"\\x\"", 1, "invalid escape");
    want_error("\"\\u12g4\"", 1, "invalid \\u escape");
    want_error("01", 1, "leading zero");
    want_error("1.", 2, "digit expected");
    want_error("[tru]", 1, "invalid literal");
    want_error("", 0, "unexpected end");
    want_error("[1", 2, "unclosed");
}

static void test_depth_is_limited_and_configurable(void **state)
{
    (void)state;
    char doc[2100];
    for (int depth = 63; depth <= 65; depth++) {
        memset(doc, '[', (size_t)depth);
        memset(doc + depth, ']', (size_t)depth);
        struct fu_jr r;
        enum fu_json_tok t = parse_all(doc, (size_t)depth * 2, &r);
        assert_int_equal(t, depth <= FU_JSON_DEFAULT_DEPTH ? FU_JSON_EOF : FU_JSON_ERROR);
        if (t == FU_JSON_ERROR) {
            assert_non_null(strstr(r.err_msg, "depth"));
            assert_int_equal(r.err_off, FU_JSON_DEFAULT_DEPTH);
        }
        fu_jr_free(&r);
    }
    memset(doc, '[', 1000);
    memset(doc + 1000, ']', 1000);
    struct fu_jr r;
    fu_jr_init(&r, doc, 2000);
    fu_jr_set_max_depth(&r, 1000);
    enum fu_json_tok t;
    while ((t = fu_jr_next(&r)) > FU_JSON_EOF)
        ;
    assert_int_equal(t, FU_JSON_EOF);
    fu_jr_free(&r);
    fu_jr_init(&r, doc, 2000);
    fu_jr_set_max_depth(&r, 3);
    while ((t = fu_jr_next(&r)) > FU_JSON_EOF)
        ;
    assert_int_equal(t, FU_JSON_ERROR);
    assert_int_equal(r.err_off, 3);
    fu_jr_free(&r);
}

static void want_string(const char *doc, const char *bytes, size_t n)
{
    struct fu_jr r;
    fu_jr_init(&r, doc, strlen(doc));
    assert_int_equal(fu_jr_next(&r), FU_JSON_STRING);
    assert_int_equal(r.str_len, n);
    assert_memory_equal(r.str, bytes, n);
    fu_jr_free(&r);
}

static void test_unicode_escapes_and_surrogates_decode(void **state)
{
    (void)state;
    want_string("\"\\u00e9\"", "\xc3\xa9", 2);
    want_string("\"\\u20AC\"", "\xe2\x82\xac", 3);
    want_string("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4); /* a valid pair */
    want_string("\"\\udc80\\udcff\"", "\x80\xff", 2);         /* surrogateescape bytes */
    want_string("\"\\ud800x\"", "\xef\xbf\xbdx", 4);          /* lone high: U+FFFD */
    want_string("\"\\udc00\"", "\xef\xbf\xbd", 3);            /* lone low below DC80 */
    want_string("\"a\\u0000b\"", "a\0b", 3);                  /* NUL is kept, counted */
    want_string("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8);
    want_string("\"\xff\xfe raw\"", "\xff\xfe raw", 6); /* raw invalid UTF-8 passes */
}

static char *escaped(const char *s, size_t n)
{
    struct fu_buf b = FU_BUF_INIT;
    fu_json_escape(&b, s, n);
    return fu_buf_detach(&b);
}

static void test_writer_escapes_controls_quotes_and_invalid_utf8(void **state)
{
    (void)state;
    char *e = escaped("a\"b\\c\n\t\x01\x7f", 9);
    assert_string_equal(e, "\"a\\\"b\\\\c\\n\\t\\u0001\x7f\"");
    free(e);
    e = escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14);
    assert_string_equal(e, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""); /* valid UTF-8 */
    free(e);
    /* A Latin-1 name, an overlong '/', an encoded surrogate and a truncated sequence. */
    e = escaped("\xe9t\xe9", 3);
    assert_string_equal(e, "\"\\udce9t\\udce9\"");
    free(e);
    e = escaped("\xc0\xaf", 2);
    assert_string_equal(e, "\"\\udcc0\\udcaf\"");
    free(e);
    e = escaped("\xed\xa0\x80", 3);
    assert_string_equal(e, "\"\\udced\\udca0\\udc80\"");
    free(e);
    e = escaped("\xe2\x82", 2);
    assert_string_equal(e, "\"\\udce2\\udc82\"");
    free(e);
    e = escaped("a\0b", 3);
    assert_string_equal(e, "\"a\\u0000b\"");
    free(e);
}

static void test_writer_places_commas_and_colons(void **state)
{
    (void)state;
    struct fu_buf b = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &b);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "a");
    fu_jw_int(&w, -12);
    fu_jw_ckey(&w, "b");
    fu_jw_arr_begin(&w);
    fu_jw_uint(&w, UINT64_MAX);
    fu_jw_double(&w, 60.0);
    fu_jw_double(&w, 0.1);
    fu_jw_double(&w, NAN);
    fu_jw_bool(&w, true);
    fu_jw_null(&w);
    fu_jw_obj_begin(&w);
    fu_jw_obj_end(&w);
    fu_jw_arr_begin(&w);
    fu_jw_arr_end(&w);
    fu_jw_cstr(&w, NULL);
    fu_jw_raw(&w, "[1]", 3);
    fu_jw_arr_end(&w);
    fu_jw_ckey(&w, "c");
    fu_jw_int(&w, INT64_MIN);
    fu_jw_obj_end(&w);
    assert_string_equal(fu_buf_str(&b),
                        "{\"a\":-12,\"b\":[18446744073709551615,60.0,0.1,null,true,null,{},[],"
                        "null,[1]],\"c\":-9223372036854775808}");
    assert_int_equal(fu_json_validate(b.data, b.len, NULL, NULL), 0);
    fu_buf_free(&b);
}

static void test_skip_consumes_a_whole_container(void **state)
{
    (void)state;
    const char *doc = "{\"a\":{\"x\":[1,{\"y\":[]}],\"z\":2},\"b\":[[],[3]],\"c\":7}";
    struct fu_jr r;
    fu_jr_init(&r, doc, strlen(doc));
    assert_int_equal(fu_jr_next(&r), FU_JSON_OBJ_BEGIN);
    assert_int_equal(fu_jr_next(&r), FU_JSON_KEY);
    assert_int_equal(fu_jr_next(&r), FU_JSON_OBJ_BEGIN);
    assert_int_equal(fu_jr_skip(&r), 0);
    assert_int_equal(fu_jr_depth(&r), 1);
    assert_int_equal(fu_jr_next(&r), FU_JSON_KEY);
    assert_int_equal(fu_jr_next(&r), FU_JSON_ARR_BEGIN);
    assert_int_equal(fu_jr_skip(&r), 0);
    assert_int_equal(fu_jr_next(&r), FU_JSON_KEY);
    assert_memory_equal(r.str, "c", 1);
    assert_int_equal(fu_jr_next(&r), FU_JSON_INT);
    assert_int_equal(fu_jr_skip(&r), 0); /* no-op after a scalar */
    assert_int_equal(fu_jr_next(&r), FU_JSON_OBJ_END);
    assert_int_equal(fu_jr_next(&r), FU_JSON_EOF);
    fu_jr_free(&r);
    const char *bad = "[[1,2";
    fu_jr_init(&r, bad, strlen(bad));
    assert_int_equal(fu_jr_next(&r), FU_JSON_ARR_BEGIN);
    assert_int_equal(fu_jr_skip(&r), -1);
    fu_jr_free(&r);
}

/* ------------------------------------------------------------ properties */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_any_byte_string_round_trips_through_escape(void **state)
{
    (void)state;
    char s[64];
    for (int it = 0; it < 20000; it++) {
        size_t n = rnd() % sizeof(s);
        for (size_t i = 0; i < n; i++) {
            uint64_t k = rnd() % 8;
            /* Mix ASCII, controls, UTF-8 lead/continuation bytes and arbitrary bytes. */
            s[i] = (char)(k < 3   ? 0x20 + rnd() % 95
                          : k < 4 ? rnd() % 0x20
                          : k < 6 ? 0x80 + rnd() % 0x40
                          : k < 7 ? 0xC0 + rnd() % 0x40
                                  : rnd() % 256);
        }
        struct fu_buf b = FU_BUF_INIT;
        fu_json_escape(&b, s, n);
        struct fu_jr r;
        fu_jr_init(&r, b.data, b.len);
        assert_int_equal(fu_jr_next(&r), FU_JSON_STRING);
        if (r.str_len != n || memcmp(r.str, s, n))
            fail_msg("round trip changed the bytes of %s", b.data);
        assert_int_equal(fu_jr_next(&r), FU_JSON_EOF);
        fu_jr_free(&r);
        fu_buf_free(&b);
    }
}

static void test_doubles_round_trip_bit_exactly(void **state)
{
    (void)state;
    for (int it = 0; it < 20000; it++) {
        uint64_t bits = rnd();
        double v;
        memcpy(&v, &bits, sizeof(v));
        if (!isfinite(v))
            continue;
        if (it % 3 == 0) /* also typical magnitudes: timestamps and sizes */
            v = (double)(rnd() % 2000000000000ull) / (double)(1 + rnd() % 1000);
        if (it % 3 == 1) /* statx timestamps: seconds and nanoseconds, and their edges */
            v = (double)(rnd() % 4000000000ull) + (double)(rnd() % 1000000000) / 1e9;
        if (it % 97 == 5) /* around 2^23, where the nanosecond form starts */
            v = 8388608.0 + (double)(rnd() % 2000) / 1e3 - 1.0 + (double)(rnd() % 997) / 1e9;
        struct fu_buf b = FU_BUF_INIT;
        struct fu_jw w;
        fu_jw_init(&w, &b);
        fu_jw_double(&w, v);
        struct fu_jr r;
        fu_jr_init(&r, b.data, b.len);
        assert_int_equal(fu_jr_next(&r), FU_JSON_DOUBLE);
        if (memcmp(&r.dbl, &v, sizeof(v)))
            fail_msg("%.17g written as %s read back as %.17g", v, b.data, r.dbl);
        /* In fixed notation within 53 bits (|v| 10^k < 2^53), the fewest decimals: one fewer
         * does not read back. (Beyond, nanosecond timestamps have their 9 decimals.) */
        const char *dot = strchr(b.data, '.');
        size_t k = dot && !strpbrk(b.data, "eE") ? strlen(dot + 1) : 0;
        if ((k > 1 || (k == 1 && dot[1] != '0')) && fabs(v) * pow(10, (double)k) < 0x1p53) {
            char shorter[64];
            snprintf(shorter, sizeof(shorter), "%.*f", (int)k - 1, v);
            if (strtod(shorter, NULL) == v)
                fail_msg("%.17g written as %s, but %s reads back too", v, b.data, shorter);
        }
        fu_jr_free(&r);
        fu_buf_free(&b);
    }
}

/* Decimals of 16 to 19 significant digits (the nanosecond timestamps agents send, among
 * others) take the 128-bit division path: it must agree with strtod bit for bit, ties and
 * near-ties included. */
static void test_long_decimals_read_as_strtod_does(void **state)
{
    (void)state;
    for (int it = 0; it < 200000; it++) {
        char s[48];
        int ndig = 16 + (int)(rnd() % 4), point = 1 + (int)(rnd() % (unsigned)(ndig - 1));
        int i = 0;
        if (rnd() % 5 == 0)
            s[i++] = '-';
        for (int d = 0; d < ndig; d++) {
            if (d == point)
                s[i++] = '.';
            /* Runs of 0s and 9s and the digit 5 make ties and near-ties. */
            unsigned c = (unsigned)(rnd() % 16);
            s[i++] = (char)(d == 0   ? '1' + c % 9
                            : c < 4  ? '0'
                            : c < 8  ? '9'
                            : c < 10 ? '5'
                                     : '0' + c % 10);
        }
        if (it % 7 == 0) { /* statx-like: 10 integer digits, 9 decimals */
            snprintf(s, sizeof(s), "%llu.%09llu",
                     (unsigned long long)(1000000000 + rnd() % 3000000000ull),
                     (unsigned long long)(rnd() % 1000000000));
            i = (int)strlen(s);
        }
        s[i] = '\0';
        double want = strtod(s, NULL);
        struct fu_jr r;
        fu_jr_init(&r, s, strlen(s));
        assert_int_equal(fu_jr_next(&r), FU_JSON_DOUBLE);
        if (memcmp(&r.dbl, &want, sizeof(want)))
            fail_msg("%s read as %.17g, strtod gives %.17g", s, r.dbl, want);
        fu_jr_free(&r);
    }
    /* Exact halfway cases between two doubles, both roundings (2^53 + 1 and + 3, scaled). */
    want_double("9007199254740993.0", 9007199254740992.0);
    want_double("9007199254740995.0", 9007199254740996.0);
    want_double("9007199254740993.5", 9007199254740994.0); /* just above the tie */
}

static void gen_value(struct fu_jw *w, int depth);

static void gen_string(char *s, size_t *n)
{
    *n = rnd() % 12;
    for (size_t i = 0; i < *n; i++)
        s[i] = (char)(rnd() % 4 ? 'a' + rnd() % 26 : rnd() % 256);
}

static void gen_value(struct fu_jw *w, int depth)
{
    char s[16];
    size_t n;
    switch (depth > 5 ? rnd() % 6 : rnd() % 8) {
    case 0:
        fu_jw_int(w, (int64_t)rnd());
        break;
    case 1: {
        double d = (double)(int64_t)rnd() / 1e6;
        fu_jw_double(w, d);
        break;
    }
    case 2:
        gen_string(s, &n);
        fu_jw_str(w, s, n);
        break;
    case 3:
        fu_jw_bool(w, rnd() & 1);
        break;
    case 4:
        fu_jw_null(w);
        break;
    case 5:
        fu_jw_int(w, (int64_t)(rnd() % 1000) - 500);
        break;
    case 6: {
        fu_jw_arr_begin(w);
        int k = (int)(rnd() % 5);
        for (int i = 0; i < k; i++)
            gen_value(w, depth + 1);
        fu_jw_arr_end(w);
        break;
    }
    default: {
        fu_jw_obj_begin(w);
        int k = (int)(rnd() % 5);
        for (int i = 0; i < k; i++) {
            gen_string(s, &n);
            fu_jw_key(w, s, n);
            gen_value(w, depth + 1);
        }
        fu_jw_obj_end(w);
    }
    }
}

/* Re-encodes a document token by token through the writer. */
static void reencode(const char *doc, size_t len, struct fu_buf *out)
{
    struct fu_jr r;
    struct fu_jw w;
    fu_jr_init(&r, doc, len);
    fu_jw_init(&w, out);
    assert_int_equal(fu_json_copy_value(&r, fu_jr_next(&r), &w), 0);
    assert_int_equal(fu_jr_next(&r), FU_JSON_EOF);
    fu_jr_free(&r);
}

static void test_random_documents_reencode_identically(void **state)
{
    (void)state;
    for (int it = 0; it < 3000; it++) {
        struct fu_buf a = FU_BUF_INIT, b = FU_BUF_INIT;
        struct fu_jw w;
        fu_jw_init(&w, &a);
        gen_value(&w, 0);
        assert_int_equal(fu_json_validate(a.data, a.len, NULL, NULL), 0);
        reencode(a.data, a.len, &b);
        if (a.len != b.len || memcmp(a.data, b.data, a.len))
            fail_msg("re-encoding changed\n%s\ninto\n%s", a.data, b.data);
        fu_buf_free(&a);
        fu_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite_y_files_are_accepted),
        cmocka_unit_test(test_suite_n_files_are_rejected),
        cmocka_unit_test(test_suite_i_files_do_not_crash),
        cmocka_unit_test(test_strings_without_escapes_are_zero_copy),
        cmocka_unit_test(test_int64_is_exact_and_larger_integers_become_doubles),
        cmocka_unit_test(test_doubles_are_correctly_rounded),
        cmocka_unit_test(test_errors_report_offset_and_reason),
        cmocka_unit_test(test_depth_is_limited_and_configurable),
        cmocka_unit_test(test_unicode_escapes_and_surrogates_decode),
        cmocka_unit_test(test_writer_escapes_controls_quotes_and_invalid_utf8),
        cmocka_unit_test(test_writer_places_commas_and_colons),
        cmocka_unit_test(test_skip_consumes_a_whole_container),
        cmocka_unit_test(test_any_byte_string_round_trips_through_escape),
        cmocka_unit_test(test_doubles_round_trip_bit_exactly),
        cmocka_unit_test(test_long_decimals_read_as_strtod_does),
        cmocka_unit_test(test_random_documents_reencode_identically),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
