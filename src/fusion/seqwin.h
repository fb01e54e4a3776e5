/* Which ingest batches of a session were applied, by the `seq` the agent numbers them with
 * (from 1, the same number when a batch is sent again): a batch sent again after its answer
 * was lost is recognised and not applied twice.
 *
 * Walk batches go over several connections at once, so they are applied out of order. The
 * window keeps `done` (every seq up to it was applied) and a bitmap of the FU_SEQWIN_SIZE
 * numbers above it, a ring indexed by seq mod size; done moves up over the marked run that
 * follows it. A seq beyond the window slides it: the numbers left below it count as applied
 * whether they were or not (the agent does not send again a batch that is thousands of
 * batches old). Fixed size and no allocation: it lives in struct fu_session, whose fields
 * hold `done` and the bitmap. Batches being applied right now are kept in a small "busy"
 * list, so that a copy arriving meanwhile waits instead of being applied twice. */
#ifndef FU_FUSION_SEQWIN_H
#define FU_FUSION_SEQWIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FU_SEQWIN_SIZE 4096
#define FU_SEQWIN_WORDS (FU_SEQWIN_SIZE / 64)

/* Whether `seq` (>= 1) counts as applied: at or below done, or marked above it. */
bool fu_seqwin_applied(uint64_t done, const uint64_t bits[FU_SEQWIN_WORDS], uint64_t seq);
/* Records `seq` as applied, sliding the window when seq is beyond it. */
void fu_seqwin_mark(uint64_t *done, uint64_t bits[FU_SEQWIN_WORDS], uint64_t seq);

/* The busy list: `n` slots, 0 = free. Adds seq: 0, -EBUSY when it is there already,
 * -ENOSPC when every slot is taken. */
int fu_seqwin_busy_add(uint64_t *busy, size_t n, uint64_t seq);
void fu_seqwin_busy_del(uint64_t *busy, size_t n, uint64_t seq);

#endif
