/* The window of applied batch numbers of a session; see seqwin.h. */
#include "fusion/seqwin.h"

#include <errno.h>

static bool bit(const uint64_t *bits, uint64_t seq)
{
    uint64_t i = seq % FU_SEQWIN_SIZE;
    return bits[i / 64] >> (i % 64) & 1;
}

static void set_bit(uint64_t *bits, uint64_t seq, bool on)
{
    uint64_t i = seq % FU_SEQWIN_SIZE, m = (uint64_t)1 << (i % 64);
    bits[i / 64] = on ? bits[i / 64] | m : bits[i / 64] & ~m;
}

bool fu_seqwin_applied(uint64_t done, const uint64_t bits[FU_SEQWIN_WORDS], uint64_t seq)
{
    return seq <= done || (seq - done <= FU_SEQWIN_SIZE && bit(bits, seq));
}

void fu_seqwin_mark(uint64_t *done, uint64_t bits[FU_SEQWIN_WORDS], uint64_t seq)
{
    if (seq <= *done)
        return;
    if (seq - *done > FU_SEQWIN_SIZE) {
        /* Slide: the window's new low edge is seq - size; what falls below counts as
         * applied. Its bits are cleared for the numbers that reuse them. */
        uint64_t low = seq - FU_SEQWIN_SIZE;
        if (low - *done >= FU_SEQWIN_SIZE) {
            for (int i = 0; i < FU_SEQWIN_WORDS; i++)
                bits[i] = 0;
        } else {
            for (uint64_t s = *done + 1; s <= low; s++)
                set_bit(bits, s, false);
        }
        *done = low;
    }
    set_bit(bits, seq, true);
    while (bit(bits, *done + 1)) { /* the run that follows done is applied too */
        set_bit(bits, *done + 1, false);
        (*done)++;
    }
}

int fu_seqwin_busy_add(uint64_t *busy, size_t n, uint64_t seq)
{
    size_t free_slot = n;
    for (size_t i = 0; i < n; i++) {
        if (busy[i] == seq)
            return -EBUSY;
        if (!busy[i] && free_slot == n)
            free_slot = i;
    }
    if (free_slot == n)
        return -ENOSPC;
    busy[free_slot] = seq;
    return 0;
}

void fu_seqwin_busy_del(uint64_t *busy, size_t n, uint64_t seq)
{
    for (size_t i = 0; i < n; i++)
        if (busy[i] == seq)
            busy[i] = 0;
}
