/* Large hash tables on transparent huge pages: their accesses are random, and with 4 KiB
 * pages nearly every one of them misses the TLB as well as the cache. An allocation of 2 MiB
 * or more is mapped 2 MiB-aligned and advised MADV_HUGEPAGE (which works where THP is "always"
 * or "madvise"); smaller ones come from malloc. For arrays that are filled at once (a huge
 * page is resident as a whole from its first touch: sparse or growing arrays would cost
 * memory). The memory is not zeroed in the malloc case. */
#ifndef FU_COMMON_BIGMEM_H
#define FU_COMMON_BIGMEM_H

#include <stddef.h>

void *fu_big_alloc(size_t size);
/* `size` must be the one given to fu_big_alloc. NULL is ignored. */
void fu_big_free(void *p, size_t size);

#endif
