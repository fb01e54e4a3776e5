/* fu_strv: a growable vector of owned C strings. */
#ifndef FU_STRV_H
#define FU_STRV_H

#include <stdbool.h>
#include <stddef.h>

struct fu_strv {
    char **v; /* owned, each owned */
    size_t n;
};

/* Appends a copy of s. Returns 0 or -ENOMEM. */
int fu_strv_push(struct fu_strv *v, const char *s);
void fu_strv_free(struct fu_strv *v);
/* Whether v holds a string equal to s. */
bool fu_strv_has(const struct fu_strv *v, const char *s);

#endif
