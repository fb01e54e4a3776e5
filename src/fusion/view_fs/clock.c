/* The logical clock; see clock.h. */
#include "fusion/view_fs/clock.h"

#include "common/probe.h"

#include <math.h>
#include <string.h>

#define NSLOTS (4 * FU_CLOCK_WINDOW)

static uint32_t home(int64_t skew)
{
    uint64_t h = (uint64_t)skew * 0x9E3779B97F4A7C15ull;
    return (uint32_t)((h >> 32) % NSLOTS);
}

static uint32_t find(const struct fu_clock *c, int64_t skew, uint32_t *slot)
{
    for (uint32_t i = home(skew);; i = (i + 1) % NSLOTS) {
        uint32_t v = c->table[i];
        if (!v || c->vals[v].skew == skew) {
            *slot = i;
            return v;
        }
    }
}

/* Backward-shift deletion, so probes never cross tombstones. */
static void table_remove(struct fu_clock *c, uint32_t i)
{
    for (uint32_t j = i;;) {
        j = (j + 1) % NSLOTS;
        uint32_t v = c->table[j];
        if (!v)
            break;
        uint32_t h = home(c->vals[v].skew);
        bool stays = fu_probe_stays(i, j, h);
        if (!stays) {
            c->table[i] = v;
            i = j;
        }
    }
    c->table[i] = 0;
}

static void level_unlink(struct fu_clock *c, uint32_t v)
{
    struct fu_clock_val *x = &c->vals[v];
    if (x->prev)
        c->vals[x->prev].next = x->next;
    else
        c->level_head[x->count] = x->next;
    if (x->next)
        c->vals[x->next].prev = x->prev;
    else
        c->level_tail[x->count] = x->prev;
    x->prev = x->next = 0;
}

static void level_append(struct fu_clock *c, uint32_t v)
{
    struct fu_clock_val *x = &c->vals[v];
    x->prev = c->level_tail[x->count];
    x->next = 0;
    if (x->prev)
        c->vals[x->prev].next = v;
    else
        c->level_head[x->count] = v;
    c->level_tail[x->count] = v;
}

uint32_t fu_clock_lookup(const struct fu_clock *c, int64_t skew)
{
    uint32_t slot;
    return find(c, skew, &slot);
}

void fu_clock_init(struct fu_clock *c)
{
    memset(c, 0, sizeof(*c));
    /* vals[1..N] on the free list through .next */
    for (uint32_t i = 1; i < FU_CLOCK_WINDOW; i++)
        c->vals[i].next = i + 1;
    c->free_head = 1;
}

static void add(struct fu_clock *c, int64_t skew)
{
    uint32_t slot, v = find(c, skew, &slot);
    if (!v) {
        v = c->free_head;
        c->free_head = c->vals[v].next;
        c->vals[v] = (struct fu_clock_val){.skew = skew};
        c->table[slot] = v;
        c->nvals++;
    } else {
        level_unlink(c, v);
    }
    c->vals[v].count++;
    level_append(c, v);
    if (c->vals[v].count > c->max_count) {
        c->max_count = c->vals[v].count;
        c->mode = v;
    }
}

static void drop(struct fu_clock *c, int64_t skew)
{
    uint32_t slot, v = find(c, skew, &slot);
    if (!v)
        return;
    level_unlink(c, v);
    c->vals[v].count--;
    bool gone = !c->vals[v].count;
    if (!gone)
        level_append(c, v);
    if (v == c->mode) {
        if (c->level_head[c->max_count]) {
            c->mode = c->level_head[c->max_count]; /* the first to reach the top count */
        } else {
            c->max_count--; /* the mode is still (one of) the most frequent */
            if (gone)
                c->mode = c->max_count ? c->level_head[c->max_count] : 0;
        }
    }
    if (gone) {
        table_remove(c, slot);
        c->vals[v].next = c->free_head;
        c->free_head = v;
        c->nvals--;
    }
}

void fu_clock_sample(struct fu_clock *c, double recv_time, double mtime)
{
    double d = recv_time - mtime;
    if (!isfinite(d) || fabs(d) > 9.0e15)
        return;
    int64_t skew = (int64_t)d; /* truncation toward zero, as Python's int() */
    if (c->ring_len == FU_CLOCK_WINDOW) {
        drop(c, c->ring[c->ring_head]);
        c->ring[c->ring_head] = skew;
        c->ring_head = (c->ring_head + 1) % FU_CLOCK_WINDOW;
    } else {
        c->ring[(c->ring_head + c->ring_len) % FU_CLOCK_WINDOW] = skew;
        c->ring_len++;
    }
    add(c, skew);
}

void fu_clock_seed(struct fu_clock *c, double recv_time, double storage_now)
{
    double d = recv_time - storage_now;
    if (!isfinite(d))
        return;
    c->seeded = true;
    c->seed_skew = d;
}

double fu_clock_skew(const struct fu_clock *c, bool *calibrated)
{
    if (calibrated)
        *calibrated = c->mode != 0;
    if (c->mode)
        return (double)c->vals[c->mode].skew;
    return c->seeded ? c->seed_skew : 0;
}

uint32_t fu_clock_samples(const struct fu_clock *c)
{
    return c->ring_len;
}
