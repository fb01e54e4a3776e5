/* A view's whole in-memory state (its tree and consistency state, clock included) as bytes
 * and back, exactly: node ids, map indexes and heap entries survive, so a restored view
 * continues as the original would. The durable-snapshot writer frames these bytes (header
 * with FU_STATE_FORMAT, checksum, compression); this module does no I/O. state_io.c
 * documents the layout.
 *
 * Below the two calls, the byte codec that tree.c's fu_tree_dump/fu_tree_load share with
 * state_io.c: little-endian fixed-width integers and IEEE doubles, appended to a fu_buf, read
 * through a cursor that never reads past its end.
 *
 * Not thread-safe: the caller holds the view's lock (a read lock is enough to write). */
#ifndef FU_VIEW_FS_STATE_IO_H
#define FU_VIEW_FS_STATE_IO_H

#include "common/buf.h"
#include "fusion/view_fs/arbitrate.h"
#include "fusion/view_fs/tree.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The version of the layout; a change to it (or to what it means) takes the next number. */
#define FU_STATE_FORMAT 2 /* 2: lineages name their pipe; format 1 is still read */

/* Appends the whole state of tree t and consistency state s to out. Returns 0 or -ENOMEM. */
int fu_state_write(const struct fu_tree *t, const struct fu_fs *s, struct fu_buf *out);
/* Replaces the state of t and s (both initialised: fu_tree_init, fu_fs_init attached to t) with
 * the one in buf[0..len). s's configuration (s->hot, s->tomb_ttl) is kept, not read from the
 * buffer. Returns 0; -EINVAL when the bytes are not a state this code wrote (truncated,
 * inconsistent, an index out of range) — it never reads out of bounds nor crashes on any input;
 * -ENOMEM. On failure t and s are left empty and valid (as after init), never half-loaded. */
int fu_state_read(struct fu_tree *t, struct fu_fs *s, const void *buf, size_t len);

/* ------------------------------------------------------------ codec */

/* The bulk copies of arrays (nodes, slots) are the in-memory bytes. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the state format is little-endian; a big-endian host needs byte swaps here");

static inline void fu_state_put_u8(struct fu_buf *b, uint8_t v)
{
    fu_buf_append(b, &v, 1);
}
static inline void fu_state_put_u32(struct fu_buf *b, uint32_t v)
{
    fu_buf_append(b, &v, 4);
}
static inline void fu_state_put_u64(struct fu_buf *b, uint64_t v)
{
    fu_buf_append(b, &v, 8);
}
static inline void fu_state_put_f64(struct fu_buf *b, double v)
{
    fu_buf_append(b, &v, 8);
}
/* Room for n bytes at the end of b, for the caller to fill; NULL (and b->oom) on OOM. */
static inline unsigned char *fu_state_reserve(struct fu_buf *b, size_t n)
{
    if (fu_buf_grow(b, n) < 0)
        return NULL;
    unsigned char *p = (unsigned char *)b->data + b->len;
    b->len += n;
    b->data[b->len] = '\0';
    return p;
}

/* A read cursor. Reading past `end` sets `bad` (sticky) and yields zeros, so a loader reads a
 * group of fields and checks once. */
struct fu_state_rd {
    const unsigned char *p, *end;
    bool bad;
    uint32_t format; /* of the state being read: FU_STATE_FORMAT, or an older one */
};

/* The next n bytes, or NULL (and bad) when fewer remain. */
static inline const unsigned char *fu_state_take(struct fu_state_rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *p = r->p;
    r->p += n;
    return p;
}
/* Copies the next n bytes to out (zeros when fewer remain); out may be NULL when n is 0. */
static inline void fu_state_get(struct fu_state_rd *r, void *out, size_t n)
{
    const unsigned char *p = fu_state_take(r, n);
    if (!n)
        return;
    if (p)
        memcpy(out, p, n);
    else
        memset(out, 0, n);
}
static inline uint8_t fu_state_u8(struct fu_state_rd *r)
{
    uint8_t v;
    fu_state_get(r, &v, 1);
    return v;
}
static inline uint32_t fu_state_u32(struct fu_state_rd *r)
{
    uint32_t v;
    fu_state_get(r, &v, 4);
    return v;
}
static inline uint64_t fu_state_u64(struct fu_state_rd *r)
{
    uint64_t v;
    fu_state_get(r, &v, 8);
    return v;
}
static inline double fu_state_f64(struct fu_state_rd *r)
{
    double v;
    fu_state_get(r, &v, 8);
    return v;
}
/* Whether n records of at least `size` bytes each can still follow: checked before
 * allocating for a count read from the bytes, so a corrupted count cannot ask for more
 * memory than the input could describe. Sets bad when not. */
static inline bool fu_state_room(struct fu_state_rd *r, uint64_t n, size_t size)
{
    if (r->bad || n > (uint64_t)(r->end - r->p) / size) {
        r->bad = true;
        return false;
    }
    return true;
}

#endif
