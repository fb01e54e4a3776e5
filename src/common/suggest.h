/* "Did you mean ...?": picks the closest candidate by edit distance. */
#ifndef FU_SUGGEST_H
#define FU_SUGGEST_H

#include <stddef.h>

/* Edit distance (Damerau: insert, delete, substitute, swap adjacent), capped at 64 chars. */
size_t fu_edit_distance(const char *a, const char *b);
/* The candidate closest to `word`, or NULL when none is close enough to be a likely typo
 * (distance <= 1 for short words, <= a third of the length for longer ones). */
const char *fu_suggest(const char *word, const char *const *cands, size_t n);

#endif
