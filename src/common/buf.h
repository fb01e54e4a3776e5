/* fu_buf: the one growable byte buffer used everywhere (git's strbuf idea).
 * The buffer owns `data`; it is always NUL-terminated once anything was appended, so
 * `data` can be handed to C string functions. Allocation failure is sticky: `oom` is set,
 * later appends are no-ops, and callers check once at the end. */
#ifndef FU_BUF_H
#define FU_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct fu_buf {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
    bool oom; /* an allocation failed; contents are truncated */
};

#define FU_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0, false                                                                          \
    }

void fu_buf_init(struct fu_buf *b);
/* Make room for `extra` more bytes (plus the NUL). Returns 0 or -ENOMEM. */
int fu_buf_grow(struct fu_buf *b, size_t extra);
void fu_buf_append_slow(struct fu_buf *b, const void *p, size_t n);
void fu_buf_puts(struct fu_buf *b, const char *s);
void fu_buf_printf(struct fu_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fu_buf_vprintf(struct fu_buf *b, const char *fmt, va_list ap);
void fu_buf_reset(struct fu_buf *b); /* len = 0 and oom cleared; keeps the allocation */
/* Hand the string to the caller (who frees it); the buffer is left empty. */
char *fu_buf_detach(struct fu_buf *b);
void fu_buf_free(struct fu_buf *b);
/* Appends; inline because the JSON writer calls these per token. */
static inline void fu_buf_append(struct fu_buf *b, const void *p, size_t n)
{
    if (n < b->cap - b->len) { /* cap == 0 takes the slow path */
        if (n)
            memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return;
    }
    fu_buf_append_slow(b, p, n);
}

static inline void fu_buf_putc(struct fu_buf *b, char c)
{
    fu_buf_append(b, &c, 1);
}

/* A pointer to a NUL-terminated string, "" for an empty buffer. */
static inline const char *fu_buf_str(const struct fu_buf *b)
{
    return b->data ? b->data : "";
}

#endif
