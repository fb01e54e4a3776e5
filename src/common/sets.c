/* The consistency state's indexes; see sets.h. Open addressing with linear probing and
 * backward-shift deletion, at a load of at most 1/2. */
#include "common/sets.h"

#include "common/probe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ------------------------------------------------------------ path map */

static size_t pm_home(const struct fu_pathmap *m, uint64_t hash)
{
    return (size_t)hash & (m->nslots - 1);
}

static void pm_insert_slot(struct fu_pathmap *m, uint32_t idx)
{
    size_t i = pm_home(m, m->ents[idx].hash);
    while (m->slots[i])
        i = (i + 1) & (m->nslots - 1);
    m->slots[i] = idx + 1;
}

static int pm_grow(struct fu_pathmap *m)
{
    size_t n = m->nslots ? m->nslots * 2 : 64;
    uint32_t *s = calloc(n, sizeof(*s));
    if (!s)
        return -ENOMEM;
    free(m->slots);
    m->slots = s;
    m->nslots = n;
    for (uint32_t i = 0; i < m->nents; i++)
        if (m->ents[i].path)
            pm_insert_slot(m, i);
    return 0;
}

uint32_t fu_pathmap_find(const struct fu_pathmap *m, const char *path, size_t len)
{
    if (!m->count)
        return FU_SET_NONE;
    uint64_t h = XXH3_64bits(path, len);
    for (size_t i = pm_home(m, h);; i = (i + 1) & (m->nslots - 1)) {
        uint32_t s = m->slots[i];
        if (!s)
            return FU_SET_NONE;
        const struct fu_pathent *e = &m->ents[s - 1];
        if (e->hash == h && e->len == len && !memcmp(e->path, path, len))
            return s - 1;
    }
}

uint32_t fu_pathmap_put(struct fu_pathmap *m, const char *path, size_t len, bool *created)
{
    uint32_t idx = fu_pathmap_find(m, path, len);
    *created = idx == FU_SET_NONE;
    if (idx != FU_SET_NONE)
        return idx;
    if ((m->count + 1) * 2 > m->nslots && pm_grow(m) < 0)
        return FU_SET_NONE;
    char *copy = malloc(len + 1);
    if (!copy)
        return FU_SET_NONE;
    memcpy(copy, path, len);
    copy[len] = '\0';
    if (m->free_head) { /* the free list runs through seq, as index + 1 */
        idx = m->free_head - 1;
        m->free_head = m->ents[idx].seq;
    } else {
        if (m->nents == m->cap) {
            uint32_t cap = m->cap ? m->cap * 2 : 64;
            struct fu_pathent *e = realloc(m->ents, cap * sizeof(*e));
            if (!e) {
                free(copy);
                return FU_SET_NONE;
            }
            m->ents = e;
            m->cap = cap;
        }
        idx = m->nents++;
    }
    m->ents[idx] =
        (struct fu_pathent){.path = copy, .len = (uint32_t)len, .hash = XXH3_64bits(path, len)};
    pm_insert_slot(m, idx);
    m->count++;
    return idx;
}

void fu_pathmap_del(struct fu_pathmap *m, uint32_t idx)
{
    struct fu_pathent *e = &m->ents[idx];
    size_t mask = m->nslots - 1, i = pm_home(m, e->hash);
    while (m->slots[i] != idx + 1)
        i = (i + 1) & mask;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        uint32_t s = m->slots[j];
        if (!s)
            break;
        size_t h = pm_home(m, m->ents[s - 1].hash);
        bool stays = fu_probe_stays(i, j, h);
        if (!stays) {
            m->slots[i] = s;
            i = j;
        }
    }
    m->slots[i] = 0;
    free(e->path);
    e->path = NULL;
    e->seq = m->free_head;
    m->free_head = idx + 1;
    m->count--;
    if (!m->count) { /* empty: start over, so the pool does not keep its high-water mark */
        m->nents = 0;
        m->free_head = 0;
        memset(m->slots, 0, m->nslots * sizeof(*m->slots));
    }
}

void fu_pathmap_clear(struct fu_pathmap *m)
{
    for (uint32_t i = 0; i < m->nents; i++)
        free(m->ents[i].path);
    m->nents = m->count = 0;
    m->free_head = 0;
    if (m->slots)
        memset(m->slots, 0, m->nslots * sizeof(*m->slots));
}

void fu_pathmap_free(struct fu_pathmap *m)
{
    fu_pathmap_clear(m);
    free(m->ents);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

int fu_pathmap_restore(struct fu_pathmap *m)
{
    if ((m->nslots & (m->nslots - 1)) || (uint64_t)m->count * 2 > m->nslots || m->cap > m->nslots ||
        m->nents > m->cap || m->count > m->nents)
        return -EINVAL;
    uint32_t live = 0;
    for (uint32_t i = 0; i < m->nents; i++) {
        struct fu_pathent *e = &m->ents[i];
        if (!e->path)
            continue;
        e->hash = XXH3_64bits(e->path, e->len);
        live++;
    }
    if (live != m->count)
        return -EINVAL;
    /* A list that loops or repeats an entry runs past the number of free entries. */
    uint32_t nfree = 0;
    for (uint32_t f = m->free_head; f; f = m->ents[f - 1].seq)
        if (f > m->nents || m->ents[f - 1].path || ++nfree > m->nents - m->count)
            return -EINVAL;
    if (nfree != m->nents - m->count)
        return -EINVAL;
    uint32_t used = 0;
    for (size_t i = 0; i < m->nslots; i++) {
        uint32_t s = m->slots[i];
        if (!s)
            continue;
        if (s > m->nents || !m->ents[s - 1].path)
            return -EINVAL;
        used++;
    }
    if (used != m->count)
        return -EINVAL;
    /* As many slots as entries, and each entry found: each is in exactly one. */
    for (uint32_t i = 0; i < m->nents; i++)
        if (m->ents[i].path && fu_pathmap_find(m, m->ents[i].path, m->ents[i].len) != i)
            return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------ id map */

static size_t im_home(const struct fu_idmap *m, uint32_t id)
{
    return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 20) & (m->nslots - 1);
}

static int im_grow(struct fu_idmap *m)
{
    size_t n = m->nslots ? m->nslots * 2 : 64;
    struct fu_ident *s = malloc(n * sizeof(*s));
    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        s[i].id = FU_SET_NONE;
    struct fu_ident *old = m->slots;
    size_t oldn = m->nslots;
    m->slots = s;
    m->nslots = n;
    for (size_t i = 0; i < oldn; i++) {
        if (old[i].id == FU_SET_NONE)
            continue;
        size_t j = im_home(m, old[i].id);
        while (s[j].id != FU_SET_NONE)
            j = (j + 1) & (n - 1);
        s[j] = old[i];
    }
    free(old);
    return 0;
}

struct fu_ident *fu_idmap_find(const struct fu_idmap *m, uint32_t id)
{
    if (!m->count)
        return NULL;
    for (size_t i = im_home(m, id);; i = (i + 1) & (m->nslots - 1)) {
        if (m->slots[i].id == id)
            return &m->slots[i];
        if (m->slots[i].id == FU_SET_NONE)
            return NULL;
    }
}

struct fu_ident *fu_idmap_put(struct fu_idmap *m, uint32_t id, bool *created)
{
    struct fu_ident *e = fu_idmap_find(m, id);
    *created = !e;
    if (e)
        return e;
    if ((m->count + 1) * 2 > m->nslots && im_grow(m) < 0)
        return NULL;
    size_t i = im_home(m, id);
    while (m->slots[i].id != FU_SET_NONE)
        i = (i + 1) & (m->nslots - 1);
    m->slots[i] = (struct fu_ident){.id = id};
    m->count++;
    return &m->slots[i];
}

bool fu_idmap_del(struct fu_idmap *m, uint32_t id)
{
    struct fu_ident *e = fu_idmap_find(m, id);
    if (!e)
        return false;
    size_t mask = m->nslots - 1, i = (size_t)(e - m->slots);
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (m->slots[j].id == FU_SET_NONE)
            break;
        size_t h = im_home(m, m->slots[j].id);
        bool stays = fu_probe_stays(i, j, h);
        if (!stays) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].id = FU_SET_NONE;
    m->count--;
    return true;
}

void fu_idmap_clear(struct fu_idmap *m)
{
    for (size_t i = 0; i < m->nslots; i++)
        m->slots[i].id = FU_SET_NONE;
    m->count = 0;
}

void fu_idmap_free(struct fu_idmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

int fu_idmap_check(const struct fu_idmap *m)
{
    if ((m->nslots & (m->nslots - 1)) || m->count > m->nslots / 2)
        return -EINVAL;
    size_t used = 0;
    for (size_t i = 0; i < m->nslots; i++)
        used += m->slots[i].id != FU_SET_NONE;
    if (used != m->count)
        return -EINVAL;
    /* A lookup finds each id at its own slot: reachable, and not shadowed by a duplicate. */
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].id != FU_SET_NONE && fu_idmap_find(m, m->slots[i].id) != &m->slots[i])
            return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------ heap */

static bool before(const struct fu_deadline *a, const struct fu_deadline *b)
{
    /* Ties by id then seq, so the order of expiry is a function of the state alone. */
    if (a->at != b->at)
        return a->at < b->at;
    if (a->id != b->id)
        return a->id < b->id;
    return a->seq < b->seq;
}

int fu_heap_push(struct fu_heap *h, double at, uint32_t id, uint32_t seq)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct fu_deadline *v = realloc(h->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    struct fu_deadline d = {at, id, seq};
    while (i) {
        size_t p = (i - 1) / 2;
        if (!before(&d, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = d;
    return 0;
}

void fu_heap_pop(struct fu_heap *h)
{
    if (!h->n)
        return;
    struct fu_deadline last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    /* Shrink after a burst, so a quiet view gives the memory back. */
    if (h->cap > 1024 && h->n < h->cap / 4) {
        struct fu_deadline *v = realloc(h->v, h->cap / 2 * sizeof(*v));
        if (v) {
            h->v = v;
            h->cap /= 2;
        }
    }
}

void fu_heap_free(struct fu_heap *h)
{
    free(h->v);
    memset(h, 0, sizeof(*h));
}
