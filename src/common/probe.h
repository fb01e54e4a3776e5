/* Linear probing with backward-shift deletion, shared by the open-addressing tables. */
#ifndef FU_COMMON_PROBE_H
#define FU_COMMON_PROBE_H

#include <stdbool.h>
#include <stddef.h>

/* Deleting slot `i`, the entry at slot `j` (further along the same run) whose probe starts at
 * `home` must stay where it is when `home` lies cyclically in (i, j]; otherwise it moves back
 * into `i`. */
static inline bool fu_probe_stays(size_t i, size_t j, size_t home)
{
    return i <= j ? (home > i && home <= j) : (home > i || home <= j);
}

#endif
