/* Huge-page-friendly allocations; see bigmem.h. */
#include "common/bigmem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE (2u << 20)

void *fu_big_alloc(size_t size)
{
    if (size < HUGE)
        return malloc(size);
    size_t len = (size + HUGE - 1) & ~(size_t)(HUGE - 1);
    if (len < size || len > SIZE_MAX - HUGE)
        return NULL;
    /* Mapped one huge page longer, then trimmed to an aligned start. */
    char *p = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    size_t head = (HUGE - (uintptr_t)p % HUGE) % HUGE;
    if (head)
        munmap(p, head);
    munmap(p + head + len, HUGE - head);
    p += head;
    madvise(p, len, MADV_HUGEPAGE); /* advice: where THP is off, 4 KiB pages serve */
    return p;
}

void fu_big_free(void *p, size_t size)
{
    if (!p)
        return;
    if (size < HUGE) {
        free(p);
        return;
    }
    munmap(p, (size + HUGE - 1) & ~(size_t)(HUGE - 1));
}
