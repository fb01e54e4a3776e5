/* The JSON pull reader: a small state machine over the input buffer. Strings without escapes
 * are returned in place; numbers take an exact fast path (Clinger's: at most 15 significant
 * digits and a power of ten up to 1e22 are both exact doubles, so one multiply or divide is
 * correctly rounded) and fall back to strtod_l in the C locale. Errors are sticky. */
#include "common/json.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum {
    ST_VALUE,        /* expecting a value */
    ST_VALUE_OR_END, /* just after '[' */
    ST_KEY_OR_END,   /* just after '{' */
    ST_KEY,          /* after ',' in an object */
    ST_AFTER_VALUE,  /* expecting ',', a closer, or the end */
    ST_DONE,
    ST_ERROR,
};

void fu_jr_init(struct fu_jr *r, const char *buf, size_t len)
{
    memset(r, 0, sizeof(*r));
    r->buf = buf;
    r->len = len;
    r->max_depth = FU_JSON_DEFAULT_DEPTH;
    r->state = ST_VALUE;
    fu_buf_init(&r->scratch);
}

void fu_jr_set_max_depth(struct fu_jr *r, unsigned depth)
{
    if (depth < 1)
        depth = 1;
    if (depth > FU_JSON_MAX_DEPTH)
        depth = FU_JSON_MAX_DEPTH;
    r->max_depth = depth;
}

void fu_jr_free(struct fu_jr *r)
{
    fu_buf_free(&r->scratch);
}

static enum fu_json_tok fail(struct fu_jr *r, size_t off, const char *msg)
{
    if (r->state != ST_ERROR) {
        r->state = ST_ERROR;
        r->err_off = off;
        r->err_msg = msg;
    }
    return FU_JSON_ERROR;
}

static void skip_ws(struct fu_jr *r)
{
    const char *b = r->buf;
    size_t p = r->pos, n = r->len;
    while (p < n && (b[p] == ' ' || b[p] == '\n' || b[p] == '\r' || b[p] == '\t'))
        p++;
    r->pos = p;
}

static bool in_object(const struct fu_jr *r)
{
    unsigned l = r->depth - 1;
    return (r->kinds[l / 64] >> (l % 64)) & 1;
}

static enum fu_json_tok push(struct fu_jr *r, bool object)
{
    if (r->depth >= r->max_depth)
        return fail(r, r->pos - 1, "nesting deeper than the depth limit");
    unsigned l = r->depth++;
    if (object)
        r->kinds[l / 64] |= 1ull << (l % 64);
    else
        r->kinds[l / 64] &= ~(1ull << (l % 64));
    r->state = object ? ST_KEY_OR_END : ST_VALUE_OR_END;
    return object ? FU_JSON_OBJ_BEGIN : FU_JSON_ARR_BEGIN;
}

static enum fu_json_tok pop(struct fu_jr *r, bool object)
{
    r->depth--;
    r->pos++;
    r->state = ST_AFTER_VALUE;
    return object ? FU_JSON_OBJ_END : FU_JSON_ARR_END;
}

/* ------------------------------------------------------------ strings */

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

static void put_utf8(struct fu_buf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    fu_buf_append(b, u, n);
}

/* Bytes that end the fast scan of a string: '"', '\\' and control characters. */
static const unsigned char str_stop[256] = {
    [0 ... 0x1F] = 1,
    ['"'] = 1,
    ['\\'] = 1,
};

/* The first position at or after p holding '"', '\\' or a control character, or n. */
static size_t scan_plain(const char *b, size_t p, size_t n)
{
    while (p + 8 <= n) {
        uint64_t x;
        memcpy(&x, b + p, 8);
        if (!fu_json_plain8(x, false))
            break;
        p += 8;
    }
    while (p < n && !str_stop[(unsigned char)b[p]])
        p++;
    return p;
}

/* Decodes the string starting after the opening quote at r->pos. */
static enum fu_json_tok read_string(struct fu_jr *r, enum fu_json_tok kind)
{
    const char *b = r->buf;
    size_t n = r->len, start = r->pos, p = start;
    p = scan_plain(b, p, n);
    if (p < n && b[p] == '"') {
        r->str = b + start;
        r->str_len = p - start;
        r->pos = p + 1;
        return kind;
    }
    struct fu_buf *s = &r->scratch;
    fu_buf_reset(s);
    fu_buf_append(s, b + start, p - start);
    for (;;) {
        size_t run = p;
        p = scan_plain(b, p, n);
        fu_buf_append(s, b + run, p - run);
        if (p >= n)
            return fail(r, start - 1, "unterminated string");
        unsigned char c = (unsigned char)b[p];
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(r, p, "control character in string (must be escaped)");
        /* a backslash */
        if (p + 1 >= n)
            return fail(r, p, "unterminated string");
        char e = b[p + 1];
        p += 2;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            fu_buf_putc(s, e);
            continue;
        case 'b':
            fu_buf_putc(s, '\b');
            continue;
        case 'f':
            fu_buf_putc(s, '\f');
            continue;
        case 'n':
            fu_buf_putc(s, '\n');
            continue;
        case 'r':
            fu_buf_putc(s, '\r');
            continue;
        case 't':
            fu_buf_putc(s, '\t');
            continue;
        case 'u':
            break;
        default:
            return fail(r, p - 2, "invalid escape");
        }
        int cp = p + 4 <= n ? hex4(b + p) : -1;
        if (cp < 0)
            return fail(r, p - 2, "invalid \\u escape (needs 4 hex digits)");
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = p + 6 <= n && b[p] == '\\' && b[p + 1] == 'u' ? hex4(b + p + 2) : -1;
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                put_utf8(s, 0x10000 + (((unsigned)cp - 0xD800) << 10) + ((unsigned)lo - 0xDC00));
                p += 6;
            } else {
                put_utf8(s, 0xFFFD); /* a lone high surrogate */
            }
        } else if (cp >= 0xDC80 && cp <= 0xDCFF) {
            fu_buf_putc(s, (char)(cp - 0xDC00)); /* surrogateescape: one raw byte */
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            put_utf8(s, 0xFFFD);
        } else {
            put_utf8(s, (unsigned)cp);
        }
    }
    if (s->oom)
        return fail(r, start, "out of memory");
    r->str = fu_buf_str(s);
    r->str_len = s->len;
    r->pos = p + 1;
    return kind;
}

/* ------------------------------------------------------------ numbers */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static const uint64_t pow10_u64[] = {1ull,
                                     10ull,
                                     100ull,
                                     1000ull,
                                     10000ull,
                                     100000ull,
                                     1000000ull,
                                     10000000ull,
                                     100000000ull,
                                     1000000000ull,
                                     10000000000ull,
                                     100000000000ull,
                                     1000000000000ull,
                                     10000000000000ull,
                                     100000000000000ull,
                                     1000000000000000ull,
                                     10000000000000000ull,
                                     100000000000000000ull,
                                     1000000000000000000ull,
                                     10000000000000000000ull};

/* m / 10^k correctly rounded, for 0 < m < 2^64 and 1 <= k <= 19: the numbers with 16 to 19
 * significant digits that the fast path below cannot take (timestamps written with their
 * nanoseconds have 19). m is shifted so that its top bit is bit 127 of a 128-bit integer; the
 * quotient by 10^k (< 2^64) then has at least 64 bits, of which the top 54 give the 53-bit
 * significand and its rounding bit, and the bits below with the remainder the sticky bit:
 * round half to even, as strtod does. */
static double div_pow10(uint64_t m, int k)
{
    int shift = 64 + __builtin_clzll(m);
    unsigned __int128 num = (unsigned __int128)m << shift;
    unsigned __int128 q = num / pow10_u64[k];
    bool sticky = num - q * pow10_u64[k] != 0; /* the remainder, without a second division */
    uint64_t hi = (uint64_t)(q >> 64);
    int bits = hi ? 128 - __builtin_clzll(hi) : 64 - __builtin_clzll((uint64_t)q);
    int drop = bits - 54; /* >= 10: q >= 2^63 */
    sticky |= (q & (((unsigned __int128)1 << drop) - 1)) != 0;
    uint64_t top = (uint64_t)(q >> drop); /* 54 bits */
    uint64_t sig = top >> 1;
    if ((top & 1) && (sticky || (sig & 1)))
        sig++;
    /* A carry to 2^53 stays exact as a double; ldexp scales it. */
    return ldexp((double)sig, drop + 1 - shift);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static enum fu_json_tok read_number(struct fu_jr *r)
{
    const char *b = r->buf;
    size_t n = r->len, start = r->pos, p = start;
    bool neg = false;
    if (b[p] == '-') {
        neg = true;
        p++;
    }
    if (p >= n || !is_digit(b[p]))
        return fail(r, p, "invalid number");
    uint64_t mant = 0;
    int digits = 0;  /* significant digits accumulated in mant */
    int dropped = 0; /* integer digits beyond what mant holds */
    if (b[p] == '0') {
        p++;
        if (p < n && is_digit(b[p]))
            return fail(r, p, "leading zero in number");
    } else {
        while (p < n && is_digit(b[p])) {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(b[p] - '0');
                if (mant)
                    digits++;
            } else {
                dropped++;
            }
            p++;
        }
    }
    bool is_int = true, lost = false; /* lost: fraction digits beyond the 19 kept */
    int frac_digits = 0;
    if (p < n && b[p] == '.') {
        is_int = false;
        p++;
        if (p >= n || !is_digit(b[p]))
            return fail(r, p, "digit expected after '.'");
        while (p < n && is_digit(b[p])) {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(b[p] - '0');
                if (mant)
                    digits++;
                frac_digits++;
            } else {
                lost = true;
            }
            p++;
        }
    }
    long exp10 = 0;
    if (p < n && (b[p] == 'e' || b[p] == 'E')) {
        is_int = false;
        p++;
        bool eneg = false;
        if (p < n && (b[p] == '+' || b[p] == '-'))
            eneg = b[p++] == '-';
        if (p >= n || !is_digit(b[p]))
            return fail(r, p, "digit expected in exponent");
        while (p < n && is_digit(b[p])) {
            if (exp10 < 100000)
                exp10 = exp10 * 10 + (b[p] - '0');
            p++;
        }
        if (eneg)
            exp10 = -exp10;
    }
    r->pos = p;
    if (is_int && !dropped) {
        if (!neg && mant <= (uint64_t)INT64_MAX) {
            r->i64 = (int64_t)mant;
            return FU_JSON_INT;
        }
        if (neg && mant <= (uint64_t)INT64_MAX + 1) {
            r->i64 = mant == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mant;
            return FU_JSON_INT;
        }
    }
    long e = exp10 - frac_digits + dropped;
    if (digits <= 15 && !dropped && e >= -22 && e <= 22) {
        double d = (double)mant;
        d = e < 0 ? d / pow10_exact[-e] : d * pow10_exact[e];
        r->dbl = neg ? -d : d;
        return FU_JSON_DOUBLE;
    }
    if (!dropped && !lost && mant && e < 0 && e >= -19) {
        double d = div_pow10(mant, (int)-e);
        r->dbl = neg ? -d : d;
        return FU_JSON_DOUBLE;
    }
    /* The slow, exact path: strtod on a NUL-terminated copy, in the C locale. */
    pthread_once(&c_locale_once, make_c_locale);
    size_t len = p - start;
    char stackbuf[64];
    char *tmp = len < sizeof(stackbuf) ? stackbuf : malloc(len + 1);
    if (!tmp)
        return fail(r, start, "out of memory");
    memcpy(tmp, b + start, len);
    tmp[len] = '\0';
    r->dbl = c_locale ? strtod_l(tmp, NULL, c_locale) : strtod(tmp, NULL);
    if (tmp != stackbuf)
        free(tmp);
    return FU_JSON_DOUBLE;
}

/* ------------------------------------------------------------ values */

static enum fu_json_tok literal(struct fu_jr *r, const char *word, size_t wl, enum fu_json_tok tok)
{
    if (r->len - r->pos < wl || memcmp(r->buf + r->pos, word, wl))
        return fail(r, r->pos, "invalid literal");
    r->pos += wl;
    r->state = ST_AFTER_VALUE;
    return tok;
}

static enum fu_json_tok read_value(struct fu_jr *r)
{
    if (r->pos >= r->len)
        return fail(r, r->pos, "unexpected end of input (a value was expected)");
    char c = r->buf[r->pos];
    enum fu_json_tok t;
    switch (c) {
    case '{':
        r->pos++;
        return push(r, true);
    case '[':
        r->pos++;
        return push(r, false);
    case '"':
        r->pos++;
        t = read_string(r, FU_JSON_STRING);
        break;
    case 't':
        return literal(r, "true", 4, FU_JSON_TRUE);
    case 'f':
        return literal(r, "false", 5, FU_JSON_FALSE);
    case 'n':
        return literal(r, "null", 4, FU_JSON_NULL);
    default:
        if (c == '-' || is_digit(c)) {
            t = read_number(r);
            break;
        }
        return fail(r, r->pos, "unexpected character (a value was expected)");
    }
    if (t != FU_JSON_ERROR)
        r->state = ST_AFTER_VALUE;
    return t;
}

static enum fu_json_tok read_key(struct fu_jr *r)
{
    if (r->pos >= r->len)
        return fail(r, r->pos, "unexpected end of input (a key was expected)");
    if (r->buf[r->pos] != '"')
        return fail(r, r->pos, "a string key was expected");
    r->pos++;
    enum fu_json_tok t = read_string(r, FU_JSON_KEY);
    if (t == FU_JSON_ERROR)
        return t;
    skip_ws(r);
    if (r->pos >= r->len || r->buf[r->pos] != ':')
        return fail(r, r->pos, "':' expected after the key");
    r->pos++;
    r->state = ST_VALUE;
    return t;
}

enum fu_json_tok fu_jr_next(struct fu_jr *r)
{
    for (;;) {
        skip_ws(r);
        switch (r->state) {
        case ST_VALUE:
            return read_value(r);
        case ST_VALUE_OR_END:
            if (r->pos < r->len && r->buf[r->pos] == ']')
                return pop(r, false);
            return read_value(r);
        case ST_KEY_OR_END:
            if (r->pos < r->len && r->buf[r->pos] == '}')
                return pop(r, true);
            return read_key(r);
        case ST_KEY:
            return read_key(r);
        case ST_AFTER_VALUE:
            if (r->depth == 0) {
                if (r->pos != r->len)
                    return fail(r, r->pos, "trailing data after the document");
                r->state = ST_DONE;
                return FU_JSON_EOF;
            }
            if (r->pos >= r->len)
                return fail(r, r->pos, "unexpected end of input (unclosed container)");
            if (in_object(r)) {
                if (r->buf[r->pos] == '}')
                    return pop(r, true);
                if (r->buf[r->pos] != ',')
                    return fail(r, r->pos, "',' or '}' expected");
                r->pos++;
                r->state = ST_KEY;
            } else {
                if (r->buf[r->pos] == ']')
                    return pop(r, false);
                if (r->buf[r->pos] != ',')
                    return fail(r, r->pos, "',' or ']' expected");
                r->pos++;
                r->state = ST_VALUE;
            }
            continue;
        case ST_DONE:
            return FU_JSON_EOF;
        default:
            return FU_JSON_ERROR;
        }
    }
}

int fu_jr_skip(struct fu_jr *r)
{
    if (r->state != ST_KEY_OR_END && r->state != ST_VALUE_OR_END)
        return r->state == ST_ERROR ? -1 : 0;
    unsigned target = r->depth - 1;
    for (;;) {
        enum fu_json_tok t = fu_jr_next(r);
        if (t == FU_JSON_ERROR || t == FU_JSON_EOF)
            return -1;
        if ((t == FU_JSON_OBJ_END || t == FU_JSON_ARR_END) && r->depth == target)
            return 0;
    }
}

int fu_json_validate(const char *buf, size_t len, size_t *err_off, const char **err_msg)
{
    struct fu_jr r;
    fu_jr_init(&r, buf, len);
    enum fu_json_tok t;
    while ((t = fu_jr_next(&r)) > FU_JSON_EOF)
        ;
    if (t == FU_JSON_ERROR) {
        if (err_off)
            *err_off = r.err_off;
        if (err_msg)
            *err_msg = r.err_msg;
    }
    fu_jr_free(&r);
    return t == FU_JSON_ERROR ? -1 : 0;
}
