/* A view's logical clock (Fustor v1 §3.7): the skew between Fusion's clock and the storage's
 * is the mode of the integer samples int(receive_time - mtime) of the last 10,000 realtime
 * rows, and the watermark is receive_time - skew. A single `touch -d 2050` never becomes the
 * mode.
 *
 * Every update is O(1): counts per skew value in a hash table, values grouped by count in
 * lists, and the highest count tracked. Ties: the current mode stays while it is among the
 * values with the highest count; otherwise the value that reached that count first wins.
 * (v1 picks the smallest tied skew, which needs a search; both rules are arbitrary, this one
 * does not flap between tied values.)
 *
 * Cold start: with no sample yet, the skew is the one seeded from what the agent reports of
 * the storage's clock (the `index` of v1 events: the agent's time plus its measured drift from
 * the storage, in ms), and with no seed either, 0.
 *
 * Times are passed in, never read: apply stays a function of the records. Not thread-safe. */
#ifndef FU_VIEW_FS_CLOCK_H
#define FU_VIEW_FS_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#define FU_CLOCK_WINDOW 10000

struct fu_clock_val {
    int64_t skew;
    uint32_t count;
    uint32_t prev, next; /* in the list of values with the same count */
};

struct fu_clock {
    int64_t ring[FU_CLOCK_WINDOW];
    uint32_t ring_len, ring_head; /* oldest sample at ring_head once full */
    /* At most FU_CLOCK_WINDOW distinct values live at once; entry 0 is unused. */
    struct fu_clock_val vals[FU_CLOCK_WINDOW + 1];
    uint32_t free_head, nvals;
    uint32_t table[4 * FU_CLOCK_WINDOW]; /* open addressing: index into vals, 0 = empty */
    uint32_t level_head[FU_CLOCK_WINDOW + 1], level_tail[FU_CLOCK_WINDOW + 1];
    uint32_t max_count;
    uint32_t mode; /* index into vals, 0 = no sample */
    bool seeded;
    double seed_skew;
};

void fu_clock_init(struct fu_clock *c);
/* A realtime row's sample: int(recv_time - mtime), truncated toward zero as v1's int(). */
void fu_clock_sample(struct fu_clock *c, double recv_time, double mtime);
/* The cold-start seed: the storage clock as the agent reports it, at `recv_time`. */
void fu_clock_seed(struct fu_clock *c, double recv_time, double storage_now);
/* The skew in force: the mode, else the seed, else 0. `calibrated` says whether samples
 * exist. */
double fu_clock_skew(const struct fu_clock *c, bool *calibrated);
static inline double fu_clock_watermark(const struct fu_clock *c, double now)
{
    return now - fu_clock_skew(c, 0);
}
uint32_t fu_clock_samples(const struct fu_clock *c);
/* The record of value `skew` (an index into vals), 0 when it has none: what the clock's own
 * table lookup finds (a loaded clock must answer the same). */
uint32_t fu_clock_lookup(const struct fu_clock *c, int64_t skew);

#endif
