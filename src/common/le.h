/* Little-endian integers in byte arrays: the fixed headers of Fusion's journal records,
 * journal segments and snapshot files. */
#ifndef FU_COMMON_LE_H
#define FU_COMMON_LE_H

#include <stdint.h>

static inline void fu_put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void fu_put_le64(unsigned char *p, uint64_t v)
{
    fu_put_le32(p, (uint32_t)v);
    fu_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t fu_get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t fu_get_le64(const unsigned char *p)
{
    return (uint64_t)fu_get_le32(p) | (uint64_t)fu_get_le32(p + 4) << 32;
}

#endif
