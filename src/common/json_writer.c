/* The streaming JSON writer and the string escaper shared with the logger. Separators are
 * tracked with two flags rather than a stack: a value needs a comma before it unless it is
 * the first in its container or follows a key. */
#include "common/json.h"

#include "common/utf8.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fu_jw_init(struct fu_jw *w, struct fu_buf *out)
{
    w->out = out;
    w->depth = 0;
    w->need_comma = false;
    w->after_key = false;
}

/* Called before every value and key. */
static inline __attribute__((always_inline)) void sep(struct fu_jw *w)
{
    if (w->after_key)
        w->after_key = false;
    else if (w->need_comma)
        fu_buf_putc(w->out, ',');
    w->need_comma = true;
}

void fu_jw_obj_begin(struct fu_jw *w)
{
    sep(w);
    fu_buf_putc(w->out, '{');
    w->depth++;
    w->need_comma = false;
}

void fu_jw_obj_end(struct fu_jw *w)
{
    fu_buf_putc(w->out, '}');
    if (w->depth)
        w->depth--;
    w->need_comma = true;
}

void fu_jw_arr_begin(struct fu_jw *w)
{
    sep(w);
    fu_buf_putc(w->out, '[');
    w->depth++;
    w->need_comma = false;
}

void fu_jw_arr_end(struct fu_jw *w)
{
    fu_buf_putc(w->out, ']');
    if (w->depth)
        w->depth--;
    w->need_comma = true;
}

void fu_jw_key(struct fu_jw *w, const char *k, size_t n)
{
    sep(w);
    fu_json_escape(w->out, k, n);
    fu_buf_putc(w->out, ':');
    w->after_key = true;
}

void fu_jw_ckey(struct fu_jw *w, const char *k)
{
    sep(w);
    size_t n = strlen(k);
    if (n + 3 >= w->out->cap - w->out->len && fu_buf_grow(w->out, n + 3) < 0)
        return;
    char *d = w->out->data + w->out->len;
    d[0] = '"';
    memcpy(d + 1, k, n);
    d[n + 1] = '"';
    d[n + 2] = ':';
    d[n + 3] = '\0';
    w->out->len += n + 3;
    w->after_key = true;
}

void fu_jw_str(struct fu_jw *w, const char *s, size_t n)
{
    sep(w);
    fu_json_escape(w->out, s, n);
}

void fu_jw_cstr(struct fu_jw *w, const char *s)
{
    if (!s)
        fu_jw_null(w);
    else
        fu_jw_str(w, s, strlen(s));
}

/* Writes v's decimal digits backwards, ending just before `end`; returns the first. */
static char *digits_before(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

static void put_u64(struct fu_buf *b, uint64_t v, bool neg)
{
    char tmp[24];
    char *p = digits_before(tmp + sizeof(tmp), v);
    if (neg)
        *--p = '-';
    fu_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

void fu_jw_int(struct fu_jw *w, int64_t v)
{
    sep(w);
    put_u64(w->out, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, v < 0);
}

void fu_jw_uint(struct fu_jw *w, uint64_t v)
{
    sep(w);
    put_u64(w->out, v, false);
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

static const double p10d[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
static const uint64_t p10u[] = {1,      10,      100,      1000,      10000,
                                100000, 1000000, 10000000, 100000000, 1000000000};

/* Whether |v| has a form with k decimals that reads back exactly: m / 10^k (m the nearest
 * integer to |v| 10^k) is one correctly rounded division, which is also what the reader (or
 * any correct strtod) computes for the text "m with k decimals". */
static bool fixed_ok(double a, int k, uint64_t *m)
{
    double sc = a * p10d[k];
    if (sc >= 9007199254740992.0) /* 2^53: every integer below is exact */
        return false;
    /* Rounded with integer arithmetic: nearbyint is a libm call on baseline x86-64. A tie
     * (sc exactly n + 0.5) has no k-decimal form either way. */
    *m = (uint64_t)(sc + 0.5);
    return (double)*m / p10d[k] == a;
}

/* Writes [-]ip.frac, frac with `digits` decimals (at least one: 0 writes "ip.0"). */
static void put_fixed(struct fu_buf *b, bool neg, uint64_t ip, uint64_t frac, int digits)
{
    char tmp[48];
    int i = (int)sizeof(tmp);
    if (digits == 0)
        tmp[--i] = '0';
    for (int d = 0; d < digits; d++) {
        tmp[--i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    tmp[--i] = '.';
    char *p = digits_before(tmp + i, ip);
    if (neg)
        *--p = '-';
    fu_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Fixed notation with the fewest decimals (up to 9) that reads back exactly. Covers
 * timestamps and sizes without snprintf. Having k decimals implies having k + 1 (append a 0),
 * so the fewest is found by bisection, below a bound from v's exponent: with 10^-k at most a
 * tenth of v's unit in the last place, the nearest k-decimal lies well inside v's rounding
 * interval (timestamps of this century: 3 divisions instead of 8). */
static bool double_fixed(struct fu_buf *b, double v)
{
    double a = fabs(v);
    uint64_t bits, m;
    memcpy(&bits, &a, sizeof(bits));
    int e = (int)(bits >> 52) - 1023; /* 2^e <= a; subnormals and 0: below -1022 */
    int hi = e >= 52 ? 0 : e < 23 ? 9 : (52 - e) * 30103 / 100000 + 2;
    if (hi > 9)
        hi = 9;
    while (hi > 0 && a * p10d[hi] >= 4503599627370496.0)
        hi--; /* below 2^52, |v| 10^k is within a quarter of its exact value: m is the nearest */
    if (!fixed_ok(a, hi, &m))
        return false;
    int lo = 0;
    uint64_t best = m;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (fixed_ok(a, mid, &m)) {
            hi = mid;
            best = m;
        } else {
            lo = mid + 1;
        }
    }
    put_fixed(b, signbit(v), best / p10u[hi], best % p10u[hi], hi);
    return true;
}

/* Timestamps with sub-microsecond parts (statx's nanoseconds) have no short exact form, and
 * the %.17g fallback below costs a microsecond. For 2^23 <= |v| < 2^53 the nearest number
 * with 9 decimals lies within 5e-10 of v while half a unit in the last place of v is at least
 * 2^-30 (9.3e-10), so it reads back as v: written with integer arithmetic, trailing zeros
 * trimmed. */
static bool double_nanos(struct fu_buf *b, double v)
{
    double a = fabs(v);
    if (!(a >= 8388608.0 && a < 9007199254740992.0))
        return false;
    uint64_t i = (uint64_t)a; /* truncates; a - i is exact */
    uint64_t ns = (uint64_t)((a - (double)i) * 1e9 + 0.5);
    if (ns >= 1000000000u) {
        i++;
        ns -= 1000000000u;
    }
    int digits = 9;
    while (digits > 1 && ns % 10 == 0) {
        ns /= 10;
        digits--;
    }
    put_fixed(b, signbit(v), i, ns, digits);
    return true;
}

void fu_jw_double(struct fu_jw *w, double v)
{
    if (!isfinite(v)) {
        fu_jw_null(w);
        return;
    }
    sep(w);
    if (double_fixed(w->out, v) || double_nanos(w->out, v))
        return;
    /* Anything else: the shortest of %.15g, %.16g, %.17g that reads back exactly. */
    pthread_once(&c_locale_once, make_c_locale);
    char tmp[40];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        double back = c_locale ? strtod_l(tmp, NULL, c_locale) : strtod(tmp, NULL);
        if (back == v)
            break;
    }
    if (!strpbrk(tmp, ".eE")) {
        tmp[n++] = '.';
        tmp[n++] = '0';
        tmp[n] = '\0';
    }
    fu_buf_append(w->out, tmp, (size_t)n);
}

void fu_jw_bool(struct fu_jw *w, bool v)
{
    sep(w);
    fu_buf_puts(w->out, v ? "true" : "false");
}

void fu_jw_null(struct fu_jw *w)
{
    sep(w);
    fu_buf_puts(w->out, "null");
}

void fu_jw_raw(struct fu_jw *w, const char *json, size_t n)
{
    sep(w);
    fu_buf_append(w->out, json, n);
}

void fu_jw_json(struct fu_jw *w, const char *json)
{
    if (json)
        fu_jw_raw(w, json, strlen(json));
    else
        fu_jw_null(w);
}

/* 0: copy as is; 1: needs an escape; 2: non-ASCII, check UTF-8. */
static const unsigned char esc_class[256] = {
    [0 ... 0x1F] = 1,
    ['"'] = 1,
    ['\\'] = 1,
    [0x80 ... 0xFF] = 2,
};

void fu_json_escape(struct fu_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    /* Reserve the worst case (every byte as a 6-byte escape) and write in place. */
    if (n > (SIZE_MAX - 3) / 6 ||
        (n * 6 + 2 >= out->cap - out->len && fu_buf_grow(out, n * 6 + 2) < 0)) {
        out->oom = true;
        return;
    }
    char *d = out->data + out->len;
    *d++ = '"';
    size_t i = 0;
    while (i < n) {
        while (i + 8 <= n) { /* plain ASCII, 8 bytes at a time */
            uint64_t x;
            memcpy(&x, u + i, 8);
            if (!fu_json_plain8(x, true))
                break;
            memcpy(d, u + i, 8);
            d += 8;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned char c = u[i];
        unsigned char cls = esc_class[c];
        if (!cls) {
            *d++ = (char)c;
            i++;
            continue;
        }
        if (cls == 2) {
            size_t l = fu_utf8_len(u + i, n - i);
            if (l) {
                memcpy(d, u + i, l);
                d += l;
                i += l;
            } else {
                memcpy(d, "\\udc", 4);
                d[4] = hex[c >> 4];
                d[5] = hex[c & 15];
                d += 6;
                i++;
            }
            continue;
        }
        *d++ = '\\';
        switch (c) {
        case '"':
            *d++ = '"';
            break;
        case '\\':
            *d++ = '\\';
            break;
        case '\n':
            *d++ = 'n';
            break;
        case '\t':
            *d++ = 't';
            break;
        case '\r':
            *d++ = 'r';
            break;
        case '\b':
            *d++ = 'b';
            break;
        case '\f':
            *d++ = 'f';
            break;
        default:
            memcpy(d, "u00", 3);
            d[3] = hex[c >> 4];
            d[4] = hex[c & 15];
            d += 5;
        }
        i++;
    }
    *d++ = '"';
    out->len = (size_t)(d - out->data);
    out->data[out->len] = '\0';
}

int fu_json_copy_value(struct fu_jr *r, enum fu_json_tok t, struct fu_jw *w)
{
    unsigned depth = 0;
    for (;; t = fu_jr_next(r)) {
        switch (t) {
        case FU_JSON_OBJ_BEGIN:
            fu_jw_obj_begin(w);
            depth++;
            break;
        case FU_JSON_ARR_BEGIN:
            fu_jw_arr_begin(w);
            depth++;
            break;
        case FU_JSON_OBJ_END:
            fu_jw_obj_end(w);
            depth--;
            break;
        case FU_JSON_ARR_END:
            fu_jw_arr_end(w);
            depth--;
            break;
        case FU_JSON_KEY:
            fu_jw_key(w, r->str, r->str_len);
            continue; /* a key never ends a value */
        case FU_JSON_STRING:
            fu_jw_str(w, r->str, r->str_len);
            break;
        case FU_JSON_INT:
            fu_jw_int(w, r->i64);
            break;
        case FU_JSON_DOUBLE:
            fu_jw_double(w, r->dbl);
            break;
        case FU_JSON_TRUE:
        case FU_JSON_FALSE:
            fu_jw_bool(w, t == FU_JSON_TRUE);
            break;
        case FU_JSON_NULL:
            fu_jw_null(w);
            break;
        default:
            return -1;
        }
        if (depth == 0)
            return 0;
    }
}
