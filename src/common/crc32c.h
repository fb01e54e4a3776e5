/* CRC-32C (Castagnoli), the checksum of journal records, snapshot files and the agent's
 * spool: the SSE4.2 instruction where the CPU has it, else a table, same result. */
#ifndef FU_COMMON_CRC32C_H
#define FU_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends `crc` (0 to start) over p[0..n). fu_crc32c(fu_crc32c(0, a), b) = crc of a then b. */
uint32_t fu_crc32c(uint32_t crc, const void *p, size_t n);
/* The table path alone (tests check the instruction path against it). */
uint32_t fu_crc32c_portable(uint32_t crc, const void *p, size_t n);

#endif
