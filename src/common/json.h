/* JSON: a pull reader over a buffer and a streaming writer into a fu_buf, both our own
 * (DESIGN.md: the packaged parsers are 2-5x too slow for the ingest goal).
 *
 * Strings are byte strings. File names on Linux need not be valid UTF-8, so the writer and
 * reader agree on one reversible escape (PEP 383 "surrogateescape", as Python's
 * os.fsdecode): every byte that is not part of a valid UTF-8 sequence is written as the lone
 * low surrogate \udc80..\udcff, and the reader turns such a lone escape back into that byte.
 * Valid UTF-8 is written as is. See docs/json.md. */
#ifndef FU_JSON_H
#define FU_JSON_H

#include "common/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ reader */

/* True when none of the 8 bytes in x is below 0x20, '"' or '\\' (and, with high = true,
 * none has the top bit set): the word-at-a-time test both the reader's string scan and the
 * writer's escaper use. Each check is the exact "has a byte less than n / equal to c" trick. */
static inline bool fu_json_plain8(uint64_t x, bool high)
{
    const uint64_t ones = 0x0101010101010101ull, top = 0x8080808080808080ull;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    uint64_t hit = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b);
    if (high)
        hit |= x;
    return !(hit & top);
}

enum fu_json_tok {
    FU_JSON_ERROR = -1, /* sticky; see err_off and err_msg */
    FU_JSON_EOF = 0,    /* the document ended cleanly */
    FU_JSON_OBJ_BEGIN,
    FU_JSON_OBJ_END,
    FU_JSON_ARR_BEGIN,
    FU_JSON_ARR_END,
    FU_JSON_KEY,    /* str, str_len */
    FU_JSON_STRING, /* str, str_len */
    FU_JSON_INT,    /* i64: an integer literal that fits int64_t */
    FU_JSON_DOUBLE, /* dbl: any other number (fraction, exponent, or beyond int64) */
    FU_JSON_TRUE,
    FU_JSON_FALSE,
    FU_JSON_NULL,
};

#define FU_JSON_DEFAULT_DEPTH 64
#define FU_JSON_MAX_DEPTH 1024

/* A pull parser. The input buffer is borrowed and must outlive the reader. After KEY or
 * STRING, `str` points into the input when the string had no escapes (zero-copy), else into
 * the reader's scratch buffer; either way it is valid until the next call, and it is not
 * NUL-terminated. A decoded string may contain NUL bytes (from \u0000): code that turns
 * strings into paths must reject them. */
struct fu_jr {
    /* results of the last fu_jr_next() */
    const char *str;
    size_t str_len;
    int64_t i64;
    double dbl;
    /* set once an error occurred */
    size_t err_off;      /* byte offset of the problem */
    const char *err_msg; /* static text: "unterminated string", ... */

    /* private */
    const char *buf;
    size_t len, pos;
    unsigned depth, max_depth;
    int state;
    uint64_t kinds[FU_JSON_MAX_DEPTH / 64]; /* bit set = that level is an object */
    struct fu_buf scratch;
};

void fu_jr_init(struct fu_jr *r, const char *buf, size_t len);
/* Nesting limit (1..FU_JSON_MAX_DEPTH); call before the first fu_jr_next(). */
void fu_jr_set_max_depth(struct fu_jr *r, unsigned depth);
enum fu_json_tok fu_jr_next(struct fu_jr *r);
/* After OBJ_BEGIN or ARR_BEGIN: consumes the rest of that container. After any other token
 * it does nothing. Returns 0, or -1 if the document is malformed. */
int fu_jr_skip(struct fu_jr *r);
/* The current nesting depth (0 at the top level). */
static inline unsigned fu_jr_depth(const struct fu_jr *r)
{
    return r->depth;
}
void fu_jr_free(struct fu_jr *r);

/* Checks a whole document. Returns 0, or -1 with the offset and reason of the first error. */
int fu_json_validate(const char *buf, size_t len, size_t *err_off, const char **err_msg);

/* ------------------------------------------------------------------ writer */

/* Streams JSON into `out`, adding commas and colons itself. The caller pairs begin/end
 * calls; nesting deeper than FU_JSON_MAX_DEPTH is not tracked (commas may be wrong there).
 * Allocation failures are sticky in out->oom. */
struct fu_jw {
    struct fu_buf *out; /* borrowed */
    unsigned depth;
    bool need_comma;
    bool after_key;
};

void fu_jw_init(struct fu_jw *w, struct fu_buf *out);
void fu_jw_obj_begin(struct fu_jw *w);
void fu_jw_obj_end(struct fu_jw *w);
void fu_jw_arr_begin(struct fu_jw *w);
void fu_jw_arr_end(struct fu_jw *w);
void fu_jw_key(struct fu_jw *w, const char *k, size_t n);
/* A key the program spells (an identifier: no quote, backslash, control or non-ASCII byte):
 * written as is, without escaping. Keys that come from input go through fu_jw_key. */
void fu_jw_ckey(struct fu_jw *w, const char *k);
void fu_jw_str(struct fu_jw *w, const char *s, size_t n);
void fu_jw_cstr(struct fu_jw *w, const char *s); /* NULL writes null */
void fu_jw_int(struct fu_jw *w, int64_t v);
void fu_jw_uint(struct fu_jw *w, uint64_t v);
/* The shortest text that reads back to the same double, always with a '.' or an exponent
 * so it reads back as a double; NaN and infinities (not JSON) are written as null. */
void fu_jw_double(struct fu_jw *w, double v);
void fu_jw_bool(struct fu_jw *w, bool v);
void fu_jw_null(struct fu_jw *w);
/* A value that is already JSON text, copied verbatim. */
void fu_jw_raw(struct fu_jw *w, const char *json, size_t n);
/* The same for a NUL-terminated text; NULL writes null. */
void fu_jw_json(struct fu_jw *w, const char *json);

/* Copies the value whose first token `t` was just read from `r` into `w`, token by token:
 * the result is the writer's canonical form (non-UTF-8 bytes escaped, numbers normalised).
 * Returns 0, or -1 if the reader hit an error (see r->err_msg). */
int fu_json_copy_value(struct fu_jr *r, enum fu_json_tok t, struct fu_jw *w);

/* Appends s[0..n) as a quoted JSON string: '"' and '\' escaped, control characters as \n,
 * \t, \r, \b, \f or \u00XX, valid UTF-8 copied, each other byte as \udcXX. */
void fu_json_escape(struct fu_buf *out, const char *s, size_t n);

#endif
