/* Growable byte buffer; see buf.h for the ownership and OOM rules. */
#include "common/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fu_buf_init(struct fu_buf *b)
{
    *b = (struct fu_buf)FU_BUF_INIT;
}

int fu_buf_grow(struct fu_buf *b, size_t extra)
{
    if (b->oom)
        return -ENOMEM;
    if (extra >= SIZE_MAX / 2 - b->len) {
        b->oom = true;
        return -ENOMEM;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = true;
        return -ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void fu_buf_append_slow(struct fu_buf *b, const void *p, size_t n)
{
    if (fu_buf_grow(b, n) < 0)
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void fu_buf_puts(struct fu_buf *b, const char *s)
{
    fu_buf_append(b, s, strlen(s));
}

void fu_buf_vprintf(struct fu_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, cp);
    va_end(cp);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        fu_buf_append(b, tmp, (size_t)n);
        return;
    }
    if (fu_buf_grow(b, (size_t)n) < 0)
        return;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void fu_buf_printf(struct fu_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fu_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void fu_buf_reset(struct fu_buf *b)
{
    b->len = 0;
    b->oom = false; /* a fresh start: a failure of the old contents does not stick */
    if (b->data)
        b->data[0] = '\0';
}

char *fu_buf_detach(struct fu_buf *b)
{
    char *s = b->data;
    if (!s)
        s = calloc(1, 1);
    fu_buf_init(b);
    return s;
}

void fu_buf_free(struct fu_buf *b)
{
    free(b->data);
    fu_buf_init(b);
}
